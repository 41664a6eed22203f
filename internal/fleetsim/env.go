package fleetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// Roles of simulated processes; they label quota usage and API calls.
const (
	roleRefresher = "refresher" // an SQS-triggered refresher invocation's environment
	roleSweeper   = "sweeper"   // the hourly sweep (the refresher invoked with no account)
	roleCallback  = "callback"  // the callback function completing a consent
	roleAdmin     = "admin"     // an admin's CLI minting consent links
)

var roles = []string{roleRefresher, roleSweeper, roleCallback, roleAdmin}

func roleIndex(r string) int {
	for i, x := range roles {
		if x == r {
			return i
		}
	}
	return 0
}

// errKilled is what a dead process's calls return: its Lambda execution environment is
// gone, nothing it does reaches AWS or VBC any more.
var errKilled = fmt.Errorf("fleetsim: process killed: %w", context.Canceled)

// env is one simulated process: a Lambda execution environment (refresher, sweeper,
// callback) or an admin's CLI. It owns its AWS client (envAPI), its HTTP client to VBC and
// its keepers (vbctoken.Accounts), and when it dies everything in flight dies with it.
type env struct {
	sim      *sim
	id       int
	role     string
	faults   bool // the fault plan applies to its calls
	dead     atomic.Bool
	ctx      context.Context // cancelled when the process dies
	cancel   context.CancelFunc
	born     time.Time
	lastUsed time.Time

	mu  sync.Mutex
	rng *mrand.Rand

	api       *envAPI
	http      *http.Client
	fleet     *fleet
	accounts  *vbctoken.Accounts
	deadlines sync.Map // real deadline of a token request context → its virtual deadline
}

func (s *sim) newEnv(role string, p *pacer, faults bool) *env {
	id := int(s.envSeq.Add(1))
	e := &env{sim: s, id: id, role: role, faults: faults, born: s.clock.Now(),
		rng: mrand.New(mrand.NewPCG(s.cfg.Seed, uint64(id)))}
	e.lastUsed = e.born
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.api = &envAPI{e: e, retryer: retry.NewStandard(), pacer: p}
	e.http = &http.Client{Transport: &vbcTransport{e: e}}
	ri := roleIndex(role)
	e.fleet = &fleet{api: e.api, prefix: accountPrefix, credentialsID: credentialsSecretID, kmsKeyID: kmsKeyID,
		count: func(op int) { s.stats.storeOps[ri][op].Add(1) }}
	acc, err := vbctoken.NewAccounts(e.fleet, vbctoken.KeeperConfig{
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{AuthorizeURL: vbcBaseURL + vbcsandbox.AuthorizePath, TokenURL: vbcBaseURL + vbcsandbox.TokenPath},
			RedirectURL: redirectURL,
			Scope:       scope,
			HTTPClient:  e.http,
			Retry:       e.retry(),
		},
		StoreRetry: e.retry(),
		Holder:     role,
		Now:        s.clock.Now,
		Logger:     s.logger.With("process", id, "role", role),
	})
	if err != nil {
		panic(fmt.Sprintf("fleetsim: new accounts: %v", err)) // the configuration is fixed
	}
	e.accounts = acc
	s.stats.envs[roleIndex(role)].Add(1)
	return e
}

// retry is the process's retry policy: virtual sleeps, virtual elapsed time, its own jitter.
func (e *env) retry() vbctoken.RetryPolicy {
	return vbctoken.RetryPolicy{Sleep: e.sim.clock.Sleep, Now: e.sim.clock.Now, Rand: e.float}
}

func (e *env) float() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rng.Float64()
}

func (e *env) chance(p float64) bool { return p > 0 && e.float() < p }

// expDur draws base + an exponential with mean extra.
func (e *env) expDur(base, extra time.Duration) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return base + time.Duration(e.rng.ExpFloat64()*float64(extra))
}

// kill ends the process at once: nothing it does afterwards takes effect, and a pair
// VBC delivered to it that it has not stored yet is gone with it.
func (e *env) kill() {
	if e.dead.CompareAndSwap(false, true) {
		e.cancel()
		e.sim.mu.Lock()
		e.sim.deadEnvs[e.id] = true
		e.sim.mu.Unlock()
	}
}

// pacer spaces one process's Secrets Manager writes (PutSecretValue,
// UpdateSecretVersionStage, CreateSecret, SDK retries included) at least interval apart,
// with no burst. With at most N refresher environments at once (the event source
// mapping's maximum concurrency) and interval N/budget, the fleet's refreshers can never
// write more than budget per second: that is the quota fit by construction (docs/fleet.md).
//
// Production would use golang.org/x/time/rate (a Limiter with burst 1); the simulation
// needs the same rule on its virtual clock, hence these few lines.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

// errNoWriteSlot is the pacer's answer when the next write slot lies past the caller's
// deadline. It matches what the SDK's retry quota returns, which smstore and the keeper
// treat as transient.
var errNoWriteSlot = ratelimit.QuotaExceededError{}

func (p *pacer) wait(ctx context.Context, c *clock) error {
	now := c.Now()
	p.mu.Lock()
	t := p.next
	if t.Before(now) {
		t = now
	}
	if dl, ok := c.virtualDeadline(ctx); ok && !t.Before(dl) {
		p.mu.Unlock()
		return errNoWriteSlot
	}
	p.next = t.Add(p.interval)
	p.mu.Unlock()
	if d := t.Sub(now); d > 0 {
		c.sleep(d)
	}
	return nil
}

// envAPI is one process's Secrets Manager client: smstore.API (plus CreateSecret for the
// fleet's first writes) over the model, with the SDK's standard retryer (its
// classification, backoff and retry-token bucket from aws-sdk-go-v2/aws/retry, run on the
// virtual clock), request latency, the fault plan and, for refreshers, the write pacer.
type envAPI struct {
	e       *env
	retryer *retry.Standard
	pacer   *pacer
}

var _ smstore.API = (*envAPI)(nil)

// GetSecretValue implements smstore.API.
func (a *envAPI) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	var out *secretsmanager.GetSecretValueOutput
	err := a.call(ctx, opGet, func() (err error) { out, err = a.e.sim.sm.get(in); return err })
	return out, err
}

// PutSecretValue implements smstore.API.
func (a *envAPI) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	var out *secretsmanager.PutSecretValueOutput
	err := a.call(ctx, opPut, func() (err error) { out, err = a.e.sim.sm.put(in); return err })
	return out, err
}

// UpdateSecretVersionStage implements smstore.API.
func (a *envAPI) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	var out *secretsmanager.UpdateSecretVersionStageOutput
	err := a.call(ctx, opStage, func() (err error) { out, err = a.e.sim.sm.stage(in); return err })
	return out, err
}

// CreateSecret creates an account's secret (the fleet's first write).
func (a *envAPI) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput) (*secretsmanager.CreateSecretOutput, error) {
	var out *secretsmanager.CreateSecretOutput
	err := a.call(ctx, opCreate, func() (err error) { out, err = a.e.sim.sm.create(in); return err })
	return out, err
}

// call runs one operation the way the SDK's standard retryer does: up to MaxAttempts
// attempts, retrying what it classifies as retryable after its jittered backoff, while
// its retry-token bucket allows.
func (a *envAPI) call(ctx context.Context, op smOp, apply func() error) error {
	s := a.e.sim
	r := a.retryer
	var release func(error) error
	for attempt := 1; ; attempt++ {
		err := a.attempt(ctx, op, apply)
		if err == nil {
			// As the SDK does: a first attempt's success adds to the retry-token bucket,
			// a retry's success refunds its cost.
			if attempt == 1 {
				if tok, terr := r.GetAttemptToken(ctx); terr == nil {
					_ = tok(nil)
				}
			} else if release != nil {
				_ = release(nil)
			}
			return nil
		}
		if errors.Is(err, errKilled) || !r.IsErrorRetryable(err) {
			return opError(op, err)
		}
		if attempt >= r.MaxAttempts() {
			return opError(op, &retry.MaxAttemptsError{Attempt: attempt, Err: err})
		}
		var terr error
		if release, terr = r.GetRetryToken(ctx, err); terr != nil {
			s.stats.retryQuota.Add(1)
			return opError(op, fmt.Errorf("failed to get rate limit token, retry quota exceeded: %w (last error: %w)", terr, err))
		}
		d, derr := r.RetryDelay(attempt, err)
		if derr != nil {
			return opError(op, err)
		}
		s.stats.sdkRetries.Add(1)
		if serr := s.clock.Sleep(ctx, d); serr != nil {
			return opError(op, fmt.Errorf("%w (stopped retrying: %w)", err, serr))
		}
	}
}

func opError(op smOp, err error) error {
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: op.String(), Err: err}
}

// attempt is one request: the pacer (writes), the request's latency, then either a fault,
// a throttle (the account's quota for this second is used up) or the call's effect. A
// write's effect lands half-way; a process that dies after that never sees the answer.
func (a *envAPI) attempt(ctx context.Context, op smOp, apply func() error) error {
	e, s := a.e, a.e.sim
	if e.dead.Load() {
		return errKilled
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ri := roleIndex(e.role)
	s.stats.attempts[ri][op].Add(1)
	if op.write() && a.pacer != nil {
		if err := a.pacer.wait(ctx, s.clock); err != nil {
			s.stats.paced.Add(1)
			return err
		}
	}
	kind, after := e.storeFault(op)
	lat := s.smLatency(e, op)
	before := lat
	if op.write() {
		before = lat / 2
	}
	s.clock.sleep(before)
	if e.dead.Load() {
		return errKilled
	}
	if kind != "" && !after {
		return s.injectStore(op, kind, false)
	}
	if !s.sm.admit(op, s.clock.Now(), ri) {
		s.stats.throttles[ri].Add(1)
		return throttleError()
	}
	s.stats.accepted[ri][op].Add(1)
	err := apply()
	if op.write() {
		s.clock.sleep(lat - before)
		if e.dead.Load() {
			return errKilled // the write landed; its answer died with the process
		}
	}
	if err != nil {
		return err
	}
	if kind != "" {
		return s.injectStore(op, kind, true)
	}
	return nil
}

// throttleError is a ThrottlingException as the SDK sees it (HTTP 400).
func throttleError() error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
		Err:      &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"},
	}
}

// Store fault kinds (Plan.StoreFault picks one).
const (
	storeThrottle = "ThrottlingException" // throttled below the quota: AWS throttles as it likes
	store5xx      = "InternalServiceError"
	storeTimeout  = "Timeout"
)

// storeFault draws the fault of one attempt: its kind ("" for none) and whether it hits
// after the effect (writes only: the answer is lost).
func (e *env) storeFault(op smOp) (string, bool) {
	plan := &e.sim.cfg.Plan
	if !e.faults || !e.chance(plan.StoreFault) {
		return "", false
	}
	var kind string
	switch r := e.float(); {
	case r < 0.5:
		kind = storeThrottle
	case r < 0.8:
		kind = store5xx
	default:
		kind = storeTimeout
	}
	return kind, op.write() && e.chance(plan.StoreAfter)
}

// injectStore counts an injected fault and returns its error as the SDK would.
func (s *sim) injectStore(op smOp, kind string, after bool) error {
	_ = op
	when := "before"
	if after {
		when = "after"
	}
	s.sm.count(kind + "/" + when)
	switch kind {
	case storeThrottle:
		s.stats.injectedThrottles.Add(1)
		return throttleError()
	case store5xx:
		return &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusInternalServerError}},
			Err:      &smithy.GenericAPIError{Code: "InternalServiceError", Message: "internal error (fleetsim)", Fault: smithy.FaultServer},
		}
	default:
		return &smithyhttp.RequestSendError{Err: fmt.Errorf("fleetsim: read tcp: %w", os.ErrDeadlineExceeded)}
	}
}

// smLatency draws one Secrets Manager call's latency (docs/fleet.md "Model").
func (s *sim) smLatency(e *env, op smOp) time.Duration {
	switch op {
	case opGet:
		return e.expDur(8*time.Millisecond, 6*time.Millisecond)
	case opPut:
		return e.expDur(25*time.Millisecond, 15*time.Millisecond)
	case opStage:
		return e.expDur(20*time.Millisecond, 10*time.Millisecond)
	default:
		return e.expDur(60*time.Millisecond, 40*time.Millisecond)
	}
}

// The token endpoint as the keepers see it: a loopback URL (allowed for local runs) that
// vbcTransport answers in memory.
const (
	vbcBaseURL  = "http://127.0.0.1:9"
	redirectURL = "https://keeper.example/callback"
	// scope is not openid: an id_token costs an RSA signature per token response (3–7 ms
	// here, 340,000 of them in a month of 10,000 accounts). The cost model adds a real
	// id_token's size to the stored pair instead (cost.go).
	scope = "default"
	// httpTimeout is the keeper's production per-request timeout (pkg/vbctoken's
	// default HTTP client).
	httpTimeout = 15 * time.Second
	faultHeader = "X-Fleetsim-Fault"
)

// vbcTransport is one process's connection to the VBC sandbox (ModeWSO2), in memory: it
// spends the request's latency on the virtual clock, draws the token endpoint faults
// (5xx, 429, no answer before the timeout, a body cut short, and the answer lost after
// VBC processed the grant), and records every refresh whose new pair never reached a
// live process: those chains are lost to the physics of WSO2 (docs/vbc.md), not to the
// keeper.
type vbcTransport struct{ e *env }

// Token fault kinds (Plan.Token* rates).
const (
	tokenTimeout   = "Timeout"          // no answer before the client's timeout: not processed
	tokenLost      = "ProcessedButLost" // processed (rotated), answer lost
	tokenTruncated = "Truncated"
)

// RoundTrip implements http.RoundTripper.
func (t *vbcTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	e, s := t.e, t.e.sim
	var form url.Values
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		form, _ = url.ParseQuery(string(body))
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if e.dead.Load() {
		return nil, errKilled
	}
	grant := form.Get("grant_type")
	presented := form.Get("refresh_token")
	now := s.clock.Now()
	limit := now.Add(httpTimeout)
	if d, ok := e.requestDeadline(req.Context()); ok && d.Before(limit) {
		limit = d
	}
	if !now.Before(limit) {
		return nil, fmt.Errorf("fleetsim: token request after its deadline: %w", context.DeadlineExceeded)
	}
	kind := e.tokenFault(grant)
	s.stats.tokenRequests.Add(1)
	if kind == tokenTimeout {
		s.countToken(kind)
		s.clock.sleep(limit.Sub(now))
		return nil, fmt.Errorf("fleetsim: no answer from the token endpoint within %s: %w", limit.Sub(now), os.ErrDeadlineExceeded)
	}
	lat := e.expDur(120*time.Millisecond, 80*time.Millisecond)
	if lat >= limit.Sub(now) {
		lat = limit.Sub(now) / 2
	}
	s.clock.sleep(lat / 2)
	if e.dead.Load() {
		return nil, errKilled // the request never left the process
	}
	if kind != "" {
		s.countToken(kind)
		req.Header.Set(faultHeader, kind)
	}
	rec := httptest.NewRecorder()
	s.vbc.ServeHTTP(rec, req)
	resp := rec.Result()
	issued := resp.StatusCode == http.StatusOK && kind == "" && grant == "refresh_token"
	if kind == tokenLost && grant == "refresh_token" {
		s.markLost(presented, "lost_answer")
	}
	s.clock.sleep(lat - lat/2)
	if e.dead.Load() {
		if issued {
			s.markLost(presented, "process_death")
		}
		return nil, errKilled
	}
	if issued {
		s.delivered(presented, e)
	}
	if cl, err := strconv.Atoi(resp.Header.Get("Content-Length")); err == nil && cl > rec.Body.Len() {
		// The body was cut short: net/http reports an unexpected EOF after what arrived.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(rec.Body.Bytes()), errReader{io.ErrUnexpectedEOF}))
	}
	return resp, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// requestDeadline returns the virtual deadline of a token request. The keeper derives the
// request's context with context.WithDeadline, whose real deadline is fixed when it is
// made: its virtual value is remembered from the first request that carries it (made
// right after, with no virtual time in between), as internal/soak does.
func (e *env) requestDeadline(ctx context.Context) (time.Time, bool) {
	real, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, false
	}
	if v, ok := ctx.(*vctx); ok {
		return v.deadline, true
	}
	if v, ok := e.deadlines.Load(real); ok {
		return v.(time.Time), true
	}
	v := e.sim.clock.Now().Add(time.Until(real))
	e.deadlines.Store(real, v)
	return v, true
}

// tokenFault draws the fault of one token request ("" for none). Consents (code
// exchanges) are not faulted: an admin repeats a failed consent by hand.
func (e *env) tokenFault(grant string) string {
	p := &e.sim.cfg.Plan
	if !e.faults || grant != "refresh_token" {
		return ""
	}
	r := e.float()
	for _, f := range []struct {
		kind string
		p    float64
	}{
		{"Status500", p.Token5xx / 3}, {"Status502", p.Token5xx / 3}, {"Status503", p.Token5xx / 3},
		{"Status429", p.Token429}, {tokenTimeout, p.TokenTimeout}, {tokenTruncated, p.TokenTruncated},
		{tokenLost, p.TokenLost},
	} {
		if r < f.p {
			return f.kind
		}
		r -= f.p
	}
	return ""
}

// sandboxFault maps the fault header to the sandbox's fault.
func sandboxFault(r *http.Request, _ string) vbcsandbox.Fault {
	name := r.Header.Get(faultHeader)
	if name == "" {
		return vbcsandbox.Fault{}
	}
	for k := vbcsandbox.NoFault; k <= vbcsandbox.ProcessedButLost; k++ {
		if k.String() == name {
			return vbcsandbox.Fault{Kind: k}
		}
	}
	return vbcsandbox.Fault{}
}

// messageBody is the SQS message and EventBridge input the refresher takes
// (docs/design.md "Accounts mode").
type messageBody struct {
	Account string `json:"account"`
	Force   bool   `json:"force"`
}

func encodeBody(account string) string {
	b, _ := json.Marshal(messageBody{Account: account})
	return string(b)
}
