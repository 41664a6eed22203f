package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// accountsStatus is GET /status.json in accounts mode.
type accountsStatus struct {
	Accounts  []accountState `json:"accounts"`
	Refreshes int            `json:"refreshes"`
}

func (s accountsStatus) get(t *testing.T, account string) accountState {
	t.Helper()
	return accountsReport{Accounts: s.Accounts}.get(t, account)
}

// rigClient drives a serve rig's handler in-process, as a browser and the CLI would.
type rigClient struct {
	t   *testing.T
	rig *serveRig
}

func (c rigClient) do(method, target, token string, form url.Values) *httptest.ResponseRecorder {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, strings.TrimPrefix(target, c.rig.base), body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	c.rig.handler.ServeHTTP(rec, req)
	return rec
}

// connect consents for account on the status page's form, approving at the sandbox as user.
func (c rigClient) connect(account, user string) string {
	c.t.Helper()
	r := c.do("GET", "/consent?"+url.Values{"account": {account}}.Encode(), "", nil)
	if r.Code != http.StatusFound {
		c.t.Fatalf("GET /consent?account=%s: %d %s", account, r.Code, r.Body)
	}
	page := c.do("GET", r.Header().Get("Location"), "", nil)
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `name="user"`) {
		c.t.Fatalf("consent page: %d %s", page.Code, page.Body)
	}
	post := c.do("POST", "/sandbox/authorize", "", consentForm(page.Body.String(), "approve", user))
	if post.Code != http.StatusFound {
		c.t.Fatalf("approve: %d %s", post.Code, post.Body)
	}
	cb := c.do("GET", post.Header().Get("Location"), "", nil)
	if cb.Code != http.StatusOK {
		c.t.Fatalf("callback: %d %s", cb.Code, cb.Body)
	}
	return cb.Body.String()
}

func (c rigClient) status() accountsStatus {
	c.t.Helper()
	r := c.do("GET", "/status.json", "", nil)
	var st accountsStatus
	if err := json.Unmarshal(r.Body.Bytes(), &st); err != nil || r.Code != http.StatusOK {
		c.t.Fatalf("status.json: %d %v %s", r.Code, err, r.Body)
	}
	return st
}

// serve --accounts, wired without a listener on a fake wall clock: the status page's form
// connects two accounts, each approved at the sandbox by its own VBC user; the callback
// stores each into its account; the scheduler refreshes every account, and one account
// revoked at VBC leaves the other refreshing. No sleeps: the test moves the clock and runs
// the scheduler's check itself.
func TestServeAccountsWiring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	var stderr syncBuffer
	wall := newFakeClock()
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" },
		now: wall.Now, signingKey: signingKey(), location: time.UTC,
		storeRetry: vbctoken.RetryPolicy{Sleep: noSleep}, clientRetry: vbctoken.RetryPolicy{Sleep: noSleep}}
	a.setDefaults()
	o, done, _ := a.parseServe([]string{"--store", dir, "--accounts"})
	if done {
		t.Fatal("parse stopped")
	}
	p, code, ok := a.prepareServe(context.Background(), o)
	if !ok {
		t.Fatalf("prepare: exit %d: %s", code, stderr.String())
	}
	defer p.close()
	// The keeper reaches the sandbox's token endpoint over HTTP: serve the rig on a loopback
	// listener; the test itself drives the handler in-process.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rig, err := a.buildServe(context.Background(), p, baseURL(ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(rig.handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	if !rig.info.Accounts || !p.sandbox || !hasAccounts(dir) {
		t.Fatalf("not in accounts mode: info %+v", rig.info)
	}
	c := rigClient{t: t, rig: rig}

	home := c.do("GET", "/", "", nil)
	if home.Code != http.StatusOK || !strings.Contains(home.Body.String(), "No account is connected yet") ||
		!strings.Contains(home.Header().Get("Content-Security-Policy"), "form-action 'self'") {
		t.Fatalf("status page: %d %v\n%s", home.Code, home.Header(), home.Body)
	}
	for _, target := range []string{"/consent", "/consent?account=Bad_Id", "/consent?account=" + strings.Repeat("a", 64)} {
		r := c.do("GET", target, "", nil)
		if r.Code != http.StatusBadRequest || !strings.Contains(r.Body.String(), "Name the account to connect") || strings.Contains(r.Body.String(), "Bad_Id") {
			t.Errorf("GET %s: %d %s", target, r.Code, r.Body)
		}
	}

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve logs:\n%s", stderr.String())
		}
	})
	if page := c.connect("acme", "acme-admin"); !strings.Contains(page, "<dt>Account</dt><dd>acme</dd>") {
		t.Errorf("callback page: %s", page)
	}
	c.connect("globex", "globex-admin")
	users := map[string]string{}
	for _, ip := range rig.sandbox.sb.Issued() {
		users[ip.Subject] = ip.RefreshToken
	}
	if len(users) != 2 || users["acme-admin@vbc.prod"] == "" || users["globex-admin@vbc.prod"] == "" {
		t.Fatalf("the sandbox issued %v", users)
	}

	st := c.status()
	if len(st.Accounts) != 2 || !st.get(t, "acme").Connected || !st.get(t, "globex").Connected {
		t.Fatalf("status.json: %+v", st)
	}
	page := c.do("GET", "/", "", nil).Body.String()
	for _, want := range []string{"2 accounts, all connected", `<tr id="account-acme">`, `<tr id="account-globex">`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}

	// A day later the scheduler refreshes both.
	rig.sched.tick(context.Background())
	wall.Advance(23 * time.Hour)
	rig.sched.tick(context.Background())
	st = c.status()
	if st.Refreshes != 2 || st.get(t, "acme").Grant != vbctoken.GrantRefreshToken || st.get(t, "globex").Grant != vbctoken.GrantRefreshToken ||
		st.get(t, "acme").LastRefresh == nil || st.get(t, "acme").LastRefresh.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("after a scheduled check: %+v", st)
	}

	// globex revoked at VBC: its refresh fails for good, acme's goes on.
	for _, ip := range rig.sandbox.sb.Issued() {
		if ip.Subject == "globex-admin@vbc.prod" {
			rig.sandbox.sb.Revoke(ip.RefreshToken)
		}
	}
	wall.Advance(23 * time.Hour)
	rig.sched.tick(context.Background())
	st = c.status()
	if st.Refreshes != 3 || st.get(t, "acme").Problem != "" || !strings.Contains(st.get(t, "globex").Problem, "VBC rejected the stored refresh token") {
		t.Errorf("after globex's revocation: refreshes %d, acme %+v, globex %+v", st.Refreshes, st.get(t, "acme"), st.get(t, "globex"))
	}
	if page := c.do("GET", "/", "", nil).Body.String(); !strings.Contains(page, `<td class="bad">Re-consent needed</td>`) || !strings.Contains(page, "1 need attention") {
		t.Errorf("status page after globex's revocation:\n%s", page)
	}
	// Connecting globex again, a minute later, heals it.
	wall.Advance(time.Minute)
	c.connect("globex", "globex-admin")
	if st := c.status(); !st.get(t, "globex").Connected || st.get(t, "globex").Problem != "" {
		t.Errorf("globex after a new consent: %+v", st.get(t, "globex"))
	}

	// The /api/ routes: accounts, and ?account= required, checked and refused as the commands do.
	token := rig.info.Token
	r := c.do("GET", apiAccounts, token, nil)
	var reply apiReply
	if err := json.Unmarshal(r.Body.Bytes(), &reply); err != nil || r.Code != http.StatusOK || len(reply.Accounts) != 2 {
		t.Errorf("api accounts: %d %v %s", r.Code, err, r.Body)
	}
	for target, want := range map[string]int{
		apiStatus:                       ExitUsage,
		apiStatus + "?account=Bad_Id":   ExitUsage,
		apiStatus + "?account=acme":     ExitOK,
		apiStatus + "?account=nobody":   ExitOK,
		apiRefresh + "?account=nobody":  ExitReconsent,
		apiConsentURL + "?account=acme": ExitOK,
	} {
		method := "GET"
		if !strings.HasPrefix(target, apiStatus) {
			method = "POST"
		}
		r := c.do(method, target, token, nil)
		reply = apiReply{}
		if err := json.Unmarshal(r.Body.Bytes(), &reply); err != nil || reply.ExitCode != want {
			t.Errorf("%s %s: %d %v %s", method, target, r.Code, err, r.Body)
		}
	}
	if exists(filepath.Join(dir, filestore.AccountsDir, "nobody")) {
		t.Error("asking about an unknown account created it")
	}
	for _, secret := range []string{users["acme-admin@vbc.prod"], users["globex-admin@vbc.prod"]} {
		if strings.Contains(stderr.String(), secret) {
			t.Error("a refresh token is in the logs")
		}
	}
}

// connectAs consents for account through a running serve over HTTP, approving as user.
func connectAs(t *testing.T, base, account, user string) {
	t.Helper()
	r := get(t, base+"/consent?"+url.Values{"account": {account}}.Encode())
	if r.status != http.StatusFound {
		t.Fatalf("GET /consent?account=%s: %d %s", account, r.status, r.body)
	}
	page := get(t, r.header.Get("Location"))
	resp, err := noRedirect.PostForm(base+"/sandbox/authorize", consentForm(page.body, "approve", user))
	if err != nil {
		t.Fatal(err)
	}
	post := readReply(t, resp)
	if cb := get(t, post.header.Get("Location")); cb.status != http.StatusOK {
		t.Fatalf("callback: %d %s", cb.status, cb.body)
	}
}

// The commands ask a running serve --accounts to act on an account; a restart keeps the
// mode and every account's connection; --accounts refuses a store with a single pair.
func TestServeAccountsWithCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startServe(t, map[string]string{}, nil, "--store", dir, "--accounts")
	connectAs(t, s.base, "acme", "acme-admin")
	connectAs(t, s.base, "globex", "globex-admin")

	r := runCLI(t, nil, nil, "accounts", "--store", dir)
	if r.code != ExitOK || !strings.Contains(r.stdout, "acme ") || !strings.Contains(r.stdout, "globex ") || !strings.Contains(r.stdout, "kept by vbctoken serve") {
		t.Fatalf("accounts through serve: exit %d:\n%s", r.code, r.all())
	}
	if r := runCLI(t, nil, nil, "status", "--store", dir, "--account", "globex"); r.code != ExitOK || !strings.Contains(r.stdout, "Connected to VBC: yes") {
		t.Errorf("status --account through serve: exit %d:\n%s", r.code, r.all())
	}
	if r := runCLI(t, nil, nil, "status", "--store", dir); r.code != ExitUsage || !strings.Contains(r.stderr, "name one with --account ID") {
		t.Errorf("status without --account: exit %d:\n%s", r.code, r.all())
	}
	if r := runCLI(t, nil, nil, "refresh", "--store", dir, "--account", "acme", "--force"); r.code != ExitOK || !strings.Contains(r.stdout, "Refreshed (forced)") {
		t.Errorf("refresh --account through serve: exit %d:\n%s", r.code, r.all())
	}
	r = runCLI(t, nil, nil, "consent-url", "--store", dir, "--account", "initech", "--json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"account": "initech"`) || !strings.Contains(r.stdout, s.base+"/sandbox/authorize?") {
		t.Errorf("consent-url --account through serve: exit %d:\n%s", r.code, r.all())
	}

	// Restart without --accounts: the store keeps the mode and both connections (the
	// sandbox revives each account's chain).
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve exit %d", code)
	}
	s = startServe(t, map[string]string{}, nil, "--store", dir)
	var st accountsStatus
	if err := json.Unmarshal([]byte(get(t, s.base+"/status.json").body), &st); err != nil || len(st.Accounts) != 2 {
		t.Fatalf("status.json after a restart: %v %+v", err, st)
	}
	for _, id := range []string{"acme", "globex"} {
		if !st.get(t, id).Connected {
			t.Errorf("%s lost its connection in the restart", id)
		}
		if r := runCLI(t, nil, nil, "refresh", "--store", dir, "--account", id, "--force"); r.code != ExitOK {
			t.Errorf("refresh --account %s after a restart: exit %d:\n%s", id, r.code, r.all())
		}
	}
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve exit %d", code)
	}

	// Without serve the sandbox's store cannot act; the accounts mode is still seen.
	if r := runCLI(t, nil, nil, "accounts", "--store", dir); r.code != ExitNoStore {
		t.Errorf("accounts on the idle sandbox store: exit %d:\n%s", r.code, r.all())
	}

	// --accounts on a store that holds a single-account connection is refused.
	single := filepath.Join(t.TempDir(), "single")
	s = startServe(t, map[string]string{}, nil, "--store", single)
	connectServe(t, s)
	s.stop()
	r = runCLI(t, map[string]string{}, nil, "serve", "--addr", "127.0.0.1:0", "--store", single, "--accounts")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "holds a single-account pair") || !strings.Contains(r.stderr, "--force") || hasAccounts(single) {
		t.Errorf("serve --accounts on a single store: exit %d:\n%s", r.code, r.stderr)
	}
}
