package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

const (
	clientID     = "client-1"
	clientSecret = "cs-SECRET-callback-test"
	redirect     = "https://abc123.execute-api.eu-west-1.amazonaws.com/callback"
)

type fixture struct {
	t     *testing.T
	vbc   *vbcsandbox.Sandbox
	store *memstore.Store
	h     *handler
	k     *vbctoken.Keeper
	logs  *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	vbc := vbcsandbox.New(vbcsandbox.Options{Clients: []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirect}}}})
	srv := httptest.NewServer(vbc)
	t.Cleanup(srv.Close)
	settings, err := config.FromEnv(func(k string) string {
		return map[string]string{
			config.EnvCredentialsSecretID: "creds", config.EnvTokenSecretID: "pair", config.EnvAccessSecretID: "access",
			config.EnvAuthorizeURL: srv.URL + "/authorize", config.EnvTokenURL: srv.URL + "/token", config.EnvRedirectURL: redirect,
		}[k]
	}, config.Need{Secrets: true, RedirectURL: true})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New(vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret})
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	h, err := buildHandler(store, settings, log)
	if err != nil {
		t.Fatal(err)
	}
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: store, Client: settings.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, vbc: vbc, store: store, h: h, k: k, logs: logs}
	t.Cleanup(f.checkNoSecrets)
	return f
}

// consent returns a fresh state and code, as VBC would put them on the callback URL.
func (f *fixture) consent() (state, code string) {
	f.t.Helper()
	authURL, err := f.k.ConsentURL(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	cb, err := f.vbc.Approve(authURL)
	if err != nil {
		f.t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	return u.Query().Get("state"), u.Query().Get("code")
}

// event loads events/<name> (the same file `sam local invoke -e` takes) and fills in the
// placeholders.
func (f *fixture) event(name, state, code string) events.APIGatewayV2HTTPRequest {
	f.t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
	if err != nil {
		f.t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("STATE_PLACEHOLDER"), []byte(url.QueryEscape(state)))
	raw = bytes.ReplaceAll(raw, []byte("CODE_PLACEHOLDER"), []byte(url.QueryEscape(code)))
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		f.t.Fatalf("%s: %v", name, err)
	}
	return ev
}

func (f *fixture) checkNoSecrets() {
	out := f.logs.String()
	values := []string{clientSecret}
	for _, p := range f.vbc.Issued() {
		values = append(values, p.AccessToken, p.RefreshToken)
	}
	for _, v := range values {
		if strings.Contains(out, v) {
			f.t.Error("a secret value appears in the logs")
		}
	}
}

var securityHeaders = []string{"Cache-Control", "Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"}

func TestCallbackEvents(t *testing.T) {
	cases := []struct {
		name       string
		event      string
		realState  bool // replace the placeholder with a freshly minted state
		wantStatus int
		wantBody   []string
		notBody    []string
		wantWrites bool
	}{
		{"success", "callback-success.json", true, http.StatusOK, []string{"Connected to Vonage Business Communications", "Access token valid until"}, nil, true},
		{"declined", "callback-declined.json", true, http.StatusForbidden, []string{"Consent declined", "The resource owner denied the request"}, nil, false},
		{"missing code", "callback-missing-code.json", true, http.StatusBadRequest, []string{"missing the authorization code"}, nil, false},
		{"bad state", "callback-bad-state.json", false, http.StatusBadRequest, []string{"not valid"}, nil, false},
		{"xss in error_description", "callback-xss.json", false, http.StatusBadRequest,
			[]string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;"}, []string{"<script>", "<img"}, false},
		{"duplicated code", "callback-duplicate-code.json", false, http.StatusBadRequest, []string{"repeats a parameter"}, nil, false},
		{"wrong method", "callback-wrong-method.json", false, http.StatusMethodNotAllowed, []string{"only answers GET"}, nil, false},
		{"wrong path", "callback-wrong-path.json", false, http.StatusNotFound, []string{"Not found"}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			state, code := "", "not-a-real-code"
			if tc.realState {
				state, code = f.consent()
			}
			f.store.ResetCalls()
			resp, err := f.h.Handle(context.Background(), f.event(tc.event, state, code))
			if err != nil {
				t.Fatalf("handler returned an error (API Gateway would answer 500): %v", err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d\n%s", resp.StatusCode, tc.wantStatus, resp.Body)
			}
			for _, h := range securityHeaders {
				if resp.Headers[h] == "" {
					t.Errorf("missing header %s", h)
				}
			}
			if resp.Headers["Cache-Control"] != "no-store" || resp.Headers["X-Frame-Options"] != "DENY" {
				t.Errorf("headers: %v", resp.Headers)
			}
			for _, want := range tc.wantBody {
				if !strings.Contains(resp.Body, want) {
					t.Errorf("body lacks %q:\n%s", want, resp.Body)
				}
			}
			for _, not := range tc.notBody {
				if strings.Contains(resp.Body, not) {
					t.Errorf("body contains %q unescaped", not)
				}
			}
			writes := f.store.Calls(memstore.OpCommitPair) + f.store.Calls(memstore.OpPutAccess)
			if tc.wantWrites != (writes > 0) {
				t.Errorf("%d store writes, want writes: %v", writes, tc.wantWrites)
			}
			for _, p := range f.vbc.Issued() {
				if strings.Contains(resp.Body, p.AccessToken) || strings.Contains(resp.Body, p.RefreshToken) {
					t.Error("a token is in the page")
				}
			}
			if strings.Contains(resp.Body, code) && tc.realState {
				t.Error("the code is in the page")
			}
		})
	}
}

func TestCallbackReplayedState(t *testing.T) {
	f := newFixture(t)
	state, code := f.consent()
	ev := f.event("callback-success.json", state, code)
	if resp, _ := f.h.Handle(context.Background(), ev); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use: %d", resp.StatusCode)
	}
	stored, _ := f.store.LoadPair(context.Background())
	f.store.ResetCalls()
	resp, _ := f.h.Handle(context.Background(), ev)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(resp.Body, "already used") {
		t.Fatalf("replay: %d\n%s", resp.StatusCode, resp.Body)
	}
	if f.store.Calls(memstore.OpCommitPair) != 0 {
		t.Error("replay wrote")
	}
	if now, _ := f.store.LoadPair(context.Background()); now.Version != stored.Version {
		t.Error("replay changed the pair")
	}
}

func TestCallbackUpstreamFailures(t *testing.T) {
	cases := []struct {
		name   string
		fault  vbcsandbox.FaultKind
		budget time.Duration
		want   int
	}{
		// The code reached VBC and no usable answer came back: never sent again, and the
		// page says VBC may have connected.
		{"VBC answers 503", vbcsandbox.Status503, time.Hour, http.StatusBadGateway},
		{"VBC processed, answer lost", vbcsandbox.ProcessedButLost, time.Hour, http.StatusBadGateway},
		// Throttled (429 with Retry-After): VBC certainly did not act, the code is sent
		// again until the deadline, then "not answering".
		{"VBC throttles", vbcsandbox.Status429, time.Second, http.StatusServiceUnavailable},
		{"VBC malformed", vbcsandbox.MalformedJSON, time.Hour, http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			state, code := f.consent()
			f.vbc.SetFaults(func(*http.Request, string) vbcsandbox.Fault { return vbcsandbox.Fault{Kind: tc.fault} })
			// The deadline only bounds the real backoff between retries of the 503s (the
			// handler offers no retry seam); every way it can end, retries spent or time
			// up, is a 503. The malformed answer is never retried.
			ctx, cancel := context.WithTimeout(context.Background(), tc.budget)
			defer cancel()
			resp, _ := f.h.Handle(ctx, f.event("callback-success.json", state, code))
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d\n%s", resp.StatusCode, tc.want, resp.Body)
			}
			if f.store.Calls(memstore.OpPutAccess) != 0 {
				t.Error("access written after a failed exchange")
			}
			if n := f.vbc.Stats().Requests["authorization_code"]; n != 1 && tc.fault != vbcsandbox.Status429 {
				t.Errorf("the code was sent %d times", n)
			}
		})
	}
}

func TestNewHandlerListsMissingSettings(t *testing.T) {
	_, err := newHandler(func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("no error for an empty environment")
	}
	for _, name := range []string{config.EnvCredentialsSecretID, config.EnvTokenSecretID, config.EnvAccessSecretID, config.EnvRedirectURL} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}
