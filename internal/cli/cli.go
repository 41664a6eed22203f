// Package cli is the admin command line `vbctoken` (docs/design.md "Admin CLI"): consent-url,
// status, refresh, login, serve, reset and, in accounts mode, accounts. All logic lives here
// so that every command runs in-process in tests; cmd/vbctoken only wires the process to Run.
//
// Secret values come from the environment or stdin, never from flags. Output is for people
// by default and one JSON object with --json; the exit codes are part of the contract:
//
//	0  ok
//	1  failure
//	2  usage or configuration error (every problem is listed)
//	3  re-consent needed: an admin must run `vbctoken consent-url` and approve
//	4  transient failure: VBC or AWS did not answer; try again later
//	5  no store here: no *_SECRET_ID variables and no store directory (or the local
//	   sandbox's store with no `vbctoken serve` running on it); nothing was created
//	6  VBC user locked: a login met VBC's lock-out (or a lock an earlier login met is
//	   still on); no login for that user until it ends, 30 minutes after the last attempt
//
// In accounts mode (VBC_ACCOUNT_SECRET_PREFIX, or a local store with accounts) the commands
// that act on one chain take --account ID, and `vbctoken accounts` lists every account.
//
// Only serve creates a store. On a file store that a running serve holds (its
// <store>/serve.json), the other commands ask that serve to act (status, consent-url,
// refresh, reset): it owns the store's only writer, the sandbox and the clock.
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
	"path/filepath"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// Exit codes of every command.
const (
	ExitOK        = 0
	ExitFailure   = 1
	ExitUsage     = 2
	ExitReconsent = 3
	ExitTransient = 4
	ExitNoStore   = 5
	ExitLocked    = 6
)

// DefaultTimeout bounds one command (or, in serve, one operation).
const DefaultTimeout = 60 * time.Second

// nextStepConsent is the plain next step whenever the chain is gone.
const nextStepConsent = "Next step: run `vbctoken consent-url` and open the link in a browser signed in as a VBC admin."

// nextStep is nextStepConsent for account ("" in single-account mode).
func nextStep(account string) string {
	if account == "" {
		return nextStepConsent
	}
	return "Next step: run `vbctoken consent-url --account " + account + "` and open the link in a browser signed in as that account's VBC admin."
}

// resetCommand is the command that sets the pair of account in the local store dir aside.
func resetCommand(dir, account string) string {
	cmd := "vbctoken reset"
	if dir != config.DefaultStoreDir {
		cmd += " --store " + dir
	}
	if account != "" {
		cmd += " --account " + account
	}
	return cmd
}

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
	// openStore opens the store; create is true for serve only (default openStore).
	openStore func(ctx context.Context, s config.Settings, dir string, create bool) (vbctoken.Store, error)
	// openFleet opens the accounts of accounts mode; create is true for serve only
	// (default openFleet).
	openFleet func(ctx context.Context, s config.Settings, dir string, create bool) (vbctoken.Fleet, error)
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
	{"reset", "set a damaged or unwanted local pair aside (a copy is kept) to connect afresh", (*app).reset},
	{"accounts", "accounts mode: list every account's state (never a token)", (*app).accounts},
}

func (a *app) run(ctx context.Context, args []string) int {
	a.setDefaults()
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

// setDefaults fills the dependencies tests did not set.
func (a *app) setDefaults() {
	if a.now == nil {
		a.now = time.Now
	}
	if a.openStore == nil {
		a.openStore = openStore
	}
	if a.openFleet == nil {
		a.openFleet = openFleet
	}
	if a.listen == nil {
		a.listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	if a.location == nil {
		a.location = time.Local
	}
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
Accounts mode (many VBC accounts, one chain each): VBC_ACCOUNT_SECRET_PREFIX set (with
VBC_CREDENTIALS_SECRET_ID; VBC_TABLE_NAME for DynamoDB), or a local store with accounts
(vbctoken serve --accounts). There consent-url, status, refresh, login and reset take
--account ID, and vbctoken accounts lists them.
Secret values are read from the environment or stdin, never from flags.
`

const exitHelp = `
Exit codes:
  0  ok
  1  failure
  2  usage or configuration error (every problem is listed)
  3  re-consent needed: run "vbctoken consent-url" and open the link
  4  transient failure: VBC or AWS did not answer; try again later
  5  no store here: no *_SECRET_ID variables and no store directory (nothing was created)
  6  VBC user locked (login): wait until the lock ends, 30 minutes after the last attempt
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
	// account is --account, for the commands that take it (registerAccount).
	account string
}

func (c *common) register(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&c.store, "store", config.DefaultStoreDir, "file store `DIR`, used when the *_SECRET_ID variables are unset")
	fs.DurationVar(&c.timeout, "timeout", DefaultTimeout, "give up after this long")
	fs.BoolVar(&c.verbose, "v", false, "write debug logs (JSON) to stderr")
	if withJSON {
		fs.BoolVar(&c.json, "json", false, "print one JSON object on stdout for scripts")
	}
}

// registerAccount adds --account, for the commands that act on one account.
func (c *common) registerAccount(fs *flag.FlagSet) {
	fs.StringVar(&c.account, "account", "", "accounts mode: the account `ID` to act on (lower-case letters, digits and hyphens)")
}

func (c common) dir() string {
	if c.store == "" {
		return config.DefaultStoreDir
	}
	return c.store
}

// parse parses args with fs. It returns done=true and the exit code when the command must
// stop: --help (usage on stdout, 0) or a usage error (message and usage on stderr, 2, and
// the JSON error object on stdout when --json was asked for).
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
		if fs.Lookup("json") != nil && wantsJSON(args) {
			a.writeJSON(problemsJSON{Error: err.Error(), Problems: []string{err.Error()}, ExitCode: ExitUsage})
		}
		return true, ExitUsage
	}
	return false, 0
}

// wantsJSON reports whether args ask for --json, for errors found before it was parsed.
func wantsJSON(args []string) bool {
	for _, arg := range args {
		if arg == "--" {
			return false
		}
		switch arg {
		case "-json", "--json", "-json=true", "--json=true", "-json=1", "--json=1":
			return true
		}
	}
	return false
}

// problemsJSON is the JSON error object of a usage or configuration error.
type problemsJSON struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
	ExitCode int      `json:"exit_code"`
}

// settings reads the environment and reports its problems together with those found in
// flags, all at once (exit 2).
func (a *app) settings(cmd string, c common, need config.Need, flagProblems []string) (config.Settings, int, bool) {
	s, err := config.FromEnv(a.getenv, need)
	code, ok := a.reportProblems(cmd, c.json, err, flagProblems)
	return s, code, ok
}

// reportProblems lists flag problems and those of a configuration error on stderr, and as
// a JSON error object on stdout when asJSON.
func (a *app) reportProblems(cmd string, asJSON bool, err error, problems []string) (int, bool) {
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
	if asJSON {
		a.writeJSON(problemsJSON{Error: "configuration problems: " + strings.Join(problems, "; "), Problems: problems, ExitCode: ExitUsage})
	}
	return ExitUsage, false
}

func (a *app) logger(verbose bool) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// target is what a one-shot command works on: a store it opens itself, or the running
// serve that holds the file store and acts for it.
type target struct {
	// store is the store the command works on: the one store, or in accounts mode the
	// --account's; nil when serve acts or for the accounts command.
	store vbctoken.Store
	fleet vbctoken.Fleet // accounts mode, when the command opens the stores itself
	serve *serveClient   // nil when the command opens the store itself
	// accounts says the store keeps many accounts (accounts mode, here or in the serve).
	accounts bool
	where    string // for people: "files in .vbctoken", "AWS Secrets Manager (…)"
}

// accountUse says how a command relates to accounts mode; zero: it takes no --account
// and works in either mode.
type accountUse int

const (
	// accountOne: --account names the account in accounts mode, and is refused elsewhere.
	accountOne accountUse = iota + 1
	// accountFleet: the command works on every account (accounts mode only).
	accountFleet
)

// targetOptions say what a command may work on.
type targetOptions struct {
	// idleSandbox lets the command open a sandbox store with no serve running (reset).
	idleSandbox bool
	account     accountUse
}

// findTarget finds the command's store, creating nothing: Secrets Manager when the secret
// ids are set; else the serve that holds the file store in c.store (held, found by
// heldBy); else that file store, when it exists and is not the local sandbox's (whose
// sandbox lives inside serve).
func (a *app) findTarget(ctx context.Context, s config.Settings, c common, opt targetOptions, held *serveInfo) (target, error) {
	if s.AccountsMode() {
		f, err := a.openFleet(ctx, s, "", false)
		if err != nil {
			return target{}, err
		}
		return target{fleet: f, accounts: true, where: fleetWhere(s)}, nil
	}
	if s.UsesSecretsManager() {
		st, err := a.openStore(ctx, s, "", false)
		if err != nil {
			return target{}, err
		}
		return target{store: st, where: "AWS Secrets Manager (" + s.TokenSecretID + ")"}, nil
	}
	dir := c.dir()
	if held != nil {
		return target{serve: newServeClient(*held), accounts: held.Accounts, where: "files in " + dir + ", kept by " + held.String()}, nil
	}
	if hasAccounts(dir) {
		f, err := a.openFleet(ctx, s, dir, false)
		if err != nil {
			return target{}, err
		}
		if !opt.idleSandbox {
			if creds, err := f.LoadCredentials(ctx); err == nil && isSandboxClient(creds) {
				return target{}, &noStoreError{Dir: dir, SandboxIdle: true}
			}
		}
		return target{fleet: f, accounts: true, where: "files in " + filepath.Join(dir, filestore.AccountsDir)}, nil
	}
	st, err := a.openStore(ctx, s, dir, false)
	if err != nil {
		return target{}, err
	}
	if !opt.idleSandbox {
		if creds, err := st.LoadCredentials(ctx); err == nil && isSandboxClient(creds) {
			return target{}, &noStoreError{Dir: dir, SandboxIdle: true}
		}
	}
	return target{store: st, where: "files in " + dir}, nil
}

// heldBy returns the running serve that holds the file store in c.store; nil when none
// does or when the secret ids point at Secrets Manager.
func (a *app) heldBy(c common) (*serveInfo, error) {
	for _, name := range []string{config.EnvCredentialsSecretID, config.EnvTokenSecretID, config.EnvAccessSecretID, config.EnvAccountSecretPrefix} {
		if strings.TrimSpace(a.getenv(name)) != "" {
			return nil, nil
		}
	}
	return findServe(c.dir())
}

// keeperFor builds the keeper of a one-shot command: on the target's store, or in accounts
// mode the --account's keeper (whose consent links carry the account).
func (a *app) keeperFor(s config.Settings, t target, c common) (*vbctoken.Keeper, error) {
	if t.fleet != nil {
		accts, err := a.accountsFor(s, t.fleet, c)
		if err != nil {
			return nil, err
		}
		return accts.Keeper(c.account)
	}
	kc := a.keeperConfig(s, t.store, c)
	return vbctoken.NewKeeper(kc)
}

// accountsFor builds the keepers of fleet for a one-shot command.
func (a *app) accountsFor(s config.Settings, fleet vbctoken.Fleet, c common) (*vbctoken.Accounts, error) {
	return vbctoken.NewAccounts(fleet, a.keeperConfig(s, nil, c))
}

func (a *app) keeperConfig(s config.Settings, store vbctoken.Store, c common) vbctoken.KeeperConfig {
	kc := s.KeeperConfig(store)
	kc.Client.Retry = a.clientRetry
	kc.StoreRetry, kc.Now, kc.Logger, kc.Holder = a.storeRetry, a.now, a.logger(c.verbose), "cli"
	return kc
}

// oneShot is the common path of status, refresh, consent-url and reset: read the
// environment (every problem at once), bound the command by --timeout, find the target,
// then run fn. need is checked only when the command runs on its own store: a serve that
// acts for it has its own settings.
func (a *app) oneShot(ctx context.Context, cmd string, c common, opt targetOptions, flagProblems []string, need config.Need,
	fn func(ctx context.Context, s config.Settings, t target) int) int {
	if c.timeout <= 0 {
		flagProblems = append(flagProblems, "--timeout must be positive")
	}
	if c.account != "" {
		if err := vbctoken.CheckAccount(c.account); err != nil {
			flagProblems = append(flagProblems, "--account: "+strings.TrimPrefix(err.Error(), vbctoken.ErrBadInput.Error()+": "))
		}
	}
	held, heldErr := a.heldBy(c)
	if held != nil {
		need = config.Need{}
	}
	// The environment without what only some targets need: when that is wrong, report it
	// with everything else (every problem at once); when it is fine, look for the target
	// first, since "no store here" or a serve that acts for the command matter more.
	base, err := config.FromEnv(a.getenv, config.Need{})
	if err != nil || len(flagProblems) > 0 {
		_, code, _ := a.settings(cmd, c, need, flagProblems)
		return code
	}
	if heldErr != nil {
		return a.fail(cmd, c, heldErr, nil)
	}
	if base.UsesSecretsManager() {
		// The environment alone says the mode: refuse a wrong use before any call to AWS.
		where := "AWS Secrets Manager (" + base.TokenSecretID + ")"
		if base.AccountsMode() {
			where = fleetWhere(base)
		}
		if err := checkAccountUse(cmd, c, opt.account, base.AccountsMode(), where); err != nil {
			return a.fail(cmd, c, err, nil)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	t, err := a.findTarget(ctx, base, c, opt, held)
	if err != nil {
		return a.fail(cmd, c, err, nil)
	}
	if err := checkAccountUse(cmd, c, opt.account, t.accounts, t.where); err != nil {
		return a.fail(cmd, c, err, nil)
	}
	if t.accounts && opt.account == accountOne {
		if t.fleet != nil {
			if t.store, err = t.fleet.Open(c.account); err != nil {
				return a.fail(cmd, c, err, nil)
			}
		}
		t.where += ", account " + c.account
	}
	s := base
	if t.serve == nil && need != (config.Need{}) {
		var code int
		var ok bool
		if s, code, ok = a.settings(cmd, c, need, nil); !ok {
			return code
		}
	}
	return fn(ctx, s, t)
}

// exitCode maps an error to the exit code scripts branch on. A permanent problem is never
// reported as transient: a host name DNS does not know, AWS credentials refused, a secret
// that does not exist are configuration errors, whatever retry layer they came through.
func exitCode(err error) int {
	var (
		ce      *config.Error
		remote  *remoteError
		noStore *noStoreError
		setup   *awsSetupError
		busy    *storeBusyError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &remote):
		return remote.Code
	case errors.As(err, &noStore):
		return ExitNoStore
	case errors.Is(err, vbctoken.ErrAccountLocked):
		return ExitLocked
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		return ExitReconsent
	case errors.As(err, &ce), errors.As(err, &setup), errors.Is(err, vbctoken.ErrBadInput), errors.Is(err, vbctoken.ErrNoCredentials),
		unknownHost(err) != "":
		return ExitUsage
	case errors.As(err, &busy):
		return ExitFailure
	}
	if _, ok := awsRejected(err); ok {
		return ExitUsage
	}
	if errors.Is(err, vbctoken.ErrTransient) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, vbctoken.ErrConflict) {
		return ExitTransient
	}
	return ExitFailure
}

// unknownHost returns the host name of a DNS "no such host" answer in err's chain.
func unknownHost(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return dns.Name
	}
	return ""
}

// fail reports err on stderr with the next step an operator can take, writes the JSON
// error object when asked, and returns the exit code.
func (a *app) fail(cmd string, c common, err error, jsonOut any) int {
	return a.report(cmd, c, exitCode(err), message(cmd, err), hintFor(err, c.dir(), c.account), jsonOut)
}

// report writes a command's failure: msg and hint on stderr, and with --json the JSON error
// object (jsonOut's fields with "error", "hint" and "exit_code"). It returns code.
func (a *app) report(cmd string, c common, code int, msg, hint string, jsonOut any) int {
	fmt.Fprintf(a.stderr, "vbctoken %s: %s\n", cmd, msg)
	if hint != "" {
		fmt.Fprintln(a.stderr, hint)
	}
	if c.json {
		if jsonOut == nil {
			jsonOut = errorJSON{}
		}
		a.writeJSON(withError(jsonOut, msg, hint, code))
	}
	return code
}

// message is err's text without a leading repeat of the command's name ("vbctoken
// refresh: refresh: …" reads "vbctoken refresh: …").
func message(cmd string, err error) string {
	msg := err.Error()
	for _, p := range []string{cmd + ": ", strings.ReplaceAll(cmd, "-", " ") + ": "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// hintFor is the next step after err, on the local store dir (for reset) and in accounts
// mode for account.
func hintFor(err error, dir, account string) string {
	var (
		remote  *remoteError
		noStore *noStoreError
		setup   *awsSetupError
		busy    *storeBusyError
		mode    *modeError
	)
	switch {
	case errors.As(err, &remote):
		return remote.Hint
	case errors.As(err, &mode):
		return mode.Hint
	case errors.As(err, &noStore) && noStore.SandboxIdle:
		return "Its VBC sandbox runs inside `vbctoken serve`: start it again (`make local`, or `vbctoken serve --store " + noStore.Dir + "`) and run this command again; it asks the running serve."
	case errors.As(err, &noStore):
		return "For the deployed stack set VBC_CREDENTIALS_SECRET_ID, VBC_TOKEN_SECRET_ID and VBC_ACCESS_SECRET_ID (the stack's outputs) and AWS_REGION.\n" +
			"For a local store pass --store DIR, or start one here with `vbctoken serve` (`make local`)."
	case errors.As(err, &setup):
		return setup.Fix
	case errors.As(err, &busy):
		return "Open " + busy.Other.URL + ", or stop that serve (Ctrl-C) first, or give this one its own --store DIR."
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		return nextStep(account)
	case errors.Is(err, vbctoken.ErrNoCredentials):
		return "Store the VBC consumer key and secret first: in the credentials secret (VBC_CREDENTIALS_SECRET_ID), or for a local run as\n" +
			`{"client_id":"…","client_secret":"…"} in ` + dir + "/credentials.json (mode 0600)."
	case unknownHost(err) != "":
		return "DNS knows no host " + unknownHost(err) + ": check VBC_TOKEN_URL and VBC_AUTHORIZE_URL (or AWS_ENDPOINT_URL_SECRETS_MANAGER), and that this machine can resolve names. Retrying will not help."
	}
	if hint, ok := awsRejected(err); ok {
		return hint
	}
	switch {
	case errors.Is(err, vbctoken.ErrTransient), errors.Is(err, context.DeadlineExceeded):
		return "VBC or AWS did not answer in time; nothing was lost. Try again in a few minutes."
	case errors.Is(err, vbctoken.ErrBadClient):
		return "VBC rejected the client credentials: check the consumer key and secret in the credentials secret."
	case errors.Is(err, vbctoken.ErrNewerSchema):
		return "Upgrade vbctoken: a newer version wrote the stored pair."
	case errors.Is(err, vbctoken.ErrMalformedSecret):
		return "The stored value is damaged. For a local store, `" + resetCommand(dir, account) + "` sets the pair aside (a copy is kept); on AWS, restore the previous version (AWSPREVIOUS) as the README's runbook says."
	}
	return ""
}

type errorJSON struct {
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
}

// withError adds "error", "hint" and "exit_code" to the JSON of v (an object).
func withError(v any, msg, hint string, code int) any {
	data, merr := json.Marshal(v)
	var fields map[string]any
	if merr != nil || json.Unmarshal(data, &fields) != nil || fields == nil {
		fields = map[string]any{}
	}
	fields["error"] = msg
	if hint != "" {
		fields["hint"] = hint
	}
	fields["exit_code"] = code
	return fields
}

// writeJSON writes v as indented JSON. HTML escaping is off: a consent URL keeps its "&".
func (a *app) writeJSON(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
