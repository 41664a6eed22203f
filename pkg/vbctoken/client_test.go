package vbctoken_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// The secret values of these tests. Every error is scanned for all of them.
const (
	clClientID     = "consumerKEY123"
	clClientSecret = "consumerSECRET-cs-4242"
	clCode         = "code-SECRET-1111"
	clRefresh      = "rt-SECRET-2222"
	clPassword     = "pw-SECRET-3333"
	clVerifier     = "verifier-SECRET-abcdefghijklmnopqrstuvwxyz0123456789"
	clNewAccess    = "at-NEW-5555"
	clNewRefresh   = "rt-NEW-6666"
	clNewIDToken   = "eyJhbGciOiJSUzI1NiJ9.idtoken-NEW-7777.sig"
	clRedirect     = "https://keeper.example/callback"
	clAuthorize    = "https://vbc.example/authorize"
)

var clSecrets = []string{clClientSecret, clCode, clRefresh, clPassword, clVerifier, clNewAccess, clNewRefresh, clNewIDToken}

var clCreds = vbctoken.Credentials{ClientID: clClientID, ClientSecret: clClientSecret}

// clClock is the tests' clock: Sleep records the wait and moves Now, nothing really sleeps.
type clClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newClClock(now time.Time) *clClock { return &clClock{now: now} }

func (c *clClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

// Advance moves the clock without recording a sleep.
func (c *clClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *clClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// clRequest is what the token server received.
type clRequest struct {
	Method, Path, ContentType string
	Authorization             string
	BasicUser, BasicPass      string
	HasBasic                  bool
	Form                      url.Values
}

// clReply is one scripted answer of the token server.
type clReply struct {
	status      int
	contentType string
	body        string
	header      map[string]string
	truncate    bool // announce a longer Content-Length than the body: the client sees EOF early
	block       bool // hang until the request's context ends
}

func clJSON(status int, body string) clReply {
	return clReply{status: status, contentType: "application/json;charset=UTF-8", body: body}
}

func clHTML(status int) clReply {
	return clReply{status: status, contentType: "text/html", body: "<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>"}
}

// clServer is an httptest VBC token endpoint that records every request and answers from
// a script (the last clReply repeats).
type clServer struct {
	*httptest.Server
	mu      sync.Mutex
	seen    []clRequest
	replies []clReply
}

func newClServer(t *testing.T, replies ...clReply) *clServer {
	t.Helper()
	ts := &clServer{replies: replies}
	done := make(chan struct{})
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("token server: parse form: %v", err)
		}
		user, pass, ok := r.BasicAuth()
		ts.mu.Lock()
		ts.seen = append(ts.seen, clRequest{
			Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"),
			Authorization: r.Header.Get("Authorization"), BasicUser: user, BasicPass: pass, HasBasic: ok,
			Form: r.PostForm,
		})
		rp := ts.replies[min(len(ts.seen), len(ts.replies))-1]
		ts.mu.Unlock()
		if rp.block {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		for k, v := range rp.header {
			w.Header().Set(k, v)
		}
		if rp.contentType != "" {
			w.Header().Set("Content-Type", rp.contentType)
		}
		if rp.truncate {
			w.Header().Set("Content-Length", fmt.Sprint(len(rp.body)+100))
		}
		w.WriteHeader(rp.status)
		io.WriteString(w, rp.body)
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(done) }) // runs first: unblocks hanging handlers before Close waits
	return ts
}

func (ts *clServer) Requests() []clRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]clRequest(nil), ts.seen...)
}

var clT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type clOpt func(*vbctoken.ClientConfig)

func clWithPKCE(c *vbctoken.ClientConfig) { c.PKCE = true }

// newClClient returns a client for ts with the fake clock for expiry stamps and retries.
func newClClient(ts *clServer, clock *clClock, opts ...clOpt) *vbctoken.Client {
	cfg := vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: clAuthorize, TokenURL: ts.URL + "/token"},
		RedirectURL: clRedirect,
		Retry: vbctoken.RetryPolicy{
			MaxAttempts: 3,
			Sleep:       clock.Sleep,
			Now:         clock.Now,
			Rand:        func() float64 { return 0.5 },
		},
		Now: clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return vbctoken.NewClient(cfg, clCreds)
}

// clAssertNoSecrets fails if err's message carries a secret value of the tests.
func clAssertNoSecrets(t *testing.T, err error, extra ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range append(clSecrets, extra...) {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error %q leaks secret %q", msg, s)
		}
	}
}

const clOKBody = `{"access_token":"` + clNewAccess + `","refresh_token":"` + clNewRefresh + `","scope":"openid",` +
	`"id_token":"` + clNewIDToken + `","token_type":"Bearer","expires_in":82566}`

func TestExchangeSendsBasicAuthAndBuildsPair(t *testing.T) {
	for _, pkce := range []bool{false, true} {
		t.Run(fmt.Sprintf("pkce=%v", pkce), func(t *testing.T) {
			ts := newClServer(t, clJSON(200, clOKBody))
			clock := newClClock(clT0)
			var opts []clOpt
			verifier := ""
			if pkce {
				opts = append(opts, clWithPKCE)
				verifier = clVerifier
			}
			c := newClClient(ts, clock, opts...)

			pair, err := c.Exchange(context.Background(), clCode, verifier)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}

			reqs := ts.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/token" || r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("request = %s %s (%s), want POST /token form", r.Method, r.Path, r.ContentType)
			}
			wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(clClientID+":"+clClientSecret))
			if r.Authorization != wantAuth {
				t.Errorf("Authorization = %q, want %q (VBC: Basic base64(key:secret))", r.Authorization, wantAuth)
			}
			wantForm := url.Values{"grant_type": {"authorization_code"}, "code": {clCode}, "redirect_uri": {clRedirect}}
			if pkce {
				wantForm.Set("code_verifier", clVerifier)
			}
			clAssertForm(t, r.Form, wantForm)

			clAssertPair(t, pair, vbctoken.Pair{
				AccessToken: clNewAccess, RefreshToken: clNewRefresh, TokenType: "Bearer", Scope: "openid", IDToken: clNewIDToken,
				ExpiresAt: clT0.Add(82566 * time.Second), RefreshExpiresAt: clT0.Add(vbctoken.RefreshTokenLifetime), ObtainedAt: clT0,
				Grant: vbctoken.GrantAuthorizationCode,
			})
		})
	}
}

func TestRefreshSendsCredentialsInBody(t *testing.T) {
	cases := []struct {
		name string
		body string
		want vbctoken.Pair
	}{
		{
			name: "rotated",
			body: clOKBody,
			want: vbctoken.Pair{AccessToken: clNewAccess, RefreshToken: clNewRefresh, TokenType: "Bearer", Scope: "openid", IDToken: clNewIDToken,
				ExpiresAt: clT0.Add(82566 * time.Second)},
		},
		{
			name: "no refresh_token in answer keeps the old one",
			body: `{"access_token":"` + clNewAccess + `","scope":"default","token_type":"bearer","expires_in":86400}`,
			want: vbctoken.Pair{AccessToken: clNewAccess, RefreshToken: clRefresh, TokenType: "Bearer", Scope: "default",
				ExpiresAt: clT0.Add(24 * time.Hour)},
		},
		{
			name: "expires_in as a string",
			body: `{"access_token":"` + clNewAccess + `","refresh_token":"` + clNewRefresh + `","expires_in":"3600"}`,
			want: vbctoken.Pair{AccessToken: clNewAccess, RefreshToken: clNewRefresh, TokenType: "Bearer", Scope: "openid",
				ExpiresAt: clT0.Add(time.Hour)},
		},
		{
			name: "no expires_in: a conservative hour",
			body: `{"access_token":"` + clNewAccess + `","refresh_token":"` + clNewRefresh + `","token_type":"Bearer"}`,
			want: vbctoken.Pair{AccessToken: clNewAccess, RefreshToken: clNewRefresh, TokenType: "Bearer", Scope: "openid",
				ExpiresAt: clT0.Add(time.Hour)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newClServer(t, clJSON(200, tc.body))
			c := newClClient(ts, newClClock(clT0))

			pair, err := c.Refresh(context.Background(), clRefresh)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			r := ts.Requests()[0]
			if r.HasBasic || r.Authorization != "" {
				t.Errorf("refresh sent an Authorization header; VBC wants the credentials in the body")
			}
			if r.Method != http.MethodPost || r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("request = %s (%s), want POST form", r.Method, r.ContentType)
			}
			clAssertForm(t, r.Form, url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {clRefresh},
				"client_id": {clClientID}, "client_secret": {clClientSecret},
			})
			want := tc.want
			want.RefreshExpiresAt = clT0.Add(vbctoken.RefreshTokenLifetime)
			want.ObtainedAt = clT0
			want.Grant = vbctoken.GrantRefreshToken
			clAssertPair(t, pair, want)
		})
	}
}

func TestPasswordSendsCredentialsAndScopeInBody(t *testing.T) {
	for _, user := range []string{"admin", "admin@vbc.prod", " admin@VBC.PROD "} {
		t.Run(user, func(t *testing.T) {
			ts := newClServer(t, clJSON(200, clOKBody))
			c := newClClient(ts, newClClock(clT0))

			pair, err := c.Password(context.Background(), user, clPassword)
			if err != nil {
				t.Fatalf("Password: %v", err)
			}
			r := ts.Requests()[0]
			if r.HasBasic || r.Authorization != "" {
				t.Errorf("password grant sent an Authorization header; VBC wants the credentials in the body")
			}
			clAssertForm(t, r.Form, url.Values{
				"grant_type": {"password"}, "username": {"admin@vbc.prod"}, "password": {clPassword},
				"client_id": {clClientID}, "client_secret": {clClientSecret}, "scope": {"openid"},
			})
			if pair.Grant != vbctoken.GrantPassword || pair.AccessToken != clNewAccess {
				t.Errorf("pair = %v, want a password-grant pair with the new access token", pair)
			}
		})
	}
}

func TestAuthCodeURL(t *testing.T) {
	cases := []struct {
		name     string
		verifier string
	}{
		{"plain", ""},
		{"pkce", clVerifier},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := vbctoken.NewClient(vbctoken.ClientConfig{
				Endpoints: vbctoken.Endpoints{AuthorizeURL: clAuthorize}, RedirectURL: clRedirect, PKCE: tc.verifier != "",
			}, clCreds)
			u, err := url.Parse(c.AuthCodeURL("state-xyz", tc.verifier))
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Scheme + "://" + u.Host + u.Path; got != clAuthorize {
				t.Errorf("endpoint = %s, want %s", got, clAuthorize)
			}
			q := u.Query()
			want := url.Values{
				"scope": {"openid"}, "response_type": {"code"}, "redirect_uri": {clRedirect},
				"client_id": {clClientID}, "state": {"state-xyz"},
			}
			if tc.verifier != "" {
				sum := sha256.Sum256([]byte(tc.verifier))
				want.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
				want.Set("code_challenge_method", "S256")
			}
			clAssertForm(t, q, want)
			if strings.Contains(u.String(), clClientSecret) || strings.Contains(u.String(), clVerifier) {
				t.Errorf("authorize URL carries a secret: %s", u)
			}
		})
	}
}

func TestDefaultEndpoints(t *testing.T) {
	c := vbctoken.NewClient(vbctoken.ClientConfig{}, clCreds)
	if got := c.AuthCodeURL("s", ""); !strings.HasPrefix(got, "https://api.vonage.com/authorize"+"?") {
		t.Errorf("AuthCodeURL = %s, want it on %s", got, "https://api.vonage.com/authorize")
	}
}

func TestNormalizeUsername(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "admin", want: "admin@vbc.prod"},
		{in: "admin@vbc.prod", want: "admin@vbc.prod"},
		{in: "  admin@VBC.Prod\n", want: "admin@vbc.prod"},
		{in: "", bad: true},
		{in: "   ", bad: true},
		{in: "@vbc.prod", bad: true},
		{in: "admin@example.com", bad: true},
		{in: "admin@", bad: true},
		{in: "a@b@vbc.prod", bad: true},
		{in: "ad min", bad: true},
		{in: "ad\x00min", bad: true},
	}
	for _, tc := range cases {
		got, err := vbctoken.NormalizeUsername(tc.in)
		switch {
		case tc.bad && !errors.Is(err, vbctoken.ErrBadInput):
			t.Errorf("NormalizeUsername(%q) = %q, %v; want ErrBadInput", tc.in, got, err)
		case !tc.bad && (err != nil || got != tc.want):
			t.Errorf("NormalizeUsername(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestBadInputSendsNothing(t *testing.T) {
	ts := newClServer(t, clJSON(200, clOKBody))
	clock := newClClock(clT0)
	c := newClClient(ts, clock)
	pkce := newClClient(ts, clock, clWithPKCE)
	noCreds := vbctoken.NewClient(vbctoken.ClientConfig{Endpoints: vbctoken.Endpoints{TokenURL: ts.URL}}, vbctoken.Credentials{ClientID: clClientID})
	plainHTTP := vbctoken.NewClient(vbctoken.ClientConfig{Endpoints: vbctoken.Endpoints{TokenURL: "http://vbc.example/token"}}, clCreds)
	relative := vbctoken.NewClient(vbctoken.ClientConfig{Endpoints: vbctoken.Endpoints{TokenURL: "/token"}}, clCreds)
	ctx := context.Background()
	cases := []struct {
		name string
		call func() (*vbctoken.Pair, error)
		want error
	}{
		{"empty code", func() (*vbctoken.Pair, error) { return c.Exchange(ctx, "", "") }, vbctoken.ErrBadInput},
		{"pkce without verifier", func() (*vbctoken.Pair, error) { return pkce.Exchange(ctx, clCode, "") }, vbctoken.ErrBadInput},
		{"empty refresh token", func() (*vbctoken.Pair, error) { return c.Refresh(ctx, "") }, vbctoken.ErrBadInput},
		{"empty password", func() (*vbctoken.Pair, error) { return c.Password(ctx, "admin", "") }, vbctoken.ErrBadInput},
		{"foreign domain", func() (*vbctoken.Pair, error) { return c.Password(ctx, "admin@example.com", clPassword) }, vbctoken.ErrBadInput},
		{"no client secret", func() (*vbctoken.Pair, error) { return noCreds.Refresh(ctx, clRefresh) }, vbctoken.ErrNoCredentials},
		{"plain http to a remote host", func() (*vbctoken.Pair, error) { return plainHTTP.Refresh(ctx, clRefresh) }, vbctoken.ErrBadInput},
		{"relative token URL", func() (*vbctoken.Pair, error) { return relative.Refresh(ctx, clRefresh) }, vbctoken.ErrBadInput},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tc.call()
			if pair != nil || !errors.Is(err, tc.want) {
				t.Errorf("got %v, %v; want %v", pair, err, tc.want)
			}
			clAssertNoSecrets(t, err)
		})
	}
	if n := len(ts.Requests()); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
}

// TestFailureClasses runs every failure the token endpoint can produce through each grant
// and checks its class, the attempts made and that no secret reaches the error.
func TestFailureClasses(t *testing.T) {
	const maxAttempts = 3
	cases := []struct {
		name         string
		replies      []clReply
		want         error
		wantStatus   int
		wantCode     string
		wantAttempts int    // of a refresh; a code or password is sent once unless throttled
		throttled    bool   // a 429/503 with Retry-After: VBC certainly did not act on it
		wantInMsg    string // a safe detail that should survive
	}{
		{
			name:         "400 invalid_grant",
			replies:      []clReply{clJSON(400, `{"error":"invalid_grant","error_description":"Provided Authorization Grant is invalid"}`)},
			want:         vbctoken.ErrInvalidGrant,
			wantStatus:   400,
			wantCode:     "invalid_grant",
			wantAttempts: 1,
			wantInMsg:    "Provided Authorization Grant is invalid",
		},
		{
			name:         "400 invalid_grant echoing the secrets",
			replies:      []clReply{clJSON(400, `{"error":"invalid_grant","error_description":"token `+clRefresh+clCode+clPassword+` is invalid"}`)},
			want:         vbctoken.ErrInvalidGrant,
			wantStatus:   400,
			wantCode:     "invalid_grant",
			wantAttempts: 1,
		},
		{
			name:         "401 invalid_client",
			replies:      []clReply{clJSON(401, `{"error":"invalid_client","error_description":"A valid OAuth client could not be found for client_id: `+clClientID+`"}`)},
			want:         vbctoken.ErrBadClient,
			wantStatus:   401,
			wantCode:     "invalid_client",
			wantAttempts: 1,
		},
		{
			name:         "401 without a body",
			replies:      []clReply{{status: 401}},
			want:         vbctoken.ErrBadClient,
			wantStatus:   401,
			wantAttempts: 1,
		},
		{
			name:         "400 invalid_client",
			replies:      []clReply{clJSON(400, `{"error":"invalid_client"}`)},
			want:         vbctoken.ErrBadClient,
			wantStatus:   400,
			wantCode:     "invalid_client",
			wantAttempts: 1,
		},
		{
			name:         "400 other",
			replies:      []clReply{clJSON(400, `{"error":"unsupported_grant_type","error_description":"bad\u0001 grant\ttype"}`)},
			want:         vbctoken.ErrUpstreamRejected,
			wantStatus:   400,
			wantCode:     "unsupported_grant_type",
			wantAttempts: 1,
			wantInMsg:    `"bad grant type"`,
		},
		{
			name:         "400 form-encoded error",
			replies:      []clReply{{status: 400, contentType: "text/plain", body: "error=invalid_request&error_description=missing+code"}},
			want:         vbctoken.ErrUpstreamRejected,
			wantStatus:   400,
			wantCode:     "invalid_request",
			wantAttempts: 1,
			wantInMsg:    "missing code",
		},
		{
			name:         "404 without a body",
			replies:      []clReply{{status: 404}},
			want:         vbctoken.ErrUpstreamRejected,
			wantStatus:   404,
			wantAttempts: 1,
		},
		{
			name:         "302 redirect is not followed",
			replies:      []clReply{{status: 302, contentType: "text/html", body: `<a href="https://elsewhere.example/token">Found</a>`, header: map[string]string{"Location": "https://elsewhere.example/token"}}},
			want:         vbctoken.ErrUpstreamRejected,
			wantStatus:   302,
			wantAttempts: 1,
		},
		{
			name:         "200 carrying invalid_grant",
			replies:      []clReply{clJSON(200, `{"error":"invalid_grant"}`)},
			want:         vbctoken.ErrInvalidGrant,
			wantStatus:   200,
			wantCode:     "invalid_grant",
			wantAttempts: 1,
		},
		{
			name:         "400 temporarily_unavailable",
			replies:      []clReply{clJSON(400, `{"error":"temporarily_unavailable"}`)},
			want:         vbctoken.ErrTransient,
			wantStatus:   400,
			wantCode:     "temporarily_unavailable",
			wantAttempts: maxAttempts,
		},
		{name: "500 HTML", replies: []clReply{clHTML(500)}, want: vbctoken.ErrTransient, wantStatus: 500, wantAttempts: maxAttempts},
		{name: "502 HTML", replies: []clReply{clHTML(502)}, want: vbctoken.ErrTransient, wantStatus: 502, wantAttempts: maxAttempts},
		{name: "503 HTML", replies: []clReply{clHTML(503)}, want: vbctoken.ErrTransient, wantStatus: 503, wantAttempts: maxAttempts},
		{name: "504 JSON", replies: []clReply{clJSON(504, `{"fault":"gateway timeout"}`)}, want: vbctoken.ErrTransient, wantStatus: 504, wantAttempts: maxAttempts},
		{name: "403 HTML from a WAF", replies: []clReply{clHTML(403)}, want: vbctoken.ErrTransient, wantStatus: 403, wantAttempts: maxAttempts},
		{
			name:         "429",
			replies:      []clReply{{status: 429, contentType: "application/json", body: `{"error":"too many"}`, header: map[string]string{"Retry-After": "7"}}},
			want:         vbctoken.ErrTransient,
			wantStatus:   429,
			wantAttempts: maxAttempts,
			throttled:    true,
		},
		{
			name:         "503 with Retry-After",
			replies:      []clReply{{status: 503, contentType: "text/html", body: "<html>busy</html>", header: map[string]string{"Retry-After": "1"}}},
			want:         vbctoken.ErrTransient,
			wantStatus:   503,
			wantAttempts: maxAttempts,
			throttled:    true,
		},
		{
			name:         "malformed JSON 200",
			replies:      []clReply{clJSON(200, `{"access_token":"`+clNewAccess+`","refresh_token":"`+clNewRefresh)},
			want:         vbctoken.ErrMalformedResponse,
			wantStatus:   200,
			wantAttempts: 1,
		},
		{
			name:         "200 missing access_token",
			replies:      []clReply{clJSON(200, `{"refresh_token":"`+clNewRefresh+`","expires_in":86400}`)},
			want:         vbctoken.ErrMalformedResponse,
			wantStatus:   200,
			wantAttempts: 1,
		},
		{
			name:         "200 empty body",
			replies:      []clReply{clJSON(200, "")},
			want:         vbctoken.ErrMalformedResponse,
			wantStatus:   200,
			wantAttempts: 1,
		},
		{name: "200 HTML maintenance page", replies: []clReply{clHTML(200)}, want: vbctoken.ErrTransient, wantStatus: 200, wantAttempts: maxAttempts},
		{
			name:         "200 HTML labelled text/plain",
			replies:      []clReply{{status: 200, contentType: "text/plain", body: "\n  <html><body>maintenance</body></html>"}},
			want:         vbctoken.ErrTransient,
			wantStatus:   200,
			wantAttempts: maxAttempts,
		},
		{
			name:         "200 HTML labelled JSON",
			replies:      []clReply{clJSON(200, "<html>oops</html>")},
			want:         vbctoken.ErrTransient,
			wantStatus:   200,
			wantAttempts: maxAttempts,
		},
		{
			name:         "truncated body",
			replies:      []clReply{{status: 200, contentType: "application/json", body: `{"access_token":"` + clNewAccess, truncate: true}},
			want:         vbctoken.ErrTransient,
			wantStatus:   200,
			wantAttempts: maxAttempts,
		},
	}
	grants := []struct {
		name string
		call func(*vbctoken.Client) (*vbctoken.Pair, error)
	}{
		{"exchange", func(c *vbctoken.Client) (*vbctoken.Pair, error) {
			return c.Exchange(context.Background(), clCode, "")
		}},
		{"refresh", func(c *vbctoken.Client) (*vbctoken.Pair, error) { return c.Refresh(context.Background(), clRefresh) }},
		{"password", func(c *vbctoken.Client) (*vbctoken.Pair, error) {
			return c.Password(context.Background(), "admin", clPassword)
		}},
	}
	for _, tc := range cases {
		for _, g := range grants {
			t.Run(tc.name+"/"+g.name, func(t *testing.T) {
				ts := newClServer(t, tc.replies...)
				c := newClClient(ts, newClClock(clT0)) // default HTTP client: redirects not followed

				pair, err := g.call(c)

				attempts := tc.wantAttempts
				if g.name != "refresh" && tc.want == vbctoken.ErrTransient && !tc.throttled {
					// A code or password that may have reached VBC is never sent again.
					attempts = 1
					if !errors.Is(err, vbctoken.ErrOutcomeUnknown) {
						t.Errorf("error %v does not match ErrOutcomeUnknown", err)
					}
				}
				if pair != nil {
					t.Fatalf("got a pair (%v) with error %v", pair, err)
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v does not match %v", err, tc.want)
				}
				var ue *vbctoken.UpstreamError
				if !errors.As(err, &ue) {
					t.Fatalf("error %v is not an *UpstreamError", err)
				}
				if ue.Op != g.name || ue.StatusCode != tc.wantStatus || ue.Code != tc.wantCode || ue.Attempts != attempts {
					t.Errorf("UpstreamError{Op:%q Status:%d Code:%q Attempts:%d}, want {%q %d %q %d}",
						ue.Op, ue.StatusCode, ue.Code, ue.Attempts, g.name, tc.wantStatus, tc.wantCode, attempts)
				}
				if n := len(ts.Requests()); n != attempts {
					t.Errorf("server saw %d requests, want %d", n, attempts)
				}
				if tc.wantInMsg != "" && !strings.Contains(err.Error(), tc.wantInMsg) {
					t.Errorf("error %q lacks %q", err, tc.wantInMsg)
				}
				for _, rp := range tc.replies {
					if len(rp.body) > 20 && strings.Contains(err.Error(), rp.body) {
						t.Errorf("error %q quotes the response body", err)
					}
				}
				clAssertNoSecrets(t, err)
			})
		}
	}
}

// An expires_in VBC should not send changes the time the client believes, never whether it
// keeps the pair: a 200 to a refresh carries the only live refresh token.
func TestExpiresInIsClampedNotRejected(t *testing.T) {
	cases := []struct {
		name      string
		expiresIn string
		want      time.Duration
	}{
		{"absent", ``, time.Hour},
		{"negative", `,"expires_in":-5`, time.Hour},
		{"zero", `,"expires_in":0`, time.Hour},
		{"fractional", `,"expires_in":3600.5`, time.Hour},
		{"below a second", `,"expires_in":0.5`, time.Hour},
		{"string", `,"expires_in":"7200"`, 2 * time.Hour},
		{"not a number", `,"expires_in":"soon"`, time.Hour},
		{"an object", `,"expires_in":{"s":1}`, time.Hour},
		{"WSO2 reuse", `,"expires_in":82566`, 82566 * time.Second},
		{"absurd", `,"expires_in":9000000000`, 24 * time.Hour},
		{"a week", `,"expires_in":604800`, 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newClServer(t, clJSON(200, `{"access_token":"`+clNewAccess+`","refresh_token":"`+clNewRefresh+`"`+tc.expiresIn+`}`))
			c := newClClient(ts, newClClock(clT0))
			pair, err := c.Refresh(context.Background(), clRefresh)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if pair.RefreshToken != clNewRefresh || pair.AccessToken != clNewAccess {
				t.Errorf("the tokens were not kept")
			}
			if got := pair.ExpiresAt.Sub(pair.ObtainedAt); got != tc.want {
				t.Errorf("access token lifetime %v, want %v", got, tc.want)
			}
		})
	}
}

// A code that cannot be VBC's is refused before anything is sent.
func TestExchangeRefusesImpossibleCodes(t *testing.T) {
	for name, code := range map[string]vbctoken.Secret{
		"empty":         "",
		"too long":      vbctoken.Secret(strings.Repeat("a", 513)),
		"control":       "abc\x00def",
		"newline":       "abc\ndef",
		"space":         "abc def",
		"DEL":           "abc\x7fdef",
		"unicode space": "abc\u2028def",
	} {
		t.Run(name, func(t *testing.T) {
			ts := newClServer(t, clJSON(200, clOKBody))
			c := newClClient(ts, newClClock(clT0))
			if _, err := c.Exchange(context.Background(), code, ""); !errors.Is(err, vbctoken.ErrBadInput) {
				t.Fatalf("err = %v, want ErrBadInput", err)
			}
			if n := len(ts.Requests()); n != 0 {
				t.Errorf("server saw %d requests, want none", n)
			}
		})
	}
}

// A code is sent again only when the first request certainly never reached VBC: here the
// connection was refused.
func TestExchangeRetriesOnlyUndeliveredRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every dial is refused
	clock := newClClock(clT0)
	c := vbctoken.NewClient(vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: "http://" + addr + "/authorize", TokenURL: "http://" + addr + "/token"},
		RedirectURL: "https://keeper.example/callback",
		Retry:       vbctoken.RetryPolicy{MaxAttempts: 3, Sleep: clock.Sleep, Rand: func() float64 { return 0.5 }},
		Now:         clock.Now,
	}, vbctoken.Credentials{ClientID: clClientID, ClientSecret: clClientSecret})
	_, err = c.Exchange(context.Background(), clCode, "")
	var ue *vbctoken.UpstreamError
	if !errors.As(err, &ue) || ue.Attempts != 3 || errors.Is(err, vbctoken.ErrOutcomeUnknown) || !errors.Is(err, vbctoken.ErrTransient) {
		t.Fatalf("err = %v (%+v), want 3 attempts, transient, outcome known", err, ue)
	}
}

func TestTransientThenSuccess(t *testing.T) {
	ts := newClServer(t, clHTML(503), clJSON(502, "{}"), clJSON(200, clOKBody))
	clock := newClClock(clT0)
	c := newClClient(ts, clock)

	pair, err := c.Refresh(context.Background(), clRefresh)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if len(ts.Requests()) != 3 {
		t.Errorf("server saw %d requests, want 3", len(ts.Requests()))
	}
	// Full jitter with Rand = 0.5: half of 200 ms, then half of 400 ms.
	if got, want := clock.Sleeps(), []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !clEqualDurations(got, want) {
		t.Errorf("sleeps = %v, want %v", got, want)
	}
	// Stamped at receipt: after the (fake) backoff.
	if want := clT0.Add(300 * time.Millisecond); !pair.ObtainedAt.Equal(want) {
		t.Errorf("ObtainedAt = %v, want %v", pair.ObtainedAt, want)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	date := clT0.Add(4 * time.Second).Format(http.TimeFormat)
	cases := []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"capped at Max", "3600", 10 * time.Second},
		{"HTTP date", date, 4 * time.Second},
		{"garbage falls back to backoff", "soon", 100 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newClServer(t,
				clReply{status: 429, header: map[string]string{"Retry-After": tc.retryAfter}},
				clJSON(200, clOKBody))
			clock := newClClock(clT0)
			c := newClClient(ts, clock)
			if _, err := c.Refresh(context.Background(), clRefresh); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if got := clock.Sleeps(); !clEqualDurations(got, []time.Duration{tc.want}) {
				t.Errorf("sleeps = %v, want [%v]", got, tc.want)
			}
		})
	}
}

func TestRetryStopsBeforeDeadline(t *testing.T) {
	ts := newClServer(t, clHTML(503))
	clock := newClClock(clT0) // unrelated to the real clock the deadline is on
	c := vbctoken.NewClient(vbctoken.ClientConfig{
		Endpoints: vbctoken.Endpoints{TokenURL: ts.URL + "/token"},
		Retry: vbctoken.RetryPolicy{
			Initial: 30 * time.Minute, Max: 10 * time.Hour, Sleep: clock.Sleep, Now: clock.Now,
			Rand: func() float64 { return 0.999 },
		},
		Now: clock.Now,
	}, clCreds)
	// Fake waits of ≈30 min and ≈60 min fit in the 100 minutes the deadline leaves (however
	// long the machine takes to get there); the third (≈120 min) would not, so it stops
	// after 3 attempts, long before MaxAttempts (8), and without waiting for the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Minute)
	defer cancel()

	_, err := c.Refresh(ctx, clRefresh)

	var ue *vbctoken.UpstreamError
	if !errors.As(err, &ue) || !errors.Is(err, vbctoken.ErrTransient) {
		t.Fatalf("error %v, want a transient *UpstreamError", err)
	}
	if ue.Attempts != 3 || len(ts.Requests()) != 3 {
		t.Errorf("attempts = %d (server saw %d), want 3", ue.Attempts, len(ts.Requests()))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v claims the deadline passed; it stopped before", err)
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("per-request timeout is transient and retried", func(t *testing.T) {
		ts := newClServer(t, clReply{block: true})
		clock := newClClock(clT0)
		c := newClClient(ts, clock, func(cfg *vbctoken.ClientConfig) {
			cfg.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
		})

		_, err := c.Refresh(context.Background(), clRefresh)

		var ue *vbctoken.UpstreamError
		if !errors.As(err, &ue) || !errors.Is(err, vbctoken.ErrTransient) {
			t.Fatalf("error %v, want a transient *UpstreamError", err)
		}
		if ue.Attempts != 3 || ue.StatusCode != 0 {
			t.Errorf("Attempts = %d, StatusCode = %d; want 3, 0", ue.Attempts, ue.StatusCode)
		}
		clAssertNoSecrets(t, err)
	})
	t.Run("caller's deadline ends the retries", func(t *testing.T) {
		ts := newClServer(t, clReply{block: true})
		c := newClClient(ts, newClClock(clT0))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()

		_, err := c.Refresh(ctx, clRefresh)

		if !errors.Is(err, vbctoken.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want transient and DeadlineExceeded", err)
		}
		var ue *vbctoken.UpstreamError
		if !errors.As(err, &ue) || ue.Attempts != 1 {
			t.Errorf("error %v: want one attempt", err)
		}
		clAssertNoSecrets(t, err)
	})
	t.Run("cancelled context", func(t *testing.T) {
		ts := newClServer(t, clJSON(200, clOKBody))
		c := newClClient(ts, newClClock(clT0))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()

		_, err := c.Exchange(ctx, clCode, "")

		if !errors.Is(err, context.Canceled) || !errors.Is(err, vbctoken.ErrTransient) {
			t.Fatalf("error %v, want transient and Canceled", err)
		}
	})
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	ts := newClServer(t, clJSON(200, clOKBody))
	tokenURL := ts.URL + "/token"
	ts.Close()
	clock := newClClock(clT0)
	c := vbctoken.NewClient(vbctoken.ClientConfig{
		Endpoints: vbctoken.Endpoints{TokenURL: tokenURL},
		Retry:     vbctoken.RetryPolicy{MaxAttempts: 2, Sleep: clock.Sleep, Now: clock.Now},
	}, clCreds)

	_, err := c.Password(context.Background(), "admin", clPassword)

	var ue *vbctoken.UpstreamError
	if !errors.As(err, &ue) || !errors.Is(err, vbctoken.ErrTransient) || ue.Attempts != 2 {
		t.Fatalf("error %v, want a transient *UpstreamError after 2 attempts", err)
	}
	clAssertNoSecrets(t, err)
}

func TestPairNeverPrintsTokens(t *testing.T) {
	ts := newClServer(t, clJSON(200, clOKBody))
	pair, err := newClClient(ts, newClClock(clT0)).Exchange(context.Background(), clCode, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(pair), fmt.Sprintf("%+v", pair), fmt.Sprintf("%#v", pair)} {
		clAssertNoSecrets(t, errors.New(s))
	}
}

func clAssertForm(t *testing.T, got, want url.Values) {
	t.Helper()
	for k := range want {
		if g := got[k]; len(g) != 1 || g[0] != want.Get(k) {
			t.Errorf("form %s = %q, want %q", k, g, want.Get(k))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected form field %s", k)
		}
	}
}

func clAssertPair(t *testing.T, got *vbctoken.Pair, want vbctoken.Pair) {
	t.Helper()
	if got == nil {
		t.Fatal("nil pair")
	}
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken || got.IDToken != want.IDToken {
		t.Errorf("tokens = (%q, %q, %q), want (%q, %q, %q)",
			got.AccessToken.Reveal(), got.RefreshToken.Reveal(), got.IDToken.Reveal(),
			want.AccessToken.Reveal(), want.RefreshToken.Reveal(), want.IDToken.Reveal())
	}
	if got.TokenType != want.TokenType || got.Scope != want.Scope || got.Grant != want.Grant {
		t.Errorf("type/scope/grant = %q/%q/%q, want %q/%q/%q", got.TokenType, got.Scope, got.Grant, want.TokenType, want.Scope, want.Grant)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) || !got.RefreshExpiresAt.Equal(want.RefreshExpiresAt) || !got.ObtainedAt.Equal(want.ObtainedAt) {
		t.Errorf("times = %v / %v / %v, want %v / %v / %v", got.ExpiresAt, got.RefreshExpiresAt, got.ObtainedAt,
			want.ExpiresAt, want.RefreshExpiresAt, want.ObtainedAt)
	}
}

func clEqualDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRedirectNotFollowedWithCustomClient(t *testing.T) {
	target := newClServer(t, clJSON(200, clOKBody))
	ts := newClServer(t, clReply{status: 307, header: map[string]string{"Location": target.URL + "/token"}})
	c := newClClient(ts, newClClock(clT0), func(cfg *vbctoken.ClientConfig) {
		cfg.HTTPClient = &http.Client{Timeout: time.Second} // no CheckRedirect of its own
	})

	_, err := c.Refresh(context.Background(), clRefresh)

	if !errors.Is(err, vbctoken.ErrUpstreamRejected) {
		t.Errorf("Refresh = %v, want ErrUpstreamRejected", err)
	}
	if n := len(target.Requests()); n != 0 {
		t.Errorf("the redirect target received %d requests (with the client secret)", n)
	}
}
