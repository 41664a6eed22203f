package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

func TestStatusPage(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	obtained := now.Add(-2 * time.Hour)
	connected := vbctoken.Status{
		Connected: true, Grant: vbctoken.GrantRefreshToken, ObtainedAt: obtained,
		AccessExpiresAt: obtained.Add(24 * time.Hour), RefreshExpiresAt: obtained.Add(7 * 24 * time.Hour),
		NextRefresh: obtained.Add(22 * time.Hour), Reason: vbctoken.ReasonFresh, Now: now,
	}
	expired := connected
	expired.Connected, expired.Reason, expired.NextRefresh, expired.Now = false, vbctoken.ReasonRefreshExpired, time.Time{}, obtained.Add(8*24*time.Hour)
	refreshed := &LastRefresh{At: obtained, Result: vbctoken.Result{Outcome: vbctoken.OutcomeRefreshed, Reason: vbctoken.ReasonAccessExpiring}}
	after := func(err error) *LastRefresh { return &LastRefresh{At: now.Add(-time.Minute), Err: err} }

	tests := []struct {
		name  string
		view  StatusView
		tone  Tone
		title string
		link  bool
		has   []string
		lacks []string
	}{
		{
			name: "not connected", view: StatusView{Status: vbctoken.Status{Reason: vbctoken.ReasonNotConnected, Now: now}},
			tone: ToneWarn, title: "Not connected to VBC yet", link: true,
			has: []string{"Connect to VBC", "vbctoken consent-url", "Refreshes since start"}, lacks: []string{"Access token"},
		},
		{
			name: "connected", view: StatusView{Status: connected, Last: refreshed, LastCheck: now.Add(-3 * time.Second), Refreshes: 4, Mode: "local VBC sandbox", Store: "files in .vbctoken"},
			tone: ToneOK, title: "Connected to VBC",
			has: []string{"refresh_token (refreshed by the keeper)", "2 Mar 2026, 10:00:00 UTC · " + nb("2h 0m ago"), "Access token expires", nb("in 22h 0m"),
				"Next refresh", nb("in 20h 0m"), "refreshed (access token close to expiry) · " + nb("2h 0m ago"), nb("3s ago"), ">4<", "local VBC sandbox", "files in .vbctoken"},
			lacks: []string{`id="link"`},
		},
		{
			name: "refresh token expired", view: StatusView{Status: expired},
			tone: ToneBad, title: "Re-consent needed", link: true,
			has: []string{"expired " + nb("1d 0h ago"), "Connect again", "Refresh token expired"}, lacks: []string{"Next refresh"},
		},
		{
			name: "chain rejected by VBC after the current pair", view: StatusView{Status: connected, Last: after(fmt.Errorf("refresh: %w", vbctoken.ErrReconsentRequired))},
			tone: ToneBad, title: "Re-consent needed", link: true,
			has: []string{"VBC rejected the stored refresh token " + nb("1m 0s ago"), "re-consent required"}, lacks: []string{"Next refresh"},
		},
		{
			name: "a consent after the rejection reconnects", view: StatusView{Status: connected, Last: &LastRefresh{At: obtained.Add(-time.Hour), Err: vbctoken.ErrReconsentRequired}},
			tone: ToneOK, title: "Connected to VBC",
		},
		{
			name: "transient failure", view: StatusView{Status: connected, Last: after(&vbctoken.UpstreamError{Op: "refresh", Kind: vbctoken.ErrTransient, StatusCode: 503})},
			tone: ToneWarn, title: "Connected — the last refresh failed",
			has:   []string{"VBC or the store did not answer", "valid until 3 Mar 2026, 10:00:00 UTC"},
			lacks: []string{"HTTP 503"},
		},
		{
			name: "other failure shows no error text", view: StatusView{Status: connected, Last: after(errors.New("secret detail <b>"))},
			tone: ToneWarn, title: "Connected — the last refresh failed",
			has: []string{"the details are in the logs"}, lacks: []string{"secret detail", "<b>"},
		},
		{
			name: "text is escaped", view: StatusView{Status: connected, Mode: `<script>alert(1)</script>`},
			tone: ToneOK, title: "Connected to VBC",
			has: []string{"&lt;script&gt;"}, lacks: []string{"<script>"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := StatusPage(tc.view)
			if p.Tone != tc.tone || p.Title != tc.title || p.Status != http.StatusOK || p.Refresh != DefaultStatusRefresh {
				t.Errorf("page: tone %s title %q status %d refresh %d", p.Tone, p.Title, p.Status, p.Refresh)
			}
			if (p.LinkURL == "/consent") != tc.link {
				t.Errorf("link %q, want one: %v", p.LinkURL, tc.link)
			}
			body := Respond(p).Body
			for _, s := range tc.has {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(body, s) {
					t.Errorf("page contains %q", s)
				}
			}
		})
	}
}

// nb is s with no-break spaces: the status page keeps "in 22h 0m" on one line.
func nb(s string) string { return strings.ReplaceAll(s, " ", "\u00a0") }

// StoreErrorPage says what to do about each kind of unreadable store, never the error.
func TestStoreErrorPage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		reset string
		title string
		has   []string
	}{
		{"damaged pair, file store", fmt.Errorf("load pair: %w: <secret detail>", vbctoken.ErrMalformedSecret), "vbctoken reset --store /tmp/x",
			"The stored token pair is damaged", []string{"Set it aside (a copy is kept)", "<code>vbctoken reset --store /tmp/x</code>"}},
		{"damaged pair, Secrets Manager", vbctoken.ErrMalformedSecret, "", "The stored token pair is damaged", []string{"AWSPREVIOUS"}},
		{"newer schema", &vbctoken.SchemaError{What: "pair", Version: 9}, "vbctoken reset", "A newer vbctoken wrote the stored pair", []string{"Upgrade vbctoken"}},
		{"anything else", errors.New("<secret detail>"), "vbctoken reset", "Cannot read the stored pair", []string{"details are in the logs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := StoreErrorPage(tc.err, tc.reset)
			body := Respond(p).Body
			if p.Title != tc.title || p.Status != http.StatusServiceUnavailable || p.Tone != ToneBad || p.Refresh == 0 {
				t.Errorf("page: %+v", p)
			}
			for _, s := range tc.has {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q:\n%s", s, body)
				}
			}
			if strings.Contains(body, "secret detail") {
				t.Errorf("the error text reached the page")
			}
		})
	}
}

// The stylesheet keeps commands and short phrases whole and the badge's mark readable in
// dark mode (dark on the light badge colours, white on the dark ones in light mode).
func TestStylesheet(t *testing.T) {
	for _, want := range []string{
		"--on-badge:#fff", "--ok:#81c995;--bad:#f28b82;--warn:#fdd663;--on-badge:#121212",
		"color:var(--on-badge)", "code{", "display:inline-block;max-width:100%",
	} {
		if !strings.Contains(css, want) {
			t.Errorf("stylesheet lacks %q", want)
		}
	}
}

func TestRelativeAndHumanDuration(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Time{}, "unknown"},
		{now, "now"},
		{now.Add(500 * time.Millisecond), "now"},
		{now.Add(12 * time.Second), "in 12s"},
		{now.Add(-(4*time.Minute + 2*time.Second)), "4m 2s ago"},
		{now.Add(21*time.Hour + 58*time.Minute + 59*time.Second), "in 21h 58m"},
		{now.Add(-(6*24*time.Hour + 23*time.Hour)), "6d 23h ago"},
		{now.Add(400 * 24 * time.Hour), "in 400d 0h"},
	} {
		if got := Relative(tc.at, now); got != tc.want {
			t.Errorf("Relative(now%+v) = %q, want %q", tc.at.Sub(now), got, tc.want)
		}
	}
	if got := HumanDuration(0); got != "0s" {
		t.Errorf("HumanDuration(0) = %q", got)
	}
}
