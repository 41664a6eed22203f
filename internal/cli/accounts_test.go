package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// fleetHarness is a local store with accounts (what `vbctoken serve --accounts` makes) over
// the harness's sandbox and clock, driven through the real file stores.
type fleetHarness struct {
	*harness
	dir     string
	outputs []string
}

func newFleetHarness(t *testing.T) *fleetHarness {
	t.Helper()
	h := &fleetHarness{harness: newHarness(t), dir: filepath.Join(t.TempDir(), "store")}
	f, err := filestore.NewFleet(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SaveCredentials(context.Background(), vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret}); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(h.dir, filestore.AccountsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs args on the fleet's store; every output is kept for the leak scan.
func (h *fleetHarness) run(stdin string, args ...string) result {
	h.t.Helper()
	var out, errOut bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return h.env[k] }, now: h.clock.Now,
		storeRetry: vbctoken.RetryPolicy{Sleep: noSleep}, clientRetry: vbctoken.RetryPolicy{Sleep: noSleep}}
	r := result{a.run(context.Background(), append(args, "--store", h.dir)), out.String(), errOut.String()}
	h.outputs = append(h.outputs, r.all())
	return r
}

// accounts is the callback's side of the fleet.
func (h *fleetHarness) accounts() *vbctoken.Accounts {
	h.t.Helper()
	f, err := filestore.NewFleet(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := vbctoken.NewAccounts(f, vbctoken.KeeperConfig{Now: h.clock.Now, Client: vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: h.env[config.EnvAuthorizeURL], TokenURL: h.env[config.EnvTokenURL]},
		RedirectURL: testRedirect,
	}})
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// connectAccount consents for account through the CLI's link, approved at the sandbox by
// user (each account its own VBC user), and the accounts-mode callback. It returns the
// callback's page.
func (h *fleetHarness) connectAccount(account, user string) string {
	h.t.Helper()
	r := h.run("", "consent-url", "--account", account)
	if r.code != ExitOK || !strings.Contains(r.stderr, "This link connects the account "+account) {
		h.t.Fatalf("consent-url --account %s: exit %d: %s", account, r.code, r.all())
	}
	cb, err := h.sb.ApproveAs(lastLine(r.stdout), user)
	if err != nil {
		h.t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	resp := (&web.Callback{Accounts: h.accounts()}).Serve(context.Background(), web.Request{Method: "GET", Path: u.Path, RawQuery: u.RawQuery})
	if resp.Status != 200 {
		h.t.Fatalf("callback for %s: %d\n%s", account, resp.Status, resp.Body)
	}
	return resp.Body
}

func (h *fleetHarness) report(t *testing.T) accountsReport {
	t.Helper()
	r := h.run("", "accounts", "--json")
	var rep accountsReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitOK {
		t.Fatalf("accounts --json: exit %d, %v: %s", r.code, err, r.all())
	}
	return rep
}

func (rep accountsReport) get(t *testing.T, account string) accountState {
	t.Helper()
	for _, a := range rep.Accounts {
		if a.Account == account {
			return a
		}
	}
	t.Fatalf("account %s not listed: %+v", account, rep.Accounts)
	return accountState{}
}

// Accounts mode end to end on a local store: consent links that carry the account, each
// approved by its own VBC user, the callback storing each into its account, status and
// refresh per account, `vbctoken accounts` (table and JSON), one account's revoked chain
// and damaged pair leaving the others alone, login creating an account, and no token in
// any output.
func TestAccountsEndToEnd(t *testing.T) {
	h := newFleetHarness(t)

	r := h.run("", "accounts")
	if r.code != ExitOK || !strings.Contains(r.stdout, "No accounts yet") || !strings.Contains(r.stdout, "vbctoken consent-url --account ID") {
		t.Fatalf("accounts of an empty store: exit %d: %s", r.code, r.all())
	}
	if rep := h.report(t); rep.Counts.Total != 0 || rep.Accounts == nil {
		t.Errorf("empty report: %+v", rep)
	}

	// The link carries the account, signed: the callback names it.
	page := h.connectAccount("acme", "acme-admin")
	if !strings.Contains(page, "the account acme") || !strings.Contains(page, "<dt>Account</dt><dd>acme</dd>") {
		t.Errorf("callback page does not name the account:\n%s", page)
	}
	h.connectAccount("globex-eu", "globex-admin")

	r = h.run("", "consent-url", "--account", "acme", "--json")
	var link struct {
		URL     string `json:"url"`
		Account string `json:"account"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &link); err != nil || link.Account != "acme" {
		t.Errorf("consent-url --account --json: %v %s", err, r.stdout)
	}

	// Two accounts, two chains of their own.
	h.clock.Advance(2 * time.Hour)
	r = h.run("", "accounts")
	if r.code != ExitOK {
		t.Fatalf("accounts: exit %d: %s", r.code, r.all())
	}
	golden(t, "accounts-connected.txt", strings.ReplaceAll(r.stdout, h.dir, "STORE"))
	rep := h.report(t)
	acme := rep.get(t, "acme")
	if rep.Counts != (accountCounts{Total: 2, Connected: 2}) || !acme.Connected || acme.Grant != vbctoken.GrantAuthorizationCode ||
		acme.RefreshExpiresInSeconds == nil || *acme.RefreshExpiresInSeconds != int64((7*24-2)*3600) || acme.Problem != "" {
		t.Errorf("report: %+v, acme %+v", rep.Counts, acme)
	}
	if st := h.run("", "status", "--account", "globex-eu"); st.code != ExitOK || !strings.Contains(st.stdout, "account globex-eu") {
		t.Errorf("status --account globex-eu: exit %d: %s", st.code, st.all())
	}
	st := h.run("", "status", "--account", "acme", "--json")
	var sj struct {
		vbctoken.Status
		Account string `json:"account"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &sj); err != nil || sj.Account != "acme" || !sj.Connected {
		t.Errorf("status --account --json: %v %s", err, st.stdout)
	}

	// An account nobody connected: not connected (exit 3), and nothing is created for it.
	st = h.run("", "status", "--account", "nobody")
	if st.code != ExitReconsent || !strings.Contains(st.stdout, "vbctoken consent-url --account nobody") {
		t.Errorf("status of an unknown account: exit %d: %s", st.code, st.all())
	}
	if exists(filepath.Join(h.dir, filestore.AccountsDir, "nobody")) {
		t.Error("status created the account")
	}
	if r := h.run("", "refresh", "--account", "nobody"); r.code != ExitReconsent || exists(filepath.Join(h.dir, filestore.AccountsDir, "nobody")) {
		t.Errorf("refresh of an unknown account: exit %d: %s", r.code, r.all())
	}

	// Refresh one account: the other keeps its pair.
	h.clock.Advance(21 * time.Hour)
	r = h.run("", "refresh", "--account", "acme", "--json")
	var res struct {
		vbctoken.Result
		Account string `json:"account"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != ExitOK || res.Outcome != vbctoken.OutcomeRefreshed || res.Account != "acme" {
		t.Fatalf("refresh --account acme: exit %d, %v: %s", r.code, err, r.all())
	}
	rep = h.report(t)
	if rep.get(t, "acme").Grant != vbctoken.GrantRefreshToken || rep.get(t, "globex-eu").Grant != vbctoken.GrantAuthorizationCode {
		t.Errorf("after refreshing acme: %+v", rep.Accounts)
	}

	// globex-eu's chain revoked at VBC: its refresh needs re-consent, acme's still works.
	for _, p := range h.sb.Issued() {
		if p.Subject == "globex-admin@vbc.prod" {
			h.sb.Revoke(p.RefreshToken)
		}
	}
	r = h.run("", "refresh", "--account", "globex-eu", "--force")
	if r.code != ExitReconsent || !strings.Contains(r.stderr, "vbctoken consent-url --account globex-eu") {
		t.Errorf("refresh of a revoked account: exit %d: %s", r.code, r.all())
	}
	if r := h.run("", "refresh", "--account", "acme", "--force"); r.code != ExitOK {
		t.Errorf("refresh of acme beside a revoked account: exit %d: %s", r.code, r.all())
	}

	// login creates an account; a damaged pair is reported, never stops the listing, and
	// reset --account sets it aside.
	h.env[EnvPassword] = testPassword
	if r := h.run("", "login", "--account", "initech", "--username", testUser); r.code != ExitOK || !strings.Contains(r.stdout, "Connected the account initech") {
		t.Fatalf("login --account initech: exit %d: %s", r.code, r.all())
	}
	if err := os.WriteFile(filepath.Join(h.dir, filestore.AccountsDir, "initech", "pair.json"), []byte("{damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = h.run("", "accounts")
	if r.code != ExitOK || !strings.Contains(r.stdout, "damaged pair") || !strings.Contains(r.stdout, "1 unreadable") || !strings.Contains(r.stdout, "acme") {
		t.Errorf("accounts with a damaged pair: exit %d: %s", r.code, r.all())
	}
	rep = h.report(t)
	if in := rep.get(t, "initech"); in.Error == "" || !strings.Contains(in.Problem, "vbctoken reset --account initech") || rep.Counts.Unreadable != 1 {
		t.Errorf("damaged account in the report: %+v", in)
	}
	if r := h.run("", "reset", "--account", "initech"); r.code != ExitOK || !strings.Contains(r.stdout, filepath.Join(filestore.AccountsDir, "initech", "pair.json.reset-")) {
		t.Errorf("reset --account initech: exit %d: %s", r.code, r.all())
	}
	// Set aside, the account holds no pair: it is listed no more, like one never connected.
	// globex-eu, whose refresh VBC rejected, needs re-consent.
	rep = h.report(t)
	if rep.Counts != (accountCounts{Total: 2, Connected: 1, NotConnected: 1, Attention: 1}) ||
		!strings.Contains(rep.get(t, "globex-eu").Problem, "VBC rejected the stored refresh token") {
		t.Errorf("after reset: %+v", rep)
	}

	secrets := []string{testClientSecret, testPassword}
	for _, p := range h.sb.Issued() {
		secrets = append(secrets, p.AccessToken, p.RefreshToken)
	}
	for i, out := range h.outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %d holds a secret:\n%s", i, out)
			}
		}
	}
}

// A link minted for one account is stored into that account whatever the callback is
// asked: the account comes from the signed state only.
func TestAccountComesFromTheSignedState(t *testing.T) {
	h := newFleetHarness(t)
	r := h.run("", "consent-url", "--account", "acme")
	cb, err := h.sb.ApproveAs(lastLine(r.stdout), "acme-admin")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("account", "globex") // an unsigned parameter is ignored
	account, _, err := h.accounts().CompleteConsent(context.Background(), q.Get("state"), vbctoken.Secret(q.Get("code")))
	if err != nil || account != "acme" {
		t.Fatalf("CompleteConsent: %q, %v", account, err)
	}
	if ids := h.report(t).Accounts; len(ids) != 1 || ids[0].Account != "acme" {
		t.Errorf("accounts: %+v", ids)
	}
}

// Using a command in the wrong mode is a usage error (exit 2) that names the switch, found
// before any call to VBC or AWS; so is an invalid account id.
func TestAccountModeErrors(t *testing.T) {
	single := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "single")
		fs, err := filestore.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.SaveCredentials(context.Background(), vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	fleet := func(t *testing.T) string { return newFleetHarness(t).dir }
	awsSingle := map[string]string{config.EnvCredentialsSecretID: "c", config.EnvTokenSecretID: "p", config.EnvAccessSecretID: "a"}
	awsAccounts := map[string]string{config.EnvAccountSecretPrefix: "vbctoken/accounts/", config.EnvCredentialsSecretID: "c"}
	tests := []struct {
		name  string
		store func(t *testing.T) string
		env   map[string]string
		args  []string
		code  int
		want  []string
	}{
		{"--account on a single store", single, nil, []string{"status", "--account", "acme"}, ExitUsage,
			[]string{"--account works only in accounts mode", "keeps one account", config.EnvAccountSecretPrefix, "vbctoken serve --accounts"}},
		{"accounts on a single store", single, nil, []string{"accounts"}, ExitUsage,
			[]string{"accounts works only in accounts mode", config.EnvAccountSecretPrefix}},
		{"no --account on a store with accounts", fleet, nil, []string{"refresh"}, ExitUsage,
			[]string{"keeps many accounts", "name one with --account ID", "vbctoken accounts"}},
		{"no --account for consent-url", fleet, nil, []string{"consent-url"}, ExitUsage, []string{"name one with --account ID"}},
		{"an invalid account id", fleet, nil, []string{"status", "--account", "Acme_Corp"}, ExitUsage,
			[]string{"configuration problems", "--account: an account id is lower-case letters, digits and hyphens"}},
		{"a too long account id", fleet, nil, []string{"login", "--username", "u", "--account", strings.Repeat("a", 64)}, ExitUsage,
			[]string{"--account: an account id has 1 to 63 characters"}},
		{"--account on AWS in single-account mode", nil, awsSingle, []string{"refresh", "--account", "acme"}, ExitUsage,
			[]string{"--account works only in accounts mode", config.EnvAccountSecretPrefix}},
		{"accounts on AWS in single-account mode", nil, awsSingle, []string{"accounts"}, ExitUsage,
			[]string{"accounts works only in accounts mode"}},
		{"no --account on AWS in accounts mode", nil, awsAccounts, []string{"status"}, ExitUsage,
			[]string{"name one with --account ID"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.store != nil {
				args = append(append([]string(nil), args...), "--store", tc.store(t))
			}
			for _, asJSON := range []bool{false, true} {
				a := args
				if asJSON {
					a = append(append([]string(nil), args...), "--json")
				}
				r := runCLI(t, tc.env, nil, a...)
				if r.code != tc.code {
					t.Fatalf("%v: exit %d, want %d:\n%s", a, r.code, tc.code, r.all())
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%v: stderr lacks %q:\n%s", a, w, r.stderr)
					}
				}
				if strings.Contains(r.stderr, "AWS region") || strings.Contains(r.stderr, "AWS credentials") {
					t.Errorf("%v: AWS was called before the mode was checked:\n%s", a, r.stderr)
				}
				if asJSON {
					var got struct {
						Error    string `json:"error"`
						ExitCode int    `json:"exit_code"`
					}
					if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ExitCode != tc.code || got.Error == "" {
						t.Errorf("%v: %v %q", a, err, r.stdout)
					}
				}
			}
		})
	}
}

func TestOpenFleet(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "missing")
	var noStore *noStoreError
	if _, err := openFleet(ctx, config.Settings{}, missing, false); !errors.As(err, &noStore) || exists(missing) {
		t.Errorf("missing local fleet: %v", err)
	}
	f, err := openFleet(ctx, config.Settings{}, missing, true)
	if err != nil || !exists(missing) {
		t.Fatalf("create a local fleet: %v", err)
	}
	if ids, err := f.Accounts(ctx); err != nil || len(ids) != 0 {
		t.Errorf("new fleet: %v %v", ids, err)
	}
}

// The problem column: one entry per state that needs attention.
func TestAccountProblems(t *testing.T) {
	now := start
	conn := vbctoken.Status{Connected: true, Now: now, ObtainedAt: now.Add(-time.Hour), RefreshExpiresAt: now.Add(6 * 24 * time.Hour), NextRefresh: now.Add(time.Hour)}
	tests := []struct {
		name string
		s    accountState
		want string
	}{
		{"healthy", accountState{Status: conn}, ""},
		{"never consented", accountState{Status: vbctoken.Status{Now: now, Reason: vbctoken.ReasonNotConnected}}, "not connected: no admin has consented yet"},
		{"expired", accountState{Status: vbctoken.Status{Now: now, Reason: vbctoken.ReasonRefreshExpired, RefreshExpiresAt: now.Add(-48 * time.Hour)}},
			"re-consent needed: the refresh token expired 2d 0h ago"},
		{"overdue", accountState{Status: func() vbctoken.Status { s := conn; s.NextRefresh = now.Add(-3 * time.Hour); return s }()},
			"refresh overdue since 3h 0m ago: is the refresher running?"},
		{"due, not overdue", accountState{Status: func() vbctoken.Status { s := conn; s.NextRefresh = now.Add(-time.Hour); return s }()}, ""},
		{"locked login and halted self-heal", accountState{Status: func() vbctoken.Status {
			s := conn
			s.LoginLockedUntil, s.SelfHealHalted = now.Add(20*time.Minute), true
			return s
		}()}, "self-heal halted: VBC rejected its login; VBC user locked until 2026-03-01 10:20:00 UTC (password login)"},
		{"rejected by VBC in serve", accountState{Status: conn, LastRefresh: &lastJSON{At: now, Summary: "re-consent required"}},
			"re-consent needed: VBC rejected the stored refresh token"},
		{"a refresh failure before the current pair is old news", accountState{Status: conn, LastRefresh: &lastJSON{At: now.Add(-2 * time.Hour), Summary: "failed: x"}}, ""},
		{"damaged", accountState{Account: "a", Error: "x", readErr: vbctoken.ErrMalformedSecret}, "damaged pair: set it aside with `vbctoken reset --account a`"},
		{"newer", accountState{Error: "x", readErr: &vbctoken.SchemaError{What: "pair", Version: 9}}, "pair written by a newer vbctoken: upgrade"},
		{"unreachable", accountState{Error: "x", readErr: vbctoken.ErrTransient}, "the store did not answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.problem(); !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
				t.Errorf("problem = %q, want %q", got, tc.want)
			}
		})
	}
}

// The table as an operator reads it, with every kind of row.
func TestAccountsTable(t *testing.T) {
	now := start
	obtained := now.Add(-3 * time.Hour)
	live := vbctoken.Status{Connected: true, Grant: vbctoken.GrantRefreshToken, Now: now, ObtainedAt: obtained,
		AccessExpiresAt: obtained.Add(24 * time.Hour), RefreshExpiresAt: obtained.Add(7 * 24 * time.Hour), NextRefresh: obtained.Add(22 * time.Hour), Reason: vbctoken.ReasonFresh}
	leased := live
	leased.RefreshingBy, leased.RefreshingUntil, leased.KeptPairs = "refresher/3f9a1c2b7d4e", now.Add(40*time.Second), 1
	overdue := live
	overdue.ObtainedAt, overdue.NextRefresh, overdue.Reason = now.Add(-27*time.Hour), now.Add(-5*time.Hour), vbctoken.ReasonAccessExpiring
	overdue.AccessExpiresAt, overdue.RefreshExpiresAt = now.Add(-3*time.Hour), now.Add(5*24*time.Hour)
	expired := vbctoken.Status{Grant: vbctoken.GrantAuthorizationCode, Now: now, Reason: vbctoken.ReasonRefreshExpired, RefreshExpiresAt: now.Add(-30 * time.Hour)}
	locked := vbctoken.Status{Now: now, Reason: vbctoken.ReasonNotConnected, LoginLockedUntil: now.Add(25 * time.Minute)}
	states := []accountState{
		{Account: "acme", Status: live},
		{Account: "globex-eu", Status: leased},
		{Account: "hooli", Status: overdue},
		{Account: "initech", Status: expired},
		{Account: "massive-dynamic", Status: locked},
		{Account: "umbrella", Status: vbctoken.Status{Now: now}, Error: "load pair: malformed stored value", readErr: vbctoken.ErrMalformedSecret},
	}
	for i := range states {
		states[i].derive()
	}
	var b bytes.Buffer
	writeAccounts(&b, report(states, now, "AWS Secrets Manager, secrets vbctoken/accounts/<account>/… (accounts mode)"))
	golden(t, "accounts-table.txt", b.String())
}
