package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
}

// serve runs the keeper locally: status page, consent link, callback, scheduled refresh
// and, without client credentials, the VBC sandbox, all on one port.
func (a *app) serve(ctx context.Context, args []string) int {
	var o serveOptions
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o.common.register(fs, false)
	fs.StringVar(&o.addr, "addr", DefaultAddr, "listen on `HOST:PORT` (port 0 picks a free one)")
	fs.DurationVar(&o.refreshEvery, "refresh-every", DefaultRefreshEvery, "how often the built-in scheduler runs the refresher's logic (on the serve clock)")
	fs.Float64Var(&o.clockSpeed, "clock-speed", 1, "sandbox mode only: run the clock `N` times faster (3600: a VBC day passes in 24 s)")
	fs.Lookup("timeout").Usage = "bound each operation: a scheduled refresh, a consent link, a callback"
	fs.Lookup("v").Usage = "also write debug logs (every request, every skipped refresh)"
	if done, code := a.parse(fs, args, "serve [flags]",
		"Runs vbctoken on this machine, on one port:\n"+
			"  GET /            status page (reloads itself; Connect button when not connected)\n"+
			"  GET /consent     redirects to a fresh consent link\n"+
			"  GET /callback    the consent callback (the same code as the Lambda)\n"+
			"  GET /healthz     liveness; GET /status.json the status for scripts\n"+
			"  /sandbox/        the VBC sandbox, in sandbox mode\n"+
			"and runs the refresher's logic every --refresh-every.\n\n"+
			"Sandbox mode (what `make local` gives a fresh clone): when no *_SECRET_ID variable,\n"+
			"no VBC_TOKEN_URL or VBC_AUTHORIZE_URL and no credentials.json (other than one serve\n"+
			"generated for the sandbox) are configured, a local VBC sandbox answers under /sandbox/\n"+
			"with generated client credentials saved in the store. Otherwise serve talks to VBC with\n"+
			"the configured credentials; VBC_REDIRECT_URL is then required and must be registered.\n"+
			"Logs are JSON on stderr. Stop with Ctrl-C.\n"); done {
		return code
	}
	var problems []string
	if o.timeout <= 0 {
		problems = append(problems, "--timeout must be positive")
	}
	if o.refreshEvery <= 0 {
		problems = append(problems, "--refresh-every must be positive")
	}
	if !(o.clockSpeed >= 1 && o.clockSpeed <= MaxClockSpeed) {
		problems = append(problems, fmt.Sprintf("--clock-speed must be between 1 and %d", MaxClockSpeed))
	}
	log := a.serveLogger(o.verbose)

	s, err := config.FromEnv(a.getenv, config.Need{})
	var store vbctoken.Store
	var storeErr error
	sandbox := false
	if err == nil {
		store, storeErr = a.openStore(ctx, s, o.store)
		if storeErr == nil {
			sandbox, storeErr = sandboxMode(ctx, a.getenv, s, store, o.store)
		}
		if storeErr == nil && !sandbox {
			if o.clockSpeed != 1 {
				problems = append(problems, "--clock-speed works only in sandbox mode (no client credentials and no VBC endpoints configured)")
			}
			// The real VBC redirects to the registered callback URL.
			_, err = config.FromEnv(a.getenv, config.Need{RedirectURL: true})
		}
	}
	if code, ok := a.reportProblems(fs.Name(), err, problems); !ok {
		return code
	}
	if storeErr != nil {
		return a.fail(fs.Name(), o.common, storeErr, nil)
	}

	ln, err := a.listen(o.addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "vbctoken serve: cannot listen on %s: %v (is another vbctoken serve running? choose another --addr)\n", o.addr, err)
		return ExitFailure
	}
	defer ln.Close()
	base := baseURL(ln.Addr())

	clk := newClock(a.now, 1)
	clientCfg := s.ClientConfig()
	clientCfg.Retry = a.clientRetry
	callbackPath := web.CallbackPath
	var sb *vbcsandbox.Sandbox
	mode := "VBC at " + s.TokenURL
	if sandbox {
		clk = newClock(a.now, o.clockSpeed)
		creds, err := sandboxCredentials(ctx, store, log)
		if err != nil {
			return a.fail(fs.Name(), o.common, err, nil)
		}
		if err := clearStalePair(ctx, store, log); err != nil {
			return a.fail(fs.Name(), o.common, err, nil)
		}
		redirect := base + web.CallbackPath
		sb = vbcsandbox.New(vbcsandbox.Options{
			Clients:    []vbcsandbox.Client{{ID: creds.ClientID, Secret: creds.ClientSecret.Reveal(), RedirectURLs: []string{redirect}, Name: "vbctoken (local)"}},
			Now:        clk.Now,
			SigningKey: a.signingKey,
		})
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

	kc := s.KeeperConfig(store)
	kc.Client = clientCfg
	// A consent link stays valid 15 minutes of real time, whatever the clock speed.
	kc.StateTTL = time.Duration(float64(vbctoken.DefaultStateTTL) * clk.Speed())
	kc.StoreRetry, kc.Now, kc.Logger = a.storeRetry, clk.Now, log
	keeper, err := vbctoken.NewKeeper(kc)
	if err != nil {
		return a.fail(fs.Name(), o.common, err, nil)
	}
	if !sandbox {
		// Fail now, not at the first consent, when the credentials are missing.
		if _, err := store.LoadCredentials(ctx); err != nil {
			return a.fail(fs.Name(), o.common, err, nil)
		}
	}

	sched := &scheduler{
		keeper:  keeper,
		every:   max(time.Duration(float64(o.refreshEvery)/clk.Speed()), minTick),
		timeout: o.timeout,
		now:     clk.Now,
		log:     log,
	}
	srv := &server{
		keeper:  keeper,
		sched:   sched,
		clock:   clk,
		timeout: o.timeout,
		log:     log,
		mode:    mode,
		store:   storeText(s, o.store),
		loc:     a.location,
		callback: &web.Callback{
			Keeper: keeper, Log: log, Path: callbackPath, Location: a.location,
		},
		sandbox: sb,
	}
	httpSrv := &http.Server{
		Handler:           srv.routes(callbackPath),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- httpSrv.Serve(ln) })
	wg.Go(func() { sched.run(ctx) })

	fmt.Fprintf(a.stderr, "vbctoken serving on %s — open it in your browser\n", base)
	if sandbox {
		fmt.Fprintf(a.stderr, "sandbox mode: no VBC client credentials are configured, so a local VBC sandbox answers at %s%s/ (%s).\n",
			base, SandboxPrefix, mode)
	}
	log.Info("vbctoken serving", "url", base, "mode", mode, "sandbox", sandbox, "store", srv.store,
		"clock_speed", clk.Speed(), "refresh_every", o.refreshEvery.String())
	if a.serving != nil {
		a.serving(base)
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
	log.Info("vbctoken stopped")
	return code
}

func (a *app) serveLogger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}

// sandboxMode decides whether serve mounts the sandbox: no Secrets Manager ids, no VBC
// endpoints in the environment, and no client credentials in the file store other than
// ones serve generated for the sandbox earlier.
func sandboxMode(ctx context.Context, getenv func(string) string, s config.Settings, store vbctoken.Store, dir string) (bool, error) {
	if s.UsesSecretsManager() || strings.TrimSpace(getenv(config.EnvTokenURL)) != "" || strings.TrimSpace(getenv(config.EnvAuthorizeURL)) != "" {
		return false, nil
	}
	creds, err := store.LoadCredentials(ctx)
	switch {
	case err == nil:
		return strings.HasPrefix(creds.ClientID, SandboxClientPrefix), nil
	case errors.Is(err, vbctoken.ErrNoCredentials):
		// A placeholder credentials.json is an operator's intent to talk to VBC.
		if dir == "" {
			dir = config.DefaultStoreDir
		}
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
func sandboxCredentials(ctx context.Context, store vbctoken.Store, log *slog.Logger) (vbctoken.Credentials, error) {
	if c, err := store.LoadCredentials(ctx); err == nil && strings.HasPrefix(c.ClientID, SandboxClientPrefix) {
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

// clearStalePair forgets a pair left by an earlier serve: the sandbox that issued it lived
// in that process's memory, so its refresh token can never work again. Consent nonces and
// unknown fields are kept.
func clearStalePair(ctx context.Context, store vbctoken.Store, log *slog.Logger) error {
	cur, err := store.LoadPair(ctx)
	if err != nil {
		return fmt.Errorf("sandbox mode: %w", err)
	}
	if cur.Pair == nil || cur.Pair.RefreshToken.IsZero() {
		return nil
	}
	if _, err := store.CommitPair(ctx, cur.Pair.WithTokens(&vbctoken.Pair{}), cur.Version); err != nil {
		return fmt.Errorf("sandbox mode: clear the pair of an earlier run: %w", err)
	}
	if err := store.PutAccess(ctx, vbctoken.AccessToken{}); err != nil {
		return fmt.Errorf("sandbox mode: clear the access token of an earlier run: %w", err)
	}
	log.Info("sandbox mode: cleared the token pair of an earlier run (its sandbox is gone); connect again", "pair", cur.Pair)
	return nil
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

// scheduler runs the refresher's logic on serve's clock and remembers what it did for the
// status page.
type scheduler struct {
	keeper  *vbctoken.Keeper
	every   time.Duration // wall time between checks
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu        sync.Mutex
	last      *web.LastRefresh
	lastCheck time.Time
	refreshes int
	// deadSince is the ObtainedAt of a pair whose refresh token VBC rejected: it is not
	// tried again (every try would fail and log) until a consent stores a new pair.
	deadSince time.Time
}

func (s *scheduler) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick runs one check: like the scheduled Lambda, but it does not call the keeper while
// nobody has consented, so an unconnected serve stays quiet. A check that has started
// finishes even when serve is stopping (bounded by the timeout): cancelling a refresh
// between VBC's answer and the store's write would lose the only live pair.
func (s *scheduler) tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	st, err := s.keeper.Status(ctx)
	s.mu.Lock()
	s.lastCheck = s.now()
	dead := s.deadSince
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("scheduler: cannot read the pair", "error", err)
		s.record(web.LastRefresh{At: s.now(), Err: err}, false)
		return
	}
	if !st.Connected || (!dead.IsZero() && st.ObtainedAt.Equal(dead)) {
		return
	}
	res, err := s.keeper.Refresh(ctx, false)
	switch {
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		s.mu.Lock()
		s.deadSince = st.ObtainedAt
		s.mu.Unlock()
	case err != nil:
		s.log.Warn("scheduler: refresh failed; trying again at the next run", "error", err)
	case res.Outcome == vbctoken.OutcomeSkipped:
		s.log.Debug("scheduler: pair is fresh", "next_refresh", st.NextRefresh)
		return
	}
	s.record(web.LastRefresh{At: s.now(), Result: res, Err: err}, err == nil && res.Outcome == vbctoken.OutcomeRefreshed)
}

func (s *scheduler) record(l web.LastRefresh, refreshed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = &l
	if refreshed {
		s.refreshes++
	}
}

// snapshot returns what the scheduler last did.
func (s *scheduler) snapshot() (last *web.LastRefresh, lastCheck time.Time, refreshes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil {
		l := *s.last
		last = &l
	}
	return last, s.lastCheck, s.refreshes
}

// server holds serve's HTTP handlers.
type server struct {
	keeper   *vbctoken.Keeper
	sched    *scheduler
	clock    *clock
	callback *web.Callback
	sandbox  *vbcsandbox.Sandbox // nil when talking to VBC
	timeout  time.Duration
	log      *slog.Logger
	mode     string
	store    string
	loc      *time.Location
}

func (s *server) routes(callbackPath string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.HandleFunc("GET /consent", s.consent)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle(callbackPath, s.withTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The code is exchanged by now: the sped-up clock may run again.
		defer s.clock.release()
		s.callback.ServeHTTP(w, r)
	})))
	if s.sandbox != nil {
		sb := http.StripPrefix(SandboxPrefix, s.sandbox)
		mux.Handle(SandboxPrefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == SandboxPrefix+vbcsandbox.AuthorizePath {
				// An approval mints a code that lives 10 sandbox minutes: run the clock at real
				// speed until the callback has exchanged it.
				s.clock.hold(consentHold)
			}
			sb.ServeHTTP(w, r)
		}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.Respond(web.Page{Status: http.StatusNotFound, Tone: web.ToneBad, Title: "Not found",
			Lead: "There is nothing at this address.", LinkURL: "/", LinkText: "Status page"}).Write(w)
	})
	return s.logRequests(mux)
}

// withTimeout bounds a request by the operation timeout and detaches it from the client:
// a browser that goes away mid-callback must not cancel the store's write of a new pair.
func (s *server) withTimeout(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// logRequests logs method, path and status; never the query, which carries code and state.
func (s *server) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration_ms", time.Since(start).Milliseconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *server) view(ctx context.Context) (web.StatusView, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	st, err := s.keeper.Status(ctx)
	if err != nil {
		return web.StatusView{}, err
	}
	last, lastCheck, n := s.sched.snapshot()
	return web.StatusView{Status: st, Last: last, LastCheck: lastCheck, Refreshes: n,
		ConnectURL: "/consent", Mode: s.mode, Store: s.store, Location: s.loc}, nil
}

func (s *server) statusPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.view(r.Context())
	if err != nil {
		s.log.Error("status page: cannot read the pair", "error", err)
		web.Respond(web.Page{Status: http.StatusServiceUnavailable, Tone: web.ToneBad, Refresh: web.DefaultStatusRefresh,
			Title: "Cannot read the stored pair", Lead: "vbctoken could not read its store. The details are in the logs; this page retries by itself."}).Write(w)
		return
	}
	web.Respond(web.StatusPage(v)).Write(w)
}

// statusJSONBody is GET /status.json: the keeper's Status and what the scheduler did.
type statusJSONBody struct {
	Status      vbctoken.Status `json:"status"`
	Refreshes   int             `json:"refreshes"`
	LastCheck   time.Time       `json:"last_check,omitzero"`
	LastRefresh *lastJSON       `json:"last_refresh,omitempty"`
	Mode        string          `json:"mode"`
}

type lastJSON struct {
	At      time.Time        `json:"at"`
	Outcome vbctoken.Outcome `json:"outcome,omitempty"`
	Reason  vbctoken.Reason  `json:"reason,omitempty"`
	Summary string           `json:"summary"`
}

func (s *server) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	v, err := s.view(r.Context())
	if err != nil {
		s.log.Error("status.json: cannot read the pair", "error", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"cannot read the stored pair"}` + "\n"))
		return
	}
	body := statusJSONBody{Status: v.Status, Refreshes: v.Refreshes, LastCheck: v.LastCheck, Mode: v.Mode}
	if v.Last != nil {
		body.LastRefresh = &lastJSON{At: v.Last.At, Outcome: v.Last.Result.Outcome, Reason: v.Last.Result.Reason, Summary: v.Last.Summary()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// consent redirects to a freshly minted consent link. A deployed callback never does
// this: only an admin with access to the state key mints links (DESIGN.md "Consent").
// serve may, because it is a local admin tool bound to 127.0.0.1 by default: whoever can
// reach its port already holds the store.
func (s *server) consent(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	u, err := s.keeper.ConsentURL(ctx)
	if err != nil {
		s.log.Error("consent: cannot mint a consent link", "error", err)
		p := web.Page{Status: http.StatusServiceUnavailable, Tone: web.ToneBad, Title: "Cannot create a consent link",
			Lead: "vbctoken could not create a consent link. The details are in the logs.", LinkURL: "/", LinkText: "Status page"}
		if errors.Is(err, vbctoken.ErrNoCredentials) {
			p.Lead = "The client credentials are not configured. Store the VBC consumer key and secret first."
		}
		web.Respond(p).Write(w)
		return
	}
	for k, v := range web.SecurityHeaders() {
		w.Header().Set(k, v)
	}
	http.Redirect(w, r, u, http.StatusFound)
}
