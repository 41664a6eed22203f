package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// The simulated deployment's client credentials (a secret the leak guard looks for).
const (
	clientID     = "fleet-client"
	clientSecret = "fleet-CLIENT-secret-3c9d7e21"
)

// simStart is when every simulation starts (virtual time), on an hour.
var simStart = time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)

// Config is one fleet simulation. The zero value of a field takes the default that
// DefaultConfig documents.
type Config struct {
	Accounts int    // accounts in the fleet; default 10,000
	Days     int    // simulated days; default 30
	Seed     uint64 // fault and schedule decisions

	// The fan-out (docs/fleet.md): the event source mapping's maximum concurrency N, its
	// batch size and batching window, the sweep's DelaySeconds spread, the queue's
	// visibility timeout and redrive maxReceiveCount, the refresher's Lambda timeout.
	Concurrency       int
	BatchSize         int
	BatchWindow       time.Duration
	Spread            time.Duration
	VisibilityTimeout time.Duration
	MaxReceiveCount   int
	LambdaTimeout     time.Duration
	// WriteBudget is the Secrets Manager writes per second all refreshers together may
	// make (each of the N environments paces its writes at N/WriteBudget apart); negative
	// turns the pacer off. Default 40, leaving 10 of the quota's 50 to the callback and
	// the CLI.
	WriteBudget float64
	// OnboardWithin is the window in which every account consents at the start (the burst
	// onboarding: their refreshes then fall due together). Default one hour.
	OnboardWithin time.Duration
	// AdminDelay is how long an admin takes to consent again for an account whose chain
	// was lost to a fault no keeper can survive. Default 2 hours.
	AdminDelay time.Duration
	// LatenessBound is X: no refresh may happen later than its due time by more than X.
	// Default 2 hours, the refresh margin: later, the access token would have expired.
	LatenessBound time.Duration

	Plan  Plan
	Trace io.Writer // receives every log line when set
}

// Plan sets the faults. Rates are probabilities per event.
type Plan struct {
	// Per refresh request to VBC's token endpoint: a 5xx page, a 429, no answer before the
	// timeout (not processed), a 200 cut short, and the answer lost after VBC rotated the
	// token (ProcessedButLost: the chain is gone, whatever the client does).
	Token5xx, Token429, TokenTimeout, TokenTruncated, TokenLost float64
	// StoreFault is the chance that a Secrets Manager request of a refresher or callback
	// fails (throttled below the quota, 5xx, timeout); StoreAfter the share of failing
	// writes whose effect landed before the error (the answer was lost).
	StoreFault, StoreAfter float64
	// Kill is the chance that a refresher invocation is killed (its execution environment
	// dies) within KillWithin of its start, mid-batch.
	Kill       float64
	KillWithin time.Duration
	// Duplicate is the chance that a delivered message is also delivered to another poller.
	Duplicate float64
	// RevokeAt and MalformedAt are the fractions of the run at which one account's chain
	// is revoked at VBC and another account's stored pair is overwritten with malformed
	// JSON; negative: never.
	RevokeAt, MalformedAt float64
}

// DefaultPlan is the fault plan of the fleet simulation (docs/fleet.md "Faults").
func DefaultPlan() Plan {
	return Plan{
		Token5xx: 0.02, Token429: 0.005, TokenTimeout: 0.005, TokenTruncated: 0.003, TokenLost: 0.00002,
		StoreFault: 0.01, StoreAfter: 0.3,
		Kill: 0.0002, KillWithin: 3 * time.Second,
		Duplicate: 0.001,
		RevokeAt:  0.4, MalformedAt: 0.6,
	}
}

// DefaultConfig is the 10,000 accounts × 30 days run with the chosen fan-out.
func DefaultConfig() Config {
	return Config{
		Accounts: 10000, Days: 30, Seed: 1,
		Concurrency: 5, BatchSize: 10, Spread: 15 * time.Minute,
		VisibilityTimeout: 6 * time.Minute, MaxReceiveCount: 3, LambdaTimeout: time.Minute,
		WriteBudget: 40, OnboardWithin: time.Hour, AdminDelay: 2 * time.Hour,
		LatenessBound: 2 * time.Hour, Plan: DefaultPlan(),
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Accounts <= 0 {
		c.Accounts = d.Accounts
	}
	if c.Days <= 0 {
		c.Days = d.Days
	}
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	if c.BatchSize <= 0 {
		c.BatchSize = d.BatchSize
	}
	if c.VisibilityTimeout <= 0 {
		c.VisibilityTimeout = d.VisibilityTimeout
	}
	if c.MaxReceiveCount <= 0 {
		c.MaxReceiveCount = d.MaxReceiveCount
	}
	if c.LambdaTimeout <= 0 {
		c.LambdaTimeout = d.LambdaTimeout
	}
	if c.WriteBudget == 0 {
		c.WriteBudget = d.WriteBudget
	}
	if c.OnboardWithin <= 0 {
		c.OnboardWithin = d.OnboardWithin
	}
	if c.AdminDelay <= 0 {
		c.AdminDelay = d.AdminDelay
	}
	if c.LatenessBound <= 0 {
		c.LatenessBound = d.LatenessBound
	}
	return c
}

// sim is one running simulation.
type sim struct {
	ctx    context.Context // stops the schedule early when done
	cfg    Config
	clock  *clock
	sm     *smModel
	vbc    *vbcsandbox.Sandbox
	q      *queue
	guard  *leakGuard
	logger *slog.Logger
	policy vbctoken.Policy
	envSeq atomic.Int64
	stats  stats
	admin  *env

	driverMu sync.Mutex
	driver   *mrand.Rand

	names []string
	index map[string]int

	mu       sync.Mutex // guards what follows
	accts    []acctState
	rep      *Report
	lateness []time.Duration
	lost     map[string]string // refresh tokens whose refresh answer never reached a live process → why
	// deliveredTo maps a refresh token spent by a refresh whose answer reached a process
	// to that process (its env id); deadEnvs are the processes killed.
	deliveredTo map[string]int
	deadEnvs    map[int]bool
	sweeps      []sweepInfo
	revoked     string
	bad         string
}

// acctState is what the simulation knows of one account from its keepers' results.
type acctState struct {
	obtained  time.Time // the newest pair's
	due       time.Time // when the policy refreshes it
	accessExp time.Time
	lostChain string // why its chain was lost (a fault no keeper survives), "" if not
	recovered bool   // an admin consented again after the loss
}

type sweepInfo struct {
	hour     int
	start    time.Time
	accounts int
}

// stats are counters updated from many actors.
type stats struct {
	envs                                 [4]atomic.Int64
	attempts, accepted                   [4][numOps]atomic.Int64
	storeOps                             [4][numStoreOps]atomic.Int64
	throttles                            [4]atomic.Int64
	injectedThrottles, paced             atomic.Int64
	sdkRetries, retryQuota               atomic.Int64
	tokenRequests                        atomic.Int64
	kills, killedInvocations             atomic.Int64
	records, batchItemFailures           atomic.Int64
	refresher, sweeper, callback         lambdaUse
	consents, consentFailures, reconsent atomic.Int64
	refreshMs, skipMs                    atomic.Int64
}

// Run simulates cfg and returns the report. An error means the simulation could not
// run; broken invariants are in the report (Report.Violations).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	began := time.Now()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	s := newSim(cfg)
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.ctx = ctx
	s.clock.run(s.main)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fleet simulation stopped: %w", err)
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	s.finish(time.Since(began), cpu)
	return s.rep, nil
}

func newSim(cfg Config) *sim {
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(cfg.Seed >> (8 * i))
	}
	c := newClock(simStart, time.Millisecond)
	s := &sim{
		cfg:         cfg,
		clock:       c,
		sm:          newSMModel(),
		policy:      vbctoken.DefaultPolicy(),
		driver:      mrand.New(mrand.NewPCG(cfg.Seed, 0xf1ee7)),
		index:       map[string]int{},
		lost:        map[string]string{},
		deliveredTo: map[string]int{},
		deadEnvs:    map[int]bool{},
		rep:         newReport(cfg),
	}
	s.vbc = vbcsandbox.New(vbcsandbox.Options{
		Mode:       vbcsandbox.ModeWSO2,
		Clients:    []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirectURL}}},
		Now:        c.Now,
		Rand:       mrand.NewChaCha8(seed),
		SigningKey: testutil.SigningKey(),
		FaultDelay: time.Microsecond,
	})
	s.vbc.SetFaults(sandboxFault)
	s.q = newQueue(s)
	s.guard = newLeakGuard(cfg.Trace, clientSecret)
	s.logger = slog.New(slog.NewJSONHandler(s.guard, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Time(slog.TimeKey, c.Now()) // virtual time
			}
			return a
		},
	}))
	s.names = make([]string, cfg.Accounts)
	s.accts = make([]acctState, cfg.Accounts)
	for i := range s.names {
		s.names[i] = fmt.Sprintf("acct-%05d", i+1)
		s.index[s.names[i]] = i
	}
	return s
}

// setup creates what the CDK stack deploys: the shared credentials secret and the empty
// index shards.
func (s *sim) setup() error {
	creds, err := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		return err
	}
	if _, err := s.sm.create(&secretsmanager.CreateSecretInput{Name: aws.String(credentialsSecretID), SecretString: aws.String(string(creds))}); err != nil {
		return err
	}
	for shard := range indexShards {
		if _, err := s.sm.create(&secretsmanager.CreateSecretInput{Name: aws.String(indexID(shard)), SecretString: aws.String(`{"version":1,"accounts":[]}`)}); err != nil {
			return err
		}
	}
	s.sm.calls = [numOps]int64{}
	return nil
}

func (s *sim) driverChance(p float64) bool {
	s.driverMu.Lock()
	defer s.driverMu.Unlock()
	return p > 0 && s.driver.Float64() < p
}

func (s *sim) driverFloat() float64 {
	s.driverMu.Lock()
	defer s.driverMu.Unlock()
	return s.driver.Float64()
}

// main is the first actor: the admin's burst onboarding, the hourly EventBridge rule,
// the event source mapping's N pollers, and the two one-account faults.
func (s *sim) main() {
	s.admin = s.newEnv(roleAdmin, nil, false)
	for i, name := range s.names {
		at := simStart.Add(time.Duration(s.driverFloat() * float64(s.cfg.OnboardWithin)))
		s.clock.spawn(func() {
			s.clock.sleepUntil(at)
			s.connect(name, fmt.Sprintf("admin%05d", i+1), "onboarding")
		})
	}
	for range s.cfg.Concurrency {
		s.clock.spawn(s.slot)
	}
	hours := s.cfg.Days * 24
	end := simStart.Add(time.Duration(hours) * time.Hour)
	if f := s.cfg.Plan.RevokeAt; f >= 0 {
		at := simStart.Add(time.Duration(f*float64(hours))*time.Hour + 17*time.Minute)
		s.clock.spawn(func() { s.clock.sleepUntil(at); s.revokeOne() })
	}
	if f := s.cfg.Plan.MalformedAt; f >= 0 {
		at := simStart.Add(time.Duration(f*float64(hours))*time.Hour + 41*time.Minute)
		s.clock.spawn(func() { s.clock.sleepUntil(at); s.corruptOne() })
	}
	g := group{c: s.clock}
	for h := range hours {
		if s.ctx.Err() != nil {
			break
		}
		s.clock.sleepUntil(simStart.Add(time.Duration(h) * time.Hour))
		g.spawn(func() { s.sweep(h) })
	}
	g.wait()
	s.clock.sleepUntil(end)
	s.q.close()
}

// connect is an account's admin consenting: the admin mints a consent link with the CLI,
// approves it at VBC as the account's own VBC user, and the browser lands on the callback
// function, which completes the consent. A failed attempt is repeated ten minutes later.
func (s *sim) connect(account, user, why string) {
	for attempt := 1; attempt <= 5; attempt++ {
		err := s.consentOnce(account, user)
		if err == nil {
			return
		}
		s.stats.consentFailures.Add(1)
		s.classify(account, "consent", err, false)
		s.clock.sleep(10 * time.Minute)
	}
	s.violation("account %s (%s) could not consent in five attempts", account, why)
}

func (s *sim) consentOnce(account, user string) error {
	ctx, cancel := s.clock.withTimeout(context.Background(), time.Minute)
	defer cancel()
	k, err := s.admin.accounts.Keeper(account)
	if err != nil {
		return err
	}
	link, err := k.ConsentURL(ctx)
	if err != nil {
		return fmt.Errorf("mint consent link: %w", err)
	}
	cb, err := s.vbc.ApproveAs(link, user)
	if err != nil {
		return fmt.Errorf("approve: %w", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		return err
	}
	q := u.Query()
	e := s.newEnv(roleCallback, nil, true)
	start := s.clock.Now()
	s.clock.sleep(e.expDur(150*time.Millisecond, 60*time.Millisecond)) // a cold callback
	cctx, ccancel := s.clock.withTimeout(e.ctx, 15*time.Second)        // template.yaml: 15 s
	defer ccancel()
	got, res, err := e.accounts.CompleteConsent(cctx, q.Get("state"), vbctoken.Secret(q.Get("code")))
	s.stats.callback.add(s.clock.Now().Sub(start))
	if err != nil {
		return err
	}
	if got != account {
		s.violation("a consent for %s was stored under %s", account, got)
	}
	s.stats.consents.Add(1)
	s.observe(e, account, res, nil)
	return nil
}

// revokeOne revokes one account's chain at VBC, as that customer's VBC admin might.
func (s *sim) revokeOne() {
	name := s.names[len(s.names)/3]
	rt := s.storedRefreshToken(name)
	if rt == "" {
		s.violation("account %s has no stored pair to revoke", name)
		return
	}
	s.vbc.Revoke(rt)
	s.mu.Lock()
	s.revoked = name
	s.rep.Revoked = name
	s.mu.Unlock()
}

// corruptOne overwrites one account's pair secret with malformed JSON (an operator's bad
// hand edit).
func (s *sim) corruptOne() {
	name := s.names[len(s.names)/2+1]
	s.sm.corrupt(pairID(name), `{"version":1,"refresh_token":`)
	s.mu.Lock()
	s.bad = name
	s.rep.Malformed = name
	s.mu.Unlock()
}

// storedRefreshToken reads an account's current refresh token (checker's view).
func (s *sim) storedRefreshToken(account string) string {
	cur, _, ok := s.sm.peek(pairID(account), "")
	if !ok {
		return ""
	}
	p, err := vbctoken.DecodePair([]byte(cur))
	if err != nil {
		return ""
	}
	return p.RefreshToken.Reveal()
}

// markLost records a refresh whose new pair never reached a live process.
func (s *sim) markLost(presented, why string) {
	if presented == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost[presented] = why
}

// delivered records that the new pair of the refresh that spent presented reached e.
func (s *sim) delivered(presented string, e *env) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveredTo[presented] = e.id
}

func (s *sim) countToken(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.TokenFaults[kind]++
}

// observe records one keeper result: outcomes, refresh lateness, failures.
func (s *sim) observe(e *env, account string, res vbctoken.Result, err error) {
	idx, ok := s.index[account]
	if !ok {
		s.violation("a result for unknown account %s", account)
		return
	}
	now := s.clock.Now()
	// Stored pairs keep times to the second; a keeper's own result has nanoseconds.
	res.ObtainedAt = res.ObtainedAt.Truncate(time.Second)
	res.AccessExpiresAt = res.AccessExpiresAt.Truncate(time.Second)
	res.RefreshExpiresAt = res.RefreshExpiresAt.Truncate(time.Second)
	s.mu.Lock()
	st := &s.accts[idx]
	outcome := string(res.Outcome)
	if err != nil && res.Outcome != vbctoken.OutcomeReconsent {
		outcome = "failed"
		if res.Outcome == vbctoken.OutcomeInDoubt {
			outcome = "in_doubt"
		}
	}
	if e.role == roleRefresher {
		s.rep.Runs++
		s.rep.Outcomes[outcome]++
		if res.Outcome == vbctoken.OutcomeRefreshed {
			s.rep.RefreshReasons[string(res.Reason)]++
		}
	}
	if res.Outcome == vbctoken.OutcomeRefreshed && !res.ObtainedAt.Equal(st.obtained) && !st.due.IsZero() {
		// The keeper decides on the stored pair, whose times have second precision.
		late := res.ObtainedAt.Sub(st.due)
		if late < 0 {
			if len(s.rep.EarlySamples) < 5 {
				s.rep.EarlySamples = append(s.rep.EarlySamples, fmt.Sprintf("%s: refreshed (%s) at %s, due %s",
					account, res.Reason, res.ObtainedAt.Format(time.RFC3339Nano), st.due.Format(time.RFC3339Nano)))
			}
			s.rep.EarlyRefreshes++
		} else {
			s.lateness = append(s.lateness, late)
		}
		if res.ObtainedAt.After(st.accessExp) {
			s.rep.AccessExpiredBeforeRefresh++
		}
	}
	if !res.ObtainedAt.IsZero() && !res.ObtainedAt.Before(st.obtained) {
		st.obtained, st.accessExp = res.ObtainedAt, res.AccessExpiresAt
		st.due = s.policy.NextRefresh(&vbctoken.Pair{ExpiresAt: res.AccessExpiresAt, ObtainedAt: res.ObtainedAt, RefreshExpiresAt: res.RefreshExpiresAt})
	}
	s.mu.Unlock()
	if err != nil {
		s.classify(account, "refresh", err, e.dead.Load())
	}
	if errors.Is(err, vbctoken.ErrReconsentRequired) {
		s.reconsentRequired(account, now)
	}
}

// Error classes of failed runs and consents.
const (
	classThrottle  = "throttle"
	classKilled    = "killed"
	classReconsent = "reconsent_required"
	classMalformed = "malformed_pair"
	classVBC       = "vbc_transient"
	classStore     = "store_transient"
	classDeadline  = "deadline"
	classOther     = "other"
)

// classify files a failed run or consent by cause, keeping a few samples, and checks the
// error for secrets.
func (s *sim) classify(account, what string, err error, killed bool) {
	s.guard.check("error", []byte(err.Error()))
	var ue *vbctoken.UpstreamError
	class := classOther
	switch {
	case killed || errors.Is(err, errKilled):
		class = classKilled
	case errIsThrottle(err):
		class = classThrottle
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		class = classReconsent
	case errors.Is(err, vbctoken.ErrMalformedSecret):
		class = classMalformed
	case errors.As(err, &ue) && errors.Is(err, vbctoken.ErrTransient):
		class = classVBC
	case errors.Is(err, vbctoken.ErrTransient):
		class = classStore
	case errors.Is(err, context.DeadlineExceeded):
		class = classDeadline
	}
	key := what + "/" + class
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Failures[key]++
	if class == classThrottle {
		s.rep.ThrottlesSurfaced++
	}
	if samples := s.rep.FailureSamples[key]; len(samples) < 3 {
		s.rep.FailureSamples[key] = append(samples, account+": "+err.Error())
	}
}

// reconsentRequired judges a refresh that declared the chain gone: expected for the
// revoked account; for any other, the stored refresh token must have been spent by a
// refresh whose answer never reached a live process (lost in transit or with a killed
// Lambda). Then an admin consents again after AdminDelay. Anything else is a chain the
// keeper lost.
func (s *sim) reconsentRequired(account string, now time.Time) {
	rt := s.storedRefreshToken(account)
	s.mu.Lock()
	idx := s.index[account]
	st := &s.accts[idx]
	if account == s.revoked {
		s.rep.ReconsentsRevoked++
		s.mu.Unlock()
		return
	}
	if st.lostChain != "" && !st.recovered {
		s.mu.Unlock()
		return // already handled; the admin is on the way
	}
	why := s.lost[rt]
	if id, ok := s.deliveredTo[rt]; why == "" && ok && s.deadEnvs[id] {
		// The new pair reached its process, which was killed before storing it.
		why = "process_death"
	}
	if why == "" {
		s.mu.Unlock()
		s.violation("account %s: the keeper declared re-consent required, but its stored refresh token was not spent by a lost refresh (a chain lost by the keeper)", account)
		return
	}
	st.lostChain, st.recovered = why, false
	s.rep.LostToFaults[why]++
	s.rep.LostAccounts = append(s.rep.LostAccounts, account)
	s.mu.Unlock()
	s.stats.reconsent.Add(1)
	at := now.Add(s.cfg.AdminDelay)
	if !at.Before(simStart.Add(time.Duration(s.cfg.Days) * 24 * time.Hour)) {
		return // after the run: counted as awaiting the admin
	}
	s.clock.spawn(func() {
		s.clock.sleepUntil(at)
		s.connect(account, fmt.Sprintf("admin%05d", idx+1), "re-consent after "+why)
		s.mu.Lock()
		s.accts[idx].recovered = true
		s.mu.Unlock()
	})
}

func (s *sim) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Violations++
	if len(s.rep.ViolationDetails) < 50 {
		s.rep.ViolationDetails = append(s.rep.ViolationDetails,
			s.clock.Now().Format(time.RFC3339)+": "+fmt.Sprintf(format, args...))
	}
}

// finish checks the end state and fills the report.
func (s *sim) finish(wall, cpu time.Duration) {
	r := s.rep
	r.WallTime = wall.Round(time.Millisecond).String()
	r.CPUTime = cpu.Round(time.Millisecond).String()
	r.SimulatedUntil = s.clock.Now()
	r.ClockSteps, r.ClockWakes = s.clock.steps, s.clock.wakes

	// Every chain is live at the end, except the revoked and the malformed account's and
	// those an admin had not re-connected yet after an unavoidable loss.
	pairBytes, pairs := 0, 0
	for i, name := range s.names {
		if name == s.revoked || name == s.bad {
			continue
		}
		cur, _, ok := s.sm.peek(pairID(name), "")
		if !ok {
			s.violation("account %s has no pair secret at the end", name)
			continue
		}
		pairBytes += len(cur)
		pairs++
		p, err := vbctoken.DecodePair([]byte(cur))
		if err != nil {
			s.violation("account %s: stored pair unreadable at the end: %v", name, err)
			continue
		}
		if s.vbc.IsLiveRefreshToken(p.RefreshToken.Reveal()) {
			r.LiveChains++
			continue
		}
		if st := s.accts[i]; st.lostChain != "" && !st.recovered {
			r.AwaitingAdmin++
			continue
		}
		s.violation("account %s: the stored refresh token is dead at the end (a lost chain)", name)
		r.LostChains++
	}
	for i, name := range s.names {
		st := s.accts[i]
		if name == s.revoked || name == s.bad || st.due.IsZero() || st.lostChain != "" && !st.recovered {
			continue
		}
		if late := s.clock.Now().Sub(s.accts[i].due); late > s.cfg.LatenessBound {
			r.OverdueAtEnd++
			s.violation("account %s is overdue by %s at the end", name, late.Round(time.Minute))
		}
	}
	if pairs > 0 {
		r.PairBytes = pairBytes / pairs
	}
	if a, _, ok := s.sm.peek(accessID(s.names[0]), ""); ok {
		r.AccessBytes = len(a)
	}

	r.Lateness = summarize(s.lateness)
	if r.Lateness.Max > s.cfg.LatenessBound.Minutes() {
		s.violation("a refresh came %.0f min after it was due (bound %s)", r.Lateness.Max, s.cfg.LatenessBound)
	}
	if r.AccessExpiredBeforeRefresh > 0 {
		s.violation("%d refreshes came after the access token had expired", r.AccessExpiredBeforeRefresh)
	}
	if r.ThrottlesSurfaced > 0 {
		s.violation("%d throttles surfaced as failed refreshes or consents", r.ThrottlesSurfaced)
	}
	lines, leaks := s.guard.stats()
	r.LogLines, r.Leaks = lines, leaks
	r.LogMessages = s.guard.messages()
	if leaks > 0 {
		s.violation("%d secret values in logs or errors", leaks)
	}

	s.fillUsage()
	r.total()
}

// fillUsage copies the counters into the report.
func (s *sim) fillUsage() {
	r := s.rep
	u := &r.Usage
	q := &s.sm.quota
	s.sm.mu.Lock()
	q.closeWindow()
	r.PeakWritesPerSecond = q.peakWrites
	r.PeakWritesAt = q.peakAt
	r.PeakWritesByCaller, r.RolePeakWrites, r.RolePeakAttemptedWrites = map[string]int{}, map[string]int{}, map[string]int{}
	for ri, role := range roles {
		if q.peakByRole[ri] > 0 {
			r.PeakWritesByCaller[role] = q.peakByRole[ri]
		}
		if q.rolePeak[ri] > 0 {
			r.RolePeakWrites[role] = q.rolePeak[ri]
		}
		if q.rolePeakAttempt[ri] > 0 {
			r.RolePeakAttemptedWrites[role] = q.rolePeakAttempt[ri]
		}
	}
	r.PeakAttemptedWritesPerSecond = q.peakAttempted
	r.PeakReadsPerSecond = q.peakReads
	r.SecondsOverQuota = q.writeSecondsOver
	r.WriteSecondsHistogram = map[string]int64{}
	for n, c := range q.hist {
		if c > 0 {
			r.WriteSecondsHistogram[fmt.Sprintf("%02d", n)] = c
		}
	}
	r.SMFaults = map[string]int64{}
	for k, v := range s.sm.kinds {
		r.SMFaults[k] = v
	}
	s.sm.mu.Unlock()

	r.ThrottlesSeen = 0
	u.SMCalls = map[string]map[string]int64{}
	for ri, role := range roles {
		m := map[string]int64{}
		for op := range numOps {
			if n := s.stats.accepted[ri][op].Load(); n > 0 {
				m[op.String()] = n
			}
			if a := s.stats.attempts[ri][op].Load(); a > 0 {
				m[op.String()+"Attempts"] = a
			}
		}
		if t := s.stats.throttles[ri].Load(); t > 0 {
			m["QuotaThrottles"] = t
		}
		u.SMCalls[role] = m
		r.ThrottlesSeen += s.stats.throttles[ri].Load()
	}
	r.QuotaThrottles = r.ThrottlesSeen
	r.InjectedThrottles = s.stats.injectedThrottles.Load()
	r.ThrottlesSeen += r.InjectedThrottles
	r.PacerRefusals = s.stats.paced.Load()
	r.SDKRetries = s.stats.sdkRetries.Load()
	r.SDKRetryQuotaExhausted = s.stats.retryQuota.Load()

	u.RefresherInvocations = s.stats.refresher.invocations.Load()
	u.RefresherBilledMs = s.stats.refresher.billedMs.Load()
	u.SweeperInvocations = s.stats.sweeper.invocations.Load()
	u.SweeperBilledMs = s.stats.sweeper.billedMs.Load()
	u.CallbackInvocations = s.stats.callback.invocations.Load()
	u.CallbackBilledMs = s.stats.callback.billedMs.Load()
	u.Records = s.stats.records.Load()
	u.SQSSendBatches = s.q.sendBatches.Load()
	u.SQSReceives = s.q.receives.Load()
	u.SQSDeleteBatches = s.q.deleteBatches.Load()
	u.TokenRequests = s.stats.tokenRequests.Load()
	r.RefreshRunMs, r.SkipRunMs = s.stats.refreshMs.Load(), s.stats.skipMs.Load()
	u.StoreOps = map[string]map[string]int64{}
	for ri, role := range roles {
		m := map[string]int64{}
		for op := range numStoreOps {
			if n := s.stats.storeOps[ri][op].Load(); n > 0 {
				m[storeOpNames[op]] = n
			}
		}
		u.StoreOps[role] = m
	}
	u.Environments = map[string]int64{}
	for ri, role := range roles {
		u.Environments[role] = s.stats.envs[ri].Load()
	}
	r.Kills = s.stats.kills.Load()
	r.KilledInvocations = s.stats.killedInvocations.Load()
	r.BatchItemFailures = s.stats.batchItemFailures.Load()
	r.Duplicates = s.q.duplicates.Load()
	r.Consents = s.stats.consents.Load()
	r.ConsentFailures = s.stats.consentFailures.Load()
	r.DLQ = s.q.dlq

	var durations, drains []time.Duration
	for _, sw := range s.sweeps {
		if sw.accounts == 0 {
			continue
		}
		if last, ok := s.q.sweepLast[sw.hour]; ok {
			durations = append(durations, last.Sub(sw.start))
		}
		if done, ok := s.q.sweepDone[sw.hour]; ok {
			drains = append(drains, done.Sub(sw.start))
		}
	}
	r.SweepDuration = summarize(durations)
	r.SweepDrain = summarize(drains)
	st := s.vbc.Stats()
	r.SandboxFaults = map[string]int{}
	for k, n := range st.Faults {
		r.SandboxFaults[k.String()] = n
	}
}
