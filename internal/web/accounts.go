package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// AccountPattern is an account id as the browser checks it in the connect form
// (vbctoken.CheckAccount checks it again on the server).
const AccountPattern = "[a-z0-9][a-z0-9-]{0,62}"

// AccountsView is what the status page of `vbctoken serve` shows in accounts mode: every
// account's state, what the scheduler last did for each, and a form that connects an
// account. It holds no token.
type AccountsView struct {
	Accounts []AccountRow
	// LastCheck is when the scheduler last looked at the accounts; zero before its first run.
	LastCheck time.Time
	// Refreshes counts the pairs the scheduler stored since serve started, all accounts.
	Refreshes int
	// ConnectURL is where the connect form and the rows' Connect links go, with
	// ?account=ID; default "/consent".
	ConnectURL string
	// Mode and Store are as in StatusView.
	Mode, Store string
	// Now is the keeper's clock.
	Now time.Time
	// Location formats times; default UTC.
	Location *time.Location
}

// AccountRow is one account of the accounts page.
type AccountRow struct {
	Account string
	// Status is the account's state (zero when Unreadable).
	Status vbctoken.Status
	// Unreadable is why the account's pair could not be read; nil when it was. The page
	// shows a short text chosen by its kind, never its Error().
	Unreadable error
	// Last is the scheduler's latest refresh of the account that did something; nil before.
	Last *LastRefresh
	// Problem says what needs attention, in a few safe words ("" when nothing does).
	Problem string
}

// AccountsPage builds the status page of `vbctoken serve` in accounts mode: a table of the
// accounts and a form "Connect account ID". It does not reload itself (a reload would lose
// what the admin is typing in the form); the callback's pages lead back to it.
func AccountsPage(v AccountsView) Page {
	if v.ConnectURL == "" {
		v.ConnectURL = "/consent"
	}
	now := v.Now
	p := Page{Status: http.StatusOK, Tone: ToneOK, Title: "VBC accounts", Wide: true}
	connected, attention := 0, 0
	table := &Table{ID: "accounts", Head: []string{"Account", "State", "Refresh token", "Next refresh", "Last refresh", "Needs attention", ""}}
	for _, r := range v.Accounts {
		state, tone := accountState(r)
		if r.Unreadable == nil && r.Status.Connected {
			connected++
		}
		if r.Problem != "" || r.Unreadable != nil {
			attention++
		}
		refresh, next, last := "-", "-", "-"
		st := r.Status
		if !st.RefreshExpiresAt.IsZero() {
			refresh = "expires " + unbreakable(Relative(st.RefreshExpiresAt, now))
			if !now.Before(st.RefreshExpiresAt) {
				refresh = "expired " + unbreakable(Relative(st.RefreshExpiresAt, now))
			}
		}
		if st.Connected && !st.NextRefresh.IsZero() {
			next = unbreakable(Relative(st.NextRefresh, now))
			if !st.NextRefresh.After(now) {
				next = "due now"
			}
		}
		if r.Last != nil {
			last = r.Last.Summary() + " · " + unbreakable(Relative(r.Last.At, now))
		}
		link := Cell{Text: "Connect", LinkURL: v.ConnectURL + "?" + url.Values{"account": {r.Account}}.Encode()}
		if r.Unreadable == nil && st.Connected {
			link.Text = "Connect again"
		}
		table.Rows = append(table.Rows, Row{ID: "account-" + r.Account, Cells: []Cell{
			{Text: r.Account}, {Text: state, Tone: tone}, {Text: refresh}, {Text: next}, {Text: last}, {Text: dash(r.Problem)}, link,
		}})
	}
	switch {
	case len(v.Accounts) == 0:
		p.Tone = ToneWarn
		p.Lead = "No account is connected yet. Name the first one below (your customer's id, for example acme), approve on the VBC consent page as that account's admin, and it appears here."
	case attention > 0:
		p.Tone = ToneWarn
		p.Lead = strconv.Itoa(len(v.Accounts)) + " accounts, " + strconv.Itoa(connected) + " connected; " + strconv.Itoa(attention) + " need attention (see the table). The scheduler refreshes every connected account before it expires."
	default:
		p.Lead = strconv.Itoa(len(v.Accounts)) + " accounts, all connected. The scheduler refreshes each before it expires. Nothing to do."
	}
	if len(v.Accounts) > 0 {
		p.Table = table
	}
	p.Form = &Form{ID: "connect", Action: v.ConnectURL, Label: "Connect account", Name: "account", Placeholder: "acme",
		Button: "Connect", Pattern: AccountPattern, MaxLength: 63}
	p.Next, p.NextCode = "Or, from a terminal:", "vbctoken consent-url --account ID"
	if !v.LastCheck.IsZero() {
		p.Facts = append(p.Facts, Fact{"Last check", unbreakable(Relative(v.LastCheck, now))})
	}
	p.Facts = append(p.Facts, Fact{"Refreshes since start", strconv.Itoa(v.Refreshes)})
	if v.Mode != "" {
		p.Facts = append(p.Facts, Fact{"Talking to", v.Mode})
	}
	if v.Store != "" {
		p.Facts = append(p.Facts, Fact{"Store", v.Store})
	}
	p.Facts = append(p.Facts, Fact{"Clock", fmtTimeAt(now, v.Location) + " (reload the page to update)"})
	return p
}

// accountState names an account's state in a word or two, with its colour.
func accountState(r AccountRow) (string, Tone) {
	st := r.Status
	switch {
	case errors.Is(r.Unreadable, vbctoken.ErrMalformedSecret):
		return "Damaged pair", ToneBad
	case errors.Is(r.Unreadable, vbctoken.ErrNewerSchema):
		return "Newer schema", ToneBad
	case r.Unreadable != nil:
		return "Unreadable", ToneBad
	case !st.Connected && (st.Reason == vbctoken.ReasonRefreshExpired || st.Reason == vbctoken.ReasonRejected):
		return "Re-consent needed", ToneBad
	case !st.Connected:
		return "Not connected", ToneWarn
	case r.Last != nil && errors.Is(r.Last.Err, vbctoken.ErrReconsentRequired) && !r.Last.At.Before(st.ObtainedAt):
		return "Re-consent needed", ToneBad
	case r.Last != nil && r.Last.Err != nil && !r.Last.At.Before(st.ObtainedAt):
		return "Connected, refresh failing", ToneWarn
	}
	return "Connected", ToneOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
