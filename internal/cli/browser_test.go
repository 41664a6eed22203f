package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// EnvRequireIntegration makes tests that need outside tools (Chromium) fail instead of
// skipping when the tool is missing.
const EnvRequireIntegration = "VBC_REQUIRE_INTEGRATION"

// chromium returns the browser to drive, or skips (fails under VBC_REQUIRE_INTEGRATION=1).
func chromium(t *testing.T) string {
	t.Helper()
	required := os.Getenv(EnvRequireIntegration) == "1"
	if testing.Short() && !required {
		t.Skip("browser test skipped in -short mode")
	}
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "Chromium not found at /usr/bin/chromium (Debian: apt-get install -y chromium)"
	if required {
		t.Fatal(msg + "; " + EnvRequireIntegration + "=1 requires it")
	}
	t.Skip(msg + "; set " + EnvRequireIntegration + "=1 to fail instead of skipping")
	return ""
}

// artifactsDir returns test-artifacts/browser at the repository root, created empty of
// older screenshots whose names start with prefix.
func artifactsDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "test-artifacts", "browser")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(out, prefix+"*.png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return out
}

// removeStore deletes dir under a running serve, as `make clean` does. The serve recreates
// the directory as soon as it misses it (its scheduler checks every few milliseconds at a
// sped-up clock), which can race with the removal ("directory not empty"): remove until
// it is gone once.
func removeStore(t *testing.T, dir string) {
	t.Helper()
	var err error
	for range 50 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
	}
	t.Fatal(err)
}

// browserSession is headless Chromium under a test: pages opened and checked, screenshots
// saved in test-artifacts/browser, and on failure the serve's logs.
type browserSession struct {
	t     *testing.T
	ctx   context.Context
	shots string
	logs  func() string
}

// newBrowserSession starts Chromium (or skips), runs start (which starts the serve under
// test) and returns the session. Screenshots are named with prefix; older ones are removed.
func newBrowserSession(t *testing.T, prefix string, logs func() string, start func()) *browserSession {
	t.Helper()
	t0 := time.Now()
	browser := chromium(t)
	b := &browserSession{t: t, shots: artifactsDir(t, prefix), logs: logs}
	start()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // runs before t.TempDir's removal: the browser is gone by then
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelBrowser)
	// The first Run starts the browser, which lives as long as that call's context: no
	// timeout there. Every later step runs under the test's overall deadline.
	t.Logf("serve up after %v", time.Since(t0))
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	t.Logf("browser up after %v", time.Since(t0))
	ctx, cancel := context.WithTimeout(browserCtx, 60*time.Second)
	t.Cleanup(cancel)
	b.ctx = ctx
	return b
}

func (b *browserSession) fail(step string, err error) {
	b.t.Helper()
	b.t.Fatalf("%s: %v\nserve logs:\n%s", step, err, b.logs())
}

// open runs actions that load a page and checks the page's HTTP status.
func (b *browserSession) open(step string, status int64, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.ctx, actions...)
	if err != nil {
		b.fail(step, err)
	}
	if resp.Status != status {
		b.t.Errorf("%s: HTTP %d, want %d", step, resp.Status, status)
	}
}

// do runs actions that load no page.
func (b *browserSession) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail(step, err)
	}
}

func (b *browserSession) text(step, sel string) string {
	b.t.Helper()
	b.do(step, chromedp.WaitVisible(chromedp.CSS(sel)))
	v, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fail(step, err)
	}
	return v
}

func (b *browserSession) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browserSession) wantText(step, got, want string) {
	b.t.Helper()
	if !strings.Contains(got, want) {
		b.t.Errorf("%s: %q does not contain %q", step, got, want)
	}
}

// TestBrowserConsent drives headless Chromium through an in-process `vbctoken serve` in
// sandbox mode, the way a newcomer uses `make local`: the status page, Connect, the sandbox
// consent page, Approve, the callback's success page, the status page connected and then
// refreshed by the scheduler on a sped-up clock; then a declined consent and a replayed
// callback link, each page leading back to the status page; then a restart that keeps the
// connection, a second serve on the same store that refuses to start, the store deleted
// under the running serve (`make clean`) and connected again, and a damaged pair set aside
// with `vbctoken reset`. Every page is saved as a full-page screenshot in test-artifacts/browser.
func TestBrowserConsent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	var s *served
	b := newBrowserSession(t, "[0-9]", func() string { return s.stderr.String() }, func() {
		s = startServe(t, map[string]string{}, nil, "--store", dir, "--clock-speed", "50000")
	})
	ctx, open, text, shot, wantText, fail := b.ctx, b.open, b.text, b.shot, b.wantText, b.fail
	started := time.Now()

	open("status page before consent", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page before consent", text("status page", "main.warn #title"), "Not connected to VBC yet")
	shot("01-status-not-connected.png")

	open("Connect opens the sandbox consent page", 200, chromedp.Click(chromedp.CSS("#link")))
	wantText("sandbox consent page", text("sandbox consent page", "#title"), "Sandbox VBC")
	shot("02-sandbox-consent.png")

	open("approve lands on the success page", 200, chromedp.Click(chromedp.CSS("#approve")))
	wantText("success page", text("success page", "main.ok #title"), "Connected to Vonage Business Communications")
	callbackURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(callbackURL, s.base+"/callback?") {
		t.Fatalf("success page at %q: %v", callbackURL, err)
	}
	shot("03-callback-success.png")

	wantText("success page", text("success page", "#link"), "Back to the status page")
	open("the success page leads back to the status page", 200, chromedp.Click(chromedp.CSS("#link")))
	wantText("status page connected", text("status page", "main.ok #title"), "Connected to VBC")
	shot("04-status-connected.png")

	// Dark mode: the badge's mark is dark on the light green, not white.
	dark := func(on bool) chromedp.Action[chromedp.Void] {
		value := "light"
		if on {
			value = "dark"
		}
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: value}}})
			return err
		})
	}
	if err := chromedp.Do(ctx, dark(true)); err != nil {
		fail("dark mode", err)
	}
	badge, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".badge")).color`))
	if err != nil || badge != "rgb(18, 18, 18)" {
		t.Errorf("badge colour in dark mode: %q %v", badge, err)
	}
	shot("04b-status-connected-dark.png")
	if err := chromedp.Do(ctx, dark(false)); err != nil {
		fail("light mode", err)
	}

	// 50000×: the access token lives 1.7 s, so the scheduler refreshes within seconds.
	deadline := time.Now().Add(10 * time.Second)
	for facts := ""; !strings.Contains(facts, "refreshed ("); {
		if time.Now().After(deadline) {
			t.Fatalf("the status page shows no refresh within 10s:\n%s", facts)
		}
		time.Sleep(250 * time.Millisecond)
		open("status page", 200, chromedp.Navigate(s.base+"/"))
		facts = text("status page", "#facts")
	}
	shot("05-status-refreshed.png")

	open("a second consent link", 200, chromedp.Navigate(s.base+"/consent"))
	open("decline shows its page", 403, chromedp.Click(chromedp.CSS("#decline")))
	wantText("declined page", text("declined page", "main.warn #title"), "Consent declined")
	wantText("declined page", text("declined page", "#link"), "Back to the status page")
	shot("06-consent-declined.png")

	open("a replayed callback link is a warning, not a failure", 409, chromedp.Navigate(callbackURL))
	wantText("replayed link", text("replayed link", "main.warn #title"), "already used")
	wantText("replayed link", text("replayed link", "#lead"), "you are done")
	shot("07-replayed-link.png")
	open("the replayed-link page leads back", 200, chromedp.Click(chromedp.CSS("#link")))
	wantText("status page at the end", text("status page", "main.ok #title"), "Connected to VBC")

	// Restart: the connection survives, on the new serve's port.
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve exit %d", code)
	}
	s = startServe(t, map[string]string{}, nil, "--store", dir, "--clock-speed", "50000")
	open("status page after a restart", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page after a restart", text("status page", "main.ok #title"), "Connected to VBC")
	shot("08-status-after-restart.png")

	// A second serve on the same store refuses and leaves the first one connected.
	r := runCLI(t, map[string]string{}, nil, "serve", "--addr", "127.0.0.1:0", "--store", dir)
	if r.code != ExitFailure || !strings.Contains(r.stderr, "in use by another vbctoken serve") {
		t.Errorf("second serve: exit %d: %s", r.code, r.stderr)
	}
	open("status page beside a refused second serve", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page beside a refused second serve", text("status page", "main.ok #title"), "Connected to VBC")

	// make clean under the running serve: not connected, and Connect works at once.
	removeStore(t, dir)
	open("status page after the store was deleted", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page after the store was deleted", text("status page", "main.warn #title"), "Not connected to VBC yet")
	shot("09-status-store-deleted.png")
	open("Connect on the recreated store", 200, chromedp.Click(chromedp.CSS("#link")))
	open("approve on the recreated store", 200, chromedp.Click(chromedp.CSS("#approve")))
	wantText("success on the recreated store", text("success page", "main.ok #title"), "Connected to Vonage Business Communications")

	// A damaged pair: the page says what to run; reset sets it aside.
	if err := os.WriteFile(filepath.Join(dir, pairFile), []byte("{damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	open("status page with a damaged pair", 503, chromedp.Navigate(s.base+"/"))
	wantText("damaged pair", text("damaged pair", "main.bad #title"), "damaged")
	wantText("damaged pair", text("damaged pair", "#next"), "vbctoken reset --store "+dir)
	shot("10-status-damaged-pair.png")
	if r := runCLI(t, map[string]string{}, nil, "reset", "--store", dir); r.code != ExitOK {
		t.Fatalf("reset: %d %s", r.code, r.all())
	}
	open("status page after reset", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page after reset", text("status page", "main.warn #title"), "Not connected to VBC yet")
	t.Logf("browser flow took %v; screenshots in %s", time.Since(started).Round(time.Millisecond), b.shots)
}

// TestBrowserAccounts drives headless Chromium through `vbctoken serve --accounts` in
// sandbox mode, the way an ISV tries accounts mode with `make local LOCAL_FLAGS=--accounts`:
// the empty accounts page, the form "Connect account" for acme, the sandbox's consent page
// approved as acme's own VBC admin, the callback naming the account, the same for globex as
// another VBC user, the accounts page listing both, the scheduler refreshing both on a
// sped-up clock, and a bad account id refused. Screenshots: test-artifacts/browser/accounts-*.png.
func TestBrowserAccounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	var s *served
	b := newBrowserSession(t, "accounts-", func() string { return s.stderr.String() }, func() {
		s = startServe(t, map[string]string{}, nil, "--store", dir, "--accounts", "--clock-speed", "50000")
	})

	b.open("accounts page before any consent", 200, chromedp.Navigate(s.base+"/"))
	b.wantText("accounts page", b.text("accounts page", "main.warn #title"), "VBC accounts")
	b.wantText("accounts page", b.text("accounts page", "#lead"), "No account is connected yet")
	b.shot("accounts-01-empty.png")

	connect := func(n int, account, user string) {
		t.Helper()
		b.do("type "+account, chromedp.SendKeys(chromedp.CSS("#account"), account))
		b.open("connect "+account, 200, chromedp.Click(chromedp.CSS("#connect-submit")))
		b.wantText("sandbox consent page", b.text("sandbox consent page", "#title"), "Sandbox VBC")
		b.do("approve as "+user, chromedp.Clear(chromedp.CSS("#user")), chromedp.SendKeys(chromedp.CSS("#user"), user))
		b.shot(fmt.Sprintf("accounts-%02d-consent-%s.png", n, account))
		b.open("approve "+account, 200, chromedp.Click(chromedp.CSS("#approve")))
		b.wantText("success page", b.text("success page", "main.ok #title"), "Connected to Vonage Business Communications")
		b.wantText("success page", b.text("success page", "#facts"), account)
		b.shot(fmt.Sprintf("accounts-%02d-connected-%s.png", n+1, account))
		b.open("back to the accounts page", 200, chromedp.Click(chromedp.CSS("#link")))
		b.wantText("accounts page", b.text("accounts page", "#account-"+account), "Connected")
	}
	connect(2, "acme", "acme-admin")
	connect(4, "globex", "globex-admin")
	b.wantText("accounts page with two accounts", b.text("accounts page", "#lead"), "2 accounts, all connected")
	b.shot("accounts-06-two-connected.png")

	// Each account is its own chain, approved by its own VBC user.
	var st accountsStatus
	if err := json.Unmarshal([]byte(get(t, s.base+"/status.json").body), &st); err != nil || len(st.Accounts) != 2 {
		t.Fatalf("status.json: %v %+v", err, st)
	}

	// 50000×: each access token lives 1.7 s, so the scheduler refreshes both within seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.open("accounts page", 200, chromedp.Navigate(s.base+"/"))
		acme, globex := b.text("acme's row", "#account-acme"), b.text("globex's row", "#account-globex")
		if strings.Contains(acme, "refreshed (") && strings.Contains(globex, "refreshed (") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the accounts page shows no refresh of both accounts within 10s:\n%s\n%s", acme, globex)
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.shot("accounts-07-both-refreshed.png")

	// The browser checks the id before sending it; the server checks it again.
	b.open("a bad account id", 400, chromedp.Navigate(s.base+"/consent?account=Bad_Id"))
	b.wantText("bad account id", b.text("bad account id", "#lead"), "Name the account to connect")
	b.shot("accounts-08-bad-id.png")
	if r := runCLI(t, nil, nil, "accounts", "--store", dir); r.code != ExitOK || !strings.Contains(r.stdout, "2 accounts: 2 connected") {
		t.Errorf("accounts beside the browser: exit %d:\n%s", r.code, r.all())
	}
}
