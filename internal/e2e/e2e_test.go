// Package e2e runs the shipped Lambda binaries end to end, the way `sam local invoke`
// would: each `bootstrap` is built as it ships (for this machine's architecture), started
// behind a local Lambda Runtime API (internal/lambdarun) with a Lambda-like environment,
// fed the events/*.json files, and talks to Secrets Manager (moto_server) and VBC (the
// sandbox) over 127.0.0.1.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/lambdarun"
	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

const (
	clientID     = "e2e-client"
	clientSecret = "cs-SECRET-e2e-0123456789"
	redirectURL  = "https://abc123.execute-api.eu-west-1.amazonaws.com/callback"
)

var binaries struct {
	once                sync.Once
	callback, refresher string
	err                 error
}

func TestMain(m *testing.M) { os.Exit(motoserver.Main(m)) }

// build compiles both functions once per test binary.
func build(t *testing.T) (callback, refresher string) {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "vbctoken-e2e-")
		if err != nil {
			binaries.err = err
			return
		}
		ctx := context.Background()
		if binaries.callback, err = lambdarun.Build(ctx, "github.com/vbctoken/vbctoken/functions/callback", filepath.Join(dir, "callback")); err != nil {
			binaries.err = err
			return
		}
		binaries.refresher, binaries.err = lambdarun.Build(ctx, "github.com/vbctoken/vbctoken/functions/refresher", filepath.Join(dir, "refresher"))
	})
	if binaries.err != nil {
		t.Fatalf("build functions: %v", binaries.err)
	}
	return binaries.callback, binaries.refresher
}

// env is one deployment: three secrets in moto, one VBC sandbox, the functions' settings.
type env struct {
	t       *testing.T
	moto    *motoserver.Server
	vbc     *vbcsandbox.Sandbox
	secrets motoserver.Secrets
	store   *smstore.Store
	fnEnv   map[string]string
	keeper  *vbctoken.Keeper // the admin's side (what `vbctoken consent-url` does)
	funcs   []*lambdarun.Function
}

func newEnv(t *testing.T) *env {
	t.Helper()
	moto := motoserver.Start(t)
	vbc := vbcsandbox.New(vbcsandbox.Options{Clients: []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirectURL}}}})
	srv := httptest.NewServer(vbc)
	t.Cleanup(srv.Close)
	secrets := moto.CreateStoreSecrets(t, true)
	creds, _ := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret})
	moto.PutSecret(t, secrets.Credentials, string(creds))
	store := smstore.New(moto.Client(), smstore.SecretIDs(secrets))
	e := &env{t: t, moto: moto, vbc: vbc, secrets: secrets, store: store,
		fnEnv: vbcSettings(srv.URL, map[string]string{
			"AWS_ENDPOINT_URL_SECRETS_MANAGER": moto.URL,
			"VBC_CREDENTIALS_SECRET_ID":        secrets.Credentials,
			"VBC_TOKEN_SECRET_ID":              secrets.Pair,
			"VBC_ACCESS_SECRET_ID":             secrets.Access,
		})}
	var err error
	e.keeper, err = vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: store, Client: adminClient(srv.URL)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.checkLogs)
	return e
}

// vbcSettings returns the functions' environment: storage settings plus the VBC settings
// of a deployment talking to the sandbox at vbcURL.
func vbcSettings(vbcURL string, storage map[string]string) map[string]string {
	env := map[string]string{
		"VBC_AUTHORIZE_URL":   vbcURL + "/authorize",
		"VBC_TOKEN_URL":       vbcURL + "/token",
		"VBC_REDIRECT_URL":    redirectURL,
		"VBC_SCOPE":           "openid",
		"VBC_PKCE":            "false",
		"VBC_REFRESH_MARGIN":  "2h",
		"VBC_REFRESH_MAX_AGE": "24h",
	}
	for k, v := range storage {
		env[k] = v
	}
	return env
}

// adminClient is the admin's client configuration against the sandbox at vbcURL, the one
// `vbctoken consent-url` mints links with.
func adminClient(vbcURL string) vbctoken.ClientConfig {
	return vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: vbcURL + "/authorize", TokenURL: vbcURL + "/token"},
		RedirectURL: redirectURL,
	}
}

// start launches one execution environment of a function.
func (e *env) start(binary string, extra map[string]string) *lambdarun.Function {
	e.t.Helper()
	fnEnv := map[string]string{}
	for k, v := range e.fnEnv {
		fnEnv[k] = v
	}
	for k, v := range extra {
		fnEnv[k] = v
	}
	fn, err := lambdarun.Start(context.Background(), lambdarun.Config{Binary: binary, Env: fnEnv, Timeout: 30 * time.Second})
	if err != nil {
		e.t.Fatalf("start %s: %v", binary, err)
	}
	e.funcs = append(e.funcs, fn)
	e.t.Cleanup(func() { _ = fn.Close() })
	return fn
}

// consent does the admin's part: mint the consent link and approve it at VBC; it returns
// the callback event API Gateway would deliver.
func (e *env) consent() []byte {
	e.t.Helper()
	raw, err := os.ReadFile("../../events/callback-success.json")
	if err != nil {
		e.t.Fatal(err)
	}
	return e.fill(raw)
}

// fill puts a fresh, genuine state and code (an approved consent) in place of an event
// file's placeholders.
func (e *env) fill(raw []byte) []byte {
	e.t.Helper()
	authURL, err := e.keeper.ConsentURL(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	cb, err := e.vbc.Approve(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	raw = bytes.ReplaceAll(raw, []byte("STATE_PLACEHOLDER"), []byte(u.Query().Get("state")))
	return bytes.ReplaceAll(raw, []byte("CODE_PLACEHOLDER"), []byte(u.Query().Get("code")))
}

func event(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func invoke(t *testing.T, fn *lambdarun.Function, ev []byte) lambdarun.Result {
	t.Helper()
	res, err := fn.Invoke(context.Background(), ev)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	return res
}

func callbackStatus(t *testing.T, res lambdarun.Result) events.APIGatewayV2HTTPResponse {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("callback function error: %v", res.Err)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(res.Payload, &resp); err != nil {
		t.Fatalf("callback payload: %v", err)
	}
	return resp
}

func refresherOutcome(t *testing.T, res lambdarun.Result) vbctoken.Outcome {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("refresher function error: %v", res.Err)
	}
	var sum struct {
		Outcome vbctoken.Outcome `json:"outcome"`
	}
	if err := json.Unmarshal(res.Payload, &sum); err != nil {
		t.Fatalf("refresher payload %s: %v", res.Payload, err)
	}
	return sum.Outcome
}

// pair reads the stored pair straight from moto.
func (e *env) pair() *vbctoken.Pair {
	e.t.Helper()
	v, err := e.store.LoadPair(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return v.Pair
}

// assertChainLive: the stored refresh token is live at VBC, and the apps' access secret
// holds the pair's access token, which VBC accepts.
func (e *env) assertChainLive() *vbctoken.Pair {
	e.t.Helper()
	p := e.pair()
	if !e.vbc.IsLiveRefreshToken(p.RefreshToken.Reveal()) {
		e.t.Fatal("the stored refresh token is dead at VBC: chain broken")
	}
	a, err := e.store.LoadAccess(context.Background())
	if err != nil || a.AccessToken != p.AccessToken || !e.vbc.IsValidAccessToken(a.AccessToken.Reveal()) {
		e.t.Fatalf("the apps' access secret is not the pair's valid token: %v", err)
	}
	return p
}

// ageStoredPair rewrites the stored pair as if it had been obtained long ago, so the
// refreshers' policy (not a force flag) decides to refresh.
func (e *env) ageStoredPair(by time.Duration) {
	e.t.Helper()
	v, err := e.store.LoadPair(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	p := v.Pair.Clone()
	p.ObtainedAt = p.ObtainedAt.Add(-by)
	if _, err := e.store.CommitPair(context.Background(), p, v.Version); err != nil {
		e.t.Fatal(err)
	}
}

// checkLogs scans everything the functions printed for any secret value.
func (e *env) checkLogs() {
	var logs []byte
	for _, fn := range e.funcs {
		logs = append(logs, fn.Logs()...)
	}
	values := []string{clientSecret}
	for _, p := range e.vbc.Issued() {
		values = append(values, p.AccessToken, p.RefreshToken)
	}
	for _, v := range values {
		if bytes.Contains(logs, []byte(v)) {
			e.t.Error("a secret value appears in the functions' output")
		}
	}
	if len(e.funcs) > 0 && !bytes.Contains(logs, []byte(`"level":"INFO"`)) {
		e.t.Errorf("no JSON log lines from the functions:\n%s", logs)
	}
}

// TestConsentThenRotate is the main path of the mission: consent URL → VBC consent →
// callback binary → secrets in Secrets Manager → refresher binary rotates the pair →
// apps' access secret updated → the old refresh token is dead at VBC.
func TestConsentThenRotate(t *testing.T) {
	cb, rf := build(t)
	e := newEnv(t)
	callback := e.start(cb, nil)
	refresher := e.start(rf, nil)

	resp := callbackStatus(t, invoke(t, callback, e.consent()))
	if resp.StatusCode != 200 || !strings.Contains(resp.Body, "Connected") || resp.Headers["Cache-Control"] != "no-store" {
		t.Fatalf("callback answered %d:\n%s", resp.StatusCode, resp.Body)
	}
	first := e.assertChainLive()

	// The hourly run: the pair is fresh, nothing happens.
	if got := refresherOutcome(t, invoke(t, refresher, event(t, "scheduled.json"))); got != vbctoken.OutcomeSkipped {
		t.Fatalf("hourly run: %s", got)
	}
	// A forced run rotates.
	if got := refresherOutcome(t, invoke(t, refresher, event(t, "scheduled-force.json"))); got != vbctoken.OutcomeRefreshed {
		t.Fatalf("forced run: %s", got)
	}
	second := e.assertChainLive()
	if second.RefreshToken == first.RefreshToken || e.vbc.IsLiveRefreshToken(first.RefreshToken.Reveal()) {
		t.Fatal("the pair did not rotate, or the old refresh token still works")
	}

	// Bad callbacks write nothing.
	for _, name := range []string{"callback-declined.json", "callback-missing-code.json", "callback-bad-state.json", "callback-xss.json"} {
		resp := callbackStatus(t, invoke(t, callback, event(t, name)))
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: status %d", name, resp.StatusCode)
		}
	}
	if e.pair().RefreshToken != second.RefreshToken {
		t.Error("a bad callback changed the pair")
	}
}

// TestRefresherRidesOutVBCOutage: the token endpoint answers 503 twice, then recovers
// within the same invocation; the chain stays intact.
func TestRefresherRidesOutVBCOutage(t *testing.T) {
	cb, rf := build(t)
	e := newEnv(t)
	callbackStatus(t, invoke(t, e.start(cb, nil), e.consent()))
	before := e.assertChainLive()
	e.vbc.InjectNext(vbcsandbox.Status503, vbcsandbox.Status503)
	if got := refresherOutcome(t, invoke(t, e.start(rf, nil), event(t, "scheduled-force.json"))); got != vbctoken.OutcomeRefreshed {
		t.Fatalf("outcome %s", got)
	}
	after := e.assertChainLive()
	if after.RefreshToken == before.RefreshToken {
		t.Fatal("no rotation")
	}
	if n := e.vbc.Stats().Faults[vbcsandbox.Status503]; n != 2 {
		t.Fatalf("%d 503s injected, want 2", n)
	}
}

// TestTwoRefreshersAtOnce: two execution environments fire at the same moment on a pair
// the policy says is due: exactly one refresh happens and the chain stays intact.
func TestTwoRefreshersAtOnce(t *testing.T) {
	cb, rf := build(t)
	e := newEnv(t)
	callbackStatus(t, invoke(t, e.start(cb, nil), e.consent()))
	for round := 0; round < 3; round++ {
		e.ageStoredPair(25 * time.Hour)
		a, b := e.start(rf, nil), e.start(rf, nil)
		var wg sync.WaitGroup
		outcomes := make([]vbctoken.Outcome, 2)
		for i, fn := range []*lambdarun.Function{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outcomes[i] = refresherOutcome(t, invoke(t, fn, event(t, "scheduled.json")))
			}()
		}
		wg.Wait()
		refreshed := 0
		for _, o := range outcomes {
			if o == vbctoken.OutcomeRefreshed {
				refreshed++
			} else if o != vbctoken.OutcomeSuperseded && o != vbctoken.OutcomeSkipped {
				t.Fatalf("round %d: outcome %s", round, o)
			}
		}
		if refreshed != 1 {
			t.Fatalf("round %d: %d refreshes (%v), want exactly 1", round, refreshed, outcomes)
		}
		e.assertChainLive()
	}
}

// TestCallbackRacesRefresher: an admin's consent lands while a refresher rotates the
// current pair; both succeed and the stored pair is live.
func TestCallbackRacesRefresher(t *testing.T) {
	cb, rf := build(t)
	e := newEnv(t)
	callback, refresher := e.start(cb, nil), e.start(rf, nil)
	callbackStatus(t, invoke(t, callback, e.consent()))
	for round := 0; round < 3; round++ {
		ev := e.consent()
		var wg sync.WaitGroup
		var status int
		var outcome vbctoken.Outcome
		wg.Add(2)
		go func() { defer wg.Done(); status = callbackStatus(t, invoke(t, callback, ev)).StatusCode }()
		go func() {
			defer wg.Done()
			outcome = refresherOutcome(t, invoke(t, refresher, event(t, "scheduled-force.json")))
		}()
		wg.Wait()
		if status != 200 || (outcome != vbctoken.OutcomeRefreshed && outcome != vbctoken.OutcomeSuperseded) {
			t.Fatalf("round %d: callback %d, refresher %s", round, status, outcome)
		}
		e.assertChainLive()
	}
}
