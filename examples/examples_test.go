// Package examples_test runs the example apps of examples/ (Go, Python with boto3, Node with
// the AWS SDK v3) against moto's Secrets Manager and the VBC sandbox, with a vbctoken
// Keeper refreshing the pair between their requests, and checks that each follows the
// reader rule of README "Apps": cache until the keeper's refresh_at, re-read and retry
// once on a 401, never loop, never print a token.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

func TestMain(m *testing.M) { os.Exit(motoserver.Main(m)) }

// clientSecret is the VBC client secret of the tests; it must never appear in an app's output.
const clientSecret = "example-client-secret-4711"

// need skips the test when a tool is missing, or fails it when VBC_REQUIRE_INTEGRATION=1
// (CI), so that CI can never pass by skipping.
func need(t *testing.T, what, install string) {
	t.Helper()
	if os.Getenv(motoserver.RequireEnv) == "1" {
		t.Fatalf("%s is missing (%s=1); install: %s", what, motoserver.RequireEnv, install)
	}
	t.Skipf("%s is missing; install: %s", what, install)
}

// exampleApp is one example and how to start it.
type exampleApp struct {
	name    string
	command func(t *testing.T) []string // skips or fails when a tool is missing
}

var exampleApps = []exampleApp{
	{"go", func(t *testing.T) []string {
		bin := filepath.Join(t.TempDir(), "app")
		out, err := exec.Command("go", "build", "-o", bin, "./go").CombinedOutput()
		if err != nil {
			t.Fatalf("go build ./examples/go: %v\n%s", err, out)
		}
		return []string{bin}
	}},
	{"python", func(t *testing.T) []string {
		py, err := exec.LookPath("python3")
		if err != nil {
			need(t, "python3", "apt-get install python3")
		}
		if out, err := exec.Command(py, "-c", "import boto3").CombinedOutput(); err != nil {
			need(t, "boto3 ("+strings.TrimSpace(string(out))+")", "python3 -m pip install boto3 (.ci/run does)")
		}
		return []string{py, "python/app.py"}
	}},
	{"node", func(t *testing.T) []string {
		node, err := exec.LookPath("node")
		if err != nil {
			need(t, "node", "Node.js 20 or newer")
		}
		if _, err := os.Stat("node/node_modules/@aws-sdk/client-secrets-manager/package.json"); err != nil {
			need(t, "examples/node/node_modules", "npm ci --prefix examples/node (make test does)")
		}
		return []string{node, "node/app.mjs"}
	}},
}

// step is one thing the harness does, then one command sent to the app and what must
// follow: the app's answer, the app's reads of the access secret so far and the 401s the
// API has sent it so far.
type step struct {
	what   string
	before func(w *world) // the keeper or VBC acts first
	send   string
	want   string
	reads  int
	got401 int
}

// steps is the scenario every app goes through. The app's clock stands still except when
// the harness advances it, so nothing depends on how fast the machine is.
var steps = []step{
	{what: "first call reads the secret", send: "call", want: "200 alice@vbc.prod", reads: 1},
	{what: "second call is served from cache", send: "call", want: "200 alice@vbc.prod", reads: 1},
	{what: "10 minutes later, before refresh_at (20 minutes after the login): still cached", send: "advance 600", want: "ok", reads: 1},
	{send: "call", want: "200 alice@vbc.prod", reads: 1},
	{
		what: "the keeper refreshes at refresh_at (VBC kills the old token); past refresh_at + 1 min, well before the max cache age, the app re-reads before any 401",
		before: func(w *world) {
			w.hint = time.Now().Add(10 * time.Hour) // the next write's refresh_at: far away
			w.refresh()
		},
		send: "advance 700", want: "ok", reads: 1,
	},
	{send: "call", want: "200 alice@vbc.prod", reads: 2},
	{
		what:   "an unplanned refresh (an operator's --force): one 401, a re-read and a retry, inside the app's request",
		before: func(w *world) { w.refresh() },
		send:   "call", want: "200 alice@vbc.prod", reads: 3, got401: 1,
	},
	{send: "call", want: "200 alice@vbc.prod", reads: 3, got401: 1},
	{
		what:   "VBC revokes the stored token and the keeper has nothing newer: the 401 comes back after one re-read, no retry",
		before: func(w *world) { w.revoke() },
		send:   "call", want: "401 -", reads: 4, got401: 2,
	},
	{what: "again within a second: no re-read, no loop", send: "call", want: "401 -", reads: 4, got401: 3},
	{what: "two seconds later: one re-read", send: "advance 2", want: "ok", reads: 4, got401: 3},
	{send: "call", want: "401 -", reads: 5, got401: 4},
}

func TestExamples(t *testing.T) {
	moto := motoserver.Start(t)
	for _, app := range exampleApps {
		t.Run(app.name, func(t *testing.T) {
			argv := app.command(t)
			w := newWorld(t, moto)
			p := startApp(t, argv, w.appEnv())
			for i, st := range steps {
				if st.what != "" {
					t.Logf("step %d: %s", i, st.what)
				}
				if st.before != nil {
					st.before(w)
				}
				if got := p.send(t, st.send); got != st.want {
					t.Fatalf("step %d: %q answered %q, want %q\napp stderr:\n%s", i, st.send, got, st.want, p.stderr.String())
				}
				if got := w.reads(); got != st.reads {
					t.Fatalf("step %d: %d reads of the access secret, want %d", i, got, st.reads)
				}
				if got := w.api.count(http.StatusUnauthorized); got != st.got401 {
					t.Fatalf("step %d: the API answered %d 401s, want %d", i, got, st.got401)
				}
			}
			p.stop(t)
			w.checkOnlyAccessReads(t)
			w.checkNoLeak(t, p.stdout.String()+p.stderr.String())
		})
	}
}

// world is what an app runs against: moto behind a counting proxy, the VBC sandbox with a
// protected API, and a keeper whose writes of the access secret carry the refresh_at the
// harness chooses.
type world struct {
	t      *testing.T
	ctx    context.Context
	ids    motoserver.Secrets
	sb     *vbcsandbox.Sandbox
	vbc    *httptest.Server
	api    *statusCounter
	sm     *smCounter
	store  *hintStore
	keeper *vbctoken.Keeper
	hint   time.Time // refresh_at of the keeper's next write of the access secret
}

func newWorld(t *testing.T, moto *motoserver.Server) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), hint: time.Now().Add(20 * time.Minute)}
	w.ids = moto.CreateStoreSecrets(t, true)
	creds, err := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: "key", ClientSecret: clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	moto.PutSecret(t, w.ids.Credentials, string(creds))

	w.sb = vbcsandbox.New(vbcsandbox.Options{
		Clients:              []vbcsandbox.Client{{ID: "key", Secret: clientSecret, RedirectURLs: []string{"https://app.example/callback"}}},
		Users:                map[string]string{"alice": "pw"},
		SigningKey:           testutil.SigningKey(),
		RefreshRevokesAccess: true, // as VBC (WSO2) does
	})
	w.api = &statusCounter{next: w.sb, path: vbcsandbox.WhoAmIPath}
	w.vbc = httptest.NewServer(w.api)
	t.Cleanup(w.vbc.Close)

	motoURL, _ := url.Parse(moto.URL)
	w.sm = &smCounter{next: httputil.NewSingleHostReverseProxy(motoURL)}
	smProxy := httptest.NewServer(w.sm)
	t.Cleanup(smProxy.Close)
	w.sm.url = smProxy.URL

	w.store = &hintStore{Store: smstore.NewFromConfig(moto.Config(), smstore.SecretIDs(w.ids)), hint: func() time.Time { return w.hint }}
	w.keeper, err = vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store: w.store,
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{TokenURL: w.vbc.URL + vbcsandbox.TokenPath},
			RedirectURL: "https://app.example/callback",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.keeper.Login(w.ctx, "alice", "pw", false); err != nil {
		t.Fatal(err)
	}
	return w
}

// appEnv is the app's environment: the access secret, the API, and AWS settings pointing
// at the counting proxy (no AWS_* variable of this machine leaks in).
func (w *world) appEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	none := filepath.Join(w.t.TempDir(), "none")
	return append(env,
		"VBC_ACCESS_SECRET_ID="+w.ids.Access,
		"VBC_API_URL="+w.vbc.URL+vbcsandbox.WhoAmIPath,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER="+w.sm.url,
		"AWS_REGION="+motoserver.Region, "AWS_DEFAULT_REGION="+motoserver.Region,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// refresh is a forced keeper refresh: VBC issues a new pair and kills the old access token.
func (w *world) refresh() {
	w.t.Helper()
	res, err := w.keeper.Refresh(w.ctx, true)
	if err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		w.t.Fatalf("keeper refresh: %v %v", res.Outcome, err)
	}
}

// revoke kills the stored chain at VBC, as an administrator withdrawing the app would.
func (w *world) revoke() {
	w.t.Helper()
	v, err := w.store.LoadPair(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	w.sb.Revoke(v.Pair.RefreshToken.Reveal())
}

func (w *world) reads() int { return w.sm.count("secretsmanager.GetSecretValue") }

// checkOnlyAccessReads: the app called GetSecretValue on the access secret and nothing else
// (it needs read access to that one secret only).
func (w *world) checkOnlyAccessReads(t *testing.T) {
	t.Helper()
	for _, c := range w.sm.all() {
		if c != "secretsmanager.GetSecretValue "+w.ids.Access {
			t.Errorf("the app called %s", c)
		}
	}
}

// checkNoLeak fails when out carries a token VBC issued or the client secret.
func (w *world) checkNoLeak(t *testing.T, out string) {
	t.Helper()
	secrets := []string{clientSecret}
	for _, p := range w.sb.Issued() {
		secrets = append(secrets, p.AccessToken, p.RefreshToken)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("the app printed a secret:\n%s", out)
			return
		}
	}
}

// hintStore is the keeper's store with refresh_at chosen by the test on every write of
// the access secret, so the scenario does not depend on the keeper's schedule.
type hintStore struct {
	vbctoken.Store
	hint func() time.Time
}

func (h *hintStore) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	if !a.AccessToken.IsZero() {
		a.RefreshAt = h.hint()
	}
	return h.Store.PutAccess(ctx, a)
}

// statusCounter counts the answers to requests for path, by status.
type statusCounter struct {
	next http.Handler
	path string
	mu   sync.Mutex
	n    map[int]int
}

func (c *statusCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	c.next.ServeHTTP(rec, r)
	if r.URL.Path == c.path {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[int]int{}
		}
		c.n[rec.status]++
		c.mu.Unlock()
	}
}

func (c *statusCounter) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[status]
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// smCounter forwards Secrets Manager calls to moto and records each as "<target> <SecretId>".
type smCounter struct {
	next  http.Handler
	url   string
	mu    sync.Mutex
	calls []string
}

func (c *smCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct{ SecretId string }
	_ = json.Unmarshal(body, &in)
	c.mu.Lock()
	c.calls = append(c.calls, r.Header.Get("X-Amz-Target")+" "+in.SecretId)
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *smCounter) count(target string) int {
	n := 0
	for _, call := range c.all() {
		if strings.HasPrefix(call, target+" ") {
			n++
		}
	}
	return n
}

func (c *smCounter) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// process is a running example app driven over stdin, one answer line per command.
type process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stdout testutil.Buffer // everything it printed, for the leak scan
	stderr testutil.Buffer
}

// answerTimeout bounds the wait for one answer: a guard against a hung app, not a
// measurement (an answer takes milliseconds; the first, with the SDK's start-up, a second).
const answerTimeout = 2 * time.Minute

func startApp(t *testing.T, argv []string, env []string) *process {
	t.Helper()
	p := &process{lines: make(chan string, 16)}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.stdout.Write(append(sc.Bytes(), '\n'))
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

func (p *process) send(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		t.Fatalf("send %q: %v\napp stderr:\n%s", cmd, err, p.stderr.String())
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			t.Fatalf("the app exited after %q\napp stderr:\n%s", cmd, p.stderr.String())
		}
		return line
	case <-time.After(answerTimeout):
		t.Fatalf("no answer to %q within %s\napp stderr:\n%s", cmd, answerTimeout, p.stderr.String())
	}
	return ""
}

// stop closes stdin and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	for range p.lines { // drain until the app closes stdout
	}
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Fatalf("the app exited with %v\napp stderr:\n%s", err, p.stderr.String())
	}
}

// README "Apps" shows the Python and Node readers as they are in the tested examples: the
// region between the readme:begin and readme:end markers, as one fenced block.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, comment, fence string }{
		{"python/app.py", "#", "python"},
		{"node/app.mjs", "//", "js"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			_, after, ok1 := strings.Cut(string(src), tc.comment+" --- readme:begin ---\n")
			region, _, ok2 := strings.Cut(after, tc.comment+" --- readme:end ---\n")
			if !ok1 || !ok2 || region == "" {
				t.Fatalf("%s has no readme:begin/readme:end region", tc.file)
			}
			if block := "```" + tc.fence + "\n" + region + "```\n"; !strings.Contains(string(readme), block) {
				t.Fatalf("README.md does not show the region of %s as it is; paste it between ```%s and ```:\n%s", tc.file, tc.fence, region)
			}
		})
	}
}
