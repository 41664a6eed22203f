package web_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

const (
	cbClientID     = "corpus-client"
	cbClientSecret = "corpus-CLIENT-secret-0f1e2d3c"
	cbRedirect     = "https://keeper.example/callback"
)

// callbackEnv is the callback over a keeper, a memstore and the VBC sandbox, on a fake
// clock: what the Lambda and `vbctoken serve` run, minus AWS.
type callbackEnv struct {
	clock   *testutil.Clock
	vbc     *vbcsandbox.Sandbox
	store   *memstore.Store
	keeper  *vbctoken.Keeper
	cb      *web.Callback
	logs    *testutil.Buffer
	secrets []string // values that must never appear in a page or a log line
}

func newCallbackEnv(t testing.TB) *callbackEnv {
	t.Helper()
	clock := testutil.NewClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	vbc := vbcsandbox.New(vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: cbClientID, Secret: cbClientSecret, RedirectURLs: []string{cbRedirect}}},
		Now:        clock.Now,
		SigningKey: testutil.SigningKey(),
	})
	srv := httptest.NewServer(vbc)
	t.Cleanup(srv.Close)
	store := memstore.New(vbctoken.Credentials{ClientID: cbClientID, ClientSecret: cbClientSecret})
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	retry := vbctoken.RetryPolicy{Sleep: clock.Sleep, MaxAttempts: 2}
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store: store,
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{AuthorizeURL: srv.URL + vbcsandbox.AuthorizePath, TokenURL: srv.URL + vbcsandbox.TokenPath},
			RedirectURL: cbRedirect,
			Retry:       retry,
		},
		StoreRetry: retry,
		Now:        clock.Now,
		Logger:     log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &callbackEnv{
		clock: clock, vbc: vbc, store: store, keeper: k, logs: logs,
		cb:      &web.Callback{Keeper: k, Log: log},
		secrets: []string{cbClientSecret},
	}
}

// consent returns the state and code VBC appends to the callback URL when the admin
// approves a freshly minted consent link.
func (e *callbackEnv) consent(t testing.TB) (state, code string) {
	t.Helper()
	authURL, err := e.keeper.ConsentURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := e.vbc.Approve(authURL)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	state, code = u.Query().Get("state"), u.Query().Get("code")
	e.secrets = append(e.secrets, code)
	return state, code
}

// writes counts the store writes since the last reset.
func (e *callbackEnv) writes() int {
	return e.store.Calls(memstore.OpCommitPair) + e.store.Calls(memstore.OpPutAccess)
}

// tokenRequests counts the requests VBC's token endpoint received.
func (e *callbackEnv) tokenRequests() int {
	n := 0
	for _, c := range e.vbc.Stats().Requests {
		n += c
	}
	return n
}

// mint signs a state as a deployment whose client secret is secret would, at `at`: the state
// of a consent link its keeper mints.
func mint(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store: memstore.New(vbctoken.Credentials{ClientID: "mint", ClientSecret: vbctoken.Secret(secret)}),
		Now:   func() time.Time { return at },
	})
	if err != nil {
		t.Fatal(err)
	}
	link, err := k.ConsentURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("state")
}

// input is one bad request of the corpus.
type input struct {
	name      string
	method    string // default GET
	path      string // default /callback
	query     string // the raw query string, sent byte for byte
	header    [][2]string
	want      int    // the exact status, or 0 for any 4xx
	text      string // the page must say this
	httpOnly  bool   // only meaningful over net/http (headers)
	eventOnly bool   // bytes no HTTP client can put on a request line
	// httpWant overrides want over net/http, where the server itself may answer first.
	httpWant int
}

// corpus builds the bad inputs. Genuine states and codes come from env; none of the inputs
// carries a genuine state together with a genuine, unused code and nothing else wrong.
func corpus(t testing.TB, env *callbackEnv) []input {
	now := env.clock.Now()
	state, code := env.consent(t) // genuine, never completed
	q := url.QueryEscape
	tampered := []byte(state)
	tampered[len(tampered)/2] ^= 0x01
	other := mint(t, "another-deployments-client-secret", now)
	expired := mint(t, cbClientSecret, now.Add(-time.Hour))
	// A genuine state whose base64url spelling differs from standard base64's.
	std := ""
	for i := 0; std == "" && i < 50; i++ {
		if s, _ := env.consent(t); strings.ContainsAny(s, "-_") {
			std = strings.NewReplacer("-", "+", "_", "/").Replace(s)
		}
	}
	if std == "" {
		t.Fatal("no minted state used - or _")
	}
	script := "<script>alert(document.cookie)</script>"
	img := `"><img src=x onerror=alert(1)>`
	long := strings.Repeat("A", 5000)

	ins := []input{
		// Missing and empty parameters.
		{name: "no query", want: http.StatusBadRequest, text: "missing the authorization code"},
		{name: "only state", query: "state=" + q(state), want: http.StatusBadRequest, text: "missing the authorization code"},
		{name: "only code", query: "code=" + q(code), want: http.StatusBadRequest, text: "missing its state"},
		{name: "empty code", query: "code=&state=" + q(state), want: http.StatusBadRequest},
		{name: "empty state", query: "code=" + q(code) + "&state=", want: http.StatusBadRequest},
		{name: "both empty", query: "code=&state=", want: http.StatusBadRequest},
		{name: "names without values", query: "code&state", want: http.StatusBadRequest},
		{name: "only ampersands", query: "&&&&", want: http.StatusBadRequest},
		{name: "unknown parameters only", query: "foo=bar&baz=1", want: http.StatusBadRequest},
		{name: "case-changed names", query: "Code=" + q(code) + "&STATE=" + q(state), want: http.StatusBadRequest},
		// Duplicated parameters.
		{name: "code twice", query: "code=" + q(code) + "&code=" + q(code) + "&state=" + q(state), want: http.StatusBadRequest, text: "repeats a parameter"},
		{name: "state twice", query: "code=" + q(code) + "&state=" + q(state) + "&state=" + q(state), want: http.StatusBadRequest, text: "repeats a parameter"},
		{name: "state twice, different", query: "code=" + q(code) + "&state=" + q(state) + "&state=" + q(other), want: http.StatusBadRequest},
		{name: "error twice", query: "error=access_denied&error=server_error&state=x", want: http.StatusBadRequest},
		{name: "empty duplicate", query: "code=" + q(code) + "&state=" + q(state) + "&code=", want: http.StatusBadRequest},
		{name: "thousand parameters", query: strings.Repeat("a=1&", 1000) + "code=x&state=y", want: http.StatusBadRequest},
		// Oversized.
		{name: "query over 4 KiB", query: "code=" + long + "&state=" + q(state), want: http.StatusRequestURITooLong},
		{name: "code over 1 KiB", query: "code=" + strings.Repeat("c", 1500) + "&state=" + q(state), want: http.StatusBadRequest, text: "far longer"},
		{name: "state over 256 bytes", query: "code=" + q(code) + "&state=" + strings.Repeat("s", 300), want: http.StatusBadRequest},
		{name: "huge parameter name", query: strings.Repeat("n", 3000) + "=1&code=x&state=y", want: http.StatusBadRequest},
		{name: "error_description over 4 KiB", query: "error=access_denied&error_description=" + long, want: http.StatusRequestURITooLong},
		{name: "long error_description", query: "error=invalid_request&error_description=" + strings.Repeat("d", 3000), want: http.StatusBadRequest},
		// Bad percent-encoding and invalid UTF-8.
		{name: "lone percent", query: "code=%&state=" + q(state), want: http.StatusBadRequest, text: "not encoded correctly"},
		{name: "bad hex", query: "code=%zz&state=" + q(state), want: http.StatusBadRequest},
		{name: "truncated escape", query: "code=x&state=%e", want: http.StatusBadRequest},
		{name: "semicolon separator", query: "code=x;state=y", want: http.StatusBadRequest},
		{name: "invalid UTF-8 value", query: "code=%ff%fe&state=" + q(state), want: http.StatusBadRequest, text: "not valid text"},
		{name: "invalid UTF-8 state", query: "code=" + q(code) + "&state=%c3%28", want: http.StatusBadRequest},
		{name: "invalid UTF-8 name", query: "%ff=1&code=x&state=y", want: http.StatusBadRequest},
		{name: "overlong UTF-8", query: "code=%c0%af&state=y", want: http.StatusBadRequest},
		{name: "UTF-16 surrogate", query: "code=%ed%a0%80&state=y", want: http.StatusBadRequest},
		{name: "NUL in code", query: "code=a%00b&state=" + q(other), want: http.StatusBadRequest},
		{name: "NUL in state", query: "code=" + q(code) + "&state=" + q(state) + "%00", want: http.StatusBadRequest},
		{name: "raw invalid UTF-8 bytes", query: "code=\xff\xfe&state=" + q(state), want: http.StatusBadRequest, eventOnly: true},
		{name: "raw control bytes", query: "code=\x01\x02&state=\x7f", want: 0, eventOnly: true},
		{name: "raw space", query: "code=a b&state=c d", want: 0, eventOnly: true},
		// Consent state: tampered, truncated, expired, replayed (below), foreign, garbage.
		{name: "tampered state", query: "code=" + q(code) + "&state=" + q(string(tampered)), want: http.StatusBadRequest, text: "not valid"},
		{name: "truncated state", query: "code=" + q(code) + "&state=" + q(state[:len(state)-4]), want: http.StatusBadRequest},
		{name: "state with extra byte", query: "code=" + q(code) + "&state=" + q(state+"A"), want: http.StatusBadRequest},
		{name: "expired state", query: "code=" + q(code) + "&state=" + q(expired), want: http.StatusBadRequest, text: "expired"},
		{name: "state of another deployment", query: "code=" + q(code) + "&state=" + q(other), want: http.StatusBadRequest, text: "not valid"},
		{name: "state padded base64", query: "code=" + q(code) + "&state=" + q(state+"=="), want: http.StatusBadRequest},
		{name: "state in standard base64", query: "code=" + q(code) + "&state=" + q(std), want: http.StatusBadRequest},
		{name: "state is HTML", query: "code=" + q(code) + "&state=" + q(script), want: http.StatusBadRequest},
		{name: "state is a number", query: "code=" + q(code) + "&state=12345", want: http.StatusBadRequest},
		{name: "state is JSON", query: "code=" + q(code) + "&state=" + q(`{"nonce":"x"}`), want: http.StatusBadRequest},
		{name: "code is HTML", query: "code=" + q(script) + "&state=" + q(other), want: http.StatusBadRequest},
		// error= redirects with HTML and script payloads.
		{name: "error is script", query: "error=" + q(script) + "&state=x", want: http.StatusBadRequest},
		{name: "error_description is script", query: "error=invalid_request&error_description=" + q(script) + "&state=x", want: http.StatusBadRequest},
		{name: "error_description breaks out of attribute", query: "error=invalid_scope&error_description=" + q(img), want: http.StatusBadRequest},
		{name: "error_description javascript URL", query: "error=access_denied&error_description=" + q("javascript:alert(1)"), want: http.StatusForbidden},
		{name: "error_description with bidi and controls", query: "error=invalid_request&error_description=" + q("abc\u202edcba\u0000\u0007\r\n"), want: http.StatusBadRequest},
		{name: "error_description with markup entities", query: "error=invalid_request&error_description=" + q("&lt;script&gt; &amp; &#60;b&#62;"), want: http.StatusBadRequest},
		{name: "empty error", query: "error=&state=x", want: http.StatusBadRequest},
		{name: "error NUL", query: "error=%00", want: http.StatusBadRequest},
		{name: "declined", query: "error=access_denied&error_description=The+user+denied&state=" + q(state), want: http.StatusForbidden, text: "Consent declined"},
		{name: "error together with a genuine code", query: "error=access_denied&code=" + q(code) + "&state=" + q(state), want: http.StatusForbidden},
		{name: "error with script and genuine state", query: "error=" + q(script) + "&error_description=" + q(img) + "&state=" + q(state), want: http.StatusBadRequest},
		// Upstream says it failed: 502/503 are right here, and nothing is written.
		{name: "VBC server_error", query: "error=server_error&error_description=" + q(script), want: http.StatusBadGateway},
		{name: "VBC temporarily_unavailable", query: "error=temporarily_unavailable", want: http.StatusServiceUnavailable},
		// Wrong methods and paths.
		{name: "POST", method: http.MethodPost, query: "code=" + q(code) + "&state=" + q(state), want: http.StatusMethodNotAllowed, text: "only answers GET"},
		{name: "PUT", method: http.MethodPut, query: "code=x&state=y", want: http.StatusMethodNotAllowed},
		{name: "DELETE", method: http.MethodDelete, want: http.StatusMethodNotAllowed},
		{name: "PATCH", method: http.MethodPatch, want: http.StatusMethodNotAllowed},
		{name: "OPTIONS", method: http.MethodOptions, want: http.StatusMethodNotAllowed},
		{name: "TRACE", method: http.MethodTrace, want: http.StatusMethodNotAllowed},
		{name: "HEAD", method: http.MethodHead, query: "code=x&state=y", want: http.StatusMethodNotAllowed},
		{name: "lower-case get", method: "get", query: "code=" + q(code) + "&state=" + q(state), want: http.StatusMethodNotAllowed},
		{name: "made-up method", method: "PROPFIND", want: http.StatusMethodNotAllowed},
		{name: "method is script", method: "<script>", want: http.StatusMethodNotAllowed, eventOnly: true},
		{name: "root", path: "/", query: "code=" + q(code) + "&state=" + q(state), want: http.StatusNotFound},
		{name: "trailing slash", path: "/callback/", query: "code=" + q(code) + "&state=" + q(state), want: http.StatusNotFound},
		{name: "upper case", path: "/Callback", want: http.StatusNotFound},
		{name: "suffix", path: "/callbackx", want: http.StatusNotFound},
		{name: "double slash", path: "//callback", want: http.StatusNotFound},
		{name: "dot segment", path: "/x/../callback/.", want: http.StatusNotFound},
		{name: "encoded slash", path: "/callback%2F", want: http.StatusNotFound},
		{name: "path is script", path: "/" + q(script), want: http.StatusNotFound},
		{name: "long path", path: "/" + strings.Repeat("p", 3000), want: http.StatusNotFound},
		{name: "wrong path and method", method: http.MethodPost, path: "/admin", want: http.StatusNotFound},
		// Headers (net/http only: the Lambda adapter reads none).
		{name: "request id is script", header: [][2]string{{"X-Request-Id", script}}, want: http.StatusBadRequest, httpOnly: true},
		{name: "request id 8 KiB", header: [][2]string{{"X-Request-Id", strings.Repeat("r", 8<<10)}}, want: http.StatusBadRequest, httpOnly: true},
		{name: "many headers", header: manyHeaders(500), query: "code=x&state=y", want: http.StatusBadRequest, httpOnly: true},
		{name: "cookie 64 KiB", header: [][2]string{{"Cookie", "c=" + strings.Repeat("z", 64<<10)}}, query: "code=" + q(code) + "&state=" + q(other), want: http.StatusBadRequest, httpOnly: true},
		{name: "headers over 1 MiB", header: [][2]string{{"X-Big", strings.Repeat("h", 1<<20+8<<10)}}, query: "code=" + q(code) + "&state=" + q(state),
			want: http.StatusRequestHeaderFieldsTooLarge, httpOnly: true},
		{name: "header with invalid bytes", header: [][2]string{{"X-Bad", "a\x00b"}}, query: "code=x&state=y", want: http.StatusBadRequest, httpOnly: true},
		{name: "authorization header", header: [][2]string{{"Authorization", "Bearer " + code}}, query: "state=" + q(other), want: http.StatusBadRequest, httpOnly: true},
	}

	// A replayed link: it connected once; every later use is refused and writes nothing.
	rs, rc := env.consent(t)
	if _, err := env.keeper.CompleteConsent(context.Background(), rs, vbctoken.Secret(rc)); err != nil {
		t.Fatal(err)
	}
	ins = append(ins,
		input{name: "replayed state and code", query: "code=" + q(rc) + "&state=" + q(rs), want: http.StatusConflict, text: "already used"},
		input{name: "replayed state, other code", query: "code=" + q(code) + "&state=" + q(rs), want: http.StatusConflict},
		input{name: "replayed state, parameters swapped", query: "state=" + q(rs) + "&code=" + q(rc), want: http.StatusConflict},
	)
	return ins
}

func manyHeaders(n int) [][2]string {
	h := make([][2]string, n)
	for i := range h {
		h[i] = [2]string{fmt.Sprintf("X-H%d", i), "<b>v</b>"}
	}
	return h
}

// pageTags are the only elements a callback page is made of.
var pageTags = map[string]bool{"html": true, "head": true, "meta": true, "title": true, "style": true, "body": true, "main": true,
	"h1": true, "span": true, "p": true, "dl": true, "dt": true, "dd": true, "code": true, "a": true, "footer": true}

var tagRE = regexp.MustCompile(`<([a-zA-Z][a-zA-Z0-9]*)`)

// answer is what came back for one input.
type answer struct {
	status  int
	header  http.Header
	body    string
	handled bool // the callback produced it (not net/http before it)
}

// judge checks one answer; it reports the problems found.
func judge(env *callbackEnv, in input, a answer, want int) []string {
	var problems []string
	switch {
	case want != 0 && a.status != want:
		problems = append(problems, fmt.Sprintf("status %d, want %d", a.status, want))
	case want == 0 && (a.status < 400 || a.status > 499):
		problems = append(problems, fmt.Sprintf("status %d, want a 4xx", a.status))
	}
	if a.status >= 500 && a.status != http.StatusBadGateway && a.status != http.StatusServiceUnavailable {
		problems = append(problems, fmt.Sprintf("HTTP %d for bad input", a.status))
	}
	if a.handled {
		for name, v := range web.SecurityHeaders() {
			if got := a.header.Get(name); got != v {
				problems = append(problems, fmt.Sprintf("header %s = %q, want %q", name, got, v))
			}
		}
		if a.status == http.StatusMethodNotAllowed && a.header.Get("Allow") != http.MethodGet {
			problems = append(problems, "405 without Allow: GET")
		}
		if in.method != http.MethodHead {
			if !strings.Contains(a.body, "<h1>") || !strings.Contains(a.body, `id="title"`) {
				problems = append(problems, "not a vbctoken page")
			}
			if in.text != "" && !strings.Contains(a.body, in.text) {
				problems = append(problems, fmt.Sprintf("page does not say %q", in.text))
			}
		}
	}
	for _, m := range tagRE.FindAllStringSubmatch(a.body, -1) {
		if !pageTags[strings.ToLower(m[1])] {
			problems = append(problems, fmt.Sprintf("unescaped <%s> in the page", m[1]))
		}
	}
	for _, s := range env.secrets {
		if strings.Contains(a.body, s) {
			problems = append(problems, "a secret (code or client secret) is in the page")
		}
	}
	if n := env.writes(); n != 0 {
		problems = append(problems, fmt.Sprintf("%d store writes", n))
	}
	return problems
}

// TestCallbackBadInputCorpus sends every bad input of the corpus to the callback twice: as
// an HTTP request on a real socket (web.Callback.ServeHTTP, as `vbctoken serve` mounts it)
// and as an API Gateway v2 event (web.Callback.Serve with the web.Request the Lambda
// adapter builds). Each must get a clear 4xx page (502/503 only where VBC itself reported
// a failure) with escaped text and every security header, reach no token endpoint, and
// write nothing.
func TestCallbackBadInputCorpus(t *testing.T) {
	env := newCallbackEnv(t)
	ins := corpus(t, env)

	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		env.cb.ServeHTTP(w, r)
	}))
	defer srv.Close()

	tried, handled, byNetHTTP := 0, 0, 0
	baseTokenRequests := env.tokenRequests()
	for _, in := range ins {
		method, path := in.method, in.path
		if method == "" {
			method = http.MethodGet
		}
		if path == "" {
			path = web.CallbackPath
		}
		if !in.eventOnly {
			t.Run("http/"+in.name, func(t *testing.T) {
				tried++
				env.store.ResetCalls()
				before := calls.Load()
				a := rawHTTP(t, srv.Listener.Addr().String(), method, path, in.query, in.header)
				a.handled = calls.Load() > before
				want := in.want
				if in.httpWant != 0 {
					want = in.httpWant
				}
				if !a.handled {
					byNetHTTP++
				}
				if p := judge(env, in, a, want); len(p) > 0 {
					t.Errorf("%s %s?%.80q: %s\n%.600s", method, path, in.query, strings.Join(p, "; "), a.body)
					return
				}
				handled++
			})
		}
		if !in.httpOnly {
			t.Run("event/"+in.name, func(t *testing.T) {
				tried++
				env.store.ResetCalls()
				// Exactly what functions/callback's handler passes on.
				resp := env.cb.Serve(context.Background(), web.Request{Method: method, Path: path, RawQuery: in.query, RequestID: "corpus-" + in.name})
				h := http.Header{}
				for k, v := range resp.Headers {
					h.Set(k, v)
				}
				a := answer{status: resp.Status, header: h, body: resp.Body, handled: true}
				if p := judge(env, in, a, in.want); len(p) > 0 {
					t.Errorf("%s %s?%.80q: %s\n%.600s", method, path, in.query, strings.Join(p, "; "), a.body)
					return
				}
				handled++
			})
		}
	}
	if n := env.tokenRequests() - baseTokenRequests; n != 0 {
		t.Errorf("bad input reached VBC's token endpoint %d times", n)
	}
	logs := env.logs.String()
	for _, s := range env.secrets {
		if strings.Contains(logs, s) {
			t.Error("a secret (code or client secret) is in the logs")
		}
	}
	t.Logf("%d inputs tried (%d answered by net/http before the callback), %d handled, 0 writes", tried, byNetHTTP, handled)
	if handled != tried {
		t.Errorf("%d inputs tried, only %d handled", tried, handled)
	}
}

// rawHTTP writes one request byte for byte on a fresh connection and reads the answer, so
// that bytes an HTTP client would refuse or clean reach the server as they are.
func rawHTTP(t *testing.T, addr, method, path, query string, header [][2]string) answer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	target := path
	if query != "" {
		target += "?" + query
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: keeper.example\r\nUser-Agent: corpus\r\nConnection: close\r\n", method, target)
	for _, h := range header {
		fmt.Fprintf(w, "%s: %s\r\n", h[0], h[1])
	}
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// A genuine state with a code VBC does not know spends the state's nonce (one write, by
// design: a replay is refused even when two callbacks race) and writes nothing else.
func TestCallbackGenuineStateUnknownCode(t *testing.T) {
	env := newCallbackEnv(t)
	state, _ := env.consent(t)
	env.store.ResetCalls()
	resp := env.cb.Serve(context.Background(), web.Request{Method: http.MethodGet, Path: web.CallbackPath,
		RawQuery: "code=not-a-code&state=" + url.QueryEscape(state)})
	if resp.Status != http.StatusBadRequest || !strings.Contains(resp.Body, "did not accept the authorization code") {
		t.Fatalf("status %d\n%s", resp.Status, resp.Body)
	}
	if c, a := env.store.Calls(memstore.OpCommitPair), env.store.Calls(memstore.OpPutAccess); c != 1 || a != 0 {
		t.Errorf("%d pair commits and %d access writes, want the nonce only", c, a)
	}
	if p, _ := env.store.LoadPair(context.Background()); !p.Pair.RefreshToken.IsZero() {
		t.Error("a pair was stored")
	}
}
