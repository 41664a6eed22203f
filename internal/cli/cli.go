// Package cli is the admin command line `vbctoken` (DESIGN.md "Admin CLI"): consent-url,
// status, refresh, login and serve. All logic lives here so that every command runs
// in-process in tests; cmd/vbctoken only wires the process to Run.
//
// Secret values come from the environment or stdin, never from flags. Output is for people
// by default and one JSON object with --json; the exit codes are part of the contract:
//
//	0  ok
//	1  failure
//	2  usage or configuration error (every problem is listed)
//	3  re-consent needed: an admin must run `vbctoken consent-url` and approve
//	4  transient failure: VBC or AWS did not answer; try again later
package cli

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Exit codes of every command.
const (
	ExitOK        = 0
	ExitFailure   = 1
	ExitUsage     = 2
	ExitReconsent = 3
	ExitTransient = 4
)

// DefaultTimeout bounds one command (or, in serve, one operation).
const DefaultTimeout = 60 * time.Second

// nextStepConsent is the plain next step whenever the chain is gone.
const nextStepConsent = "Next step: run `vbctoken consent-url` and open the link in a browser signed in as a VBC admin."

// Run runs the command line args (without the program name) and returns the exit code.
// getenv is os.Getenv in main and a map in tests; stdin feeds `login` its password.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	return a.run(ctx, args)
}

// app is one invocation with its dependencies. Tests build it directly to swap the clock,
// the store and the listener; Run uses the real ones.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	// now is the wall clock (default time.Now).
	now func() time.Time
	// openStore opens the store (default openStore).
	openStore func(ctx context.Context, s config.Settings, dir string) (vbctoken.Store, error)
	// storeRetry and clientRetry are the keeper's retry policies (tests make them fast).
	storeRetry, clientRetry vbctoken.RetryPolicy
	// listen opens serve's listener (default net.Listen("tcp", addr)).
	listen func(addr string) (net.Listener, error)
	// serving is called with serve's base URL once it accepts connections (tests).
	serving func(baseURL string)
	// signingKey signs the serve sandbox's id_tokens (tests share one; default generated).
	signingKey *rsa.PrivateKey
	// location formats times on serve's pages (default time.Local).
	location *time.Location
}

type command struct {
	name    string
	summary string
	run     func(a *app, ctx context.Context, args []string) int
}

var commands = []command{
	{"consent-url", "print a one-time consent link for a VBC admin to open", (*app).consentURL},
	{"status", "show the connection: grant, age, expiry times (never a token)", (*app).status},
	{"refresh", "run the refresher's logic once (--force to refresh a fresh pair)", (*app).refresh},
	{"login", "connect with the password grant (password from VBC_PASSWORD or stdin)", (*app).login},
	{"serve", "run locally: status page, callback and scheduled refresh on one port", (*app).serve},
}

func (a *app) run(ctx context.Context, args []string) int {
	if a.now == nil {
		a.now = time.Now
	}
	if a.openStore == nil {
		a.openStore = openStore
	}
	if a.listen == nil {
		a.listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	if a.location == nil {
		a.location = time.Local
	}
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage())
		return ExitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(rest) > 0 {
			return a.run(ctx, []string{rest[0], "--help"})
		}
		fmt.Fprint(a.stdout, usage())
		return ExitOK
	}
	for _, c := range commands {
		if c.name == name {
			if bad := secretFlag(rest); bad != "" {
				fmt.Fprintf(a.stderr, "vbctoken %s: %s is not accepted: secret values never go on the command line (they end up in shell history and the process list).\n"+
					"Set VBC_PASSWORD, or write the password on stdin: vbctoken login --username U < password-file\n", name, bad)
				return ExitUsage
			}
			return c.run(a, ctx, rest)
		}
	}
	fmt.Fprintf(a.stderr, "vbctoken: unknown command %q\n\n%s", name, usage())
	return ExitUsage
}

func usage() string {
	var b strings.Builder
	b.WriteString(`vbctoken keeps a Vonage Business Communications (VBC) OAuth token pair alive.

Usage: vbctoken <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Run "vbctoken <command> --help" for a command's flags.

` + storeHelp + exitHelp)
	return b.String()
}

const storeHelp = `Store: AWS Secrets Manager when VBC_CREDENTIALS_SECRET_ID, VBC_TOKEN_SECRET_ID and
VBC_ACCESS_SECRET_ID are set (standard AWS credential chain), else files in --store DIR
(default .vbctoken/, mode 0600). Other settings: VBC_AUTHORIZE_URL, VBC_TOKEN_URL,
VBC_REDIRECT_URL, VBC_SCOPE, VBC_PKCE, VBC_REFRESH_MARGIN, VBC_REFRESH_MAX_AGE.
Secret values are read from the environment or stdin, never from flags.
`

const exitHelp = `
Exit codes:
  0  ok
  1  failure
  2  usage or configuration error (every problem is listed)
  3  re-consent needed: run "vbctoken consent-url" and open the link
  4  transient failure: VBC or AWS did not answer; try again later
`

// secretFlag returns the first flag in args that would carry a secret value.
func secretFlag(args []string) string {
	for _, arg := range args {
		if arg == "--" {
			return ""
		}
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			continue
		}
		switch strings.ToLower(name) {
		case "password", "pass", "client-secret", "client_secret", "secret", "refresh-token", "access-token":
			return "--" + name
		}
	}
	return ""
}

// common are the flags every one-shot command takes.
type common struct {
	store   string
	json    bool
	timeout time.Duration
	verbose bool
}

func (c *common) register(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&c.store, "store", config.DefaultStoreDir, "file store `DIR`, used when the *_SECRET_ID variables are unset")
	fs.DurationVar(&c.timeout, "timeout", DefaultTimeout, "give up after this long")
	fs.BoolVar(&c.verbose, "v", false, "write debug logs (JSON) to stderr")
	if withJSON {
		fs.BoolVar(&c.json, "json", false, "print one JSON object on stdout for scripts")
	}
}

// parse parses args with fs. It returns done=true and the exit code when the command must
// stop: --help (usage on stdout, 0) or a usage error (message and usage on stderr, 2).
func (a *app) parse(fs *flag.FlagSet, args []string, synopsis, help string) (done bool, code int) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	usageText := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: vbctoken %s\n\n%s\nFlags:\n", synopsis, help)
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		b.WriteString(exitHelp)
		return b.String()
	}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(a.stdout, usageText())
		return true, ExitOK
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "vbctoken %s: %v\n\n%s", fs.Name(), err, usageText())
		return true, ExitUsage
	}
	return false, 0
}

// settings reads the environment and reports its problems together with those found in
// flags, all at once (exit 2).
func (a *app) settings(cmd string, need config.Need, flagProblems []string) (config.Settings, int, bool) {
	s, err := config.FromEnv(a.getenv, need)
	code, ok := a.reportProblems(cmd, err, flagProblems)
	return s, code, ok
}

// reportProblems lists flag problems and those of a configuration error on stderr.
func (a *app) reportProblems(cmd string, err error, problems []string) (int, bool) {
	problems = append([]string(nil), problems...)
	var ce *config.Error
	if errors.As(err, &ce) {
		problems = append(problems, ce.Problems...)
	} else if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		return ExitOK, true
	}
	fmt.Fprintf(a.stderr, "vbctoken %s: configuration problems:\n", cmd)
	for _, p := range problems {
		fmt.Fprintf(a.stderr, "  - %s\n", p)
	}
	return ExitUsage, false
}

func (a *app) logger(verbose bool) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// keeperFor opens the store and builds a keeper for a one-shot command.
func (a *app) keeperFor(ctx context.Context, s config.Settings, c common) (*vbctoken.Keeper, string, error) {
	store, err := a.openStore(ctx, s, c.store)
	if err != nil {
		return nil, "", err
	}
	kc := s.KeeperConfig(store)
	kc.Client.Retry = a.clientRetry
	kc.StoreRetry, kc.Now, kc.Logger = a.storeRetry, a.now, a.logger(c.verbose)
	k, err := vbctoken.NewKeeper(kc)
	if err != nil {
		return nil, "", err
	}
	return k, storeText(s, c.store), nil
}

func storeText(s config.Settings, dir string) string {
	if s.UsesSecretsManager() {
		return "AWS Secrets Manager (" + s.TokenSecretID + ")"
	}
	if dir == "" {
		dir = config.DefaultStoreDir
	}
	return "files in " + dir
}

// exitCode maps an error to the exit code scripts branch on.
func exitCode(err error) int {
	var ce *config.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		return ExitReconsent
	case errors.As(err, &ce), errors.Is(err, vbctoken.ErrBadInput), errors.Is(err, vbctoken.ErrNoCredentials):
		return ExitUsage
	case errors.Is(err, vbctoken.ErrTransient), errors.Is(err, context.DeadlineExceeded), errors.Is(err, vbctoken.ErrConflict):
		return ExitTransient
	}
	return ExitFailure
}

// fail reports err on stderr with the next step an operator can take, writes the JSON
// error object when asked, and returns the exit code.
func (a *app) fail(cmd string, c common, err error, jsonOut any) int {
	code := exitCode(err)
	fmt.Fprintf(a.stderr, "vbctoken %s: %v\n", cmd, err)
	if hint := hintFor(err, c.store); hint != "" {
		fmt.Fprintln(a.stderr, hint)
	}
	if c.json {
		if jsonOut == nil {
			jsonOut = errorJSON{}
		}
		a.writeJSON(withError(jsonOut, err, code))
	}
	return code
}

func hintFor(err error, dir string) string {
	if dir == "" {
		dir = config.DefaultStoreDir
	}
	switch {
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		return nextStepConsent
	case errors.Is(err, vbctoken.ErrNoCredentials):
		return "Store the VBC consumer key and secret first: in the credentials secret (VBC_CREDENTIALS_SECRET_ID), or for a local run as\n" +
			`{"client_id":"…","client_secret":"…"} in ` + dir + "/credentials.json (mode 0600)."
	case errors.Is(err, vbctoken.ErrTransient), errors.Is(err, context.DeadlineExceeded):
		return "VBC or AWS did not answer in time; nothing was lost. Try again in a few minutes."
	case errors.Is(err, vbctoken.ErrBadClient):
		return "VBC rejected the client credentials: check the consumer key and secret in the credentials secret."
	case errors.Is(err, vbctoken.ErrNewerSchema):
		return "Upgrade vbctoken: a newer version wrote the stored pair."
	}
	return ""
}

type errorJSON struct {
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
}

// withError adds "error" and "exit_code" to the JSON of v (an object).
func withError(v any, err error, code int) any {
	data, merr := json.Marshal(v)
	var fields map[string]any
	if merr != nil || json.Unmarshal(data, &fields) != nil || fields == nil {
		fields = map[string]any{}
	}
	fields["error"] = err.Error()
	fields["exit_code"] = code
	return fields
}

func (a *app) writeJSON(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
