package vbcsandbox

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/testutil"
)

const (
	appID       = "app-key"
	appSecret   = "app-secret"
	appCallback = "https://app.example/callback"
	otherID     = "other-key"
	otherSecret = "other-secret"
	otherCB     = "https://other.example/cb"
	userName    = "alice@vbc.prod"
	userPass    = "s3cret"
)

// One key for the whole test binary: RSA generation costs more than most tests.
var testKey = testutil.SigningKey

// fakeClock is a settable sandbox clock.
type fakeClock = testutil.Clock

func newFakeClock() *fakeClock {
	return testutil.NewClock(time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC))
}

type env struct {
	sb    *Sandbox
	srv   *httptest.Server
	clock *fakeClock
}

// newEnv starts a sandbox with two clients and one user on a fake clock; edit adjusts the
// options first.
func newEnv(t *testing.T, edit func(*Options)) *env {
	t.Helper()
	clock := newFakeClock()
	opts := Options{
		Clients: []Client{
			{ID: appID, Secret: appSecret, RedirectURLs: []string{appCallback}, Name: "Test App"},
			{ID: otherID, Secret: otherSecret, RedirectURLs: []string{otherCB}},
		},
		Users:      map[string]string{"alice": userPass},
		Now:        clock.Now,
		SigningKey: testKey(),
	}
	if edit != nil {
		edit(&opts)
	}
	sb := New(opts)
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return &env{sb: sb, srv: srv, clock: clock}
}

// reply is a token endpoint answer.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any // nil unless the body is a JSON object
}

func (r reply) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

func (r reply) expiresIn() int64 {
	f, _ := r.body["expires_in"].(float64)
	return int64(f)
}

func (e *env) do(t *testing.T, req *http.Request) reply {
	t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	out := reply{status: res.StatusCode, header: res.Header, raw: string(b)}
	_ = json.Unmarshal(b, &out.body)
	return out
}

// basic is HTTP Basic credentials; the zero value sends none.
type basic struct{ id, secret string }

func (e *env) tokenRequest(t *testing.T, form url.Values, auth basic) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+TokenPath, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth.id != "" {
		req.SetBasicAuth(auth.id, auth.secret)
	}
	return req
}

func (e *env) token(t *testing.T, form url.Values, auth basic) reply {
	t.Helper()
	return e.do(t, e.tokenRequest(t, form, auth))
}

func (e *env) authorizeURL(params map[string]string) string {
	q := url.Values{
		"scope":         {"openid"},
		"response_type": {"code"},
		"redirect_uri":  {appCallback},
		"client_id":     {appID},
		"state":         {"st-1"},
	}
	for k, v := range params {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return e.srv.URL + AuthorizePath + "?" + q.Encode()
}

// approveCode runs a consent and returns the code.
func (e *env) approveCode(t *testing.T, params map[string]string) string {
	t.Helper()
	cb, err := e.sb.Approve(e.authorizeURL(params))
	if err != nil {
		t.Fatalf("Approve: %v", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	code := u.Query().Get("code")
	if code == "" {
		t.Fatalf("callback %q has no code", cb)
	}
	return code
}

func exchangeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCallback}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {appID}, "client_secret": {appSecret}}
}

func passwordForm(user, pass, scope string) url.Values {
	f := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "client_id": {appID}, "client_secret": {appSecret}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

var appBasic = basic{appID, appSecret}

// consent returns a fresh pair from the code grant.
func (e *env) consent(t *testing.T) reply {
	t.Helper()
	r := e.token(t, exchangeForm(e.approveCode(t, nil)), appBasic)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.raw)
	}
	return r
}

func wantOAuthError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d error=%s", r.status, r.raw, status, code)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
