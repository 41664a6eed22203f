package vbctoken_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// trAPI is a fake VBC API: it accepts the bearer tokens in valid, answers 401 with WSO2's
// gateway fault otherwise, and records what it received.
type trAPI struct {
	mu    sync.Mutex
	valid map[string]bool
	seen  []trRequest
	// hold, when set, runs before a request is answered (a barrier for concurrency tests).
	hold func(token string)
}

// trRequest is one request the API received, the token named without its prefix.
type trRequest struct {
	method, token, body string
	status              int
}

func newTrAPI(valid ...string) *trAPI {
	a := &trAPI{valid: map[string]bool{}}
	a.allow(valid...)
	return a
}

func (a *trAPI) allow(names ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range names {
		a.valid[srcSecret+n] = true
	}
}

func (a *trAPI) revoke(names ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range names {
		delete(a.valid, srcSecret+n)
	}
}

func (a *trAPI) requests() []trRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]trRequest(nil), a.seen...)
}

func (a *trAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if a.hold != nil {
		a.hold(token)
	}
	a.mu.Lock()
	ok := a.valid[token]
	status := http.StatusOK
	if !ok {
		status = http.StatusUnauthorized
	}
	a.seen = append(a.seen, trRequest{method: r.Method, token: strings.TrimPrefix(token, srcSecret), body: string(body), status: status})
	a.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(status)
		io.WriteString(w, `{"fault":{"code":900901,"message":"Invalid Credentials"}}`)
		return
	}
	io.WriteString(w, "hello "+strings.TrimPrefix(token, srcSecret))
}

// trLeaks collects every string a test produced (errors, bodies, logs) and fails when one
// carries a token value.
type trLeaks struct{ out []string }

func (l *trLeaks) add(vs ...any) {
	for _, v := range vs {
		if v == nil {
			continue
		}
		l.out = append(l.out, fmt.Sprint(v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v))
	}
}

func (l *trLeaks) check(t *testing.T) {
	t.Helper()
	for _, s := range l.out {
		if strings.Contains(s, srcSecret) {
			t.Errorf("output carries a token: %s", s)
		}
	}
}

// What one request through the Transport does, by what the API and the secret hold.
func TestTransport(t *testing.T) {
	type req struct {
		method string
		body   string
		// noReplay sends a body without GetBody (a stream the Transport cannot rewind).
		noReplay bool
	}
	tests := []struct {
		name string
		// stored is the token in the access secret when the app starts (t0, valid).
		// between runs after the first request: the keeper writes, the API revokes.
		between   func(store *memstore.Store, api *trAPI, now time.Time)
		second    req
		wantCode  int
		wantBody  string      // of the second request's response
		wantSent  []trRequest // by the second request (method, token, body, status)
		wantReads int         // reads of the secret in all
		// third sends one more GET afterwards and expects this token (""; skip).
		third string
	}{
		{
			name:      "valid token: sent once with the Authorization header",
			second:    req{method: http.MethodGet},
			wantCode:  200,
			wantBody:  "hello t0",
			wantSent:  []trRequest{{"GET", "t0", "", 200}},
			wantReads: 1,
		},
		{
			name: "keeper refreshed: 401, one re-read, retried with the new token",
			between: func(store *memstore.Store, api *trAPI, now time.Time) {
				put(store, srcAccess("t1", now.Add(24*time.Hour)))
				api.revoke("t0")
				api.allow("t1")
			},
			second:    req{method: http.MethodGet},
			wantCode:  200,
			wantBody:  "hello t1",
			wantSent:  []trRequest{{"GET", "t0", "", 401}, {"GET", "t1", "", 200}},
			wantReads: 2,
			third:     "t1",
		},
		{
			name: "POST with a replayable body: the same body is sent again",
			between: func(store *memstore.Store, api *trAPI, now time.Time) {
				put(store, srcAccess("t1", now.Add(24*time.Hour)))
				api.revoke("t0")
				api.allow("t1")
			},
			second:    req{method: http.MethodPost, body: `{"to":"+15550100"}`},
			wantCode:  200,
			wantSent:  []trRequest{{"POST", "t0", `{"to":"+15550100"}`, 401}, {"POST", "t1", `{"to":"+15550100"}`, 200}},
			wantReads: 2,
		},
		{
			name: "body that cannot be replayed: the 401 is returned, the next request has the new token",
			between: func(store *memstore.Store, api *trAPI, now time.Time) {
				put(store, srcAccess("t1", now.Add(24*time.Hour)))
				api.revoke("t0")
				api.allow("t1")
			},
			second:    req{method: http.MethodPost, body: "stream", noReplay: true},
			wantCode:  401,
			wantBody:  `{"fault":{"code":900901,"message":"Invalid Credentials"}}`,
			wantSent:  []trRequest{{"POST", "t0", "stream", 401}},
			wantReads: 1, // the re-read happens on the next request
			third:     "t1",
		},
		{
			name: "the secret still holds the rejected token: the 401 is returned, no loop",
			between: func(store *memstore.Store, api *trAPI, now time.Time) {
				api.revoke("t0") // e.g. revoked at VBC, keeper not done writing
			},
			second:    req{method: http.MethodGet},
			wantCode:  401,
			wantBody:  `{"fault":{"code":900901,"message":"Invalid Credentials"}}`,
			wantSent:  []trRequest{{"GET", "t0", "", 401}},
			wantReads: 2,
		},
		{
			name: "the new token is refused too: its 401 is returned, one retry only",
			between: func(store *memstore.Store, api *trAPI, now time.Time) {
				put(store, srcAccess("t1", now.Add(24*time.Hour)))
				api.revoke("t0")
			},
			second:    req{method: http.MethodGet},
			wantCode:  401,
			wantSent:  []trRequest{{"GET", "t0", "", 401}, {"GET", "t1", "", 401}},
			wantReads: 2,
		},
		{
			name: "a 403 is not about the token: returned, nothing re-read",
			between: func(store *memstore.Store, api *trAPI, now time.Time) {
				put(store, srcAccess("t1", now.Add(24*time.Hour)))
			},
			second:    req{method: http.MethodDelete},
			wantCode:  403,
			wantReads: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var leaks trLeaks
			defer leaks.check(t)
			clock := newSrcClock()
			store := srcStore(t, srcAccess("t0", srcT0.Add(24*time.Hour)))
			api := newTrAPI("t0")
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodDelete {
					w.WriteHeader(http.StatusForbidden)
					return
				}
				api.ServeHTTP(w, r)
			}))
			defer srv.Close()
			client := vbctoken.NewSource(store, vbctoken.WithClock(clock.Now)).Client()

			do := func(r req) (int, string) {
				t.Helper()
				var body io.Reader
				if r.body != "" {
					body = strings.NewReader(r.body)
					if r.noReplay {
						body = io.NopCloser(body) // hides the type http.NewRequest sets GetBody for
					}
				}
				hr, err := http.NewRequest(r.method, srv.URL+"/api/whoami", body)
				if err != nil {
					t.Fatal(err)
				}
				res, err := client.Do(hr)
				leaks.add(err)
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				leaks.add(string(b), res.Header, res.Request.URL)
				if hr.Header.Get("Authorization") != "" {
					t.Fatal("the Transport modified the caller's request")
				}
				return res.StatusCode, string(b)
			}

			if code, _ := do(req{method: http.MethodGet}); code != 200 {
				t.Fatalf("first request: %d", code)
			}
			if tt.between != nil {
				tt.between(store, api, clock.Now())
			}
			clock.Advance(time.Minute)
			before := len(api.requests())
			code, body := do(tt.second)
			if code != tt.wantCode {
				t.Errorf("status %d, want %d", code, tt.wantCode)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if tt.wantSent != nil {
				if got := api.requests()[before:]; fmt.Sprint(got) != fmt.Sprint(tt.wantSent) {
					t.Errorf("the API received\n%v\nwant\n%v", got, tt.wantSent)
				}
			}
			if got := srcReads(store); got != tt.wantReads {
				t.Errorf("%d reads of the secret, want %d", got, tt.wantReads)
			}
			if tt.third != "" {
				do(req{method: http.MethodGet})
				seen := api.requests()
				if got := seen[len(seen)-1].token; got != tt.third {
					t.Errorf("next request sent %s, want %s", got, tt.third)
				}
			}
		})
	}
}

func put(store *memstore.Store, a vbctoken.AccessToken) {
	if err := store.PutAccess(context.Background(), a); err != nil {
		panic(err)
	}
}

// A stream of 401s with a token the keeper has not replaced costs one read per
// WithMinReread, and no request is sent more than twice.
func TestTransportRejectedTokenNoStampede(t *testing.T) {
	clock := newSrcClock()
	store := srcStore(t, srcAccess("dead", srcT0.Add(24*time.Hour)))
	api := newTrAPI()
	srv := httptest.NewServer(api)
	defer srv.Close()
	client := vbctoken.NewSource(store, vbctoken.WithClock(clock.Now)).Client()
	get := func() int {
		t.Helper()
		res, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for i := range 20 { // 10 requests a second for 2 s
		if code := get(); code != 401 {
			t.Fatalf("request %d: %d, want 401", i, code)
		}
		clock.Advance(100 * time.Millisecond)
	}
	if got := len(api.requests()); got != 20 {
		t.Fatalf("the API received %d requests for 20 calls, want 20 (nothing to retry with)", got)
	}
	if got := srcReads(store); got > 4 {
		t.Fatalf("%d reads in 2 s of 401s, want at most 1 + one per second", got)
	}
	// The keeper writes a working token: the next request finds it.
	put(store, srcAccess("live", clock.Now().Add(24*time.Hour)))
	api.allow("live")
	clock.Advance(vbctoken.DefaultMinReread)
	if code := get(); code != 200 {
		t.Fatalf("after the keeper wrote: %d", code)
	}
}

// Many requests rejected at once with the same token share one re-read of the secret and
// all succeed with the new token.
func TestTransportConcurrent401sShareOneReread(t *testing.T) {
	const n = 50
	clock := newSrcClock()
	store := srcStore(t, srcAccess("t0", srcT0.Add(24*time.Hour)))
	api := newTrAPI("t1") // t0 is already dead: the keeper refreshed
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	api.hold = func(token string) {
		if token == srcSecret+"t0" {
			arrived.Done()
			<-all // every request carries t0 before any 401 goes out
		}
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	src := vbctoken.NewSource(store, vbctoken.WithClock(clock.Now))
	if _, err := src.Token(); err != nil { // warm: t0 cached
		t.Fatal(err)
	}
	put(store, srcAccess("t1", srcT0.Add(25*time.Hour)))
	client := &http.Client{Transport: &vbctoken.Transport{Source: src, Base: srv.Client().Transport}}

	var wg sync.WaitGroup
	var ok atomic.Int64
	for range n {
		wg.Go(func() {
			res, err := client.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != n {
		t.Fatalf("%d of %d requests succeeded", ok.Load(), n)
	}
	if got := srcReads(store); got != 2 {
		t.Fatalf("%d reads of the secret, want 2 (the warm-up and one shared re-read)", got)
	}
	if got := len(api.requests()); got != 2*n {
		t.Fatalf("the API received %d requests, want %d (each sent twice)", got, 2*n)
	}
}

// Errors of the Source reach the caller wrapped, without a token, and nothing is sent.
func TestTransportSourceErrors(t *testing.T) {
	var leaks trLeaks
	defer leaks.check(t)
	var logs testutil.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	api := newTrAPI()
	srv := httptest.NewServer(api)
	defer srv.Close()
	clock := newSrcClock()
	for _, tc := range []struct {
		name   string
		stored vbctoken.AccessToken
		want   error
	}{
		{"not connected", vbctoken.AccessToken{}, vbctoken.ErrNoValidToken},
		{"expired", srcAccess("old", srcT0.Add(-time.Hour)), vbctoken.ErrNoValidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &vbctoken.Transport{Source: vbctoken.NewSource(srcStore(t, tc.stored), vbctoken.WithClock(clock.Now))}
			res, err := (&http.Client{Transport: tr}).Post(srv.URL, "text/plain", strings.NewReader("x"))
			if res != nil {
				res.Body.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			log.Error("request failed", "err", err, "transport", tr)
			leaks.add(err, tr, tr.Source)
		})
	}
	if _, err := (&vbctoken.Transport{}).RoundTrip(httptest.NewRequest("GET", srv.URL, nil)); err == nil {
		t.Fatal("a Transport without a Source sent a request")
	}
	if n := len(api.requests()); n != 0 {
		t.Fatalf("%d requests reached the API", n)
	}
	leaks.add(logs.String())
}

// The request body is closed whatever happens, as http.RoundTripper requires.
func TestTransportClosesBody(t *testing.T) {
	api := newTrAPI("t1")
	srv := httptest.NewServer(api)
	defer srv.Close()
	for _, tc := range []struct {
		name   string
		stored vbctoken.AccessToken
	}{
		{"source error", vbctoken.AccessToken{}},
		{"401 not replayable", srcAccess("t0", time.Now().Add(time.Hour))},
		{"200", srcAccess("t1", time.Now().Add(time.Hour))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &trBody{Reader: bytes.NewReader([]byte("payload"))}
			req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
			client := vbctoken.NewSource(srcStore(t, tc.stored)).Client()
			if res, err := client.Do(req); err == nil {
				res.Body.Close()
			}
			if !body.closed.Load() {
				t.Fatal("request body not closed")
			}
		})
	}
}

type trBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trBody) Close() error { b.closed.Store(true); return nil }
