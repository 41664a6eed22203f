package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Roles of simulated processes.
const (
	roleRefresher = "refresher" // the scheduled Lambda (or an operator's `vbctoken refresh`)
	roleCallback  = "callback"  // the callback Lambda, hit by the admin's browser
	roleLogin     = "login"     // an admin's `vbctoken login`
	roleApp       = "app"       // an app reading the access secret
)

// The simulated deployment. Every secret here is registered with the leak guard.
const (
	clientID      = "soak-client"
	clientSecret  = "soak-CLIENT-secret-7f3e9a1c"
	redirectURL   = "https://keeper.example/callback"
	adminUser     = "admin"
	adminPassword = "soak-PASSWORD-4b8d2e91"
)

var credentials = vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret}

// Virtual deadlines of the processes: template.yaml's Lambda timeouts (refresher 60 s,
// callback 15 s); an admin's CLI run gets a minute too.
const (
	refresherTimeout = 60 * time.Second
	callbackTimeout  = 15 * time.Second
	loginTimeout     = 60 * time.Second
)

// simStart is when every simulation starts (virtual time).
var simStart = time.Date(2027, 1, 4, 0, 0, 7, 0, time.UTC)

// Config is one soak run.
type Config struct {
	Days    int
	Seed    uint64
	Backend Backend
	// Plan is the fault plan; nil means DefaultPlan.
	Plan *Plan
	// StrictVBC runs the sandbox with the strict choices where VBC's behaviour is unknown:
	// a consent revokes older chains, a refresh revokes older access tokens.
	StrictVBC bool
	// Trace, when set, receives every log line the processes write.
	Trace io.Writer
}

// sim is one running simulation.
type sim struct {
	cfg        Config
	plan       Plan
	tokenKinds []string
	tokenTotal float64
	clock      *Clock
	vbc        *vbcsandbox.Sandbox
	srv        *httptest.Server
	base       http.RoundTripper
	backend    Backend
	rng        *mrand.Rand // the driver's; processes have their own
	nextID     int
	guard      *leakGuard
	logger     *slog.Logger
	hist       history
	admin      *vbctoken.Keeper

	mu   sync.Mutex // guards rep's maps and died
	rep  *Report
	died map[string]bool // refresh tokens of pairs lost with their process

	issuedSeen    int
	byRT          map[string]vbcsandbox.IssuedPair
	replacedBy    map[string]vbcsandbox.IssuedPair
	consents      []vbcsandbox.IssuedPair // pairs issued by code exchanges
	revokedChains map[int]bool
	stored        *vbctoken.Pair // after the last step
	everConnected bool
	broken        *breakage

	consentPending bool
	consentDue     time.Time
	consentReason  string
	pending        []event // events due after the current hour
	// accessRepairPending: a process died between its pair commit and its access write,
	// and no keeper run has rewritten the access secret since.
	accessRepairPending bool

	app      *process
	appStore vbctoken.Store
	source   *vbctoken.Source
}

// breakage is a chain that is gone until an admin consents again.
type breakage struct {
	since time.Time
	cause string
	rt    string
}

// Run simulates cfg.Days days and returns the report. An error means the simulation
// could not run; invariant violations are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	began := time.Now()
	s, err := newSim(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.srv.Close()
	for h := 0; h < cfg.Days*24; h++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("soak stopped on day %d: %w", h/24, err)
		}
		s.hour(h)
	}
	s.finish(time.Since(began))
	return s.rep, nil
}

func newSim(ctx context.Context, cfg Config) (*sim, error) {
	if cfg.Days <= 0 {
		return nil, fmt.Errorf("soak: days must be positive")
	}
	plan := DefaultPlan()
	if cfg.Plan != nil {
		plan = *cfg.Plan
	}
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(cfg.Seed >> (8 * i))
	}
	clock := NewClock(simStart)
	vbc := vbcsandbox.New(vbcsandbox.Options{
		Clients:              []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirectURL}}},
		Users:                map[string]string{adminUser: adminPassword},
		Now:                  clock.Now,
		Rand:                 mrand.NewChaCha8(seed),
		SigningKey:           testutil.SigningKey(),
		FaultDelay:           time.Microsecond,
		RevokeOnConsent:      cfg.StrictVBC,
		RefreshRevokesAccess: cfg.StrictVBC,
	})
	vbc.SetFaults(func(r *http.Request, _ string) vbcsandbox.Fault {
		return vbcsandbox.Fault{Kind: sandboxKind(r.Header.Get(faultHeader))}
	})
	srv := httptest.NewServer(vbc)
	s := &sim{
		cfg:           cfg,
		plan:          plan,
		clock:         clock,
		vbc:           vbc,
		srv:           srv,
		base:          srv.Client().Transport,
		backend:       cfg.Backend,
		rng:           mrand.New(mrand.NewPCG(cfg.Seed, 0x50a6)),
		guard:         newLeakGuard(cfg.Trace),
		died:          map[string]bool{},
		byRT:          map[string]vbcsandbox.IssuedPair{},
		replacedBy:    map[string]vbcsandbox.IssuedPair{},
		revokedChains: map[int]bool{},
		rep:           newReport(cfg, plan),
	}
	s.tokenKinds, s.tokenTotal = plan.tokenKinds()
	s.guard.add(clientSecret, adminPassword)
	s.logger = slog.New(slog.NewJSONHandler(s.guard, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Time(slog.TimeKey, clock.Now()) // virtual time
			}
			return a
		},
	}))
	if err := s.backend.setup(ctx, credentials); err != nil {
		srv.Close()
		return nil, fmt.Errorf("soak: store credentials: %w", err)
	}
	var err error
	s.admin, err = vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store:  s.backend.clean,
		Client: s.clientConfig(nil),
		Now:    clock.Now,
		Logger: s.logger.With("role", "admin"),
	})
	if err != nil {
		srv.Close()
		return nil, err
	}
	s.app = s.newProcess(roleApp)
	s.appStore = s.backend.open(s.app)
	s.source = vbctoken.NewSource(s.appStore, vbctoken.WithClock(clock.Now))
	// The deployment is fresh: the admin consents first.
	s.consentPending, s.consentDue, s.consentReason = true, simStart, "initial"
	return s, nil
}

// sandboxKind maps a fault header to the sandbox's fault kind.
func sandboxKind(name string) vbcsandbox.FaultKind {
	if name == "" {
		return vbcsandbox.NoFault
	}
	for k := vbcsandbox.NoFault; k <= vbcsandbox.ProcessedButLost; k++ {
		if k.String() == name {
			return k
		}
	}
	return vbcsandbox.NoFault
}

func (s *sim) newProcess(role string) *process {
	s.nextID++
	id := s.nextID
	return &process{sim: s, id: id, role: role, rng: mrand.New(mrand.NewPCG(s.cfg.Seed, uint64(id)))}
}

func (s *sim) chance(p float64) bool { return p > 0 && s.rng.Float64() < p }

func (s *sim) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Float64()*float64(hi-lo))
}

func (s *sim) count(m *map[string]int, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[key]++
}

func (s *sim) markDied(refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.died[refreshToken] = true
}

func (s *sim) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Violations++
	if len(s.rep.ViolationDetails) < 50 {
		at := s.clock.Now()
		day := int(at.Sub(simStart) / (24 * time.Hour))
		s.rep.ViolationDetails = append(s.rep.ViolationDetails,
			fmt.Sprintf("day %d %s: %s", day, at.Format("15:04:05"), fmt.Sprintf(format, args...)))
	}
}

func (s *sim) clientConfig(p *process) vbctoken.ClientConfig {
	cc := vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: s.srv.URL + vbcsandbox.AuthorizePath, TokenURL: s.srv.URL + vbcsandbox.TokenPath},
		RedirectURL: redirectURL,
		Scope:       "openid",
	}
	if p != nil {
		cc.HTTPClient = &http.Client{
			Transport: &tokenTransport{p: p, base: s.base},
			// A safety net in real time only: virtual timeouts are the transport's.
			Timeout:       time.Minute,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		cc.Retry = s.retry(p)
	}
	return cc
}

// retry is the retry policy of a process: virtual sleeps, virtual elapsed time, the
// process's own jitter.
func (s *sim) retry(p *process) vbctoken.RetryPolicy {
	return vbctoken.RetryPolicy{Sleep: s.clock.Sleep, Now: s.clock.Now, Rand: p.float}
}

// keeper is a fresh keeper for p, as a cold Lambda builds it.
func (s *sim) keeper(p *process) *vbctoken.Keeper {
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store:      s.backend.open(p),
		Client:     s.clientConfig(p),
		StoreRetry: s.retry(p),
		Now:        s.clock.Now,
		Logger:     s.logger.With("process", p.id, "role", p.role),
	})
	if err != nil {
		panic(fmt.Sprintf("soak: new keeper: %v", err)) // the configuration is fixed
	}
	return k
}

// event is something the driver does at a given virtual time.
type event struct {
	at      time.Time
	kind    string // tick, read, revoke, consent, retry
	attempt int    // retry: the Lambda attempt number (2 or 3)
}

// Lambda retries an asynchronous invocation that failed (an error, a crash, a timeout)
// twice: about a minute later, then about two minutes after that (template.yaml:
// MaximumRetryAttempts 2).
const (
	lambdaAttempts    = 3
	firstRetryDelay   = time.Minute
	laterRetriesDelay = 2 * time.Minute
)

// hour simulates one hour: the scheduled refresher (sometimes duplicated, sometimes with
// an operator's forced refresh or an admin's consent racing it) and Lambda's retries of
// failed invocations, the apps' reads, now and then a revocation at VBC or a consent.
func (s *sim) hour(h int) {
	tick := simStart.Add(time.Duration(h) * time.Hour)
	end := tick.Add(time.Hour)
	s.clock.AdvanceTo(tick)

	events := append(s.pending, event{at: tick, kind: "tick"})
	s.pending = nil
	for t := tick.Add(s.between(s.plan.ReadEveryMin, s.plan.ReadEveryMax)); t.Before(end); t = t.Add(s.between(s.plan.ReadEveryMin, s.plan.ReadEveryMax)) {
		events = append(events, event{at: t, kind: "read"})
	}
	if s.everConnected && s.chance(s.plan.Revocation) {
		events = append(events, event{at: tick.Add(s.between(0, time.Hour)), kind: "revoke"})
	}
	if s.everConnected && !s.consentPending && s.chance(s.plan.VoluntaryConsent) {
		s.consentPending, s.consentDue, s.consentReason = true, tick.Add(s.between(0, time.Hour)), "voluntary"
	}
	var queued time.Time // the consent event in events, if any
	for len(events) > 0 {
		i := 0
		for j, e := range events {
			if e.at.Before(events[i].at) {
				i = j
			}
		}
		e := events[i]
		events = append(events[:i], events[i+1:]...)
		if !e.at.Before(end) {
			s.pending = append(s.pending, e)
			continue
		}
		s.clock.AdvanceTo(e.at)
		switch e.kind {
		case "tick":
			events = append(events, s.tick(end)...)
		case "retry":
			p := s.newProcess(roleRefresher)
			p.attempt = e.attempt
			s.rep.LambdaRetries++
			s.step([]*process{p}, []func(){s.refresherActor(p, false, 0)})
			events = append(events, s.retries(p)...)
		case "read":
			s.read()
		case "revoke":
			s.revoke()
		}
		// A consent that is due (on the admin's schedule, or after a failed attempt)
		// happens when it is due, unless the tick already ran it.
		if s.consentPending && !s.consentDue.After(s.clock.Now()) && e.kind != "tick" {
			c := s.prepareConsent(0)
			s.step(c.procs, c.actors)
			s.settleConsent(c)
		}
		if s.consentPending && s.consentDue.Before(end) && s.consentDue.After(s.clock.Now()) && !queued.Equal(s.consentDue) {
			queued = s.consentDue
			events = append(events, event{at: s.consentDue, kind: "consent"})
		}
	}
}

// tick runs the scheduled invocation of the hour and whatever races it, and returns
// Lambda's retries of those that failed.
func (s *sim) tick(end time.Time) []event {
	tick := s.clock.Now()
	n := 1
	switch r := s.rng.Float64(); {
	case r < s.plan.Triplicate:
		n = 3
	case r < s.plan.Triplicate+s.plan.Duplicate:
		n = 2
	}
	var procs, scheduled []*process
	var actors []func()
	for i := range n {
		p := s.newProcess(roleRefresher)
		p.attempt = 1
		offset := time.Duration(0)
		if i > 0 {
			offset = s.between(0, 3*time.Second) // a duplicate delivery or an overlapping run
		}
		procs = append(procs, p)
		scheduled = append(scheduled, p)
		actors = append(actors, s.refresherActor(p, false, offset))
	}
	if s.chance(s.plan.ForcedRefresh) {
		p := s.newProcess(roleRefresher) // an operator's `vbctoken refresh --force`
		procs = append(procs, p)
		actors = append(actors, s.refresherActor(p, true, s.between(0, 5*time.Second)))
	}
	var consent *consentRun
	if s.consentPending && s.consentDue.Before(end) && (!s.consentDue.After(tick) || s.chance(s.plan.ConsentMidRefresh)) {
		s.rep.ConsentsMidRefresh++
		consent = s.prepareConsent(s.between(0, 4*time.Second))
		procs = append(procs, consent.procs...)
		actors = append(actors, consent.actors...)
	}
	s.step(procs, actors)
	if consent != nil {
		s.settleConsent(consent)
	}
	var retries []event
	for _, p := range scheduled {
		retries = append(retries, s.retries(p)...)
	}
	return retries
}

// retries returns Lambda's next attempt of a scheduled invocation that failed.
func (s *sim) retries(p *process) []event {
	if p.attempt == 0 || p.attempt >= lambdaAttempts || (p.err == nil && p.dead() == "") {
		return nil
	}
	delay := firstRetryDelay
	if p.attempt > 1 {
		delay = laterRetriesDelay
	}
	return []event{{at: s.clock.Now().Add(delay), kind: "retry", attempt: p.attempt + 1}}
}

// step runs actors concurrently on the clock, then checks the invariants.
func (s *sim) step(procs []*process, actors []func()) {
	aliveBefore := s.everConnected && s.broken == nil
	s.clock.Run(actors...)
	s.afterStep(procs, aliveBefore)
}

func (s *sim) refresherActor(p *process, force bool, offset time.Duration) func() {
	return func() {
		if offset > 0 {
			_ = s.clock.Sleep(context.Background(), offset)
		}
		ctx := p.start(refresherTimeout)
		defer p.finish()
		res, err := s.keeper(p).Refresh(ctx, force)
		p.mu.Lock()
		p.outcome, p.err = res.Outcome, err
		p.mu.Unlock()
		if err != nil {
			s.guard.check("refresh error", []byte(err.Error()))
		}
	}
}

// consentRun is one consent attempt: a browser callback (maybe hit twice) or a login.
type consentRun struct {
	reason  string
	login   bool
	procs   []*process
	actors  []func()
	results []*callbackResult
	loginOK bool
	mintErr error
}

type callbackResult struct {
	p      *process
	status int
}

// prepareConsent mints a consent link and approves it in the "browser" (the driver, with
// no faults: the admin retries those by hand), and returns the processes that complete it.
func (s *sim) prepareConsent(offset time.Duration) *consentRun {
	c := &consentRun{reason: s.consentReason}
	s.rep.ConsentAttempts++
	if s.chance(s.plan.Login) {
		c.login = true
		p := s.newProcess(roleLogin)
		c.procs = append(c.procs, p)
		c.actors = append(c.actors, func() {
			if offset > 0 {
				_ = s.clock.Sleep(context.Background(), offset)
			}
			ctx := p.start(loginTimeout)
			defer p.finish()
			_, err := s.keeper(p).Login(ctx, adminUser, adminPassword, false)
			c.loginOK = err == nil
			if err != nil {
				s.guard.check("login error", []byte(err.Error()))
			}
		})
		return c
	}
	authURL, err := s.admin.ConsentURL(context.Background())
	if err != nil {
		c.mintErr = err
		return c
	}
	cb, err := s.vbc.Approve(authURL)
	if err != nil {
		c.mintErr = err
		return c
	}
	u, err := url.Parse(cb)
	if err != nil {
		c.mintErr = err
		return c
	}
	s.guard.add(u.Query().Get("code"))
	calls := 1
	if s.chance(s.plan.ReplayCallback) {
		calls = 2 // a reload, a double click, a link pasted twice
		s.rep.CallbackReplays++
	}
	for i := range calls {
		p := s.newProcess(roleCallback)
		r := &callbackResult{p: p}
		off := offset
		if i > 0 {
			off += s.between(0, 3*time.Second)
		}
		c.procs = append(c.procs, p)
		c.results = append(c.results, r)
		c.actors = append(c.actors, s.callbackActor(p, u.RawQuery, off, r))
	}
	return c
}

func (s *sim) callbackActor(p *process, rawQuery string, offset time.Duration, r *callbackResult) func() {
	return func() {
		if offset > 0 {
			_ = s.clock.Sleep(context.Background(), offset)
		}
		ctx := p.start(callbackTimeout)
		defer p.finish()
		cb := &web.Callback{Keeper: s.keeper(p), Log: s.logger.With("process", p.id, "role", p.role)}
		resp := cb.Serve(ctx, web.Request{Method: http.MethodGet, Path: web.CallbackPath, RawQuery: rawQuery, RequestID: fmt.Sprintf("soak-%d", p.id)})
		r.status = resp.Status
		s.guard.check("callback page", []byte(resp.Body))
		for name, want := range web.SecurityHeaders() {
			if resp.Headers[name] != want {
				s.violation("callback page (HTTP %d) lacks security header %s", resp.Status, name)
			}
		}
	}
}

// settleConsent judges a finished consent attempt.
func (s *sim) settleConsent(c *consentRun) {
	ok := 0
	if c.login {
		s.rep.Logins++
		if c.loginOK {
			ok = 1
		}
	}
	for i, r := range c.results {
		if r.status == http.StatusOK {
			ok++
		}
		switch {
		case r.status == http.StatusInternalServerError && r.p.malformed:
			// internal/web answers a malformed token response with 500, not 502.
			s.rep.Callback500OnMalformed++
		case r.status >= 500 && r.status != http.StatusBadGateway && r.status != http.StatusServiceUnavailable && r.p.dead() == "":
			s.violation("callback answered HTTP %d (only 502/503 may blame upstream)", r.status)
		}
		if i > 0 && r.status == http.StatusConflict {
			s.rep.ReplaysRefused++
		}
		if r.status == http.StatusConflict && r.p.writes > 0 {
			s.violation("a replayed consent link was refused but wrote %d times", r.p.writes)
		}
	}
	if ok > 1 {
		s.violation("one consent link connected %d times", ok)
	}
	if c.mintErr != nil {
		s.violation("admin could not mint a consent link: %v", c.mintErr)
	}
	if ok == 0 {
		s.rep.ConsentFailures++
		s.consentDue = s.clock.Now().Add(s.between(5*time.Minute, 30*time.Minute))
		return
	}
	s.count(&s.rep.Reconsents, c.reason)
	s.consentPending = false
}

// revoke withdraws the stored chain at VBC, as an administrator of the VBC account might.
func (s *sim) revoke() {
	if s.stored == nil || s.stored.RefreshToken.IsZero() {
		return
	}
	rt := s.stored.RefreshToken.Reveal()
	info, ok := s.byRT[rt]
	if !ok || s.revokedChains[info.Chain] {
		return
	}
	s.vbc.Revoke(rt)
	s.revokedChains[info.Chain] = true
	s.rep.Revocations++
	s.checkChain()
}

// read is the apps' periodic read: one straight from the store, one through
// vbctoken.NewSource, both using the token at VBC (the sandbox's validity) the way an app
// would, and invalidating it on a 401.
func (s *sim) read() {
	ctx := context.Background()
	storedValid := s.stored != nil && !s.stored.AccessToken.IsZero() && s.vbc.IsValidAccessToken(s.stored.AccessToken.Reveal())
	if !storedValid && s.everConnected && s.broken == nil {
		s.rep.Reads.DeadWhileChainAlive++ // the refresh came too late: no valid token anywhere
	}
	// dead judges a token an app received that is dead at VBC right now.
	dead := func(what string) {
		switch {
		case !storedValid:
			s.rep.Reads.DuringOutage++
		case s.accessRepairPending:
			// A process died between its pair commit and its access write: the access
			// secret lags until the next keeper run rewrites it.
			s.rep.Reads.StaleAfterDeath++
		default:
			s.violation("%s a dead access token while the stored pair's (expires %s) was valid", what, s.stored.ExpiresAt.Format(time.RFC3339))
		}
	}

	s.rep.Reads.Direct++
	a, err := s.appStore.LoadAccess(ctx)
	switch {
	case err != nil:
		s.rep.Reads.Errors++
	case a.AccessToken.IsZero():
		s.rep.Reads.NoToken++
	case !s.vbc.IsValidAccessToken(a.AccessToken.Reveal()):
		dead(fmt.Sprintf("an app read from the store (token expiring %s)", a.ExpiresAt.Format(time.RFC3339)))
	}

	s.rep.Reads.Source++
	tok, err := s.source.Token()
	if err == nil && !s.vbc.IsValidAccessToken(tok.AccessToken) {
		s.rep.Reads.Invalidations++ // the API answered 401: the app asks for a fresh one
		s.source.Invalidate()
		tok, err = s.source.Token()
	}
	switch {
	case errors.Is(err, vbctoken.ErrNoValidToken) && storedValid:
		dead("vbctoken.Source found only")
	case errors.Is(err, vbctoken.ErrNoValidToken):
		s.rep.Reads.NoToken++
	case err != nil:
		s.rep.Reads.Errors++
	case !s.vbc.IsValidAccessToken(tok.AccessToken):
		dead("vbctoken.Source handed an app")
	}
}

// afterStep checks the invariants once every process of a step has ended.
func (s *sim) afterStep(procs []*process, aliveBefore bool) {
	s.syncIssued()
	v, err := s.backend.clean.LoadPair(context.Background())
	if err != nil {
		s.violation("the checker cannot read the pair: %v", err)
		return
	}
	s.stored = v.Pair

	// (c) every pair delivered to a live process is stored, or lost a race it should lose.
	for _, p := range procs {
		s.logger.Debug("soak: process ended", "process", p.id, "role", p.role, "outcome", p.outcome,
			"died", p.dead(), "error", p.err, "delivered", len(p.delivered), "writes", p.writes)
		if p.role == roleRefresher {
			s.rep.RefresherRuns++
			s.tallyOutcome(p)
		}
		for _, rt := range p.delivered {
			if s.hist.has(rt) {
				continue
			}
			if p.outcome == vbctoken.OutcomeSuperseded {
				s.rep.DeliveredSuperseded++
				continue
			}
			s.violation("a pair VBC delivered to %s process %d (died: %q) was never stored nor superseded (outcome %q, error: %v)",
				p.role, p.id, p.dead(), p.outcome, p.err)
		}
	}

	// (a) the stored refresh token is the newest live one of its chain.
	s.checkChain()

	for _, p := range procs {
		if p.role == roleRefresher && p.outcome == vbctoken.OutcomeReconsent && errors.Is(p.err, vbctoken.ErrInvalidGrant) && aliveBefore && s.broken == nil {
			s.rep.FalseAlarms++
			if len(s.rep.FalseAlarmDetails) < 10 {
				s.rep.FalseAlarmDetails = append(s.rep.FalseAlarmDetails, fmt.Sprintf("%s process %d: %v", s.clock.Now().Format(time.RFC3339), p.id, p.err))
			}
		}
	}
	if s.stored != nil && !s.stored.RefreshToken.IsZero() {
		a, err := s.backend.clean.LoadAccess(context.Background())
		inStep := err == nil && a.AccessToken == s.stored.AccessToken
		if !inStep {
			s.rep.AccessLagging++
		}
		diedBetween, ranToEnd := false, false
		for _, p := range procs {
			diedBetween = diedBetween || p.dead() == DeathAfterCommit
			ranToEnd = ranToEnd || (p.role == roleRefresher && p.dead() == "")
		}
		switch {
		case inStep:
			s.accessRepairPending = false
		case diedBetween:
			s.accessRepairPending = true
		case ranToEnd:
			// The next keeper run has come and gone: from now on a lagging access secret
			// is the keeper's fault.
			s.accessRepairPending = false
		}
	}
}

func (s *sim) tallyOutcome(p *process) {
	key := string(p.outcome)
	switch {
	case p.outcome == "" && p.dead() != "":
		key = "died"
	case p.outcome == "" || (p.err != nil && p.outcome != vbctoken.OutcomeReconsent):
		key = "failed"
	}
	s.count(&s.rep.Outcomes, key)
}

// syncIssued indexes the pairs the sandbox issued since the last step. A step ends only
// when its requests have ended, so entries already seen never change afterwards.
func (s *sim) syncIssued() {
	issued := s.vbc.Issued()
	for _, ip := range issued[s.issuedSeen:] {
		s.byRT[ip.RefreshToken] = ip
		if ip.Replaces != "" {
			s.replacedBy[ip.Replaces] = ip
		}
		if ip.Grant == vbcsandbox.GrantAuthorizationCode {
			s.consents = append(s.consents, ip)
		}
		s.guard.add(ip.AccessToken, ip.RefreshToken)
	}
	s.issuedSeen = len(issued)
}

// checkChain is invariant (a): the stored refresh token is live at VBC and nothing replaced
// it, unless VBC revoked it or it was rotated by a request whose answer never reached a
// live process (ProcessedButLost, a process death): then the chain is broken and the
// admin is asked to consent again.
func (s *sim) checkChain() {
	p := s.stored
	if p == nil || p.RefreshToken.IsZero() {
		if s.everConnected {
			s.violation("the stored pair has no refresh token any more")
		}
		return
	}
	s.everConnected = true
	rt := p.RefreshToken.Reveal()
	info, known := s.byRT[rt]
	if !known {
		s.violation("the stored refresh token was never issued by VBC")
		return
	}
	if s.vbc.IsLiveRefreshToken(rt) {
		if next, used := s.replacedBy[rt]; used {
			s.violation("the stored refresh token is live but was replaced by %v", next)
		}
		if s.broken != nil {
			s.rep.OutageHours += s.clock.Now().Sub(s.broken.since).Hours()
			s.broken = nil
		}
		return
	}
	if s.broken != nil && s.broken.rt == rt {
		return
	}
	cause := s.whyDead(rt, info)
	s.broken = &breakage{since: s.clock.Now(), cause: cause, rt: rt}
	s.count(&s.rep.ChainBreaks, cause)
	due := s.clock.Now().Add(s.between(s.plan.AdminDelayMin, s.plan.AdminDelayMax))
	if !s.consentPending || s.consentDue.After(due) {
		s.consentDue = due
	}
	s.consentPending, s.consentReason = true, "forced/"+cause
}

func (s *sim) whyDead(rt string, info vbcsandbox.IssuedPair) string {
	if s.revokedChains[info.Chain] {
		return "revoked"
	}
	if next, ok := s.replacedBy[rt]; ok {
		switch {
		case next.Lost:
			return "processed_but_lost"
		case s.died[next.RefreshToken]:
			return "process_death"
		}
		s.violation("chain broken by the keeper: the stored refresh token was used and the pair that replaced it (%v) reached a live process but was never stored", next)
		return "keeper"
	}
	if s.cfg.StrictVBC {
		// A code exchange revokes every older chain; if that consent's own pair never
		// reached a live process, nothing replaced the revoked one.
		for _, c := range s.consents {
			if c.Chain > info.Chain && (c.Lost || s.died[c.RefreshToken]) {
				return "consent_lost"
			}
		}
	}
	if !s.clock.Now().Before(info.IssuedAt.Add(vbctoken.RefreshTokenLifetime)) {
		s.violation("the stored refresh token expired: nothing refreshed it for 7 days")
		return "expired"
	}
	s.violation("the stored refresh token is dead for no known reason")
	return "unknown"
}

// finish fills the report's totals.
func (s *sim) finish(elapsed time.Duration) {
	s.syncIssued()
	if s.broken != nil {
		s.rep.OutageHours += s.clock.Now().Sub(s.broken.since).Hours()
	}
	for _, ip := range s.vbc.Issued() {
		switch {
		case ip.Lost:
			s.count(&s.rep.UnavoidableLosses, "processed_but_lost/"+ip.Grant)
		case s.died[ip.RefreshToken]:
			s.count(&s.rep.UnavoidableLosses, "process_death/"+ip.Grant)
		}
	}
	st := s.vbc.Stats()
	for k, n := range st.Faults {
		if s.rep.SandboxFaults == nil {
			s.rep.SandboxFaults = map[string]int{}
		}
		s.rep.SandboxFaults[k.String()] = n
	}
	s.rep.TokenRequests = 0
	for _, n := range st.Requests {
		s.rep.TokenRequests += n
	}
	s.rep.Refreshes = s.rep.Outcomes[string(vbctoken.OutcomeRefreshed)]
	s.rep.Superseded = s.rep.Outcomes[string(vbctoken.OutcomeSuperseded)]
	s.rep.Skipped = s.rep.Outcomes[string(vbctoken.OutcomeSkipped)]
	s.rep.LogLines, s.rep.SecretsTracked = s.guard.stats()
	if n := s.guard.leakCount(); n > 0 {
		s.rep.Violations += n
		s.rep.ViolationDetails = append(s.rep.ViolationDetails, s.guard.leakDetails()...)
	}
	s.rep.SimulatedUntil = s.clock.Now()
	s.rep.Elapsed = elapsed.Round(time.Millisecond).String()
	s.rep.total()
}
