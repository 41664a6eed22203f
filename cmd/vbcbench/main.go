// Command vbcbench is `make bench`: it measures vbctoken's Lambda functions against a
// hello-world aws-lambda-go function built the same way, side by side in one run so that
// ratios hold on a noisy machine, prints one report and writes it as JSON
// (bench-report.json at the module root).
//
// What it measures (issue 7):
//   - cold start: init (exec → first GET .../invocation/next) and exec → first response of
//     hello, callback (a consent) and refresher (an hourly check that skips), through the
//     local Lambda Runtime API (internal/lambdarun) with Lambda's empty environment, many
//     rounds in shuffled order, binaries built for this machine as they ship;
//   - size: binary and zip of each, built for linux/arm64 exactly as `make build` does;
//   - peak RSS (VmHWM) during the cold invoke;
//   - warm handler work: the Go benchmarks of internal/bench (ns/op, allocs/op, CPU/op);
//   - AWS and token-endpoint calls of one consent and of a day of hourly checks, counted by
//     the in-process Secrets Manager (bench.FakeSecretsManager) and VBC (vbcsandbox);
//   - the reader's hot path, and from its day simulation the reads of the access secret per
//     app-day and the longest time a revoked token was served: pkg/vbctoken's
//     BenchmarkSource* and BenchmarkTransportCached.
//
// Usage:
//
//	go run ./cmd/vbcbench [-rounds 60] [-count 5] [-baseline REV] [-go=false] [-out FILE]
//
// -baseline REV also builds the functions of git revision REV (git archive) and measures
// them in the same rounds, for before/after numbers.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/internal/bench"
	"github.com/vbctoken/vbctoken/internal/lambdarun"
)

// options are the command's flags.
type options struct {
	rounds    int
	count     int
	benchtime string
	goBench   bool
	baseline  string
	out       string
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 60, "cold starts per function, after the warm-up rounds")
	flag.IntVar(&o.count, "count", 5, "go test -count for the Go benchmarks")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime for the Go benchmarks")
	flag.BoolVar(&o.goBench, "go", true, "run the Go benchmarks (warm handlers, reader)")
	flag.StringVar(&o.baseline, "baseline", "", "also measure the functions of this git revision (e.g. HEAD, main), side by side")
	flag.StringVar(&o.out, "out", "", "JSON report path (default: bench-report.json at the module root)")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "vbcbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, o options) error {
	start := time.Now()
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench-report.json")
	}
	tmp, err := os.MkdirTemp("", "vbcbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	rep := &Report{
		Date: start.UTC().Format(time.RFC3339), GoVersion: runtime.Version(),
		Host: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(), Rounds: o.rounds, Baseline: o.baseline,
	}
	fns := []function{
		{name: "hello", kind: "hello", dir: root, pkg: bench.HelloPackage},
		{name: "callback", kind: "callback", dir: root, pkg: bench.CallbackPackage},
		{name: "refresher", kind: "refresher", dir: root, pkg: bench.RefresherPackage},
	}
	if o.baseline != "" {
		base := filepath.Join(tmp, "baseline")
		progress(w, "exporting %s as the baseline", o.baseline)
		if err := bench.ExportTree(ctx, root, o.baseline, base); err != nil {
			return err
		}
		fns = append(fns,
			function{name: "callback@" + o.baseline, kind: "callback", dir: base, pkg: bench.CallbackPackage, baseline: true},
			function{name: "refresher@" + o.baseline, kind: "refresher", dir: base, pkg: bench.RefresherPackage, baseline: true})
	}

	progress(w, "building %d functions for linux/arm64 (sizes) and %s (cold starts)", len(fns), rep.Host)
	for i, f := range fns {
		arm, err := bench.BuildShipped(ctx, f.dir, f.pkg, filepath.Join(tmp, "arm64", strconv.Itoa(i)), "arm64")
		if err != nil {
			return err
		}
		st, err := os.Stat(arm)
		if err != nil {
			return err
		}
		z, err := bench.ZipSize(arm)
		if err != nil {
			return err
		}
		rep.Sizes = append(rep.Sizes, Size{Function: f.name, Binary: st.Size(), Zip: z, baseline: f.baseline})
		if fns[i].binary, err = bench.BuildShipped(ctx, f.dir, f.pkg, filepath.Join(tmp, "host", f.name), runtime.GOARCH); err != nil {
			return err
		}
	}

	d, err := bench.NewDeployment()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Connect(ctx); err != nil {
		return err
	}
	events, err := readEvents(root)
	if err != nil {
		return err
	}
	var targets []bench.Target
	for _, f := range fns {
		targets = append(targets, target(f, d, events))
	}

	progress(w, "cold starts: %d rounds of %d functions in shuffled order (+%d warm-up rounds)", o.rounds, len(targets), warmupRounds)
	samples := map[string][]bench.Sample{}
	rng := rand.New(rand.NewPCG(1, 2))
	for r := -warmupRounds; r < o.rounds; r++ {
		for _, i := range rng.Perm(len(targets)) {
			s, err := bench.ColdStart(ctx, d, targets[i], d.Env)
			if err != nil {
				return fmt.Errorf("round %d: %w", r, err)
			}
			if r >= 0 {
				samples[targets[i].Name] = append(samples[targets[i].Name], s)
			}
		}
	}
	rep.addCold(fns, samples)

	progress(w, "daily cycle: 24 hourly refresher runs (one due), in fresh and in one reused environment")
	for _, reused := range []bool{false, true} {
		checks, err := bench.DailyCycle(ctx, d, fns[2].binary, d.Env, events["scheduled.json"], reused) // fns[2]: this tree's refresher
		if err != nil {
			return err
		}
		rep.addCycle(reused, checks)
	}
	consent := samples["callback"][len(samples["callback"])-1]
	rep.Calls.Consent, rep.Calls.ConsentTotal, rep.Calls.ConsentToken = consent.AWSCallLog, consent.AWSCalls, consent.TokenCalls

	if o.goBench {
		progress(w, "Go benchmarks: warm handlers (internal/bench), -count %d", o.count)
		res, err := bench.RunGoBench(ctx, root, "./internal/bench", "^Benchmark(CallbackWarm|RefresherSkip|RefresherRefresh|LoopbackRoundTrip)$", o.count, o.benchtime)
		if err != nil {
			return err
		}
		rep.Warm = summarize(res)
		progress(w, "Go benchmarks: reader (pkg/vbctoken BenchmarkSource*, BenchmarkTransportCached), -count %d", o.count)
		res, err = bench.RunGoBench(ctx, root, "./pkg/vbctoken", "^Benchmark(SourceTokenCached|SourceReadsPerDay|TransportCached)$", o.count, "")
		if err != nil {
			return err
		}
		rep.Reader = summarize(res)
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.judge()

	rep.WriteTable(w)
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s in %.0f s\n", o.out, rep.Seconds)
	return nil
}

// warmupRounds are cold starts run and discarded first (page cache, the upstreams' pools).
const warmupRounds = 3

// function is one binary under measurement.
type function struct {
	name, kind string // kind: hello, callback or refresher
	dir, pkg   string // built from dir (a module root)
	baseline   bool
	binary     string // built for this machine
}

// readEvents reads the events/ files the targets send.
func readEvents(root string) (map[string][]byte, error) {
	m := map[string][]byte{}
	for _, name := range []string{"callback-success.json", "scheduled.json"} {
		b, err := os.ReadFile(filepath.Join(root, "events", name))
		if err != nil {
			return nil, err
		}
		m[name] = b
	}
	return m, nil
}

// target says what a cold start of f invokes: hello with {}, callback with a genuine
// consent (events/callback-success.json), refresher with the hourly event
// (events/scheduled.json), which finds the pair fresh.
func target(f function, d *bench.Deployment, events map[string][]byte) bench.Target {
	t := bench.Target{Name: f.name, Binary: f.binary}
	want := func(s string) func(lambdarun.Result) error {
		return func(res lambdarun.Result) error {
			if !bytes.Contains(res.Payload, []byte(s)) {
				return fmt.Errorf("want %s in the answer, got %.300s", s, res.Payload)
			}
			return nil
		}
	}
	switch f.kind {
	case "callback":
		t.Event = func(ctx context.Context) ([]byte, error) { return d.FillEvent(ctx, events["callback-success.json"]) }
		t.Check = want(`"statusCode":200`)
	case "refresher":
		t.Event = func(context.Context) ([]byte, error) { return events["scheduled.json"], nil }
		t.Check = want(`"outcome":"skipped"`)
	default:
		t.Event = func(context.Context) ([]byte, error) { return []byte(`{}`), nil }
	}
	return t
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run vbcbench inside the vbctoken module")
	}
	return filepath.Dir(gomod), nil
}

func progress(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "· "+format+"\n", args...)
}
