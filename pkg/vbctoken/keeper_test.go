package vbctoken_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// simClock is shared by the sandbox, the keeper and the retry sleeps: nothing really waits.
// Its sleeps yield a millisecond of real time so that concurrent keepers progress while one
// of them backs off.
type simClock = testutil.Clock

const (
	testClientID     = "client-abc"
	testClientSecret = "cs-SECRET-0123456789"
	testRedirect     = "https://keeper.example/callback"
	testUser         = "admin"
	testPassword     = "pw-SECRET-hunter2"
)

// world is one VBC sandbox, one store and helpers to build keepers over them.
type world struct {
	t     *testing.T
	clock *simClock
	vbc   *vbcsandbox.Sandbox
	srv   *httptest.Server
	store *memstore.Store
	logs  *syncBuffer
	codes []string // every authorization code handed out, for the log scan
}

type syncBuffer = testutil.Buffer

// newWorld builds a world on a lenient sandbox; mods change the sandbox's options (for
// example its Mode).
func newWorld(t *testing.T, mods ...func(*vbcsandbox.Options)) *world {
	t.Helper()
	clock := testutil.NewClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	clock.Yield = time.Millisecond
	opts := vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: testClientID, Secret: testClientSecret, RedirectURLs: []string{testRedirect}}},
		Users:      map[string]string{testUser: testPassword},
		Now:        clock.Now,
		SigningKey: testutil.SigningKey(),
	}
	for _, m := range mods {
		m(&opts)
	}
	vbc := vbcsandbox.New(opts)
	srv := httptest.NewServer(vbc)
	t.Cleanup(srv.Close)
	w := &world{t: t, clock: clock, vbc: vbc, srv: srv, store: memstore.New(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret}), logs: &syncBuffer{}}
	t.Cleanup(w.checkNoSecretsLogged)
	return w
}

func (w *world) keeper(pkce bool) *vbctoken.Keeper {
	w.t.Helper()
	return w.keeperWith(w.store, pkce)
}

func (w *world) keeperWith(store vbctoken.Store, pkce bool) *vbctoken.Keeper {
	w.t.Helper()
	return w.build(store, func(c *vbctoken.KeeperConfig) { c.Client.PKCE = pkce })
}

// build returns a keeper over store whose configuration mods may change.
func (w *world) build(store vbctoken.Store, mods ...func(*vbctoken.KeeperConfig)) *vbctoken.Keeper {
	w.t.Helper()
	// Deadlines are real (context.WithTimeout), so the retry policy keeps the real Now;
	// only its sleeps are fake.
	retry := vbctoken.RetryPolicy{Sleep: w.clock.Sleep}
	cfg := vbctoken.KeeperConfig{
		Store: store,
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{AuthorizeURL: w.srv.URL + "/authorize", TokenURL: w.srv.URL + "/token"},
			RedirectURL: testRedirect,
			Retry:       retry,
		},
		StoreRetry: retry,
		Now:        w.clock.Now,
		Logger:     slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mods {
		m(&cfg)
	}
	k, err := vbctoken.NewKeeper(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	return k
}

// consent runs the browser part: consent URL → sandbox approval → callback query.
func (w *world) consentQuery(k *vbctoken.Keeper) url.Values {
	w.t.Helper()
	authURL, err := k.ConsentURL(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	cb, err := w.vbc.Approve(authURL)
	if err != nil {
		w.t.Fatal(err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		w.t.Fatal(err)
	}
	w.codes = append(w.codes, u.Query().Get("code"))
	return u.Query()
}

func (w *world) connect(k *vbctoken.Keeper) vbctoken.Result {
	w.t.Helper()
	q := w.consentQuery(k)
	res, err := k.CompleteConsent(context.Background(), q.Get("state"), vbctoken.Secret(q.Get("code")))
	if err != nil {
		w.t.Fatal(err)
	}
	return res
}

func (w *world) stored() *vbctoken.Pair {
	w.t.Helper()
	v, err := w.store.LoadPair(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return v.Pair
}

// assertChainLive checks the non-negotiable: the stored refresh token is live at VBC and
// the access secret matches the pair.
func (w *world) assertChainLive() {
	w.t.Helper()
	p := w.stored()
	if !w.vbc.IsLiveRefreshToken(p.RefreshToken.Reveal()) {
		w.t.Fatalf("stored refresh token is dead at VBC: chain broken (%v)", p)
	}
	a, err := w.store.LoadAccess(context.Background())
	if err != nil || a.AccessToken != p.AccessToken || !w.vbc.IsValidAccessToken(a.AccessToken.Reveal()) {
		w.t.Fatalf("access secret does not hold the pair's valid access token: %v %v", a, err)
	}
}

// checkNoSecretsLogged scans every log line of the test for any token VBC issued, the
// client secret and the password.
func (w *world) checkNoSecretsLogged() {
	logs := w.logs.String()
	values := append([]string{testClientSecret, testPassword}, w.codes...)
	for _, p := range w.vbc.Issued() {
		values = append(values, p.AccessToken, p.RefreshToken)
	}
	for _, v := range values {
		if v != "" && strings.Contains(logs, v) {
			w.t.Errorf("a secret value appears in the logs")
		}
	}
}

func TestConsentThenRefresh(t *testing.T) {
	for _, pkce := range []bool{false, true} {
		t.Run(fmt.Sprintf("pkce=%v", pkce), func(t *testing.T) {
			w := newWorld(t)
			k := w.keeper(pkce)
			res := w.connect(k)
			if res.Outcome != vbctoken.OutcomeConnected || res.Grant != vbctoken.GrantAuthorizationCode {
				t.Fatalf("consent result: %+v", res)
			}
			w.assertChainLive()
			first := w.stored()

			// An hour later nothing happens: two store reads (pair, access secret in step),
			// no write, no token call.
			w.clock.Advance(time.Hour)
			w.store.ResetCalls()
			res, err := k.Refresh(context.Background(), false)
			if err != nil || res.Outcome != vbctoken.OutcomeSkipped || w.store.TotalCalls() != 2 {
				t.Fatalf("hourly check: %+v %v, %d store calls", res, err, w.store.TotalCalls())
			}

			// Inside the margin: refreshed, the old refresh token is dead, the new one live.
			w.clock.Advance(21*time.Hour + time.Minute)
			res, err = k.Refresh(context.Background(), false)
			if err != nil || res.Outcome != vbctoken.OutcomeRefreshed || res.Reason != vbctoken.ReasonAccessExpiring {
				t.Fatalf("refresh: %+v %v", res, err)
			}
			w.assertChainLive()
			if w.vbc.IsLiveRefreshToken(first.RefreshToken.Reveal()) {
				t.Error("old refresh token still live: the sandbox does not rotate")
			}
			// The consent link's nonce is remembered until the link expires, then pruned.
			if got := w.stored(); got.Grant != vbctoken.GrantRefreshToken || len(got.ConsentNonces) != 0 {
				t.Errorf("stored pair after refresh: %v, nonces %d", got, len(got.ConsentNonces))
			}
		})
	}
}

func TestConsentStateRejected(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	q := w.consentQuery(k)
	state, code := q.Get("state"), vbctoken.Secret(q.Get("code"))

	tampered := []byte(state)
	tampered[len(tampered)/2] ^= 1
	cases := []struct {
		name  string
		state string
		code  vbctoken.Secret
		want  error
	}{
		{"empty code", state, "", vbctoken.ErrBadInput},
		{"no state", "", code, vbctoken.ErrBadState},
		{"tampered", string(tampered), code, vbctoken.ErrBadState},
		{"garbage", "<script>", code, vbctoken.ErrBadState},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.store.ResetCalls()
			_, err := k.CompleteConsent(context.Background(), tc.state, tc.code)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := w.store.Calls(memstore.OpCommitPair); n != 0 {
				t.Errorf("%d writes for a rejected consent", n)
			}
		})
	}

	// The genuine one works once; its replay is refused and writes nothing.
	if _, err := k.CompleteConsent(context.Background(), state, code); err != nil {
		t.Fatal(err)
	}
	w.store.ResetCalls()
	_, err := k.CompleteConsent(context.Background(), state, code)
	if !errors.Is(err, vbctoken.ErrStateReused) || !errors.Is(err, vbctoken.ErrBadState) {
		t.Fatalf("replay: %v", err)
	}
	if w.store.Calls(memstore.OpCommitPair) != 0 {
		t.Error("replay wrote")
	}
	w.assertChainLive()

	// A link older than its TTL is expired.
	q = w.consentQuery(k)
	w.clock.Advance(16 * time.Minute)
	if _, err := k.CompleteConsent(context.Background(), q.Get("state"), vbctoken.Secret(q.Get("code"))); !errors.Is(err, vbctoken.ErrStateExpired) {
		t.Fatalf("expired: %v", err)
	}
}

// A replayed consent link racing itself: exactly one callback wins.
func TestConsentReplayRace(t *testing.T) {
	w := newWorld(t)
	q := w.consentQuery(w.keeper(false))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = w.keeper(false).CompleteConsent(context.Background(), q.Get("state"), vbctoken.Secret(q.Get("code")))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, vbctoken.ErrStateReused):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d callbacks succeeded with one state, want 1", ok)
	}
	w.assertChainLive()
}

func TestConcurrentRefreshersKeepTheChain(t *testing.T) {
	w := newWorld(t)
	w.connect(w.keeper(false))
	for round := 0; round < 10; round++ {
		w.clock.Advance(23 * time.Hour)
		var wg sync.WaitGroup
		results := make([]vbctoken.Result, 3)
		errs := make([]error, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = w.build(w.store, w.racing).Refresh(context.Background(), false)
			}()
		}
		wg.Wait()
		refreshed := 0
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("round %d: refresher %d: %v", round, i, errs[i])
			}
			if r.Outcome == vbctoken.OutcomeRefreshed {
				refreshed++
			}
		}
		if refreshed != 1 {
			t.Errorf("round %d: %d refreshes, want exactly 1 (%+v)", round, refreshed, results)
		}
		w.assertChainLive()
	}
}

func TestRefreshRidesOutTransientVBCFailures(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	w.connect(k)
	w.clock.Advance(23 * time.Hour)
	w.vbc.InjectNext(vbcsandbox.Status503, vbcsandbox.Status429, vbcsandbox.HTML200, vbcsandbox.Status502)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := k.Refresh(ctx, false)
	if err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("refresh: %+v %v", res, err)
	}
	w.assertChainLive()
}

func TestRefreshReconsentCases(t *testing.T) {
	t.Run("nothing stored", func(t *testing.T) {
		w := newWorld(t)
		res, err := w.keeper(false).Refresh(context.Background(), false)
		if !errors.Is(err, vbctoken.ErrReconsentRequired) || res.Outcome != vbctoken.OutcomeReconsent {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("refresh token expired", func(t *testing.T) {
		w := newWorld(t)
		k := w.keeper(false)
		w.connect(k)
		w.clock.Advance(8 * 24 * time.Hour)
		res, err := k.Refresh(context.Background(), false)
		if !errors.Is(err, vbctoken.ErrReconsentRequired) || res.Reason != vbctoken.ReasonRefreshExpired {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("revoked at VBC", func(t *testing.T) {
		w := newWorld(t)
		k := w.keeper(false)
		w.connect(k)
		before := w.stored()
		w.vbc.Revoke(before.RefreshToken.Reveal())
		res, err := k.Refresh(context.Background(), true)
		if !errors.Is(err, vbctoken.ErrReconsentRequired) || !errors.Is(err, vbctoken.ErrInvalidGrant) || res.Outcome != vbctoken.OutcomeReconsent {
			t.Fatalf("%+v %v", res, err)
		}
		// The lease was written and released; the tokens are as they were.
		if after := w.stored(); !after.SameTokens(before) {
			t.Error("a failed refresh changed the stored tokens")
		}
		if st, err := k.Status(context.Background()); err != nil || st.RefreshingBy != "" {
			t.Errorf("lease left behind: %+v %v", st, err)
		}
	})
}

// staleFirstRead serves a snapshot taken earlier to the first LoadPair: a refresher that
// read the pair just before another one refreshed it.
type staleFirstRead struct {
	vbctoken.Store
	stale vbctoken.Versioned
	used  bool
}

func (s *staleFirstRead) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	if !s.used {
		s.used = true
		return s.stale, nil
	}
	return s.Store.LoadPair(ctx)
}

// A refresh token another keeper already used is not a reason to re-consent when that
// keeper stored the new pair: the late refresher gets invalid_grant, re-reads, and reports
// that it was superseded.
func TestStaleRefresherIsSuperseded(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	w.connect(k)
	stale, err := w.store.LoadPair(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(23 * time.Hour)
	if _, err := k.Refresh(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	late := w.keeperWith(&staleFirstRead{Store: w.store, stale: stale}, false)
	commits, grants := len(w.store.Committed()), w.vbc.Stats().Requests["refresh_token"]
	res, err := late.Refresh(context.Background(), false)
	if err != nil || res.Outcome != vbctoken.OutcomeSuperseded {
		t.Fatalf("late refresher: %+v %v", res, err)
	}
	// Its lease claim lost the compare-and-swap: it never spent the old token.
	if n := len(w.store.Committed()); n != commits {
		t.Errorf("the late refresher stored %d pairs", n-commits)
	}
	if n := w.vbc.Stats().Requests["refresh_token"]; n != grants {
		t.Errorf("the late refresher made %d token requests, want none", n-grants)
	}
	w.assertChainLive()
}

func TestStoreFailuresAfterIssueAreRetried(t *testing.T) {
	cases := []struct {
		name  string
		fault func(fails *int) memstore.Fault
	}{
		{"commit fails before landing", func(fails *int) memstore.Fault {
			commits := 0
			return memstore.Fault{Before: func(op memstore.Op) error {
				if op != memstore.OpCommitPair {
					return nil
				}
				if commits++; commits > 1 && *fails < 3 { // the lease claim goes through
					*fails++
					return fmt.Errorf("throttled: %w", vbctoken.ErrTransient)
				}
				return nil
			}}
		}},
		{"commit lands but the answer is lost", func(fails *int) memstore.Fault {
			return memstore.Fault{After: func(op memstore.Op) error {
				if op == memstore.OpCommitPair && *fails < 2 {
					*fails++
					return fmt.Errorf("connection reset: %w", vbctoken.ErrTransient)
				}
				return nil
			}}
		}},
		{"access write fails", func(fails *int) memstore.Fault {
			return memstore.Fault{Before: func(op memstore.Op) error {
				if op == memstore.OpPutAccess && *fails < 3 {
					*fails++
					return fmt.Errorf("503: %w", vbctoken.ErrTransient)
				}
				return nil
			}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			k := w.keeper(false)
			w.connect(k)
			w.clock.Advance(23 * time.Hour)
			fails := 0
			w.store.SetFault(tc.fault(&fails))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := k.Refresh(ctx, false)
			if err != nil || res.Outcome != vbctoken.OutcomeRefreshed || fails == 0 {
				t.Fatalf("%+v %v (faults %d)", res, err, fails)
			}
			w.store.SetFault(memstore.Fault{})
			w.assertChainLive()
		})
	}
}

// The callback's nonce reservation and a refresher's commit interleave: both must land,
// and the stored refresh token must be the newest live one.
func TestConsentRacesRefresher(t *testing.T) {
	w := newWorld(t)
	w.connect(w.keeper(false))
	for round := 0; round < 8; round++ {
		w.clock.Advance(23 * time.Hour)
		q := w.consentQuery(w.keeper(false))
		var wg sync.WaitGroup
		var consentErr, refreshErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, consentErr = w.build(w.store, w.racing).CompleteConsent(context.Background(), q.Get("state"), vbctoken.Secret(q.Get("code")))
		}()
		go func() {
			defer wg.Done()
			_, refreshErr = w.build(w.store, w.racing).Refresh(context.Background(), false)
		}()
		wg.Wait()
		if consentErr != nil || refreshErr != nil {
			t.Fatalf("round %d: consent %v, refresh %v", round, consentErr, refreshErr)
		}
		w.assertChainLive()
		if got := w.stored(); got.Grant != vbctoken.GrantAuthorizationCode && got.Grant != vbctoken.GrantRefreshToken {
			t.Fatalf("grant %q", got.Grant)
		}
	}
}

func TestLogin(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	res, err := k.Login(context.Background(), testUser, testPassword, false)
	if err != nil || res.Outcome != vbctoken.OutcomeConnected || res.Grant != vbctoken.GrantPassword {
		t.Fatalf("%+v %v", res, err)
	}
	w.assertChainLive()
	for _, tc := range []struct {
		user, pass string
		want       error
	}{
		{"", testPassword, vbctoken.ErrBadInput},
		{testUser, "", vbctoken.ErrBadInput},
		{testUser, "wrong-SECRET", vbctoken.ErrInvalidGrant},
	} {
		if _, err := k.Login(context.Background(), tc.user, vbctoken.Secret(tc.pass), false); !errors.Is(err, tc.want) {
			t.Errorf("Login(%q): %v, want %v", tc.user, err, tc.want)
		}
	}
}

func TestStatus(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	st, err := k.Status(context.Background())
	if err != nil || st.Connected || st.Reason != vbctoken.ReasonNotConnected {
		t.Fatalf("%+v %v", st, err)
	}
	w.connect(k)
	st, err = k.Status(context.Background())
	if err != nil || !st.Connected || st.Grant != vbctoken.GrantAuthorizationCode || st.NextRefresh.IsZero() {
		t.Fatalf("%+v %v", st, err)
	}
}

// The replay race on the real compare-and-swap (Secrets Manager on moto): callbacks with
// one consent link write different nonce claims, so exactly one spends it.
func TestConsentReplayRaceSecretsManager(t *testing.T) {
	moto := motoserver.Start(t)
	w := newWorld(t)
	secrets := moto.CreateStoreSecrets(t, true)
	creds, _ := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret})
	moto.PutSecret(t, secrets.Credentials, string(creds))
	store := smstore.New(moto.Client(), smstore.SecretIDs(secrets))
	for round := 0; round < 5; round++ {
		q := w.consentQuery(w.keeperWith(store, false))
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = w.keeperWith(store, false).CompleteConsent(context.Background(), q.Get("state"), vbctoken.Secret(q.Get("code")))
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, vbctoken.ErrStateReused) {
				t.Errorf("round %d: %v", round, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d callbacks succeeded with one state, want 1", round, ok)
		}
	}
}
