package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

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

	// Per simulated hour: extra refresher invocations (2 or 3 at once), an operator's
	// forced refresh, a sandbox-side revocation, a voluntary admin re-consent.
	Duplicate, Triplicate, ForcedRefresh, Revocation, VoluntaryConsent float64
	// Per consent: the browser calls the callback twice with the same link; the admin uses
	// the password grant instead of the browser; the callback arrives mid-refresh.
	ReplayCallback, Login, ConsentMidRefresh float64
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
		},
		StoreFault:           0.22,
		StoreAfter:           0.4,
		ReadFault:            0.08,
		DeathAtTokenResponse: 0.01,
		DeathAfterCommit:     0.02,
		Duplicate:            0.08,
		Triplicate:           0.03,
		ForcedRefresh:        0.01,
		Revocation:           1.0 / (24 * 90),
		VoluntaryConsent:     1.0 / (24 * 30),
		ReplayCallback:       0.15,
		Login:                0.2,
		ConsentMidRefresh:    0.5,
		AdminDelayMin:        30 * time.Minute,
		AdminDelayMax:        6 * time.Hour,
		ReadEveryMin:         3 * time.Minute,
		ReadEveryMax:         7 * time.Minute,
	}
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
	outcome   vbctoken.Outcome        // a refresher's result
	err       error
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
