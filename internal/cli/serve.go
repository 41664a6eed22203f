package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// Defaults of serve.
const (
	DefaultAddr         = "127.0.0.1:8080"
	DefaultRefreshEvery = time.Hour
	// SandboxPrefix is where serve mounts the VBC sandbox in sandbox mode.
	SandboxPrefix = "/sandbox"
	// SandboxClientPrefix starts the client id serve generates for the sandbox; credentials
	// with it are the sandbox's, not VBC's, so the next serve reuses them in sandbox mode.
	SandboxClientPrefix = "vbctoken-sandbox-"
	// consentHold bounds how long the sped-up clock runs at real speed between the
	// sandbox's approval and the callback.
	consentHold = 10 * time.Second
	// minTick is the shortest real interval between scheduled refresh checks.
	minTick = 10 * time.Millisecond
	// shutdownGrace bounds the wait for in-flight requests on shutdown.
	shutdownGrace = 5 * time.Second
)

// serveOptions are serve's flags.
type serveOptions struct {
	common
	addr         string
	refreshEvery time.Duration
	clockSpeed   float64
	accounts     bool
	problems     []string // found in the flags, reported with the environment's
}

// serve runs the keeper locally: status page, consent link, callback, scheduled refresh
// and, without client credentials, the VBC sandbox, all on one port. It reads like its
// steps: flags, the store (claimed), the listener, the wiring, run until stopped.
func (a *app) serve(ctx context.Context, args []string) int {
	o, done, code := a.parseServe(args)
	if done {
		return code
	}
	p, code, ok := a.prepareServe(ctx, o)
	if !ok {
		return code
	}
	defer p.close()
	ln, err := a.listen(o.addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "vbctoken serve: cannot listen on %s: %v (is another vbctoken serve running? choose another --addr)\n", o.addr, err)
		return ExitFailure
	}
	defer ln.Close()
	rig, err := a.buildServe(ctx, p, baseURL(ln.Addr()))
	if err != nil {
		return a.fail("serve", o.common, err, nil)
	}
	return a.runServe(ctx, rig, ln)
}

// parseServe reads serve's flags.
func (a *app) parseServe(args []string) (o serveOptions, done bool, code int) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o.common.register(fs, false)
	fs.StringVar(&o.addr, "addr", DefaultAddr, "listen on `HOST:PORT` (port 0 picks a free one)")
	fs.DurationVar(&o.refreshEvery, "refresh-every", DefaultRefreshEvery, "how often the built-in scheduler runs the refresher's logic (on the serve clock)")
	fs.Float64Var(&o.clockSpeed, "clock-speed", 1, "sandbox mode only: run the clock `N` times faster (3600: a VBC day passes in 24 s)")
	fs.BoolVar(&o.accounts, "accounts", false, "accounts mode on a local store: keep many VBC accounts in <store>/accounts/ (later runs keep the mode)")
	fs.Lookup("timeout").Usage = "bound each operation: a scheduled refresh, a consent link, a callback"
	fs.Lookup("v").Usage = "also write debug logs (every request, every skipped refresh)"
	if done, code := a.parse(fs, args, "serve [flags]",
		"Runs vbctoken on this machine, on one port:\n"+
			"  GET /            status page (reloads itself; Connect button when not connected)\n"+
			"  GET /consent     redirects to a fresh consent link\n"+
			"  GET /callback    the consent callback (the same code as the Lambda)\n"+
			"  GET /healthz     liveness; GET /status.json the status for scripts\n"+
			"  /api/            what the other commands ask of a running serve (token in serve.json)\n"+
			"  /sandbox/        the VBC sandbox, in sandbox mode\n"+
			"and runs the refresher's logic every --refresh-every.\n\n"+
			"Sandbox mode (what `make local` gives a fresh clone): when no *_SECRET_ID variable,\n"+
			"no VBC_TOKEN_URL or VBC_AUTHORIZE_URL and no credentials.json (other than one serve\n"+
			"generated for the sandbox) are configured, a local VBC sandbox answers under /sandbox/\n"+
			"with generated client credentials saved in the store. Its live chains and clock are\n"+
			"saved in sandbox.json, so a restart keeps the connection. Otherwise serve talks to VBC\n"+
			"with the configured credentials; VBC_REDIRECT_URL is then required and must be registered.\n\n"+
			"One serve per store: it holds <store>/serve.json while it runs (pid, URL, clock speed),\n"+
			"a second one on the same store refuses to start, and status, consent-url, refresh and\n"+
			"reset on that store ask the running serve. Deleting the store while serving recreates it.\n"+
			"Accounts mode (--accounts, or a store that has <store>/accounts/, or\n"+
			"VBC_ACCOUNT_SECRET_PREFIX): many VBC accounts, each its own chain. The status page lists\n"+
			"them and has a form \"Connect account ID\" (GET /consent?account=ID); the sandbox's\n"+
			"consent page lets you approve as another VBC user, so each account can be its own; the\n"+
			"callback stores each consent into the account its signed link names, and the scheduler\n"+
			"refreshes every account. --accounts refuses a store that holds a single-account pair.\n\n"+
			"Logs are JSON on stderr. Stop with Ctrl-C (exit 0).\n"); done {
		return o, true, code
	}
	if o.timeout <= 0 {
		o.problems = append(o.problems, "--timeout must be positive")
	}
	if o.refreshEvery <= 0 {
		o.problems = append(o.problems, "--refresh-every must be positive")
	}
	if !(o.clockSpeed >= 1 && o.clockSpeed <= MaxClockSpeed) {
		o.problems = append(o.problems, fmt.Sprintf("--clock-speed must be between 1 and %d", MaxClockSpeed))
	}
	return o, false, 0
}

// servePrep is serve's store, opened (created when missing) and claimed, and its mode.
type servePrep struct {
	o     serveOptions
	s     config.Settings
	log   *slog.Logger
	store vbctoken.Store // single-account mode
	fleet vbctoken.Fleet // accounts mode
	// creds is where the client credentials live: the store, or the fleet's shared ones.
	creds   credentialSource
	dir     string      // the file store's directory; "" on Secrets Manager
	claim   *storeClaim // nil on Secrets Manager, where other keepers share the pair by design
	sandbox bool
}

// credentialSource reads the client credentials; a Store and a Fleet are both one.
type credentialSource interface {
	LoadCredentials(ctx context.Context) (vbctoken.Credentials, error)
}

// accounts reports whether serve keeps many accounts.
func (p *servePrep) accounts() bool { return p.fleet != nil }

// pairStores returns the stores whose pairs serve keeps: the one store, or every account's.
func (p *servePrep) pairStores(ctx context.Context) (map[string]vbctoken.Store, error) {
	if p.fleet == nil {
		return map[string]vbctoken.Store{"": p.store}, nil
	}
	ids, err := p.fleet.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]vbctoken.Store, len(ids))
	for _, id := range ids {
		if out[id], err = p.fleet.Open(id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p *servePrep) close() {
	if p.claim != nil {
		p.claim.release()
	}
}

// prepareServe reads the environment, opens and claims the store and decides the mode,
// reporting every configuration problem at once.
func (a *app) prepareServe(ctx context.Context, o serveOptions) (*servePrep, int, bool) {
	problems := o.problems
	p := &servePrep{o: o, log: a.serveLogger(o.verbose)}
	s, err := config.FromEnv(a.getenv, config.Need{})
	p.s = s
	var storeErr error
	if err == nil {
		storeErr = a.openServeStore(ctx, p)
		if storeErr == nil && !p.sandbox {
			if o.clockSpeed != 1 {
				problems = append(problems, "--clock-speed works only in sandbox mode (no client credentials and no VBC endpoints configured)")
			}
			// The real VBC redirects to the registered callback URL.
			_, err = config.FromEnv(a.getenv, config.Need{RedirectURL: true})
		}
	}
	if code, ok := a.reportProblems("serve", false, err, problems); !ok {
		p.close()
		return nil, code, false
	}
	if storeErr != nil {
		p.close()
		return nil, a.fail("serve", o.common, storeErr, nil), false
	}
	return p, ExitOK, true
}

// openServeStore opens the store (creating a file store), claims it and decides the mode.
// A store the local sandbox filled is refused when serve is pointed at VBC: VBC knows
// neither the sandbox's client id nor its tokens.
func (a *app) openServeStore(ctx context.Context, p *servePrep) error {
	if p.o.accounts && p.s.UsesSecretsManager() && !p.s.AccountsMode() {
		return &modeError{
			Msg:  "--accounts keeps accounts in a local store, but the *_SECRET_ID variables point at AWS Secrets Manager in single-account mode",
			Hint: "For a local store unset the *_SECRET_ID variables; for accounts mode on AWS set " + config.EnvAccountSecretPrefix + " instead of --accounts.",
		}
	}
	if !p.s.UsesSecretsManager() {
		p.dir = p.o.dir()
		claim, err := claimStore(p.dir)
		if err != nil {
			return err
		}
		p.claim = claim
	}
	if p.s.AccountsMode() || p.o.accounts || (p.dir != "" && hasAccounts(p.dir)) {
		if p.dir != "" && !hasAccounts(p.dir) {
			if err := startAccounts(ctx, p.dir); err != nil {
				return err
			}
		}
		fleet, err := a.openFleet(ctx, p.s, p.dir, true)
		if err != nil {
			return err
		}
		p.fleet, p.creds = fleet, fleet
	} else {
		store, err := a.openStore(ctx, p.s, p.dir, true)
		if err != nil {
			return err
		}
		p.store, p.creds = store, store
	}
	var err error
	if p.sandbox, err = sandboxMode(ctx, a.getenv, p.s, p.creds, p.dir); err != nil || p.sandbox || p.dir == "" {
		return err
	}
	if creds, err := p.creds.LoadCredentials(ctx); err == nil && isSandboxClient(creds) {
		return &sandboxStoreError{Dir: p.dir, What: "holds the local sandbox's generated client credentials (client id " + creds.ClientID + "), which VBC does not know"}
	}
	stores, err := p.pairStores(ctx)
	if err != nil {
		return err
	}
	state, stateErr := loadSandboxState(p.dir)
	for account, st := range stores {
		if cur, err := st.LoadPair(ctx); err == nil && !cur.Pair.RefreshToken.IsZero() && stateErr == nil && state.knows(cur.Pair.RefreshToken.Reveal()) {
			what := "holds a token pair the local sandbox issued, which VBC would never accept"
			if account != "" {
				what = "holds a token pair the local sandbox issued (account " + account + "), which VBC would never accept"
			}
			return &sandboxStoreError{Dir: p.dir, What: what}
		}
	}
	return nil
}

// startAccounts turns the local store in dir into one that keeps accounts (serve
// --accounts): it makes <dir>/accounts/, after checking that the store does not hold a
// single-account pair, which accounts mode would leave behind unrefreshed.
func startAccounts(ctx context.Context, dir string) error {
	root, err := filestore.New(dir)
	if err != nil {
		return err
	}
	cur, err := root.LoadPair(ctx)
	if err != nil || !cur.Pair.RefreshToken.IsZero() {
		return &modeError{
			Msg:  "--accounts: the store " + dir + " holds a single-account pair (pair.json), which accounts mode would never refresh",
			Hint: "Give accounts mode its own --store DIR, or set that pair aside first with `" + resetCommand(dir, "") + " --force`.",
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, filestore.AccountsDir), 0o700); err != nil {
		return fmt.Errorf("create the accounts directory: %w", err)
	}
	return nil
}

// sandboxStoreError refuses to point serve at VBC on a store the local sandbox filled.
type sandboxStoreError struct{ Dir, What string }

func (e *sandboxStoreError) Error() string {
	return fmt.Sprintf("%v: VBC endpoints are configured, but the store %s %s. Use another --store for VBC; or, to reuse this one, "+
		"put your VBC consumer key and secret in %s and set the sandbox's pair aside with `vbctoken reset --force --store %s`",
		vbctoken.ErrBadInput, e.Dir, e.What, filepath.Join(e.Dir, "credentials.json"), e.Dir)
}

func (e *sandboxStoreError) Is(target error) bool { return target == vbctoken.ErrBadInput }

// serveRig is serve wired up, without a listener: the handler answers every route, so tests
// drive it with httptest.
type serveRig struct {
	base    string
	handler http.Handler
	sched   *scheduler
	sandbox *localSandbox // nil when talking to VBC
	claim   *storeClaim
	info    serveInfo
	log     *slog.Logger
	mode    string
	store   string
}

// buildServe wires serve for the base URL it will answer on: the clock, the sandbox (its
// chains revived from sandbox.json), the keeper on a store that recovers from deletion, the
// scheduler and the routes.
func (a *app) buildServe(ctx context.Context, p *servePrep, base string) (*serveRig, error) {
	log, s, o := p.log, p.s, p.o
	clk := newClock(a.now, 1, time.Time{})
	clientCfg := s.ClientConfig()
	clientCfg.Retry = a.clientRetry
	callbackPath := web.CallbackPath
	redirect := s.RedirectURL
	mode := "VBC at " + s.TokenURL
	guard := &storeGuard{claim: p.claim, dir: p.dir, log: log}
	var sb *localSandbox
	if p.sandbox {
		creds, err := sandboxCredentials(ctx, p.creds, log)
		if err != nil {
			return nil, err
		}
		state, err := loadSandboxState(p.dir)
		if err != nil {
			log.Warn("sandbox mode: cannot read the saved sandbox; starting without its chains", "error", err)
			state = sandboxState{Version: sandboxStateVersion}
		}
		resume, err := adoptPairs(ctx, p, state, log)
		if err != nil {
			return nil, err
		}
		clk = newClock(a.now, o.clockSpeed, resume)
		redirect = base + web.CallbackPath
		sb, err = newLocalSandbox(ctx, sandboxSetup{dir: p.dir, creds: creds, redirect: redirect, scope: s.Scope,
			now: clk.Now, signingKey: a.signingKey, log: log, state: state})
		if err != nil {
			return nil, err
		}
		if err := sb.save(); err != nil {
			log.Error("sandbox mode: cannot save the sandbox's chains; a restart of serve will lose the connection", "error", err)
		}
		guard.creds, guard.sandbox = &creds, sb
		clientCfg.Endpoints = vbctoken.Endpoints{
			AuthorizeURL: base + SandboxPrefix + vbcsandbox.AuthorizePath,
			TokenURL:     base + SandboxPrefix + vbcsandbox.TokenPath,
		}
		clientCfg.RedirectURL = redirect
		mode = "local VBC sandbox"
		if o.clockSpeed != 1 {
			mode += fmt.Sprintf(", clock %g× real time", o.clockSpeed)
		}
	} else {
		u, _ := url.Parse(s.RedirectURL) // validated by config
		callbackPath = u.Path
		if !strings.HasPrefix(s.RedirectURL, base+"/") {
			log.Warn("VBC_REDIRECT_URL does not point at this server: VBC sends consents there, not here",
				"redirect_url", s.RedirectURL, "serving", base)
		}
	}

	kc := s.KeeperConfig(nil)
	kc.Client = clientCfg
	// A consent link stays valid 15 minutes of real time, whatever the clock speed.
	kc.StateTTL = time.Duration(float64(vbctoken.DefaultStateTTL) * clk.Speed())
	kc.StoreRetry, kc.Now, kc.Logger, kc.Holder = a.storeRetry, clk.Now, log, "serve"
	var (
		keeper   *vbctoken.Keeper
		accounts *vbctoken.Accounts
		fleet    vbctoken.Fleet
		store    vbctoken.Store
		err      error
	)
	saver, _ := p.creds.(credentialsSaver)
	if p.claim != nil && saver != nil {
		guard.files, guard.accounts = saver, p.accounts()
	}
	if p.accounts() {
		fleet = p.fleet
		if guard.files != nil {
			fleet = &recoveringFleet{Fleet: p.fleet, guard: guard}
		}
		if accounts, err = vbctoken.NewAccounts(fleet, kc); err != nil {
			return nil, err
		}
	} else {
		store = p.store
		if guard.files != nil {
			store = &recoveringStore{Store: p.store, guard: guard}
		}
		kc.Store = store
		if keeper, err = vbctoken.NewKeeper(kc); err != nil {
			return nil, err
		}
	}
	if !p.sandbox {
		// Fail now, not at the first consent, when the credentials are missing.
		if _, err := p.creds.LoadCredentials(ctx); err != nil {
			return nil, err
		}
	}

	failures := &failureLog{log: log, wall: a.now, every: failureLogEvery}
	sched := &scheduler{
		keeper:        keeper,
		accounts:      accounts,
		every:         max(time.Duration(float64(o.refreshEvery)/clk.Speed()), minTick),
		timeout:       o.timeout,
		now:           clk.Now,
		log:           log,
		storeFailures: failures,
	}
	info := serveInfo{Version: serveInfoVersion, PID: os.Getpid(), URL: base, StartedAt: a.now().UTC(),
		ClockSpeed: clk.Speed(), Sandbox: p.sandbox, Accounts: p.accounts(), Token: newToken()}
	callback := &web.Callback{Log: log, Path: callbackPath, Location: a.location, HomeURL: "/"}
	if accounts != nil {
		callback.Accounts = accounts
	} else {
		callback.Keeper = keeper
	}
	srv := &server{
		keeper:      keeper,
		accounts:    accounts,
		fleet:       fleet,
		sched:       sched,
		clock:       clk,
		timeout:     o.timeout,
		log:         log,
		mode:        mode,
		store:       storeText(p),
		dir:         p.dir,
		redirectURL: redirect,
		token:       info.Token,
		fileStore:   store,
		failures:    failures,
		loc:         a.location,
		callback:    callback,
		sandbox:     sb,
	}
	return &serveRig{base: base, handler: srv.routes(callbackPath), sched: sched, sandbox: sb, claim: p.claim,
		info: info, log: log, mode: mode, store: srv.store}, nil
}

// runServe publishes serve in the store, serves until ctx ends (Ctrl-C: exit 0), then
// shuts down: in-flight requests finish, the sandbox's chains and clock are saved, the
// store is released.
func (a *app) runServe(ctx context.Context, rig *serveRig, ln net.Listener) int {
	log := rig.log
	if rig.claim != nil {
		if err := rig.claim.publish(rig.info); err != nil {
			log.Warn("cannot write serve.json; other commands will not find this serve", "error", err)
		}
	}
	httpSrv := &http.Server{
		Handler:           rig.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- httpSrv.Serve(ln) })
	wg.Go(func() { rig.sched.run(ctx) })

	fmt.Fprintf(a.stderr, "vbctoken serving on %s — open it in your browser\n", rig.base)
	if rig.sandbox != nil {
		fmt.Fprintf(a.stderr, "sandbox mode: no VBC client credentials are configured, so a local VBC sandbox answers at %s%s/ (%s).\n",
			rig.base, SandboxPrefix, rig.mode)
	}
	log.Info("vbctoken serving", "url", rig.base, "mode", rig.mode, "sandbox", rig.sandbox != nil, "store", rig.store,
		"clock_speed", rig.info.ClockSpeed, "refresh_every", rig.sched.every.String())
	if a.serving != nil {
		a.serving(rig.base)
	}

	code := ExitOK
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Error("serve: HTTP server stopped", "error", err)
		code = ExitFailure
	}
	stop()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("serve: shutdown did not finish cleanly", "error", err)
	}
	wg.Wait()
	if rig.sandbox != nil {
		if err := rig.sandbox.save(); err != nil {
			log.Error("sandbox mode: cannot save the sandbox's chains; the next serve will not keep the connection", "error", err)
		}
	}
	log.Info("vbctoken stopped")
	return code
}

func storeText(p *servePrep) string {
	switch {
	case p.s.AccountsMode():
		return fleetWhere(p.s)
	case p.s.UsesSecretsManager():
		return "AWS Secrets Manager (" + p.s.TokenSecretID + ")"
	case p.accounts():
		return "files in " + filepath.Join(p.dir, filestore.AccountsDir) + " (accounts mode)"
	}
	return "files in " + p.dir
}

func (a *app) serveLogger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}

// isSandboxClient reports whether creds are the ones serve generated for its sandbox.
func isSandboxClient(creds vbctoken.Credentials) bool {
	return strings.HasPrefix(creds.ClientID, SandboxClientPrefix)
}

// sandboxMode decides whether serve mounts the sandbox: no Secrets Manager ids, no VBC
// endpoints in the environment, and no client credentials in the file store other than
// ones serve generated for the sandbox earlier.
func sandboxMode(ctx context.Context, getenv func(string) string, s config.Settings, store credentialSource, dir string) (bool, error) {
	if s.UsesSecretsManager() || strings.TrimSpace(getenv(config.EnvTokenURL)) != "" || strings.TrimSpace(getenv(config.EnvAuthorizeURL)) != "" {
		return false, nil
	}
	creds, err := store.LoadCredentials(ctx)
	switch {
	case err == nil:
		return isSandboxClient(creds), nil
	case errors.Is(err, vbctoken.ErrNoCredentials):
		// A placeholder credentials.json is an operator's intent to talk to VBC.
		if _, serr := os.Stat(filepath.Join(dir, "credentials.json")); serr == nil {
			return false, nil
		} else if !errors.Is(serr, fs.ErrNotExist) {
			return false, fmt.Errorf("check %s: %w", dir, serr)
		}
		return true, nil
	}
	return false, err
}

// credentialsSaver is implemented by the file store.
type credentialsSaver interface {
	SaveCredentials(ctx context.Context, c vbctoken.Credentials) error
}

// sandboxCredentials returns the sandbox client credentials stored by an earlier serve, or
// generates and saves new ones (mode 0600 in the file store).
func sandboxCredentials(ctx context.Context, store credentialSource, log *slog.Logger) (vbctoken.Credentials, error) {
	if c, err := store.LoadCredentials(ctx); err == nil && isSandboxClient(c) {
		return c, nil
	}
	saver, ok := store.(credentialsSaver)
	if !ok {
		return vbctoken.Credentials{}, fmt.Errorf("sandbox mode: %w: the store cannot save client credentials", vbctoken.ErrNoCredentials)
	}
	id, secret := make([]byte, 6), make([]byte, 24)
	_, _ = rand.Read(id)
	_, _ = rand.Read(secret)
	c := vbctoken.Credentials{ClientID: SandboxClientPrefix + hex.EncodeToString(id), ClientSecret: vbctoken.Secret(hex.EncodeToString(secret))}
	if err := saver.SaveCredentials(ctx, c); err != nil {
		return vbctoken.Credentials{}, fmt.Errorf("sandbox mode: %w", err)
	}
	log.Info("sandbox mode: generated sandbox client credentials", "credentials", c)
	return c, nil
}

// adoptPairs adopts the pair of every store serve keeps (adoptPair) and returns the latest
// time the clock resumes from.
func adoptPairs(ctx context.Context, p *servePrep, state sandboxState, log *slog.Logger) (time.Time, error) {
	stores, err := p.pairStores(ctx)
	if err != nil {
		log.Warn("sandbox mode: cannot list the accounts of the earlier run", "error", err)
		return state.Clock, nil
	}
	resume := state.Clock
	for account, st := range stores {
		l := log
		if account != "" {
			l = log.With("account", account)
		}
		r, err := adoptPair(ctx, st, state, l)
		if err != nil {
			return resume, err
		}
		if r.After(resume) {
			resume = r
		}
	}
	return resume, nil
}

// adoptPair decides what becomes of the pair an earlier serve left. A pair whose refresh
// token the saved sandbox knows is kept: its chain is revived, so the connection survives
// the restart. Any other pair can never be refreshed (the sandbox that issued it is gone
// without a trace) and is cleared, keeping consent nonces and unknown fields. A pair that
// cannot be read is left alone for the status page to explain. It returns the time the
// clock resumes from: the saved clock or the kept pair's, whichever is later.
func adoptPair(ctx context.Context, store vbctoken.Store, state sandboxState, log *slog.Logger) (time.Time, error) {
	resume := state.Clock
	cur, err := store.LoadPair(ctx)
	if err != nil {
		log.Warn("sandbox mode: cannot read the stored pair; the status page says how to set it aside", "error", err)
		return resume, nil
	}
	if cur.Pair == nil || cur.Pair.RefreshToken.IsZero() {
		return resume, nil
	}
	if state.knows(cur.Pair.RefreshToken.Reveal()) {
		if cur.Pair.ObtainedAt.After(resume) {
			resume = cur.Pair.ObtainedAt
		}
		log.Info("sandbox mode: kept the connection of the earlier run (its sandbox chain was saved)", "pair", cur.Pair)
		return resume, nil
	}
	if _, err := store.CommitPair(ctx, cur.Pair.WithTokens(&vbctoken.Pair{}), cur.Version); err != nil {
		return resume, fmt.Errorf("sandbox mode: clear the pair of an earlier run: %w", err)
	}
	if err := store.PutAccess(ctx, vbctoken.AccessToken{}); err != nil {
		return resume, fmt.Errorf("sandbox mode: clear the access token of an earlier run: %w", err)
	}
	log.Info("sandbox mode: cleared a token pair that no saved sandbox chain knows (it can never be refreshed); connect again", "pair", cur.Pair)
	return resume, nil
}

// baseURL is the http URL of a listener; an unspecified host becomes 127.0.0.1.
func baseURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
