package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Token endpoint fault kinds, as counted in the report. All but DelayTimeout and DelaySlow
// are produced by the VBC sandbox itself (vbcsandbox.FaultKind of the same name).
const (
	TokenStatus500          = "Status500"
	TokenStatus502          = "Status502"
	TokenStatus503          = "Status503"
	TokenStatus429          = "Status429"
	TokenDelayTimeout       = "DelayTimeout" // no answer before the client's timeout: not processed
	TokenDelaySlow          = "DelaySlow"    // answered after 1–12 s of virtual time
	TokenTruncated          = "Truncated"
	TokenMalformedJSON      = "MalformedJSON"
	TokenHTML200            = "HTML200"
	TokenMissingAccessToken = "MissingAccessToken"
	TokenProcessedButLost   = "ProcessedButLost"
	// TokenTimeoutProcessed: VBC processed the request (a refresh token IS rotated, a code
	// IS spent) late in the client's 15 s, and no answer arrived before the timeout. The
	// sandbox counts it as a ProcessedButLost fault.
	TokenTimeoutProcessed = "TimeoutAfterProcessing"
)

// Store fault kinds: what Secrets Manager does under load. Each is an error matching
// vbctoken.ErrTransient once it reaches the keeper.
const (
	StoreThrottling = "Throttling"
	Store5xx        = "5xx"
	StoreTimeout    = "Timeout"
)

// Process deaths, counted under Report.Deaths.
const (
	DeathAtTokenResponse = "at_token_response" // killed as VBC's answer arrived: the pair is lost
	DeathAfterCommit     = "after_pair_commit" // killed after the pair landed, before the access write
	DeathLambdaTimeout   = "lambda_timeout"    // the process's virtual deadline passed
	// DeathMidCommit: killed after the pair write reached the store and before it became
	// current (between Secrets Manager's PutSecretValue and UpdateSecretVersionStage, the
	// file store's pending file and its rename): the write is stranded as pending.
	DeathMidCommit = "mid_commit"
)

// Plan sets how often things go wrong. The zero value injects nothing; DefaultPlan is the
// soak's.
type Plan struct {
	// TokenFault is the probability that a token request is faulted; TokenWeights picks the
	// kind.
	TokenFault   float64
	TokenWeights map[string]float64
	// StoreFault is the probability that a keeper's store call fails, StoreAfter the
	// share of failing writes whose effect landed before the error (answer lost).
	StoreFault float64
	StoreAfter float64
	// ReadFault is the probability that an app's read of the access secret fails.
	ReadFault float64
	// DeathAtTokenResponse kills a process when a genuine token response arrives;
	// DeathAfterCommit when its pair commit has landed, before the access secret is written.
	DeathAtTokenResponse float64
	DeathAfterCommit     float64
	// DeathMidCommit kills a process in the middle of a pair commit: the write reached the
	// store but never became current (a stranded pending write).
	DeathMidCommit float64
	// Interrupt cancels the context of an operator's CLI process (SIGINT, Ctrl-C) right
	// when a genuine token response arrives: the keeper must still store the pair.
	Interrupt float64
	// ClockSkew bounds how far the clock of an operator's machine (CLI runs, a local
	// serve) is off, either way. Lambda clocks are exact. WildClock is the share of those
	// machines whose clock is off by 20 s to 2 min instead, beyond what the refresh lease
	// tolerates (an experiment: DefaultPlan has none).
	ClockSkew time.Duration
	WildClock float64

	// StoreLatency bounds how long each store call of a keeper process takes (the
	// round trip to Secrets Manager); TokenLatency each token request, half on the way to
	// VBC, half back. App reads take no time.
	StoreLatencyMin, StoreLatencyMax time.Duration
	TokenLatencyMin, TokenLatencyMax time.Duration

	// Per simulated hour: extra refresher invocations (2 or 3 at once), an operator's
	// forced refresh (`vbctoken refresh --force`, its own keeper), a sandbox-side
	// revocation, a voluntary admin re-consent, a local `vbctoken serve` starting on the
	// same store (a second keeper with its own hourly schedule).
	Duplicate, Triplicate, ForcedRefresh, Revocation, VoluntaryConsent, Serve float64
	// ServeFor bounds how long a local serve runs; ServeNearTick is the share of serves
	// whose schedule falls within seconds of the Lambda's.
	ServeForMin, ServeForMax time.Duration
	ServeNearTick            float64
	// Per consent: the browser calls the callback twice with the same link; the admin uses
	// the password grant instead of the browser (and types a wrong password); the callback
	// arrives mid-refresh; after an error page the admin reloads the callback (the same
	// code again).
	ReplayCallback, Login, WrongPassword, ConsentMidRefresh, ReloadAfterError float64
	// SchedulerOutage is the chance per hour that the scheduled refresher stops running
	// (a disabled schedule, a broken deployment) for OutageMin to OutageMax; the access
	// token expires meanwhile and, a day into it, the admin consents to get apps going:
	// with WSO2 that renews the access token on the chain's own refresh token.
	SchedulerOutage      float64
	OutageMin, OutageMax time.Duration
	// RaceWeights weighs how VBC settles a refresh race (ModeWSO2), by
	// vbcsandbox.RaceOutcome name: invalid_grant, server_error, both_succeed.
	RaceWeights map[string]float64
	// AdminDelay bounds how long the admin takes to react to a broken chain.
	AdminDelayMin, AdminDelayMax time.Duration
	// ReadEvery bounds the interval between app reads.
	ReadEveryMin, ReadEveryMax time.Duration
}

// DefaultPlan is the soak's fault plan: every call has a real chance to fail, and the
// chain-breaking events (ProcessedButLost, process death, revocation) happen a few times a
// year.
func DefaultPlan() Plan {
	return Plan{
		TokenFault: 0.35,
		TokenWeights: map[string]float64{
			TokenStatus500: 3, TokenStatus502: 3, TokenStatus503: 3, TokenStatus429: 3,
			TokenDelayTimeout: 2, TokenDelaySlow: 2, TokenTruncated: 2, TokenMalformedJSON: 1,
			TokenHTML200: 2, TokenMissingAccessToken: 1, TokenProcessedButLost: 0.4,
			TokenTimeoutProcessed: 0.3,
		},
		StoreFault:           0.22,
		StoreAfter:           0.4,
		ReadFault:            0.08,
		StoreLatencyMin:      20 * time.Millisecond,
		StoreLatencyMax:      150 * time.Millisecond,
		TokenLatencyMin:      150 * time.Millisecond,
		TokenLatencyMax:      900 * time.Millisecond,
		DeathAtTokenResponse: 0.01,
		DeathAfterCommit:     0.02,
		DeathMidCommit:       0.01,
		Interrupt:            0.3,
		ClockSkew:            3 * time.Second,
		Duplicate:            0.08,
		Triplicate:           0.03,
		ForcedRefresh:        0.02,
		Serve:                1.0 / (24 * 14),
		ServeForMin:          2 * time.Hour,
		ServeForMax:          5 * 24 * time.Hour,
		ServeNearTick:        0.5,
		Revocation:           1.0 / (24 * 90),
		VoluntaryConsent:     1.0 / (24 * 30),
		ReplayCallback:       0.15,
		Login:                0.2,
		WrongPassword:        0.15,
		ConsentMidRefresh:    0.5,
		SchedulerOutage:      1.0 / (24 * 60),
		OutageMin:            26 * time.Hour,
		OutageMax:            50 * time.Hour,
		ReloadAfterError:     0.5,
		AdminDelayMin:        30 * time.Minute,
		AdminDelayMax:        6 * time.Hour,
		ReadEveryMin:         3 * time.Minute,
		ReadEveryMax:         7 * time.Minute,
	}
}

// PlanFor is DefaultPlan for a sandbox mode. Against ModeWSO2 answers lost after VBC
// processed the request are five times as frequent: each makes the client retry within
// WSO2's cluster lag, which is what races a refresh (RaceWeights settles it), so the
// double-200 race happens dozens of times a year rather than a handful.
func PlanFor(mode vbcsandbox.Mode) Plan {
	p := DefaultPlan()
	if mode != vbcsandbox.ModeWSO2 {
		return p
	}
	p.TokenWeights[TokenProcessedButLost] = 2
	p.TokenWeights[TokenTimeoutProcessed] = 1.5
	p.RaceWeights = map[string]float64{
		vbcsandbox.RaceInvalidGrant.String(): 1,
		vbcsandbox.RaceServerError.String():  1,
		vbcsandbox.RaceBothSucceed.String():  2,
	}
	return p
}

// tokenKinds is TokenWeights' keys in a fixed order, so draws are reproducible.
func (p Plan) tokenKinds() ([]string, float64) {
	kinds := make([]string, 0, len(p.TokenWeights))
	total := 0.0
	for k, w := range p.TokenWeights {
		if w > 0 {
			kinds = append(kinds, k)
			total += w
		}
	}
	sort.Strings(kinds)
	return kinds, total
}

// injectedError is a store fault injected by the soak. It matches vbctoken.ErrTransient,
// as the real stores' throttling, 5xx and timeout errors do.
type injectedError struct{ op, kind string }

func (e *injectedError) Error() string {
	return fmt.Sprintf("soak: injected %s on %s", e.kind, e.op)
}

func (e *injectedError) Is(target error) bool { return target == vbctoken.ErrTransient }

// errKilled is what a dead process's calls return.
var errKilled = fmt.Errorf("soak: process killed: %w", context.Canceled)

// process is one simulated process: a refresher or callback Lambda invocation, an admin
// CLI run or the app. It owns a seeded random source (so its faults do not depend on how
// goroutines interleave), its virtual deadline and its fate.
type process struct {
	sim  *sim
	id   int
	role string

	mu        sync.Mutex
	rng       *rand.Rand
	ctx       *opCtx
	death     string
	delivered []string                // refresh tokens of genuine token responses it received
	deadlines map[time.Time]time.Time // real → virtual deadline of token requests
	writes    int                     // writes that landed (pair commits and access puts)
	attempt   int                     // Lambda attempt of a scheduled refresher: 1, 2 or 3; 0 otherwise
	malformed bool                    // a 200 token response it got was not a usable token response
	skew      time.Duration           // its clock's error (operators' machines)
	// interruptible: an operator's CLI run, whose context Ctrl-C cancels; interrupted: it
	// was, right when a token response arrived.
	interruptible, interrupted bool
	outcome                    vbctoken.Outcome // a refresher's result
	err                        error
	// declaredAt is when a Refresh run returned OutcomeReconsent.
	declaredAt time.Time
}

func (p *process) float() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64()
}

func (p *process) chance(prob float64) bool { return prob > 0 && p.float() < prob }

// between returns a uniformly random duration in [lo, hi).
func (p *process) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(p.float()*float64(hi-lo))
}

// ended records the result of a keeper's Refresh.
func (p *process) ended(o vbctoken.Outcome, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outcome, p.err = o, err
	if o == vbctoken.OutcomeReconsent {
		p.declaredAt = p.sim.clock.Now()
	}
}

// now is the process's clock: virtual time plus its skew.
func (p *process) now() time.Time { return p.sim.clock.Now().Add(p.skew) }

// interrupt cancels the process's context as SIGINT cancels the CLI's, without killing it:
// the process goes on, and what it does with a cancelled context is up to the keeper.
func (p *process) interrupt() {
	p.mu.Lock()
	first := !p.interrupted
	p.interrupted = true
	p.mu.Unlock()
	if first {
		p.sim.count(&p.sim.rep.Interrupts, p.role)
		if p.ctx != nil {
			p.ctx.cancel()
		}
	}
}

// storeLatency spends the virtual time of one store call. App reads take none: the app
// reads from the driver, outside the clock's actors.
func (p *process) storeLatency(ctx context.Context) {
	if p.role == roleApp {
		return
	}
	if d := p.between(p.sim.plan.StoreLatencyMin, p.sim.plan.StoreLatencyMax); d > 0 {
		_ = p.sim.clock.Sleep(ctx, d)
	}
}

// midCommitDeath draws whether the process dies in the middle of a pair commit.
func (p *process) midCommitDeath() bool {
	return p.role != roleApp && p.chance(p.sim.plan.DeathMidCommit)
}

// strandedBy records that the process died in the middle of committing pair: the write
// reached the store as pending and never became current.
func (p *process) strandedBy(pair *vbctoken.Pair) {
	s := p.sim
	held := heldTokens(pair)
	fresh := !pair.RefreshToken.IsZero() && !s.hist.has(pair.RefreshToken.Reveal())
	s.mu.Lock()
	for _, rt := range held {
		s.stranded[rt] = true
	}
	s.mu.Unlock()
	kind := "bookkeeping" // a lease, a consent nonce: nothing new in it
	if fresh {
		kind = "new_pair"
		s.mu.Lock()
		s.strandedNew = append(s.strandedNew, pair.RefreshToken.Reveal())
		s.mu.Unlock()
	}
	s.count(&s.rep.Stranded, kind)
	p.kill(DeathMidCommit, true)
}

// start gives the process its virtual deadline.
func (p *process) start(timeout time.Duration) context.Context {
	p.ctx = newOpContext(p.sim.clock, timeout, func() { p.kill(DeathLambdaTimeout, false) })
	return p.ctx
}

func (p *process) finish() {
	if p.ctx != nil {
		p.ctx.release()
	}
}

// kill marks the process dead; cancel also cancels its context (the clock cancels it
// itself on a timeout).
func (p *process) kill(cause string, cancel bool) {
	p.mu.Lock()
	first := p.death == ""
	if first {
		p.death = cause
	}
	p.mu.Unlock()
	if first {
		p.sim.count(&p.sim.rep.Deaths, cause)
	}
	if cancel && p.ctx != nil {
		p.ctx.cancel()
	}
}

// alive returns errKilled once the process is dead: a dead process makes no more calls.
func (p *process) alive() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.death != "" {
		return errKilled
	}
	return nil
}

func (p *process) dead() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.death
}

func (p *process) deliver(refreshToken string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delivered = append(p.delivered, refreshToken)
}

func (p *process) wrote() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes++
}

// storeFault draws a fault for one store call: its kind ("" for none) and whether it hits
// after the call took effect (writes only).
func (p *process) storeFault(write bool) (kind string, after bool) {
	plan := p.sim.plan
	prob := plan.StoreFault
	if p.role == roleApp {
		prob = plan.ReadFault
	}
	if !p.chance(prob) {
		return "", false
	}
	switch r := p.float(); {
	case r < 0.5:
		kind = StoreThrottling
	case r < 0.8:
		kind = Store5xx
	default:
		kind = StoreTimeout
	}
	return kind, write && p.chance(plan.StoreAfter)
}

// injectStore counts a store fault and returns its error.
func (p *process) injectStore(op, kind string, after bool) error {
	when := "before"
	if after {
		when = "after"
	}
	p.sim.count(&p.sim.rep.StoreFaults, kind+"/"+when)
	p.sim.count(&p.sim.rep.StoreFaultsByCall, op)
	return &injectedError{op: op, kind: kind}
}

// maybeDieAfterCommit is called when the process's pair commit has landed.
func (p *process) maybeDieAfterCommit() error {
	if p.role != roleApp && p.chance(p.sim.plan.DeathAfterCommit) {
		p.kill(DeathAfterCommit, true)
		return errKilled
	}
	return nil
}
