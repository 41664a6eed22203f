// Command lambda-invoke runs a bootstrap executable once, the way `sam local invoke -e`
// does, through a local Lambda Runtime API (package internal/lambdarun):
//
//	lambda-invoke -bin dist/callback/bootstrap -event events/callback.json [-env K=V ...] [-timeout 10s]
//
// It prints the response payload to stdout, or the function error's JSON and exits 1.
// The function's own output goes to stderr, followed by a REPORT line like Lambda's
// (init duration, duration, peak memory, CPU time). The function starts from an empty
// environment plus Lambda's variables unless -inherit-env is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vbctoken/vbctoken/internal/lambdarun"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: exit code 0 on success, 1 for a function or init
// error or a failed run, 2 for bad usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lambda-invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg lambdarun.Config
	env := envFlag{}
	fs.StringVar(&cfg.Binary, "bin", "", "bootstrap `executable` to run (required)")
	eventPath := fs.String("event", "", "event JSON `file`, - for stdin; none sends {}")
	fs.Var(env, "env", "`KEY=VALUE` for the function's environment (repeatable)")
	fs.DurationVar(&cfg.Timeout, "timeout", lambdarun.DefaultTimeout, "function timeout")
	fs.IntVar(&cfg.MemoryMB, "memory", lambdarun.DefaultMemoryMB, "memory size in MB (reported, not enforced)")
	fs.StringVar(&cfg.FunctionName, "name", "", "function name (default: the executable's directory name)")
	fs.StringVar(&cfg.Region, "region", lambdarun.DefaultRegion, "AWS_REGION for the function")
	fs.BoolVar(&cfg.InheritEnv, "inherit-env", false, "start from this shell's environment instead of an empty one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.Binary == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "lambda-invoke: -bin is required and no arguments are taken")
		fs.Usage()
		return 2
	}
	event, err := readEvent(*eventPath, stdin)
	if err != nil {
		fmt.Fprintln(stderr, "lambda-invoke:", err)
		return 1
	}
	cfg.Env = env
	cfg.Output = stderr

	f, err := lambdarun.Start(ctx, cfg)
	if err != nil {
		return fail(stdout, stderr, err)
	}
	res, err := f.Invoke(ctx, event)
	f.Close() // final Stats, and all output written
	if err != nil {
		return fail(stdout, stderr, err)
	}
	s := f.Stats()
	report := fmt.Sprintf("REPORT RequestId: %s\tDuration: %s\tMemory Size: %d MB\tMax Memory Used: %d MB\tCPU Time: %s",
		res.RequestID, ms(res.Duration), cfg.MemoryMB, (s.PeakRSS+1<<20-1)>>20, ms(s.CPUTime))
	if res.ColdStart {
		report += "\tInit Duration: " + ms(res.InitDuration)
	}
	fmt.Fprintln(stderr, report)
	fmt.Fprintf(stdout, "%s\n", res.Payload)
	if res.Err != nil {
		return 1
	}
	return 0
}

// fail prints an init error as Lambda's error JSON on stdout, anything else on stderr.
func fail(stdout, stderr io.Writer, err error) int {
	var ie *lambdarun.InitError
	if errors.As(err, &ie) {
		fmt.Fprintf(stdout, "{\"errorType\":%q,\"errorMessage\":%q}\n", ie.Type, ie.Message)
	}
	fmt.Fprintln(stderr, "lambda-invoke:", err)
	return 1
}

func readEvent(path string, stdin io.Reader) ([]byte, error) {
	switch path {
	case "":
		return []byte("{}"), nil
	case "-":
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// envFlag collects -env KEY=VALUE flags.
type envFlag map[string]string

func (e envFlag) String() string { return "" }

func (e envFlag) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", kv)
	}
	e[k] = v
	return nil
}
