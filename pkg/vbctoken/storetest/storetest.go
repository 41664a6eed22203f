// Package storetest is the conformance suite every vbctoken.Store passes: the
// compare-and-swap, idempotency, schema and no-leak rules of docs/design.md "Secrets", checked the same way
// for the file store, the Secrets Manager store and any fake.
//
// A store's test calls Run with a function returning a fresh, empty store and a back door
// (Harness) to seed raw secret values and count pair writes:
//
//	func TestFileStoreConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Harness { … })
//	}
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Secret names one of a store's three secrets.
type Secret string

// The secrets of docs/design.md "Secrets".
const (
	Credentials Secret = "credentials"
	Pair        Secret = "pair"
	Access      Secret = "access"
)

// Harness is a fresh store with no value in any secret, and the test's back door into it.
type Harness struct {
	// Store is the store under test.
	Store vbctoken.Store
	// Seed stores data as the current value of a secret, bypassing Store, the way an admin,
	// the CDK stack or another vbctoken version would.
	Seed func(t *testing.T, s Secret, data []byte)
	// PairWrites reports how many pair versions the store has created so far; only its
	// changes matter. A retried commit must not add one.
	PairWrites func(t *testing.T) int
}

// Rounds is how many times the concurrent-writer race is run.
const Rounds = 20

// marker is part of every secret value the suite uses: no error may contain it.
const marker = "s3cr3t"

var serial atomic.Int64

// NewPair returns a connected pair with unique tokens, all containing a leak marker.
func NewPair() *vbctoken.Pair {
	n := serial.Add(1)
	obtained := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).Add(time.Duration(n) * time.Minute)
	return &vbctoken.Pair{
		AccessToken:      vbctoken.Secret(fmt.Sprintf("at-%s-%d", marker, n)),
		RefreshToken:     vbctoken.Secret(fmt.Sprintf("rt-%s-%d", marker, n)),
		TokenType:        "Bearer",
		Scope:            "openid",
		IDToken:          vbctoken.Secret(fmt.Sprintf("id-%s-%d", marker, n)),
		ExpiresAt:        obtained.Add(24 * time.Hour),
		RefreshExpiresAt: obtained.Add(vbctoken.RefreshTokenLifetime),
		ObtainedAt:       obtained,
		Grant:            vbctoken.GrantRefreshToken,
	}
}

// Run runs the suite; every case gets its own store from newStore.
func Run(t *testing.T, newStore func(t *testing.T) Harness) {
	cases := []struct {
		name string
		run  func(t *testing.T, newStore func(t *testing.T) Harness)
	}{
		{"EmptyStore", testEmpty},
		{"Placeholders", testPlaceholders},
		{"Credentials", testCredentials},
		{"CommitFromEmpty", testCommitFromEmpty},
		{"CommitChain", testCommitChain},
		{"StaleVersionConflicts", testStale},
		{"ConcurrentWriters", testConcurrent},
		{"ConcurrentFirstWriters", testConcurrentFirst},
		{"IdempotentRetry", testIdempotentRetry},
		{"IdenticalConcurrentCommits", testIdenticalConcurrent},
		{"KeepsUnknownFieldsAndNonces", testUnknownFields},
		{"NewerSchemaRefused", testNewerSchema},
		{"MalformedValues", testMalformed},
		{"AccessRoundTrip", testAccess},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore)
		})
	}
}

// noLeak fails when err's text (in any verb) contains a secret value.
func noLeak(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(s, marker) {
			t.Errorf("error text carries a secret value: %s", s)
		}
	}
}

// wantErr checks that err matches target and carries no secret.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want %v", what, err, target)
	}
	noLeak(t, err)
}

// must fails the test on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		noLeak(t, err)
		t.Fatalf("%s: %v", what, err)
	}
}

func load(t *testing.T, s vbctoken.Store) vbctoken.Versioned {
	t.Helper()
	got, err := s.LoadPair(context.Background())
	must(t, "LoadPair", err)
	return got
}

func loadAccess(t *testing.T, s vbctoken.Store) vbctoken.AccessToken {
	t.Helper()
	got, err := s.LoadAccess(context.Background())
	must(t, "LoadAccess", err)
	return got
}

func commit(t *testing.T, s vbctoken.Store, p *vbctoken.Pair, prev string) string {
	t.Helper()
	v, err := s.CommitPair(context.Background(), p, prev)
	must(t, fmt.Sprintf("CommitPair(prev %q)", prev), err)
	if v == "" || v == prev {
		t.Fatalf("CommitPair returned version %q (prev %q), want a new one", v, prev)
	}
	return v
}

// wantPair checks the stored pair: same tokens and times as want, at version.
func wantPair(t *testing.T, got vbctoken.Versioned, want *vbctoken.Pair, version string) {
	t.Helper()
	if got.Version != version {
		t.Errorf("Version = %q, want %q", got.Version, version)
	}
	if got.Pair == nil || !got.Pair.SameTokens(want) || got.Pair.IDToken != want.IDToken ||
		!got.Pair.ExpiresAt.Equal(want.ExpiresAt) || !got.Pair.RefreshExpiresAt.Equal(want.RefreshExpiresAt) ||
		!got.Pair.ObtainedAt.Equal(want.ObtainedAt) || got.Pair.Grant != want.Grant ||
		got.Pair.Scope != want.Scope || got.Pair.TokenType != want.TokenType {
		t.Errorf("stored pair = %v, want %v", got.Pair, want)
	}
}

func wantNotConnected(t *testing.T, got vbctoken.Versioned) {
	t.Helper()
	if got.Pair == nil {
		t.Fatal("LoadPair gave a nil Pair, want an empty one")
	}
	if !got.Pair.RefreshToken.IsZero() || !got.Pair.AccessToken.IsZero() || got.Pair.Connected(time.Now()) {
		t.Errorf("pair = %v, want not connected", got.Pair)
	}
}

func testEmpty(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	got := load(t, h.Store)
	wantNotConnected(t, got)
	if got.Version != "" {
		t.Errorf("Version = %q, want \"\" for a store holding nothing", got.Version)
	}
	_, err := h.Store.LoadAccess(ctx)
	wantErr(t, "LoadAccess on an empty store", err, vbctoken.ErrNotFound)
	_, err = h.Store.LoadCredentials(ctx)
	wantErr(t, "LoadCredentials on an empty store", err, vbctoken.ErrNoCredentials)
}

func testPlaceholders(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	h.Seed(t, Pair, []byte(`{"version":1}`))
	h.Seed(t, Access, []byte(`{"version":1}`))
	h.Seed(t, Credentials, []byte(`{"client_id":"","client_secret":""}`))

	got := load(t, h.Store)
	wantNotConnected(t, got)
	if got.Version == "" {
		t.Error("placeholder pair has Version \"\", want the placeholder's version")
	}
	a := loadAccess(t, h.Store)
	if !a.AccessToken.IsZero() {
		t.Errorf("placeholder access = %v, want a zero token", a)
	}
	_, err := h.Store.LoadCredentials(ctx)
	wantErr(t, "LoadCredentials on a placeholder", err, vbctoken.ErrNoCredentials)

	// A placeholder is the usual starting point of the first commit.
	p := NewPair()
	v := commit(t, h.Store, p, got.Version)
	wantPair(t, load(t, h.Store), p, v)
}

func testCredentials(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	for _, placeholder := range []string{`{}`, `{"client_id":"app"}`, `{"client_id":"  ","client_secret":"cs-` + marker + `"}`} {
		h.Seed(t, Credentials, []byte(placeholder))
		_, err := h.Store.LoadCredentials(ctx)
		wantErr(t, "LoadCredentials "+strings.ReplaceAll(placeholder, marker, "…"), err, vbctoken.ErrNoCredentials)
	}
	h.Seed(t, Credentials, []byte(`{"client_id":"app-1","client_secret":"cs-`+marker+`"}`))
	c, err := h.Store.LoadCredentials(ctx)
	must(t, "LoadCredentials", err)
	if c.ClientID != "app-1" || c.ClientSecret.Reveal() != "cs-"+marker {
		t.Errorf("credentials = %v, want app-1 and its secret", c)
	}
	h.Seed(t, Credentials, []byte(`{"client_id":"app-1","client_secret":["cs-`+marker+`"]}`))
	_, err = h.Store.LoadCredentials(ctx)
	wantErr(t, "LoadCredentials of malformed JSON", err, vbctoken.ErrMalformedSecret)
}

func testCommitFromEmpty(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	p := NewPair()
	v := commit(t, h.Store, p, "")
	wantPair(t, load(t, h.Store), p, v)
}

func testCommitChain(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	h.Seed(t, Pair, []byte(`{"version":1}`))
	v := load(t, h.Store).Version
	seen := map[string]bool{v: true}
	for range 3 {
		p := NewPair()
		v = commit(t, h.Store, p, v)
		if seen[v] {
			t.Fatalf("version %q returned twice", v)
		}
		seen[v] = true
		wantPair(t, load(t, h.Store), p, v)
	}
}

func testStale(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	h.Seed(t, Pair, []byte(`{"version":1}`))
	v0 := load(t, h.Store).Version
	p1 := NewPair()
	v1 := commit(t, h.Store, p1, v0)

	_, err := h.Store.CommitPair(ctx, NewPair(), v0)
	wantErr(t, "CommitPair from a stale version", err, vbctoken.ErrConflict)
	wantPair(t, load(t, h.Store), p1, v1)

	_, err = h.Store.CommitPair(ctx, NewPair(), "")
	wantErr(t, `CommitPair with prev "" on a stored pair`, err, vbctoken.ErrConflict)
	wantPair(t, load(t, h.Store), p1, v1)
}

// race has two writers commit different pairs from base at the same moment and checks that
// exactly one wins and the loser, re-reading, sees the winner's pair. It returns the
// winner's version.
func race(t *testing.T, s vbctoken.Store, base string) string {
	t.Helper()
	ctx := context.Background()
	pairs := [2]*vbctoken.Pair{NewPair(), NewPair()}
	var versions [2]string
	var errs [2]error
	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	for i := range pairs {
		ready.Add(1)
		wg.Go(func() {
			ready.Done()
			<-start
			versions[i], errs[i] = s.CommitPair(ctx, pairs[i], base)
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()

	winners := 0
	for i := range errs {
		if errs[i] == nil {
			winners++
		} else {
			wantErr(t, fmt.Sprintf("writer %d", i), errs[i], vbctoken.ErrConflict)
		}
	}
	if winners != 1 {
		t.Fatalf("%d writers won from version %q (errors %v), want exactly 1", winners, base, errs)
	}
	w := slices.IndexFunc(errs[:], func(err error) bool { return err == nil })
	// The loser re-reads and finds the winner's pair.
	wantPair(t, load(t, s), pairs[w], versions[w])
	return versions[w]
}

func testConcurrent(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	h.Seed(t, Pair, []byte(`{"version":1}`))
	v := load(t, h.Store).Version
	for round := range Rounds {
		v = race(t, h.Store, v)
		if t.Failed() {
			t.Fatalf("failed in round %d", round)
		}
	}
}

func testConcurrentFirst(t *testing.T, newStore func(t *testing.T) Harness) {
	for round := range Rounds / 4 {
		h := newStore(t)
		race(t, h.Store, "")
		if t.Failed() {
			t.Fatalf("failed in round %d", round)
		}
	}
}

func testIdempotentRetry(t *testing.T, newStore func(t *testing.T) Harness) {
	ctx := context.Background()
	for _, placeholder := range []bool{false, true} {
		h := newStore(t)
		if placeholder {
			h.Seed(t, Pair, []byte(`{"version":1}`))
		}
		prev := load(t, h.Store).Version
		p := NewPair()
		v1 := commit(t, h.Store, p, prev)
		writes := h.PairWrites(t)

		// The response to the first call was lost: the caller retries the same call.
		v2, err := h.Store.CommitPair(ctx, p.Clone(), prev)
		if err != nil {
			noLeak(t, err)
			t.Fatalf("retried CommitPair (prev %q): %v, want success", prev, err)
		}
		if v2 != v1 {
			t.Errorf("retried CommitPair returned %q, want the first call's %q", v2, v1)
		}
		if n := h.PairWrites(t); n != writes {
			t.Errorf("retried CommitPair wrote %d more versions, want none", n-writes)
		}
		wantPair(t, load(t, h.Store), p, v1)

		// The chain goes on from the retried version.
		p3 := NewPair()
		v3 := commit(t, h.Store, p3, v2)
		wantPair(t, load(t, h.Store), p3, v3)
	}
}

// testIdenticalConcurrent pins a consequence of idempotency: two writers committing
// byte-identical pairs from the same version cannot be told from one call and its retry, so
// both succeed. A caller that must detect a concurrent writer (e.g. spending a consent
// nonce) has to make its content unique to itself.
func testIdenticalConcurrent(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	h.Seed(t, Pair, []byte(`{"version":1}`))
	base := load(t, h.Store).Version
	p := NewPair()
	var versions [2]string
	var errs [2]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range versions {
		wg.Go(func() {
			<-start
			versions[i], errs[i] = h.Store.CommitPair(context.Background(), p.Clone(), base)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		must(t, fmt.Sprintf("identical writer %d", i), err)
	}
	if versions[0] != versions[1] {
		t.Errorf("identical commits returned versions %q and %q, want one", versions[0], versions[1])
	}
	wantPair(t, load(t, h.Store), p, versions[0])
}

func testUnknownFields(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	stored := `{"version":1,"access_token":"at-` + marker + `-old","refresh_token":"rt-` + marker + `-old",` +
		`"token_type":"Bearer","expires_at":"2026-01-01T01:00:00Z","refresh_expires_at":"2026-01-08T00:00:00Z",` +
		`"obtained_at":"2026-01-01T00:00:00Z","grant":"authorization_code",` +
		`"consent_nonces":[{"nonce":"n-1","expires_at":"2026-01-01T00:15:00Z"}],` +
		`"future_field":{"kept":[1,2,3]},"zz_note":"from a later version"}`
	h.Seed(t, Pair, []byte(stored))
	got := load(t, h.Store)
	if len(got.Pair.ConsentNonces) != 1 || got.Pair.ConsentNonces[0].Nonce != "n-1" {
		t.Fatalf("consent nonces = %v, want n-1", got.Pair.ConsentNonces)
	}
	next := got.Pair.WithTokens(NewPair())
	next.ConsentNonces = append(next.ConsentNonces, vbctoken.UsedNonce{Nonce: "n-2", ExpiresAt: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)})
	v := commit(t, h.Store, next, got.Version)

	again := load(t, h.Store)
	wantPair(t, again, next, v)
	if n := again.Pair.ConsentNonces; len(n) != 2 || n[0].Nonce != "n-1" || n[1].Nonce != "n-2" || !n[1].ExpiresAt.Equal(next.ConsentNonces[1].ExpiresAt) {
		t.Errorf("consent nonces after rewrite = %v, want n-1, n-2", n)
	}
	data, err := vbctoken.EncodePair(again.Pair)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	if string(fields["future_field"]) != `{"kept":[1,2,3]}` || string(fields["zz_note"]) != `"from a later version"` {
		t.Errorf("unknown fields after rewrite: future_field=%s zz_note=%s", fields["future_field"], fields["zz_note"])
	}
}

func testNewerSchema(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	newer := `{"version":2,"refresh_token":"rt-` + marker + `-v2","shape":"unknown to this build"}`
	h.Seed(t, Pair, []byte(newer))
	_, err := h.Store.LoadPair(ctx)
	wantErr(t, "LoadPair of a newer schema", err, vbctoken.ErrNewerSchema)

	// No caller holds its version (LoadPair refused it): a commit must not overwrite it.
	_, err = h.Store.CommitPair(ctx, NewPair(), "")
	if !errors.Is(err, vbctoken.ErrConflict) && !errors.Is(err, vbctoken.ErrNewerSchema) {
		t.Fatalf("CommitPair over a newer schema: err = %v, want ErrConflict or ErrNewerSchema", err)
	}
	noLeak(t, err)
	_, err = h.Store.LoadPair(ctx)
	wantErr(t, "LoadPair after the refused commit", err, vbctoken.ErrNewerSchema)

	h.Seed(t, Access, []byte(`{"version":3,"access_token":"at-`+marker+`"}`))
	_, err = h.Store.LoadAccess(ctx)
	wantErr(t, "LoadAccess of a newer schema", err, vbctoken.ErrNewerSchema)
}

func testMalformed(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	both := []string{
		`rt-` + marker + ` is not JSON`,
		`["rt-` + marker + `"]`,
		`{"version":"one","access_token":"at-` + marker + `"}`,
		`{"version":1,"access_token":42}`,
	}
	pairOnly := []string{
		`{"version":1,"refresh_token":"rt-` + marker + `","refresh_expires_at":"soon"}`,
		`{"version":1,"refresh_token":"rt-` + marker + `"}`,
	}
	accessOnly := []string{
		`{"version":1,"access_token":"at-` + marker + `","expires_at":"soon"}`,
		`{"version":1,"access_token":"at-` + marker + `"}`,
	}
	for _, bad := range append(slices.Clone(both), pairOnly...) {
		h.Seed(t, Pair, []byte(bad))
		_, err := h.Store.LoadPair(ctx)
		wantErr(t, "LoadPair "+strings.ReplaceAll(bad, marker, "…"), err, vbctoken.ErrMalformedSecret)
	}
	for _, bad := range append(slices.Clone(both), accessOnly...) {
		h.Seed(t, Access, []byte(bad))
		_, err := h.Store.LoadAccess(ctx)
		wantErr(t, "LoadAccess "+strings.ReplaceAll(bad, marker, "…"), err, vbctoken.ErrMalformedSecret)
	}
}

func testAccess(t *testing.T, newStore func(t *testing.T) Harness) {
	h := newStore(t)
	ctx := context.Background()
	a1 := NewPair().Access()
	a2 := NewPair().Access()
	for i, a := range []vbctoken.AccessToken{a1, a2, a1, {}, a2} {
		if err := h.Store.PutAccess(ctx, a); err != nil {
			noLeak(t, err)
			t.Fatalf("PutAccess #%d: %v", i, err)
		}
		got := loadAccess(t, h.Store)
		if got.AccessToken != a.AccessToken || got.TokenType != a.TokenType || !got.ExpiresAt.Equal(a.ExpiresAt) {
			t.Errorf("LoadAccess after PutAccess #%d = %v, want %v", i, got, a)
		}
	}
	// Retrying the same write is harmless.
	for range 2 {
		if err := h.Store.PutAccess(ctx, a1); err != nil {
			t.Fatalf("PutAccess retry: %v", err)
		}
	}
	got := loadAccess(t, h.Store)
	if got.AccessToken != a1.AccessToken {
		t.Errorf("LoadAccess after retried PutAccess = %v, want %v", got, a1)
	}
}
