package dynamostore_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// On-demand prices (us-east-1, USD per million request units, since November 2024).
const (
	pricePerMillionRRU = 0.125
	pricePerMillionWRU = 0.625
)

// clock is a settable test clock safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestKeeperRequestUnits runs the real keeper over the DynamoDB backend against the VBC
// sandbox and counts what an hourly check that skips and a refresh cost in DynamoDB
// requests and request units (see meter for the pricing rules). The numbers are in the
// package documentation; this test keeps the call pattern they rest on.
func TestKeeperRequestUnits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const redirect = "https://isv.example/callback"
	start := time.Now().UTC().Truncate(time.Second)
	clk := &clock{now: start}

	sb := vbcsandbox.New(vbcsandbox.Options{
		Clients: []vbcsandbox.Client{{ID: "isv-app", Secret: "cs-s3cr3t", RedirectURLs: []string{redirect}}},
		Now:     clk.Now,
	})
	vbc := httptest.NewServer(sb)
	defer vbc.Close()

	tb := newTable(t)
	tb.seedCredentials(t, `{"client_id":"isv-app","client_secret":"cs-s3cr3t"}`)
	m := newMeter(tb.client, tb.client, tb.name)
	accounts, err := vbctoken.NewAccounts(tb.fleet(t, m), vbctoken.KeeperConfig{
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{AuthorizeURL: vbc.URL + vbcsandbox.AuthorizePath, TokenURL: vbc.URL + vbcsandbox.TokenPath},
			RedirectURL: redirect,
		},
		Holder: "vbctoken-refresher",
		Now:    clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	acct := newAccount("cost")
	k, err := accounts.Keeper(acct)
	if err != nil {
		t.Fatal(err)
	}

	// An admin of the account consents.
	link, err := k.ConsentURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := sb.Approve(link)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.Parse(cb)
	if _, _, err := accounts.CompleteConsent(ctx, q.Query().Get("state"), vbctoken.Secret(q.Query().Get("code"))); err != nil {
		t.Fatal(err)
	}
	consent := m.take()

	// An hourly check an hour later: the pair is fresh.
	clk.Set(start.Add(time.Hour))
	res, err := k.Refresh(ctx, false)
	if err != nil || res.Outcome != vbctoken.OutcomeSkipped {
		t.Fatalf("check after 1 h = %v, %v; want skipped", res.Outcome, err)
	}
	skip := m.take()
	wantOps(t, "a skipped check", skip, "Get", "Get")
	if got := keys(skip); !slices.Equal(got, []string{"access#" + acct, "pair#" + acct}) {
		t.Errorf("a skipped check read %v", got)
	}

	// The check 23 hours after the consent: inside the 2 h margin, it refreshes.
	clk.Set(start.Add(23 * time.Hour))
	res, err = k.Refresh(ctx, false)
	if err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("check after 23 h = %v, %v; want refreshed", res.Outcome, err)
	}
	refresh := m.take()
	// Read the pair, write the lease, write the new pair, write the access token, re-read
	// the pair (the keeper's guard against an access write landing after a newer one).
	wantOps(t, "a refresh", refresh, "Get", "Put", "Put", "Put", "Get")

	pairSize, accessSize := itemSize(tb.item(t, "pair#"+acct)), itemSize(tb.item(t, "access#"+acct))
	skipR, skipW := total(skip)
	refR, refW := total(refresh)
	conR, conW := total(consent)
	if skipW != 0 || skipR > 2 {
		t.Errorf("a skipped check costs %.1f RRU and %.1f WRU, want at most 2 RRU and no write", skipR, skipW)
	}
	// A month of hourly checks: one refresh a day (VBC_REFRESH_MAX_AGE 24h), the other 23
	// checks skip.
	monthR, monthW := 30*(23*skipR+refR), 30*refW
	dollars := monthR/1e6*pricePerMillionRRU + monthW/1e6*pricePerMillionWRU
	var b strings.Builder
	b.WriteString("DynamoDB request units (strongly consistent reads, on-demand):\n")
	b.WriteString(line("consent", consent, conR, conW))
	b.WriteString(line("skipped check", skip, skipR, skipW))
	b.WriteString(line("refresh", refresh, refR, refW))
	t.Logf("%sitems: pair %d B, access %d B\nper account-month (720 checks, 30 refreshes): %.0f RRU + %.0f WRU = $%.5f",
		b.String(), pairSize, accessSize, monthR, monthW, dollars)
}

func line(what string, calls []call, rru, wru float64) string {
	var parts []string
	for _, c := range calls {
		kind, _, _ := strings.Cut(c.Key, "#")
		parts = append(parts, c.Op+" "+kind)
	}
	return fmt.Sprintf("  %s: %s = %g RRU, %g WRU\n", what, strings.Join(parts, ", "), rru, wru)
}
