package cli

import (
	"bytes"
	"context"
	"flag"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Test fixtures: the sandbox client, its registered callback and a password-grant user.
const (
	testClientID     = "test-client"
	testClientSecret = "test-client-secret-value"
	testRedirect     = "http://127.0.0.1:9/callback"
	testUser         = "alice"
	testPassword     = "correct horse battery staple"
)

// start is the fake clock's first reading.
var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// fakeClock is a settable clock shared by the sandbox and the keeper.
type fakeClock = testutil.Clock

func newFakeClock() *fakeClock { return testutil.NewClock(start) }

// signingKey is shared by every sandbox of the test binary: generating one takes a while.
var signingKey = testutil.SigningKey

// noSleep makes retries instant.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// harness is a VBC sandbox behind httptest, an in-memory store holding the sandbox
// client's credentials, a fake clock and the environment that points vbctoken at them.
type harness struct {
	t     *testing.T
	clock *fakeClock
	sb    *vbcsandbox.Sandbox
	srv   *httptest.Server
	store *memstore.Store
	env   map[string]string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessMode(t, vbcsandbox.ModeLenient)
}

// newHarnessMode is newHarness with the sandbox in mode.
func newHarnessMode(t *testing.T, mode vbcsandbox.Mode) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock()}
	h.sb = vbcsandbox.New(vbcsandbox.Options{
		Mode:       mode,
		Clients:    []vbcsandbox.Client{{ID: testClientID, Secret: testClientSecret, RedirectURLs: []string{testRedirect}}},
		Users:      map[string]string{testUser: testPassword},
		Now:        h.clock.Now,
		SigningKey: signingKey(),
	})
	h.srv = httptest.NewServer(h.sb)
	t.Cleanup(h.srv.Close)
	h.store = memstore.New(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret})
	h.env = map[string]string{
		config.EnvTokenURL:     h.srv.URL + vbcsandbox.TokenPath,
		config.EnvAuthorizeURL: h.srv.URL + vbcsandbox.AuthorizePath,
		config.EnvRedirectURL:  testRedirect,
	}
	return h
}

// result is one run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) all() string { return r.stdout + r.stderr }

// run runs args against the harness's store and sandbox.
func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	var out, errOut bytes.Buffer
	a := &app{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return h.env[k] },
		now:    h.clock.Now,
		openStore: func(context.Context, config.Settings, string, bool) (vbctoken.Store, error) {
			return h.store, nil
		},
		storeRetry:  vbctoken.RetryPolicy{Sleep: noSleep},
		clientRetry: vbctoken.RetryPolicy{Sleep: noSleep},
	}
	code := a.run(context.Background(), args)
	return result{code, out.String(), errOut.String()}
}

// connect consents through the CLI's link, the sandbox's Approve and the shared callback.
func (h *harness) connect() {
	h.t.Helper()
	r := h.run("", "consent-url")
	if r.code != ExitOK {
		h.t.Fatalf("consent-url: exit %d: %s", r.code, r.stderr)
	}
	cb, err := h.sb.Approve(lastLine(r.stdout))
	if err != nil {
		h.t.Fatalf("approve: %v", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		h.t.Fatal(err)
	}
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store: h.store, Now: h.clock.Now,
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{AuthorizeURL: h.env[config.EnvAuthorizeURL], TokenURL: h.env[config.EnvTokenURL]},
			RedirectURL: testRedirect,
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	resp := (&web.Callback{Keeper: k}).Serve(context.Background(), web.Request{Method: "GET", Path: u.Path, RawQuery: u.RawQuery})
	if resp.Status != 200 {
		h.t.Fatalf("callback: %d", resp.Status)
	}
}

// secrets returns every secret value the test world knows: each token the sandbox issued,
// the stored id_token and the client secret.
func (h *harness) secrets() []string {
	h.t.Helper()
	out := []string{testClientSecret, testPassword}
	for _, p := range h.sb.Issued() {
		out = append(out, p.AccessToken, p.RefreshToken)
	}
	v, err := h.store.LoadPair(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	if v.Pair != nil && !v.Pair.IDToken.IsZero() {
		out = append(out, v.Pair.IDToken.Reveal())
	}
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}
