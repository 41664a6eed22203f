package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// runCLI runs a one-shot command the way the binary does: the real stores, env as the
// environment and wall as the clock (time.Now when nil).
func runCLI(t *testing.T, env map[string]string, wall func() time.Time, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return env[k] }, now: wall,
		storeRetry: vbctoken.RetryPolicy{Sleep: noSleep}, clientRetry: vbctoken.RetryPolicy{Sleep: noSleep}}
	return result{a.run(context.Background(), args), out.String(), errOut.String()}
}

// connectServe consents through the serve's sandbox, as the browser does.
func connectServe(t *testing.T, s *served) {
	t.Helper()
	if r := get(t, decide(t, s.base, "approve")); r.status != http.StatusOK {
		t.Fatalf("consent: %d %s", r.status, r.body)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Read-only commands create nothing: without a store they say so, with exit 5, in text and
// in JSON, whether the store is the default .vbctoken or a --store that does not exist.
func TestNoStoreHere(t *testing.T) {
	t.Chdir(t.TempDir())
	missing := filepath.Join(t.TempDir(), "nonexistent", "dir")
	for _, args := range [][]string{
		{"status"}, {"status", "--store", missing}, {"consent-url"}, {"refresh", "--force"},
		{"reset", "--store", missing}, {"login", "--username", testUser},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			env := map[string]string{config.EnvRedirectURL: testRedirect, EnvPassword: testPassword}
			r := runCLI(t, env, nil, args...)
			if r.code != ExitNoStore {
				t.Fatalf("exit %d, want %d: %s", r.code, ExitNoStore, r.all())
			}
			for _, want := range []string{"no store here", "VBC_TOKEN_SECRET_ID", "--store DIR", "vbctoken serve"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if exists(config.DefaultStoreDir) || exists(missing) || exists(filepath.Dir(missing)) {
				t.Errorf("a store directory was created")
			}
			r = runCLI(t, env, nil, append(args, "--json")...)
			var got struct {
				Error    string `json:"error"`
				Hint     string `json:"hint"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ExitCode != ExitNoStore || !strings.Contains(got.Error, "no store here") || got.Hint == "" {
				t.Errorf("--json: %v %+v %q", err, got, r.stdout)
			}
		})
	}
}

// A local sandbox store without its serve cannot be acted on: the CLI says to start serve,
// it does not run the sandbox's refresh tokens against api.vonage.com.
func TestSandboxStoreWithoutServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir)
	connectServe(t, s)
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve exit %d", code)
	}
	if exists(filepath.Join(dir, serveFile)) {
		t.Errorf("serve.json left behind")
	}
	for _, args := range [][]string{{"status"}, {"refresh", "--force"}, {"consent-url"}} {
		r := runCLI(t, map[string]string{}, nil, append(args, "--store", dir)...)
		if r.code != ExitNoStore || !strings.Contains(r.stderr, "no `vbctoken serve` is running on it") || !strings.Contains(r.stderr, "vbctoken serve --store "+dir) {
			t.Errorf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
}

// With a serve running (the `make local` of issue 12), consent-url, status and refresh find
// it through serve.json and ask it: the link goes to the sandbox with its client id and
// needs no VBC_REDIRECT_URL, and the refresh is made on the serve's sped-up clock.
func TestCLIAsksTheRunningServe(t *testing.T) {
	wall := newFakeClock()
	dir := filepath.Join(t.TempDir(), "store")
	s := startServeWith(t, serveSetup{env: map[string]string{}, wall: wall.Now}, "--store", dir, "--clock-speed", "3600")
	creds, err := mustFileStore(t, dir).LoadCredentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, map[string]string{}, wall.Now, "consent-url", "--store", dir)
	if r.code != ExitOK {
		t.Fatalf("consent-url: %d %s", r.code, r.all())
	}
	link, err := url.Parse(lastLine(r.stdout))
	if err != nil || !strings.HasPrefix(link.String(), s.base+"/sandbox/authorize?") || link.Query().Get("client_id") != creds.ClientID {
		t.Fatalf("consent-url printed %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "VBC then sends you to "+s.base+"/callback") {
		t.Errorf("stderr: %s", r.stderr)
	}
	r = runCLI(t, map[string]string{}, wall.Now, "consent-url", "--json", "--store", dir)
	if !strings.Contains(r.stdout, "&") || strings.Contains(r.stdout, `\u0026`) {
		t.Errorf("consent-url --json escapes &: %s", r.stdout)
	}

	// The link works in the browser.
	page := get(t, link.String())
	if page.status != http.StatusOK {
		t.Fatalf("sandbox consent page: %d", page.status)
	}
	connectServe(t, s)

	r = runCLI(t, map[string]string{}, wall.Now, "status", "--store", dir)
	if r.code != ExitOK || !strings.Contains(r.stdout, "Connected to VBC: yes") || !strings.Contains(r.stdout, "kept by vbctoken serve (pid") {
		t.Fatalf("status: %d %s", r.code, r.all())
	}

	wall.Advance(10 * time.Second) // ten hours on the serve's clock
	r = runCLI(t, map[string]string{}, wall.Now, "refresh", "--force", "--json", "--store", dir)
	var res vbctoken.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != ExitOK {
		t.Fatalf("refresh: %d %v %s", r.code, err, r.all())
	}
	if res.Outcome != vbctoken.OutcomeRefreshed || !res.ObtainedAt.Equal(start.Add(10*time.Hour)) {
		t.Errorf("refresh on the serve's clock: %+v, want obtained at %v", res, start.Add(10*time.Hour))
	}
	r = runCLI(t, map[string]string{}, wall.Now, "refresh", "--force", "--store", dir)
	if r.code != ExitOK || !strings.Contains(r.stdout, "Refreshed (forced)") {
		t.Errorf("refresh: %d %s", r.code, r.all())
	}

	// The serve owns the store's only writer: login beside it is refused.
	r = runCLI(t, map[string]string{EnvPassword: testPassword}, wall.Now, "login", "--username", testUser, "--store", dir)
	if r.code != ExitFailure || !strings.Contains(r.stderr, "in use by another vbctoken serve (pid") {
		t.Errorf("login beside serve: %d %s", r.code, r.stderr)
	}

	// serve.json tells the pid, the URL and the clock; its token opens /api/.
	var info serveInfo
	data, _ := os.ReadFile(filepath.Join(dir, serveFile))
	if err := json.Unmarshal(data, &info); err != nil || info.PID != os.Getpid() || info.URL != s.base || info.ClockSpeed != 3600 || !info.Sandbox || len(info.Token) < 32 {
		t.Errorf("serve.json: %v %s", err, data)
	}
	if fi, err := os.Stat(filepath.Join(dir, serveFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("serve.json mode: %v %v", fi, err)
	}
	resp, err := http.Post(s.base+apiRefresh+"?force=true", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if reply := readReply(t, resp); reply.status != http.StatusUnauthorized {
		t.Errorf("/api/refresh without the token: %d", reply.status)
	}
	if strings.Contains(s.stderr.String(), info.Token) {
		t.Errorf("the api token is in the logs")
	}
}

func mustFileStore(t *testing.T, dir string) *filestore.Store {
	t.Helper()
	fs, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// A restart keeps the connection: the sandbox's chain is saved in sandbox.json and revived,
// the refresh token the keeper holds still works after it, and a sped-up clock resumes
// where it was instead of going back to the wall clock.
func TestServeRestartKeepsConnection(t *testing.T) {
	wall := newFakeClock()
	dir := filepath.Join(t.TempDir(), "store")
	s := startServeWith(t, serveSetup{env: map[string]string{}, wall: wall.Now}, "--store", dir, "--clock-speed", "3600")
	connectServe(t, s)
	wall.Advance(48 * time.Second) // two days on the serve's clock
	first, _ := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve exit %d", code)
	}
	if fi, err := os.Stat(filepath.Join(dir, sandboxFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sandbox.json: %v %v", fi, err)
	}

	wall.Advance(-48 * time.Second) // the wall clock is behind the store's clock now
	s = startServeWith(t, serveSetup{env: map[string]string{}, wall: wall.Now}, "--store", dir, "--clock-speed", "3600")
	st := statusOf(t, s.base)
	if !st.Status.Connected || st.Status.Now.Before(start.Add(48*time.Hour)) {
		t.Fatalf("after a restart: %+v", st.Status)
	}
	if !strings.Contains(s.stderr.String(), "kept the connection of the earlier run") {
		t.Errorf("no log about the kept connection:\n%s", s.stderr)
	}
	second, _ := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if !bytes.Equal(first, second) || len(first) == 0 {
		t.Errorf("credentials were not reused")
	}
	r := runCLI(t, map[string]string{}, wall.Now, "refresh", "--force", "--store", dir)
	if r.code != ExitOK {
		t.Fatalf("refresh after a restart: %d %s", r.code, r.all())
	}
	// Twice more: the revived chain goes on, and a third serve revives the new token.
	s.stop()
	s = startServeWith(t, serveSetup{env: map[string]string{}, wall: wall.Now}, "--store", dir)
	if r := runCLI(t, map[string]string{}, wall.Now, "refresh", "--force", "--store", dir); r.code != ExitOK {
		t.Fatalf("refresh after a second restart: %d %s", r.code, r.all())
	}
	if st := statusOf(t, s.base); !st.Status.Connected || st.Status.Grant != vbctoken.GrantRefreshToken {
		t.Errorf("status: %+v", st.Status)
	}
	if r := get(t, decide(t, s.base, "approve")); r.status != http.StatusOK {
		t.Errorf("consent after restarts: %d", r.status)
	}
	logs := s.stderr.String()
	state, _ := os.ReadFile(filepath.Join(dir, sandboxFile))
	var saved sandboxState
	if err := json.Unmarshal(state, &saved); err != nil || len(saved.Chains) == 0 {
		t.Fatalf("sandbox.json: %v %s", err, state)
	}
	for _, c := range saved.Chains {
		if strings.Contains(logs, c.RefreshToken) {
			t.Errorf("a saved refresh token is in the logs")
		}
	}
}

// A pair that no saved sandbox chain knows (sandbox.json lost, or written by an older
// vbctoken) can never be refreshed: serve clears it and says why.
func TestServeClearsAnUnknownPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir)
	connectServe(t, s)
	s.stop()
	if err := os.Remove(filepath.Join(dir, sandboxFile)); err != nil {
		t.Fatal(err)
	}
	s = startServe(t, map[string]string{}, nil, "--store", dir)
	if st := statusOf(t, s.base); st.Status.Connected {
		t.Errorf("a pair no sandbox knows survived: %+v", st)
	}
	if !strings.Contains(s.stderr.String(), "cleared a token pair that no saved sandbox chain knows") {
		t.Errorf("no log about the cleared pair:\n%s", s.stderr)
	}
}

// A second serve on the same store refuses to start and touches nothing: the first one
// stays connected.
func TestServeSecondInstanceRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir)
	connectServe(t, s)
	before, _ := os.ReadFile(filepath.Join(dir, pairFile))

	var out, errOut syncBuffer
	a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code := a.run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--store", dir})
	if code != ExitFailure {
		t.Fatalf("second serve: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"is in use by another vbctoken serve (pid", s.base, "give this one its own --store DIR"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("second serve's message lacks %q:\n%s", want, errOut.String())
		}
	}
	if strings.Contains(errOut.String(), "cleared") {
		t.Errorf("the second serve cleared something:\n%s", errOut.String())
	}
	after, _ := os.ReadFile(filepath.Join(dir, pairFile))
	if !bytes.Equal(before, after) {
		t.Errorf("the second serve changed the pair")
	}
	if st := statusOf(t, s.base); !st.Status.Connected {
		t.Errorf("the first serve lost its connection: %+v", st)
	}
	// Once the first one stops, the store is free again.
	s.stop()
	s = startServe(t, map[string]string{}, nil, "--store", dir)
	if st := statusOf(t, s.base); !st.Status.Connected {
		t.Errorf("connection lost across serves: %+v", st)
	}
}

// `rm -rf .vbctoken` (what `make clean` does) under a running serve: the next request
// recreates the store with the sandbox's credentials and serve's claim, and a consent works
// at once instead of failing with 500 until a restart.
func TestServeRecoversFromDeletedStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir)
	connectServe(t, s)
	creds, _ := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	home := get(t, s.base+"/")
	if home.status != http.StatusOK || !strings.Contains(home.body, "Not connected to VBC yet") {
		t.Fatalf("status page after the deletion: %d %s", home.status, home.body)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if !bytes.Equal(creds, again) {
		t.Errorf("the sandbox credentials were not restored")
	}
	if !exists(filepath.Join(dir, serveFile)) {
		t.Errorf("serve.json was not restored")
	}
	connectServe(t, s)
	if st := statusOf(t, s.base); !st.Status.Connected {
		t.Errorf("not connected after a consent on the recreated store: %+v", st)
	}
	if r := runCLI(t, map[string]string{}, nil, "status", "--store", dir); r.code != ExitOK {
		t.Errorf("the CLI does not find the serve again: %d %s", r.code, r.all())
	}
	if !strings.Contains(s.stderr.String(), "deleted while serving") {
		t.Errorf("no log about the recreated store:\n%s", s.stderr)
	}
}

// A damaged pair: the page says what to do, the CLI says it too, and `vbctoken reset`
// (asked of the running serve) sets it aside so a consent works again.
func TestServeCorruptPairRecovery(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir)
	connectServe(t, s)
	if err := os.WriteFile(filepath.Join(dir, pairFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	page := get(t, s.base+"/")
	for _, want := range []string{"The stored token pair is damaged", "vbctoken reset --store " + dir, `http-equiv="refresh"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("page lacks %q:\n%s", want, page.body)
		}
	}
	if page.status != http.StatusServiceUnavailable {
		t.Errorf("page status %d", page.status)
	}
	r := runCLI(t, map[string]string{}, nil, "status", "--store", dir)
	if r.code != ExitFailure || !strings.Contains(r.stderr, "vbctoken reset --store "+dir) || strings.Contains(r.stderr, "status: status:") {
		t.Errorf("status: %d %s", r.code, r.stderr)
	}
	r = runCLI(t, map[string]string{}, nil, "reset", "--store", dir)
	if r.code != ExitOK || !strings.Contains(r.stdout, "Set the stored pair aside as "+filepath.Join(dir, pairFile)+".reset-") {
		t.Fatalf("reset: %d %s", r.code, r.all())
	}
	kept, _ := filepath.Glob(filepath.Join(dir, pairFile+".reset-*"))
	if len(kept) != 1 {
		t.Fatalf("copies: %v", kept)
	}
	if data, _ := os.ReadFile(kept[0]); string(data) != "{not json" {
		t.Errorf("the copy differs: %q", data)
	}
	if home := get(t, s.base+"/"); !strings.Contains(home.body, "Not connected to VBC yet") {
		t.Errorf("after reset: %s", home.body)
	}
	connectServe(t, s)
	// A connected pair is not set aside without --force.
	if r := runCLI(t, map[string]string{}, nil, "reset", "--store", dir); r.code != ExitUsage || !strings.Contains(r.stderr, "--force") {
		t.Errorf("reset of a connected pair: %d %s", r.code, r.all())
	}
	if r := runCLI(t, map[string]string{}, nil, "reset", "--force", "--json", "--store", dir); r.code != ExitOK || !strings.Contains(r.stdout, `"had_pair": true`) {
		t.Errorf("reset --force: %d %s", r.code, r.all())
	}
}

// reset on a store no serve holds works on the files directly; on Secrets Manager it refuses.
func TestResetWithoutServe(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(t.TempDir(), "store")
	fs := mustFileStore(t, dir)
	if err := fs.SaveCredentials(context.Background(), vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret}); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, h.env, nil, "reset", "--store", dir); r.code != ExitOK || !strings.Contains(r.stdout, "Nothing to reset") {
		t.Errorf("empty store: %d %s", r.code, r.all())
	}
	if err := os.WriteFile(filepath.Join(dir, pairFile), []byte(`{"version":1,"refresh_token":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, h.env, nil, "refresh", "--store", dir); r.code != ExitFailure || !strings.Contains(r.stderr, "vbctoken reset --store "+dir) {
		t.Errorf("refresh of a damaged pair: %d %s", r.code, r.all())
	}
	if r := runCLI(t, h.env, nil, "reset", "--store", dir); r.code != ExitOK {
		t.Errorf("reset: %d %s", r.code, r.all())
	}
	if r := runCLI(t, h.env, nil, "status", "--store", dir); r.code != ExitReconsent {
		t.Errorf("status after reset: %d %s", r.code, r.all())
	}
	aws := map[string]string{config.EnvCredentialsSecretID: "c", config.EnvTokenSecretID: "p", config.EnvAccessSecretID: "a"}
	h.store, h.env = memstore.New(vbctoken.Credentials{}), aws
	if r := h.run("", "reset"); r.code != ExitUsage || !strings.Contains(r.stderr, "AWSPREVIOUS") {
		t.Errorf("reset on AWS: %d %s", r.code, r.all())
	}
}

// Pointing serve at VBC on a store the sandbox filled is refused with the way out.
func TestServeRefusesSandboxStoreForVBC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir)
	connectServe(t, s)
	s.stop()
	vbc := map[string]string{config.EnvTokenURL: "https://api.vonage.com/token", config.EnvRedirectURL: "https://cb.example/callback"}

	r := runCLI(t, vbc, nil, "serve", "--addr", "127.0.0.1:0", "--store", dir)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "holds the local sandbox's generated client credentials") || !strings.Contains(r.stderr, "Use another --store for VBC") {
		t.Errorf("sandbox credentials: %d %s", r.code, r.stderr)
	}
	// Real credentials written over the sandbox's, the sandbox's pair still there.
	if err := mustFileStore(t, dir).SaveCredentials(context.Background(), vbctoken.Credentials{ClientID: "real-app", ClientSecret: "real-secret"}); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, vbc, nil, "serve", "--addr", "127.0.0.1:0", "--store", dir)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "holds a token pair the local sandbox issued") || !strings.Contains(r.stderr, "vbctoken reset --force --store "+dir) {
		t.Errorf("sandbox pair: %d %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "real-secret") {
		t.Errorf("the client secret was printed")
	}
	if r := runCLI(t, vbc, nil, "reset", "--force", "--store", dir); r.code != ExitOK {
		t.Fatalf("reset: %d %s", r.code, r.all())
	}
	ln := listenLocal(t)
	vbc[config.EnvRedirectURL] = "http://" + ln.Addr().String() + "/callback"
	vbc[config.EnvTokenURL] = "http://127.0.0.1:9" + vbcsandbox.TokenPath
	s = startServe(t, vbc, ln, "--store", dir)
	if st := statusOf(t, s.base); st.Status.Connected {
		t.Errorf("connected after reset: %+v", st)
	}
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
