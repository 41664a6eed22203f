package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestBrowserConsent drives headless Chromium through an in-process `vbctoken serve` in
// sandbox mode, the way a newcomer uses `make local`: the status page, Connect, the sandbox
// consent page, Approve, the callback's success page, the status page connected and then
// refreshed by the scheduler on a sped-up clock; then a declined consent and a replayed
// callback link. Every page is saved as a full-page screenshot in test-artifacts/browser.
func TestBrowserConsent(t *testing.T) {
	t0 := time.Now()
	browser := chromium(t)
	shots := artifactsDir(t)
	s := startServe(t, map[string]string{}, nil, "--store", filepath.Join(t.TempDir(), "store"), "--clock-speed", "50000")

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

	open("status page connected", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page connected", text("status page", "main.ok #title"), "Connected to VBC")
	shot("04-status-connected.png")

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
	shot("06-consent-declined.png")

	open("a replayed callback link is refused", 409, chromedp.Navigate(callbackURL))
	wantText("replayed link", text("replayed link", "main.bad #title"), "already used")
	shot("07-replayed-link.png")

	open("status page still connected", 200, chromedp.Navigate(s.base+"/"))
	wantText("status page at the end", text("status page", "main.ok #title"), "Connected to VBC")
	t.Logf("browser flow took %v; screenshots in %s", time.Since(started).Round(time.Millisecond), shots)
}
