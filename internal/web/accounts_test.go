package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

func TestAccountsPage(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	obtained := now.Add(-2 * time.Hour)
	connected := vbctoken.Status{Connected: true, Grant: vbctoken.GrantRefreshToken, ObtainedAt: obtained, Now: now,
		AccessExpiresAt: obtained.Add(24 * time.Hour), RefreshExpiresAt: obtained.Add(7 * 24 * time.Hour), NextRefresh: obtained.Add(22 * time.Hour)}
	expired := vbctoken.Status{Reason: vbctoken.ReasonRefreshExpired, RefreshExpiresAt: now.Add(-time.Hour), Now: now}
	refreshed := &LastRefresh{At: now.Add(-time.Minute), Result: vbctoken.Result{Outcome: vbctoken.OutcomeRefreshed, Reason: vbctoken.ReasonAccessExpiring}}

	tests := []struct {
		name  string
		view  AccountsView
		tone  Tone
		has   []string
		lacks []string
	}{
		{
			name: "no accounts yet", view: AccountsView{Now: now, Mode: "local VBC sandbox"},
			tone: ToneWarn,
			has: []string{"No account is connected yet", `<form id="connect" method="get" action="/consent">`, `name="account"`,
				`pattern="[a-z0-9][a-z0-9-]{0,62}"`, `maxlength="63"`, "vbctoken consent-url --account ID", "local VBC sandbox"},
			lacks: []string{`<table`, `http-equiv="refresh"`},
		},
		{
			name: "all connected", view: AccountsView{Now: now, Refreshes: 3, Accounts: []AccountRow{
				{Account: "acme", Status: connected, Last: refreshed},
				{Account: "globex", Status: connected},
			}},
			tone: ToneOK,
			has: []string{"2 accounts, all connected", `<tr id="account-acme">`, `<td class="ok">Connected</td>`, "expires " + nb("in 6d 22h"),
				nb("in 20h 0m"), "refreshed (access token close to expiry) · " + nb("1m 0s ago"), `<a href="/consent?account=globex">Connect again</a>`, ">3<"},
		},
		{
			name: "accounts that need attention", view: AccountsView{Now: now, Accounts: []AccountRow{
				{Account: "acme", Status: connected},
				{Account: "initech", Status: expired, Problem: "re-consent needed"},
				{Account: "hooli", Status: vbctoken.Status{Now: now}, Problem: "not connected"},
				{Account: "umbrella", Unreadable: fmt.Errorf("load pair: %w: <secret detail>", vbctoken.ErrMalformedSecret), Problem: "damaged pair"},
				{Account: "rejected", Status: connected, Last: &LastRefresh{At: now, Err: vbctoken.ErrReconsentRequired}},
				{Account: "flaky", Status: connected, Last: &LastRefresh{At: now, Err: vbctoken.ErrTransient}},
			}},
			tone: ToneWarn,
			has: []string{"6 accounts, 3 connected; 3 need attention", `<td class="bad">Re-consent needed</td>`, "expired " + nb("1h 0m ago"),
				`<td class="warn">Not connected</td>`, `<a href="/consent?account=hooli">Connect</a>`, `<td class="bad">Damaged pair</td>`,
				`<td class="warn">Connected, refresh failing</td>`},
			lacks: []string{"secret detail"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := AccountsPage(tc.view)
			if p.Tone != tc.tone || p.Status != http.StatusOK || p.Refresh != 0 || !p.Wide {
				t.Errorf("page: tone %s status %d refresh %d wide %v", p.Tone, p.Status, p.Refresh, p.Wide)
			}
			resp := Respond(p)
			if csp := resp.Headers["Content-Security-Policy"]; !strings.Contains(csp, "form-action 'self'") {
				t.Errorf("CSP does not let the form submit: %s", csp)
			}
			for _, s := range tc.has {
				if !strings.Contains(resp.Body, s) {
					t.Errorf("page lacks %q:\n%s", s, resp.Body)
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(resp.Body, s) {
					t.Errorf("page contains %q", s)
				}
			}
		})
	}
	// Pages without a form keep form-action 'none'.
	if csp := Respond(StatusPage(StatusView{Status: connected})).Headers["Content-Security-Policy"]; !strings.Contains(csp, "form-action 'none'") {
		t.Errorf("status page CSP: %s", csp)
	}
}

// Every text of the table and the form is escaped, links are vetted.
func TestTableAndFormEscape(t *testing.T) {
	p := Page{Title: "t", Table: &Table{ID: `x"><script>`, Head: []string{"<b>"}, Rows: []Row{{ID: `"onload="`, Cells: []Cell{
		{Text: "<script>alert(1)</script>", Tone: `ok" onclick="x`}, {Text: "go", LinkURL: "javascript:alert(1)"},
	}}}}, Form: &Form{ID: "f", Action: "javascript:x", Label: "<i>", Name: `n"`, Placeholder: `"><x>`, Button: "<b>", Pattern: `"`}}
	body := p.Render()
	for _, bad := range []string{"<script>", "<b>", "<i>", `"onload="`, `onclick="x"`, "javascript:", "<x>"} {
		if strings.Contains(body, bad) {
			t.Errorf("rendered %q:\n%s", bad, body)
		}
	}
}

// fakeAccounts is an AccountConsenter answering one account.
type fakeAccounts struct {
	account string
	err     error
}

func (f fakeAccounts) CompleteConsent(context.Context, string, vbctoken.Secret) (string, vbctoken.Result, error) {
	if f.err != nil {
		return "", vbctoken.Result{}, f.err
	}
	exp := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	return f.account, vbctoken.Result{Outcome: vbctoken.OutcomeConnected, AccessExpiresAt: exp, RefreshExpiresAt: exp.Add(6 * 24 * time.Hour)}, nil
}

// In accounts mode the callback stores into the account of the signed state and names it;
// its errors are the single-account pages.
func TestCallbackAccounts(t *testing.T) {
	serve := func(a AccountConsenter) Response {
		return (&Callback{Accounts: a}).Serve(context.Background(), Request{Method: http.MethodGet, Path: CallbackPath, RawQuery: "code=c&state=s"})
	}
	resp := serve(fakeAccounts{account: "acme"})
	if resp.Status != http.StatusOK || !strings.Contains(resp.Body, "<dt>Account</dt><dd>acme</dd>") || !strings.Contains(resp.Body, "connection of the account acme") {
		t.Errorf("success: %d\n%s", resp.Status, resp.Body)
	}
	for _, tc := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("consent: %w", vbctoken.ErrStateExpired), http.StatusBadRequest},
		{fmt.Errorf("consent: %w", vbctoken.ErrBadState), http.StatusBadRequest},
		{fmt.Errorf("consent: %w", vbctoken.ErrStateReused), http.StatusConflict},
		{errors.New("boom"), http.StatusInternalServerError},
	} {
		if got := serve(fakeAccounts{err: tc.err}); got.Status != tc.status || strings.Contains(got.Body, "<dt>Account</dt>") {
			t.Errorf("%v: %d, want %d", tc.err, got.Status, tc.status)
		}
	}
}
