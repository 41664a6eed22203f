package cli

import (
	"context"
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
// older screenshots.
func artifactsDir(t *testing.T) string {
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
	old, _ := filepath.Glob(filepath.Join(out, "*.png"))
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

// TestBrowserConsent drives headless Chromium through an in-process `vbctoken serve` in
// sandbox mode, the way a newcomer uses `make local`: the status page, Connect, the sandbox
// consent page, Approve, the callback's success page, the status page connected and then
// refreshed by the scheduler on a sped-up clock; then a declined consent and a replayed
// callback link, each page leading back to the status page; then a restart that keeps the
// connection, a second serve on the same store that refuses to start, the store deleted
// under the running serve (`make clean`) and connected again, and a damaged pair set aside
// with `vbctoken reset`. Every page is saved as a full-page screenshot in test-artifacts/browser.
func TestBrowserConsent(t *testing.T) {
	t0 := time.Now()
	browser := chromium(t)
	shots := artifactsDir(t)
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir, "--clock-speed", "50000")

	userData := t.TempDir()
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
		chromedp.UserDataDir(userData),
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
	defer cancel()
	started := time.Now()

	fail := func(step string, err error) {
		t.Helper()
		t.Fatalf("%s: %v\nserve logs:\n%s", step, err, s.stderr)
	}
	// open runs actions that load a page and checks the page's HTTP status.
	open := func(step string, status int64, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		resp, err := chromedp.RunResponse(ctx, actions...)
		if err != nil {
			fail(step, err)
		}
		if resp.Status != status {
			t.Errorf("%s: HTTP %d, want %d", step, resp.Status, status)
		}
	}
	text := func(step, sel string) string {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			fail(step, err)
		}
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail(step, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot "+name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantText := func(step, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Errorf("%s: %q does not contain %q", step, got, want)
		}
	}

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
	t.Logf("browser flow took %v; screenshots in %s", time.Since(started).Round(time.Millisecond), shots)
}
