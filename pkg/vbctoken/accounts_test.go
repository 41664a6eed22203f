package vbctoken_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

func TestAccountsKeepTheirOwnChains(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	fleet := memstore.NewFleet(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret})
	cfg := vbctoken.KeeperConfig{
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{AuthorizeURL: w.srv.URL + "/authorize", TokenURL: w.srv.URL + "/token"},
			RedirectURL: testRedirect,
			Retry:       vbctoken.RetryPolicy{Sleep: w.clock.Sleep},
		},
		StoreRetry: vbctoken.RetryPolicy{Sleep: w.clock.Sleep},
		Now:        w.clock.Now,
	}
	accounts, err := vbctoken.NewAccounts(fleet, cfg)
	if err != nil {
		t.Fatal(err)
	}
	consent := func(account string) url.Values {
		t.Helper()
		k, err := accounts.Keeper(account)
		if err != nil {
			t.Fatal(err)
		}
		link, err := k.ConsentURL(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		cb, err := w.vbc.ApproveAs(link, "admin-"+account)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(cb)
		return u.Query()
	}
	for _, id := range []string{"acme", "globex-eu"} {
		q := consent(id)
		got, res, err := accounts.CompleteConsent(ctxFor(t), q.Get("state"), vbctoken.Secret(q.Get("code")))
		if err != nil || got != id || res.Outcome != vbctoken.OutcomeConnected {
			t.Fatalf("consent for %s: account %q, %+v, %v", id, got, res, err)
		}
	}
	if ids, err := accounts.List(ctxFor(t)); err != nil || len(ids) != 2 || ids[0] != "acme" || ids[1] != "globex-eu" {
		t.Fatalf("List = %v, %v", ids, err)
	}

	// A link minted for one account cannot connect another.
	q := consent("acme")
	globex, _ := accounts.Keeper("globex-eu")
	if _, err := globex.CompleteConsent(ctxFor(t), q.Get("state"), vbctoken.Secret(q.Get("code"))); !errors.Is(err, vbctoken.ErrBadState) {
		t.Fatalf("acme's link at globex's keeper: %v, want ErrBadState", err)
	}
	// Nor does a single-account keeper accept it, nor accounts mode a single-account link.
	if _, _, err := accounts.CompleteConsent(ctxFor(t), w.consentQuery(w.keeper(false)).Get("state"), "code"); !errors.Is(err, vbctoken.ErrBadState) {
		t.Fatalf("a single-account link in accounts mode: %v, want ErrBadState", err)
	}
	if _, err := accounts.Keeper("Not An Id"); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Fatalf("invalid account id: %v", err)
	}

	// One account's chain dies at VBC; the other is refreshed as usual.
	acme, _ := accounts.Keeper("acme")
	acmeStore, _ := fleet.Open("acme")
	v, _ := acmeStore.LoadPair(ctxFor(t))
	w.vbc.Revoke(v.Pair.RefreshToken.Reveal())
	w.clock.Advance(23 * time.Hour)
	if _, err := acme.Refresh(ctxFor(t), false); !errors.Is(err, vbctoken.ErrReconsentRequired) {
		t.Fatalf("revoked acme: %v", err)
	}
	if res, err := globex.Refresh(ctxFor(t), false); err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("globex after acme's trouble: %+v %v", res, err)
	}
	if st, err := globex.Status(ctxFor(t)); err != nil || !st.Connected {
		t.Fatalf("globex status %+v %v", st, err)
	}
}

// countingFleet counts the reads of the shared credentials.
type countingFleet struct {
	*memstore.Fleet
	mu    sync.Mutex
	loads int
}

func (f *countingFleet) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	f.mu.Lock()
	f.loads++
	f.mu.Unlock()
	return f.Fleet.LoadCredentials(ctx)
}

// Found by the fleet simulation: a fleet's keepers read the shared credentials once, not
// once per account.
func TestAccountsReadTheCredentialsOnce(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	fleet := &countingFleet{Fleet: memstore.NewFleet(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret})}
	accounts, err := vbctoken.NewAccounts(fleet, vbctoken.KeeperConfig{
		Client: vbctoken.ClientConfig{Endpoints: vbctoken.Endpoints{AuthorizeURL: w.srv.URL + "/authorize", TokenURL: w.srv.URL + "/token"}, RedirectURL: testRedirect},
		Now:    w.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		k, _ := accounts.Keeper(id)
		link, err := k.ConsentURL(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := w.vbc.ApproveAs(link, "admin-"+id)
		u, _ := url.Parse(cb)
		if _, _, err := accounts.CompleteConsent(ctxFor(t), u.Query().Get("state"), vbctoken.Secret(u.Query().Get("code"))); err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Advance(23 * time.Hour)
	for _, id := range []string{"a1", "a2", "a3"} {
		k, _ := accounts.Keeper(id)
		if res, err := k.Refresh(ctxFor(t), false); err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
			t.Fatalf("%s: %+v %v", id, res, err)
		}
		if n := fleet.Store(id).Calls(memstore.OpLoadCredentials); n != 0 {
			t.Errorf("%s's store was asked for the credentials %d times", id, n)
		}
	}
	if fleet.loads != 1 {
		t.Errorf("the shared credentials were read %d times, want 1", fleet.loads)
	}
}
