package soak

import (
	"context"
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
	roleRefresher = "refresher" // the scheduled Lambda
	roleCLI       = "cli"       // an operator's `vbctoken refresh --force`
	roleServe     = "serve"     // a local `vbctoken serve` on the same store, its own schedule
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
	wrongPassword = "soak-TYPO-PASSWORD-0c5a7f3d"
)

var credentials = vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret}

// Virtual deadlines of the processes: template.yaml's Lambda timeouts (refresher 60 s,
// callback 15 s); an admin's CLI run gets a minute too.
const (
	refresherTimeout = 60 * time.Second
	callbackTimeout  = 15 * time.Second
	cliTimeout       = 60 * time.Second // internal/cli DefaultTimeout, also serve's per check
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
	// VBC is the sandbox's behaviour: vbcsandbox.ModeLenient (the zero value),
	// ModeStrict (a consent revokes older chains, a refresh older access tokens) or
	// ModeWSO2 (VBC's real token server: refresh kills the old pair, re-grants hand back
	// the active pair, a replayed code revokes, refresh races across the cluster).
	VBC vbcsandbox.Mode
	// SelfHeal gives every keeper that refreshes the admin's login for the keeper's opt-in
	// self-heal (KeeperConfig.SelfHeal): a provably lost chain is restored with the
	// password grant instead of waiting for the admin.
	SelfHeal bool
	// CheckEvery, when set under an hour, adds scheduled refresher runs between the hourly
	// ones (a deployment that schedules the refresher every CheckEvery).
	CheckEvery time.Duration
	// AdminOnAlarm has the admin consent after a chain break only once a keeper declared
	// re-consent (the alarm that pages them) or apps have failed for a day, rather than
	// 30 minutes to 6 hours after every break: an admin who is not watching, as a
	// self-heal deployment assumes.
	AdminOnAlarm bool
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

	mu       sync.Mutex // guards rep's maps, died and stranded
	rep      *Report
	died     map[string]bool // refresh tokens of pairs lost with their process
	stranded map[string]bool // refresh tokens held by pair writes a death left pending
	// strandedNew are the refresh tokens of new pairs (never stored before) a death left
	// pending.
	strandedNew []string
	// accessAt is when each access token first landed in the access secret.
	accessAt map[string]time.Time

	raceMu  sync.Mutex // guards raceRng and races (the sandbox's RaceFunc)
	raceRng *mrand.Rand
	races   []raceRecord

	issuedSeen    int
	byRT          map[string]vbcsandbox.IssuedPair
	byAT          map[string]vbcsandbox.IssuedPair
	replacedBy    map[string]vbcsandbox.IssuedPair // the last pair issued for a refresh token
	consumedBy    map[string]vbcsandbox.IssuedPair // the first one
	consents      []vbcsandbox.IssuedPair          // pairs issued by code exchanges
	revokedChains map[int]bool
	stored        *vbctoken.Pair // after the last step
	pending       *vbctoken.Pair // a pair write left pending in the store, after the last step
	awaitPending  map[string]bool
	everConnected bool
	broken        *breakage
	inDoubtSince  time.Time // the stored refresh token is dead but a pair kept or pending is live

	consentPending bool
	consentDue     time.Time
	consentReason  string
	later          []event // events due after the current hour
	// accessRepairPending: a process died between its pair commit and its access write,
	// and no keeper run has rewritten the access secret since.
	accessRepairPending bool

	schedulerDownUntil time.Time // the scheduled refresher does not run until then

	serveUntil time.Time     // a local serve runs until then
	servePhase time.Duration // its checks run this long after each hour
	serveSkew  time.Duration // its machine's clock error

	app      *process
	appStore vbctoken.Store
	// api is an app's HTTP client for VBC's API (vbctoken.Transport over apiServer).
	api       *http.Client
	apiServer *soakAPI
	apiLoader *failCounter
	source    *vbctoken.Source
	readers   readers
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
	plan := PlanFor(cfg.VBC)
	if cfg.Plan != nil {
		plan = *cfg.Plan
	}
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(cfg.Seed >> (8 * i))
	}
	clock := NewClock(simStart)
	vbc := vbcsandbox.New(vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirectURL}}},
		Users:      map[string]string{adminUser: adminPassword},
		Now:        clock.Now,
		Rand:       mrand.NewChaCha8(seed),
		SigningKey: testutil.SigningKey(),
		FaultDelay: time.Microsecond,
		Mode:       cfg.VBC,
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
		stranded:      map[string]bool{},
		accessAt:      map[string]time.Time{},
		raceRng:       mrand.New(mrand.NewPCG(cfg.Seed, 0x7ace)),
		byRT:          map[string]vbcsandbox.IssuedPair{},
		byAT:          map[string]vbcsandbox.IssuedPair{},
		replacedBy:    map[string]vbcsandbox.IssuedPair{},
		consumedBy:    map[string]vbcsandbox.IssuedPair{},
		awaitPending:  map[string]bool{},
		revokedChains: map[int]bool{},
		rep:           newReport(cfg, plan),
	}
	s.tokenKinds, s.tokenTotal = plan.tokenKinds()
	vbc.SetRace(s.settleRace)
	s.guard.add(clientSecret, adminPassword, wrongPassword)
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
	s.apiServer, s.apiLoader = &soakAPI{vbc: s.vbc}, &failCounter{AccessLoader: s.appStore}
	s.api = &http.Client{Transport: &vbctoken.Transport{
		Source: vbctoken.NewSource(s.apiLoader, vbctoken.WithClock(clock.Now)),
		Base:   s.apiServer,
	}}
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
	p := &process{sim: s, id: id, role: role, rng: mrand.New(mrand.NewPCG(s.cfg.Seed, uint64(id)))}
	switch role {
	case roleCLI, roleLogin:
		// An operator's machine: its clock is a little off, and Ctrl-C cancels its context.
		p.interruptible = true
		p.skew = s.machineSkew(p.float, p.between)
	case roleServe:
		p.skew = s.serveSkew
	}
	return p
}

func (s *sim) chance(p float64) bool { return p > 0 && s.rng.Float64() < p }

// machineSkew draws the clock error of an operator's machine from the given source.
func (s *sim) machineSkew(float func() float64, between func(lo, hi time.Duration) time.Duration) time.Duration {
	if s.plan.WildClock > 0 && float() < s.plan.WildClock {
		d := between(20*time.Second, 2*time.Minute)
		if float() < 0.5 {
			d = -d
		}
		return d
	}
	return between(-s.plan.ClockSkew, s.plan.ClockSkew)
}

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

// keeper is a fresh keeper for p, as a cold Lambda or a CLI run builds it. Its clock is
// the process's (operators' machines are a little off); retries measure virtual time.
func (s *sim) keeper(p *process) *vbctoken.Keeper {
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store:      s.backend.open(p),
		Client:     s.clientConfig(p),
		StoreRetry: s.retry(p),
		Now:        p.now,
		Holder:     p.role,
		SelfHeal:   s.selfHeal(p),
		Logger:     s.logger.With("process", p.id, "role", p.role),
	})
	if err != nil {
		panic(fmt.Sprintf("soak: new keeper: %v", err)) // the configuration is fixed
	}
	return k
}

// selfHeal is the self-heal login of p's keeper, when the run has one.
func (s *sim) selfHeal(p *process) vbctoken.LoginSource {
	if !s.cfg.SelfHeal || !runsRefresh(p.role) {
		return nil
	}
	return loginSource{p}
}

// loginSource is the self-heal login secret, read through p's faults.
type loginSource struct{ p *process }

// LoadLogin implements vbctoken.LoginSource.
func (l loginSource) LoadLogin(ctx context.Context) (string, vbctoken.Secret, error) {
	l.p.storeLatency(ctx)
	if err := l.p.alive(); err != nil {
		return "", "", err
	}
	if kind, _ := l.p.storeFault(false); kind != "" {
		return "", "", l.p.injectStore("LoadLogin", kind, false)
	}
	return adminUser, adminPassword, nil
}

// event is something the driver does at a given virtual time.
type event struct {
	at      time.Time
	kind    string // tick, check, read, revoke, consent, retry, serve, reload
	attempt int    // retry: the Lambda attempt number (2 or 3)
	reload  *consentRun
}

// Lambda retries an asynchronous invocation that failed (an error, a crash, a timeout)
// twice: about a minute later, then about two minutes after that (template.yaml:
// MaximumRetryAttempts 2).
const (
	lambdaAttempts    = 3
	firstRetryDelay   = time.Minute
	laterRetriesDelay = 2 * time.Minute
)

// serveNearTick bounds the phase of a serve whose schedule falls next to the Lambda's.
const serveNearTick = 4 * time.Second

// hour simulates one hour: the scheduled refresher (sometimes duplicated, sometimes with
// an operator's forced refresh, a local serve's check or an admin's consent racing it) and
// Lambda's retries of failed invocations, the apps' reads, now and then a revocation at
// VBC or a consent.
func (s *sim) hour(h int) {
	tick := simStart.Add(time.Duration(h) * time.Hour)
	end := tick.Add(time.Hour)
	s.clock.AdvanceTo(tick)

	events := append(s.later, event{at: tick, kind: "tick"})
	s.later = nil
	for t := tick.Add(s.between(s.plan.ReadEveryMin, s.plan.ReadEveryMax)); t.Before(end); t = t.Add(s.between(s.plan.ReadEveryMin, s.plan.ReadEveryMax)) {
		events = append(events, event{at: t, kind: "read"})
	}
	if s.everConnected && s.chance(s.plan.Revocation) {
		events = append(events, event{at: tick.Add(s.between(0, time.Hour)), kind: "revoke"})
	}
	if s.everConnected && !s.consentPending && s.chance(s.plan.VoluntaryConsent) {
		s.consentPending, s.consentDue, s.consentReason = true, tick.Add(s.between(0, time.Hour)), "voluntary"
	}
	if s.everConnected && !tick.Before(s.schedulerDownUntil) && s.chance(s.plan.SchedulerOutage) {
		// The scheduled refresher stops for a day or two. Once the access token has
		// expired and apps fail, the admin consents to get them going.
		s.rep.SchedulerOutages++
		s.schedulerDownUntil = tick.Add(s.between(s.plan.OutageMin, s.plan.OutageMax))
		if !s.consentPending {
			s.consentPending, s.consentReason = true, "scheduler_outage"
			s.consentDue = tick.Add(s.between(25*time.Hour, s.schedulerDownUntil.Sub(tick)))
		}
	}
	if !tick.Before(s.serveUntil) && s.chance(s.plan.Serve) {
		// An operator starts `vbctoken serve` on the same store: a second keeper whose
		// hourly checks run on its own phase, sometimes right next to the Lambda's.
		s.rep.ServeSessions++
		s.serveUntil = tick.Add(s.between(s.plan.ServeForMin, s.plan.ServeForMax))
		s.servePhase = s.between(serveNearTick, time.Hour)
		if s.chance(s.plan.ServeNearTick) {
			s.servePhase = s.between(0, serveNearTick)
		}
		s.serveSkew = s.machineSkew(s.rng.Float64, s.between)
	}
	if tick.Before(s.serveUntil) && s.servePhase >= serveNearTick {
		events = append(events, event{at: tick.Add(s.servePhase), kind: "serve"})
	}
	if d := s.cfg.CheckEvery; d > 0 && d < time.Hour && !tick.Before(s.schedulerDownUntil) {
		for t := tick.Add(d); t.Before(end); t = t.Add(d) {
			events = append(events, event{at: t, kind: "check"})
		}
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
			s.later = append(s.later, e)
			continue
		}
		s.clock.AdvanceTo(e.at)
		switch e.kind {
		case "tick":
			events = append(events, s.tick(end)...)
		case "check":
			p := s.newProcess(roleRefresher)
			p.attempt = 1
			s.step([]*process{p}, []func(){s.refresherActor(p, false, 0)})
			events = append(events, s.retries(p)...)
		case "retry":
			p := s.newProcess(roleRefresher)
			p.attempt = e.attempt
			s.rep.LambdaRetries++
			s.step([]*process{p}, []func(){s.refresherActor(p, false, 0)})
			events = append(events, s.retries(p)...)
		case "serve":
			p := s.newProcess(roleServe)
			s.step([]*process{p}, []func(){s.serveActor(p, 0)})
		case "reload":
			s.step(e.reload.procs, e.reload.actors)
			events = append(events, s.settleConsent(e.reload)...)
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
			events = append(events, s.settleConsent(c)...)
		}
		if s.consentPending && s.consentDue.Before(end) && s.consentDue.After(s.clock.Now()) && !queued.Equal(s.consentDue) {
			queued = s.consentDue
			events = append(events, event{at: s.consentDue, kind: "consent"})
		}
	}
}

// tick runs the scheduled invocation of the hour and whatever races it, and returns
// Lambda's retries of those that failed and the admin's reloads of failed callbacks.
func (s *sim) tick(end time.Time) []event {
	tick := s.clock.Now()
	n := 1
	switch r := s.rng.Float64(); {
	case tick.Before(s.schedulerDownUntil):
		n = 0 // the schedule is down
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
		p := s.newProcess(roleCLI) // an operator's `vbctoken refresh --force`, its own keeper
		procs = append(procs, p)
		actors = append(actors, s.refresherActor(p, true, s.between(0, 5*time.Second)))
	}
	if tick.Before(s.serveUntil) && s.servePhase < serveNearTick {
		p := s.newProcess(roleServe) // a local serve whose schedule falls next to the Lambda's
		procs = append(procs, p)
		actors = append(actors, s.serveActor(p, s.servePhase))
	}
	var consent *consentRun
	if s.consentPending && s.consentDue.Before(end) && (!s.consentDue.After(tick) || s.chance(s.plan.ConsentMidRefresh)) {
		s.rep.ConsentsMidRefresh++
		consent = s.prepareConsent(s.between(0, 4*time.Second))
		procs = append(procs, consent.procs...)
		actors = append(actors, consent.actors...)
	}
	s.step(procs, actors)
	var later []event
	if consent != nil {
		later = append(later, s.settleConsent(consent)...)
	}
	for _, p := range scheduled {
		later = append(later, s.retries(p)...)
	}
	return later
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
		timeout := refresherTimeout
		if p.role == roleCLI {
			timeout = cliTimeout
		}
		ctx := p.start(timeout)
		defer p.finish()
		res, err := s.keeper(p).Refresh(ctx, force)
		p.ended(res.Outcome, err)
		if err != nil {
			s.guard.check("refresh error", []byte(err.Error()))
		}
	}
}

// serveActor is one check of a local serve's scheduler (internal/cli's scheduler.tick): the
// keeper's Status, and Refresh when connected, on a context that ignores serve's own
// cancellation and is bounded by its timeout.
func (s *sim) serveActor(p *process, offset time.Duration) func() {
	return func() {
		if offset > 0 {
			_ = s.clock.Sleep(context.Background(), offset)
		}
		ctx := p.start(cliTimeout)
		defer p.finish()
		k := s.keeper(p)
		st, err := k.Status(ctx)
		if err != nil || !st.Connected {
			p.mu.Lock()
			p.outcome, p.err = "", err
			p.mu.Unlock()
			return
		}
		res, err := k.Refresh(ctx, false)
		p.ended(res.Outcome, err)
		if err != nil {
			s.guard.check("refresh error", []byte(err.Error()))
		}
	}
}

// consentRun is one consent attempt: a browser callback (maybe hit twice) or a login.
type consentRun struct {
	reason  string
	query   string // the callback's query: the code and the state
	reload  bool   // the admin reloading a callback that answered an error page
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
		password := adminPassword
		if s.chance(s.plan.WrongPassword) {
			password = wrongPassword // a typo: VBC answers invalid_grant, three in a row lock the user
			s.rep.WrongPasswords++
		}
		p := s.newProcess(roleLogin)
		c.procs = append(c.procs, p)
		c.actors = append(c.actors, func() {
			if offset > 0 {
				_ = s.clock.Sleep(context.Background(), offset)
			}
			ctx := p.start(cliTimeout)
			defer p.finish()
			_, err := s.keeper(p).Login(ctx, adminUser, vbctoken.Secret(password), false)
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
	c.query = u.RawQuery
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

// settleConsent judges a finished consent attempt. When every callback of it answered an
// error page, the admin may reload the page: the same code and state again, in a new
// callback process, a few seconds later (the returned event).
func (s *sim) settleConsent(c *consentRun) []event {
	ok := 0
	if c.login {
		s.rep.Logins++
		if c.loginOK {
			ok = 1
		}
	}
	errorPage := false
	for i, r := range c.results {
		if r.status == http.StatusOK {
			ok++
		}
		errorPage = errorPage || r.status >= 500
		switch {
		case r.status == http.StatusInternalServerError && r.p.malformed:
			// internal/web answers a malformed token response with 500, not 502.
			s.rep.Callback500OnMalformed++
		case r.status >= 500 && r.status != http.StatusBadGateway && r.status != http.StatusServiceUnavailable && r.p.dead() == "":
			s.violation("callback answered HTTP %d (only 502/503 may blame upstream)", r.status)
		}
		if (i > 0 || c.reload) && r.status == http.StatusConflict {
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
	if c.reload {
		s.count(&s.rep.Reloads, fmt.Sprint(c.results[0].status))
	}
	if ok == 0 {
		if c.reload {
			return nil // the failure of the first attempt was counted and rescheduled
		}
		s.rep.ConsentFailures++
		s.consentDue = s.clock.Now().Add(s.between(5*time.Minute, 30*time.Minute))
		if errorPage && c.query != "" && s.chance(s.plan.ReloadAfterError) {
			return []event{{at: s.clock.Now().Add(s.between(5*time.Second, 30*time.Second)), kind: "reload", reload: s.reloadConsent(c)}}
		}
		return nil
	}
	if s.consentPending {
		s.count(&s.rep.Reconsents, c.reason)
		s.consentPending = false
	}
	return nil
}

// reloadConsent is the admin reloading a callback page that showed an error: the browser
// sends the same code and state again.
func (s *sim) reloadConsent(first *consentRun) *consentRun {
	c := &consentRun{reason: first.reason, query: first.query, reload: true}
	p := s.newProcess(roleCallback)
	r := &callbackResult{p: p}
	c.procs, c.results = []*process{p}, []*callbackResult{r}
	c.actors = []func(){s.callbackActor(p, c.query, 0, r)}
	return c
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
