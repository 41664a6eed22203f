package vbctoken

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
)

func pairOf(rt string, obtained time.Time, retired ...string) *Pair {
	return &Pair{AccessToken: Secret("at-" + rt), RefreshToken: Secret(rt), TokenType: "Bearer",
		ExpiresAt: obtained.Add(24 * time.Hour), RefreshExpiresAt: obtained.Add(RefreshTokenLifetime),
		ObtainedAt: obtained, Grant: GrantRefreshToken, retired: retired}
}

func TestChainRelations(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	r0 := pairOf("r0", t0)
	r1 := successor(r0, pairOf("r1", t0.Add(time.Hour)))
	r1b := successor(r0, pairOf("r1b", t0.Add(time.Hour)))
	r2 := successor(r1, pairOf("r2", t0.Add(2*time.Hour)))
	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"r1 retires r0", r1.retires(r0), true},
		{"r2 retires r0 too", r2.retires(r0), true},
		{"r0 does not retire r1", r0.retires(r1), false},
		{"a pair does not retire itself", r1.retires(r1), false},
		{"r1 and r1b are siblings", r1.siblingOf(r1b), true},
		{"r1 is no sibling of r2", r1.siblingOf(r2), false},
		{"r2 is a child of r1", r2.childOf(r1), true},
		{"r2 is no child of r0", r2.childOf(r0), false},
		{"r1 related to its sibling", r1.related(r1b), true},
		{"r1 related to its child", r1.related(r2), true},
		{"r2 not related to r1b", r2.related(r1b), false},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %v", c.name, c.got)
		}
	}
	if len(r2.retired) != 2 || r2.retired[0] != tokenHash("r1") || r2.retired[1] != tokenHash("r0") {
		t.Errorf("r2.retired = %v, want [h(r1) h(r0)]", r2.retired)
	}
	if tokenHash("r0") == tokenHash("r1") || len(tokenHash("r0")) != 16 {
		t.Errorf("token hashes: %q %q", tokenHash("r0"), tokenHash("r1"))
	}
}

func TestRetiredIsBounded(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	p := pairOf("r0", t0)
	for i := 1; i <= 3*maxRetired; i++ {
		p = successor(p, pairOf("r"+string(rune('a'+i%26))+time.Duration(i).String(), t0.Add(time.Duration(i)*time.Hour)))
	}
	if len(p.retired) != maxRetired {
		t.Errorf("%d retired hashes, want %d", len(p.retired), maxRetired)
	}
}

func TestWithKept(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	r0 := pairOf("r0", t0)
	r1 := successor(r0, pairOf("r1", t0.Add(time.Hour)))
	sib := successor(r0, pairOf("sib", t0.Add(time.Hour)))
	now := t0.Add(2 * time.Hour)

	got, changed := r1.withKept(sib, now)
	if !changed || len(got.kept) != 1 || !got.inDoubt() {
		t.Fatalf("keeping a sibling: changed %v, kept %d, in doubt %v", changed, len(got.kept), got.inDoubt())
	}
	if _, changed := got.withKept(sib, now); changed {
		t.Error("keeping the same pair twice changed something")
	}
	if _, changed := r1.withKept(r0, now); changed {
		t.Error("kept a pair the chain retired")
	}
	if _, changed := r1.withKept(r1, now); changed {
		t.Error("kept the stored pair itself")
	}
	late := got.Clone()
	if _, changed := late.withKept(nil, t0.Add(RefreshTokenLifetime+2*time.Hour)); !changed {
		t.Error("an expired kept pair was not dropped")
	}
	full := r1
	for i := 0; i < maxKept+3; i++ {
		full, _ = full.withKept(pairOf("k"+time.Duration(i).String(), t0.Add(time.Duration(i)*time.Minute)), now)
	}
	if len(full.kept) != maxKept || full.kept[0].ObtainedAt.Before(full.kept[1].ObtainedAt) {
		t.Errorf("kept %d, newest first: %v", len(full.kept), full.kept[0].ObtainedAt)
	}
	// The bookkeeping survives the store's codec.
	data, err := EncodePair(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodePair(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.kept) != 1 || back.kept[0].RefreshToken != "sib" || !back.inDoubt() || len(back.retired) != 1 {
		t.Errorf("round trip lost the bookkeeping: kept %d retired %d", len(back.kept), len(back.retired))
	}
}

func TestLeaseLiveness(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &lease{Holder: "lambda/abc", ExpiresAt: t0}
	cases := []struct {
		holder string
		now    time.Time
		want   bool
	}{
		{"cli/def", t0.Add(-time.Second), true},
		{"cli/def", t0.Add(leaseSkew - time.Second), true}, // other clocks may run fast
		{"cli/def", t0.Add(leaseSkew), false},
		{"lambda/abc", t0.Add(-time.Minute), false}, // its own
	}
	for _, c := range cases {
		if got := l.liveFor(c.holder, c.now); got != c.want {
			t.Errorf("liveFor(%s, %v) = %v, want %v", c.holder, c.now.Sub(t0), got, c.want)
		}
	}
	var none *lease
	if none.liveFor("x", t0) {
		t.Error("a nil lease is live")
	}
}

// chainWorld is a sandbox in ModeWSO2 and an in-memory store, for tests that must write the
// keeper's bookkeeping by hand.
type chainWorld struct {
	t     *testing.T
	clock *testutil.Clock
	vbc   *vbcsandbox.Sandbox
	srv   *httptest.Server
	store *casStore
}

// casStore is a minimal compare-and-swap Store for this package's own tests (the real
// stores live in subpackages that import this one). pending simulates a write that reached
// the store but never became current.
type casStore struct {
	mu      sync.Mutex
	creds   Credentials
	pair    []byte
	version int
	pending []byte
	access  AccessToken
}

func (s *casStore) LoadCredentials(context.Context) (Credentials, error) { return s.creds, nil }

func (s *casStore) LoadPair(context.Context) (Versioned, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := Versioned{Pair: &Pair{}}
	if s.pair != nil {
		p, err := DecodePair(s.pair)
		if err != nil {
			return Versioned{}, err
		}
		v.Pair, v.Version = p, strconv.Itoa(s.version)
	}
	if s.pending != nil {
		if p, err := DecodePair(s.pending); err == nil {
			v.Pending = p
		}
	}
	return v, nil
}

func (s *casStore) CommitPair(_ context.Context, p *Pair, prev string) (string, error) {
	data, err := EncodePair(p)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := ""
	if s.pair != nil {
		cur = strconv.Itoa(s.version)
	}
	if cur != prev {
		return "", ErrConflict
	}
	s.pair, s.pending = data, nil
	s.version++
	return strconv.Itoa(s.version), nil
}

func (s *casStore) PutAccess(_ context.Context, a AccessToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access = a
	return nil
}

func (s *casStore) LoadAccess(context.Context) (AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access, nil
}

func newChainWorld(t *testing.T) *chainWorld {
	clock := testutil.NewClock(time.Date(2027, 1, 4, 9, 0, 0, 0, time.UTC))
	vbc := vbcsandbox.New(vbcsandbox.Options{
		Mode:       vbcsandbox.ModeWSO2,
		Clients:    []vbcsandbox.Client{{ID: "cid", Secret: "csecret", RedirectURLs: []string{"https://k.example/callback"}}},
		Users:      map[string]string{"admin": "pw"},
		Now:        clock.Now,
		SigningKey: testutil.SigningKey(),
	})
	srv := httptest.NewServer(vbc)
	t.Cleanup(srv.Close)
	store := &casStore{creds: Credentials{ClientID: "cid", ClientSecret: "csecret"}}
	return &chainWorld{t: t, clock: clock, vbc: vbc, srv: srv, store: store}
}

func (w *chainWorld) keeper(holder string) *Keeper {
	retry := RetryPolicy{Sleep: w.clock.Sleep, Now: w.clock.Now}
	k, err := NewKeeper(KeeperConfig{
		Store: w.store, Holder: holder, StoreRetry: retry, Now: w.clock.Now,
		Client: ClientConfig{
			Endpoints:   Endpoints{AuthorizeURL: w.srv.URL + "/authorize", TokenURL: w.srv.URL + "/token"},
			RedirectURL: "https://k.example/callback", Retry: retry,
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return k
}

func (w *chainWorld) connect() *Pair {
	k := w.keeper("admin")
	u, err := k.ConsentURL(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	cb, err := w.vbc.Approve(u)
	if err != nil {
		w.t.Fatal(err)
	}
	q, _ := url.Parse(cb)
	if _, err := k.CompleteConsent(context.Background(), q.Query().Get("state"), Secret(q.Query().Get("code"))); err != nil {
		w.t.Fatal(err)
	}
	return w.stored().Pair
}

func (w *chainWorld) stored() Versioned {
	v, err := w.store.LoadPair(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return v
}

// write stores p over the current pair, as another keeper would have.
func (w *chainWorld) write(p *Pair) {
	cur := w.stored()
	if _, err := w.store.CommitPair(context.Background(), p, cur.Version); err != nil {
		w.t.Fatal(err)
	}
}

// A keeper that died holding the lease blocks others until it expires (its holder's
// deadline, plus the skew allowance); then the next keeper takes over and refreshes.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	w := newChainWorld(t)
	p := w.connect()
	w.clock.Advance(23 * time.Hour)
	dead := p.Clone()
	dead.lease = &lease{Holder: "lambda/dead", ExpiresAt: w.clock.Now().Add(30 * time.Second)}
	w.write(dead)

	// While the lease is live, a keeper whose own time runs out first leaves it alone.
	short, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := w.keeper("cli").Refresh(short, false)
	if err != nil || res.Outcome != OutcomeSuperseded || res.Reason != ReasonLeased {
		t.Fatalf("while leased: %+v %v", res, err)
	}
	if n := w.vbc.Stats().Requests["refresh_token"]; n != 0 {
		t.Fatalf("%d refresh requests while another keeper held the lease", n)
	}

	w.clock.Advance(30*time.Second + leaseSkew)
	res, err = w.keeper("cli").Refresh(context.Background(), false)
	if err != nil || res.Outcome != OutcomeRefreshed {
		t.Fatalf("after the lease expired: %+v %v", res, err)
	}
	if cur := w.stored().Pair; cur.lease != nil || !w.vbc.IsLiveRefreshToken(cur.RefreshToken.Reveal()) {
		t.Errorf("after the takeover: lease %v, live %v", cur.lease, w.vbc.IsLiveRefreshToken(cur.RefreshToken.Reveal()))
	}
}

// VBC rejects the stored refresh token (a sibling from a double-200 won at VBC); the kept
// pair is tried before re-consent, and the chain continues from it.
func TestKeptPairRescuesTheChain(t *testing.T) {
	w := newChainWorld(t)
	p := w.connect()
	w.clock.Advance(23 * time.Hour)
	// The live chain goes on from p at VBC (another keeper refreshed), but the store got a
	// made-up sibling as current and the live pair only as kept.
	live, err := NewClient(ClientConfig{Endpoints: Endpoints{TokenURL: w.srv.URL + "/token"}, Now: w.clock.Now},
		Credentials{ClientID: "cid", ClientSecret: "csecret"}).Refresh(context.Background(), p.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	current := successor(p, pairOf("dead-sibling", w.clock.Now()))
	current, _ = current.withKept(successor(p, live), w.clock.Now())
	w.write(current)

	res, err := w.keeper("lambda").Refresh(context.Background(), false)
	if err != nil || res.Outcome != OutcomeRefreshed || res.Reason != ReasonAmbiguous {
		t.Fatalf("%+v %v", res, err)
	}
	cur := w.stored().Pair
	if !w.vbc.IsLiveRefreshToken(cur.RefreshToken.Reveal()) || len(cur.kept) != 0 {
		t.Fatalf("stored %v (live %v), kept %d", cur, w.vbc.IsLiveRefreshToken(cur.RefreshToken.Reveal()), len(cur.kept))
	}
	if !cur.retires(current) || !cur.retires(live) {
		t.Error("the rejected token and the rescued one are not retired")
	}
}

// A pending write that the chain has already moved past is dead: it is neither promoted
// nor kept.
func TestDeadPendingIsIgnored(t *testing.T) {
	w := newChainWorld(t)
	p := w.connect()
	w.clock.Advance(23 * time.Hour)
	if _, err := w.keeper("lambda").Refresh(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	// Leave the old pair behind as a pending file, as a writer that died mid-commit would.
	data, err := EncodePair(p)
	if err != nil {
		t.Fatal(err)
	}
	w.store.mu.Lock()
	w.store.pending = data
	w.store.mu.Unlock()
	before := w.stored()
	if before.Pending == nil {
		t.Fatal("the file store does not report the pending file")
	}
	res, err := w.keeper("lambda").Refresh(context.Background(), false)
	if err != nil || res.Outcome != OutcomeSkipped {
		t.Fatalf("%+v %v", res, err)
	}
	if after := w.stored(); !after.Pair.SameTokens(before.Pair) || len(after.Pair.kept) != 0 {
		t.Errorf("a dead pending pair changed the store")
	}
}
