package cli

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of serve's goroutines.
type syncBuffer = testutil.Buffer

// served is an in-process `vbctoken serve`.
type served struct {
	base   string
	stderr *syncBuffer
	stop   func() int
}

// startServe runs serve in-process on a free port (or on ln) and waits until it accepts
// connections. The test's cleanup stops it if the test did not.
func startServe(t *testing.T, env map[string]string, ln net.Listener, args ...string) *served {
	t.Helper()
	return startServeWith(t, serveSetup{env: env, ln: ln}, args...)
}

// serveSetup is what startServeWith varies.
type serveSetup struct {
	env  map[string]string
	ln   net.Listener
	wall func() time.Time // default time.Now
}

func startServeWith(t *testing.T, in serveSetup, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	ready := make(chan string, 1)
	a := &app{
		stdin: strings.NewReader(""), stdout: io.Discard, stderr: stderr,
		getenv:     func(k string) string { return in.env[k] },
		now:        in.wall,
		serving:    func(base string) { ready <- base },
		signingKey: signingKey(),
		location:   time.UTC,
		storeRetry: vbctoken.RetryPolicy{Sleep: noSleep}, clientRetry: vbctoken.RetryPolicy{Sleep: noSleep},
	}
	if in.ln != nil {
		ln := in.ln
		a.listen = func(string) (net.Listener, error) { return ln, nil }
	}
	done := make(chan int, 1)
	go func() { done <- a.run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)) }()
	s := &served{stderr: stderr}
	var once sync.Once
	code := -1
	s.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("serve did not stop within 10s after cancel")
			}
		})
		return code
	}
	t.Cleanup(func() { s.stop() })
	select {
	case s.base = <-ready:
	case c := <-done:
		cancel()
		t.Fatalf("serve exited with %d before serving:\n%s", c, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	return s
}

// noRedirect is an HTTP client that shows redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type reply struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, u string) reply {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return readReply(t, resp)
}

func readReply(t *testing.T, resp *http.Response) reply {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(body)}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// consentForm is what the sandbox's consent page posts: its hidden fields, the decision and,
// unless "", the VBC user who approves.
func consentForm(page, decision, user string) url.Values {
	form := url.Values{"decision": {decision}}
	if user != "" {
		form.Set("user", user)
	}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return form
}

// decide opens /consent, follows it to the sandbox's consent page and submits decision
// there, as a browser would. It returns the callback URL the sandbox redirects to.
func decide(t *testing.T, base, decision string) string {
	t.Helper()
	r := get(t, base+"/consent")
	if r.status != http.StatusFound {
		t.Fatalf("GET /consent: %d %s", r.status, r.body)
	}
	page := get(t, r.header.Get("Location"))
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="approve"`) {
		t.Fatalf("consent page: %d %s", page.status, page.body)
	}
	resp, err := noRedirect.PostForm(base+"/sandbox/authorize", consentForm(page.body, decision, ""))
	if err != nil {
		t.Fatal(err)
	}
	post := readReply(t, resp)
	if post.status != http.StatusFound {
		t.Fatalf("POST /sandbox/authorize: %d %s", post.status, post.body)
	}
	return post.header.Get("Location")
}

type statusBody struct {
	Status      vbctoken.Status `json:"status"`
	Refreshes   int             `json:"refreshes"`
	LastRefresh *struct {
		Outcome vbctoken.Outcome `json:"outcome"`
		Summary string           `json:"summary"`
	} `json:"last_refresh"`
	Mode string `json:"mode"`
}

func statusOf(t *testing.T, base string) statusBody {
	t.Helper()
	r := get(t, base+"/status.json")
	var b statusBody
	if err := json.Unmarshal([]byte(r.body), &b); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /status.json: %d %v %s", r.status, err, r.body)
	}
	return b
}

// The newcomer's path through `make local`: sandbox mode on an empty store, consent in the
// browser, the callback's success page, the status page connected, and the sped-up clock
// making the scheduler refresh within seconds.
func TestServeSandboxEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir, "--clock-speed", "36000")

	if !strings.Contains(s.stderr.String(), "vbctoken serving on "+s.base+" — open it in your browser") {
		t.Errorf("startup line missing:\n%s", s.stderr)
	}
	if r := get(t, s.base+"/healthz"); r.status != http.StatusOK || r.body != "ok\n" {
		t.Errorf("healthz: %d %q", r.status, r.body)
	}
	if r := get(t, s.base+"/nope"); r.status != http.StatusNotFound || r.header.Get("Content-Security-Policy") == "" {
		t.Errorf("unknown path: %d %v", r.status, r.header)
	}
	home := get(t, s.base+"/")
	for _, want := range []string{"Not connected to VBC yet", `href="/consent"`, `http-equiv="refresh"`, "local VBC sandbox, clock 36000× real time"} {
		if !strings.Contains(home.body, want) {
			t.Errorf("status page lacks %q:\n%s", want, home.body)
		}
	}
	if home.header.Get("Cache-Control") != "no-store" || home.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("status page headers: %v", home.header)
	}
	info, err := os.Stat(filepath.Join(dir, "credentials.json"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("generated credentials: %v %v", info, err)
	}

	cb := decide(t, s.base, "approve")
	if !strings.HasPrefix(cb, s.base+"/callback?") {
		t.Fatalf("sandbox redirected to %s", cb)
	}
	ok := get(t, cb)
	if ok.status != http.StatusOK || !strings.Contains(ok.body, "Connected to Vonage Business Communications") {
		t.Fatalf("callback: %d %s", ok.status, ok.body)
	}
	if st := statusOf(t, s.base); !st.Status.Connected {
		t.Fatalf("not connected after consent: %+v", st)
	}

	// 36000×: the 24 h access token lives 2.4 s, so the scheduler refreshes it soon.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := statusOf(t, s.base)
		if st.Refreshes >= 1 && st.Status.Connected && st.Status.Grant == vbctoken.GrantRefreshToken &&
			st.LastRefresh != nil && st.LastRefresh.Outcome == vbctoken.OutcomeRefreshed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled refresh within 10s: %+v\n%s", st, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if page := get(t, s.base+"/"); !strings.Contains(page.body, "Connected to VBC") || !strings.Contains(page.body, "refreshed (access token close to expiry)") {
		t.Errorf("status page after a refresh:\n%s", page.body)
	}

	declined := get(t, decide(t, s.base, "decline"))
	if declined.status != http.StatusForbidden || !strings.Contains(declined.body, "Consent declined") {
		t.Errorf("declined: %d %s", declined.status, declined.body)
	}
	replayed := get(t, cb)
	if replayed.status != http.StatusConflict || !strings.Contains(replayed.body, "already used") {
		t.Errorf("replayed callback: %d %s", replayed.status, replayed.body)
	}
	if st := statusOf(t, s.base); !st.Status.Connected {
		t.Errorf("a declined or replayed consent disconnected: %+v", st)
	}

	if code := s.stop(); code != ExitOK {
		t.Errorf("serve exit %d", code)
	}
	logs := s.stderr.String()
	if !strings.Contains(logs, `"msg":"refreshed"`) || !strings.Contains(logs, `"msg":"vbctoken stopped"`) {
		t.Errorf("logs lack the refresh or the shutdown:\n%s", logs)
	}
	u, _ := url.Parse(cb)
	secrets := []string{u.Query().Get("code"), u.Query().Get("state")}
	fs, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fs.LoadPair(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := fs.LoadCredentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, v.Pair.AccessToken.Reveal(), v.Pair.RefreshToken.Reveal(), v.Pair.IDToken.Reveal(), creds.ClientSecret.Reveal())
	for _, sec := range secrets {
		if sec == "" || strings.Contains(logs, sec) {
			t.Errorf("a secret is empty or in the logs: %q", sec)
		}
	}
}

// With client credentials and VBC endpoints configured, serve talks to them and mounts no
// sandbox; the registered callback URL must point at it.
func TestServeAgainstConfiguredVBC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	vbc := vbcsandbox.New(vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: testClientID, Secret: testClientSecret, RedirectURLs: []string{redirect}}},
		SigningKey: signingKey(),
	})
	ts := httptest.NewServer(vbc)
	t.Cleanup(ts.Close)
	srv := ts.URL
	dir := t.TempDir()
	fs, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.SaveCredentials(context.Background(), vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		config.EnvTokenURL: srv + vbcsandbox.TokenPath, config.EnvAuthorizeURL: srv + vbcsandbox.AuthorizePath, config.EnvRedirectURL: redirect,
	}
	s := startServe(t, env, ln, "--store", dir)
	if st := statusOf(t, s.base); st.Mode != "VBC at "+srv+vbcsandbox.TokenPath {
		t.Errorf("mode: %q", st.Mode)
	}
	if r := get(t, s.base+"/sandbox/authorize"); r.status != http.StatusNotFound {
		t.Errorf("sandbox mounted against VBC: %d", r.status)
	}
	link := get(t, s.base+"/consent").header.Get("Location")
	if !strings.HasPrefix(link, srv+vbcsandbox.AuthorizePath+"?") {
		t.Fatalf("consent goes to %s", link)
	}
	cb, err := vbc.Approve(link)
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, cb); r.status != http.StatusOK {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	if st := statusOf(t, s.base); !st.Status.Connected || st.Status.Grant != vbctoken.GrantAuthorizationCode {
		t.Errorf("status: %+v", st)
	}
}

func TestServeAgainstVBCWithoutCredentials(t *testing.T) {
	var out, errOut syncBuffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		getenv: func(k string) string {
			return map[string]string{config.EnvTokenURL: "https://api.vonage.com/token", config.EnvRedirectURL: "https://cb.example/callback"}[k]
		}}
	code := a.run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--store", t.TempDir()})
	if code != ExitUsage || !strings.Contains(errOut.String(), "client credentials not configured") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
}

// serve's wiring is built and answers without a listener: flags, store, build, then the
// handler driven with httptest.
func TestServeWiringWithoutListener(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	var stderr syncBuffer
	wall := newFakeClock()
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" },
		now: wall.Now, signingKey: signingKey(), location: time.UTC}
	a.setDefaults()
	o, done, _ := a.parseServe([]string{"--store", dir, "--clock-speed", "3600", "--refresh-every", "2h"})
	if done {
		t.Fatal("parse stopped")
	}
	p, code, ok := a.prepareServe(context.Background(), o)
	if !ok {
		t.Fatalf("prepare: exit %d: %s", code, stderr.String())
	}
	defer p.close()
	if !p.sandbox || p.claim == nil {
		t.Fatalf("prepared: sandbox %v, claim %v", p.sandbox, p.claim)
	}
	rig, err := a.buildServe(context.Background(), p, "http://serve.test")
	if err != nil {
		t.Fatal(err)
	}
	if rig.sched.every != 2*time.Second || rig.info.ClockSpeed != 3600 || rig.info.URL != "http://serve.test" {
		t.Errorf("rig: every %v, info %+v", rig.sched.every, rig.info)
	}
	do := func(method, path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://serve.test"+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		rig.handler.ServeHTTP(rec, req)
		return rec
	}
	if r := do("GET", "/healthz", ""); r.Code != http.StatusOK {
		t.Errorf("healthz: %d", r.Code)
	}
	if r := do("GET", "/", ""); r.Code != http.StatusOK || !strings.Contains(r.Body.String(), "Not connected to VBC yet") {
		t.Errorf("status page: %d %s", r.Code, r.Body)
	}
	if r := do("GET", apiStatus, ""); r.Code != http.StatusUnauthorized {
		t.Errorf("api without token: %d", r.Code)
	}
	if r := do("GET", apiStatus, "wrong"); r.Code != http.StatusUnauthorized {
		t.Errorf("api with a wrong token: %d", r.Code)
	}
	r := do("GET", apiStatus, rig.info.Token)
	var reply apiReply
	if err := json.Unmarshal(r.Body.Bytes(), &reply); err != nil || r.Code != http.StatusOK || reply.Status == nil || !reply.Now.Equal(start) {
		t.Errorf("api status: %d %v %s", r.Code, err, r.Body)
	}
	r = do("POST", apiRefresh, rig.info.Token)
	if err := json.Unmarshal(r.Body.Bytes(), &reply); err != nil || r.Code != http.StatusConflict || reply.ExitCode != ExitReconsent || reply.Hint != nextStepConsent {
		t.Errorf("api refresh while not connected: %d %v %s", r.Code, err, r.Body)
	}
	r = do("POST", apiConsentURL, rig.info.Token)
	if err := json.Unmarshal(r.Body.Bytes(), &reply); err != nil || !strings.HasPrefix(reply.URL, "http://serve.test/sandbox/authorize?") || reply.RedirectURL != "http://serve.test/callback" {
		t.Errorf("api consent-url: %d %v %s", r.Code, err, r.Body)
	}
}
