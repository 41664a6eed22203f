package vbctoken_test

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// srcT0 is when every Source test starts on its fake clock.
var srcT0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// srcSecret marks token values so that tests can look for them in errors.
const srcSecret = "SRC-SECRET-"

// srcClock is a fake clock shared by the Source, the fakes and, in the day simulation, the
// sandbox and the keeper. Nothing sleeps: tests move it.
type srcClock = testutil.Clock

func newSrcClock() *srcClock { return testutil.NewClock(srcT0) }

// srcLoader is a fake AccessLoader: Load answers, reads counts the calls.
type srcLoader struct {
	load  func(ctx context.Context) (vbctoken.AccessToken, error)
	reads atomic.Int64
}

var _ vbctoken.AccessLoader = (*srcLoader)(nil)

func (l *srcLoader) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	l.reads.Add(1)
	return l.load(ctx)
}

// srcAccess is a stored access token named name that expires at exp.
func srcAccess(name string, exp time.Time) vbctoken.AccessToken {
	return vbctoken.AccessToken{AccessToken: vbctoken.Secret(srcSecret + name), TokenType: "Bearer", ExpiresAt: exp}
}

// hinted is a with the keeper's refresh_at hint.
func hinted(a vbctoken.AccessToken, refreshAt time.Time) vbctoken.AccessToken {
	a.RefreshAt = refreshAt
	return a
}

// srcStore is a memstore holding a (the keeper's last write).
func srcStore(t testing.TB, a vbctoken.AccessToken) *memstore.Store {
	t.Helper()
	s := memstore.New(vbctoken.Credentials{})
	if err := s.PutAccess(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	s.ResetCalls()
	return s
}

func srcReads(s *memstore.Store) int { return s.Calls(memstore.OpLoadAccess) }

// srcWant checks a Token result: no error and the token named want.
func srcWant(t *testing.T, tok *oauth2.Token, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Token: unexpected error: %v", err)
	}
	if tok.AccessToken != srcSecret+want {
		t.Fatalf("Token returned %q, want %q", strings.TrimPrefix(tok.AccessToken, srcSecret), want)
	}
}

// srcNoSecret fails when err carries a token value in any of its forms.
func srcNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(s, srcSecret) {
			t.Errorf("error carries a token: %s", s)
		}
	}
}

// The first read on a cold cache is shared by every concurrent caller, and so is the one
// after the token's cache time ends.
func TestSourceConcurrentCallersShareOneRead(t *testing.T) {
	const callers = 100
	clock := newSrcClock()
	store := srcStore(t, srcAccess("day1", srcT0.Add(24*time.Hour)))
	release := make(chan struct{})
	store.SetFault(memstore.Fault{Before: func(op memstore.Op) error {
		if op == memstore.OpLoadAccess {
			<-release // hold the read until every caller is on its way
		}
		return nil
	}})
	src := vbctoken.NewSource(store, vbctoken.WithClock(clock.Now))

	burst := func(want string) {
		t.Helper()
		var started, done sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			started.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				started.Done()
				tok, err := src.Token()
				if err == nil && tok.AccessToken != srcSecret+want {
					err = fmt.Errorf("got another token than %s", want)
				}
				errs <- err
			}()
		}
		started.Wait()
		close(release)
		done.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	burst("day1")
	if got := srcReads(store); got != 1 {
		t.Fatalf("cold cache: %d reads for %d concurrent callers, want 1", got, callers)
	}

	if err := store.PutAccess(context.Background(), srcAccess("day2", srcT0.Add(48*time.Hour))); err != nil {
		t.Fatal(err)
	}
	clock.Advance(24*time.Hour - vbctoken.DefaultEarlyExpiry) // day1's cache time is over
	release = make(chan struct{})
	burst("day2")
	if got := srcReads(store); got != 2 {
		t.Fatalf("after expiry: %d reads in all, want 2", got)
	}
}

// What one read of the secret yields, and how long it is cached.
func TestSourceRead(t *testing.T) {
	const early = 5 * time.Minute
	tests := []struct {
		name       string
		start      time.Duration // the clock starts at srcT0+start
		opts       []vbctoken.SourceOption
		stored     vbctoken.AccessToken
		wantErr    error
		wantMsg    string        // in the error
		wantExpiry time.Time     // of the returned token
		cachedFor  time.Duration // a second Token call this much later still reads nothing
	}{
		{
			name:       "no hint: cached for the max cache age",
			stored:     srcAccess("fresh", srcT0.Add(24*time.Hour)),
			wantExpiry: srcT0.Add(vbctoken.DefaultMaxCacheAge),
			cachedFor:  vbctoken.DefaultMaxCacheAge - time.Nanosecond,
		},
		{
			name:       "no hint, long max cache age: cached until expires_at minus the early expiry",
			opts:       []vbctoken.SourceOption{vbctoken.WithMaxCacheAge(48 * time.Hour)},
			stored:     srcAccess("fresh", srcT0.Add(24*time.Hour)),
			wantExpiry: srcT0.Add(24*time.Hour - early),
			cachedFor:  24*time.Hour - early - time.Nanosecond,
		},
		{
			name:       "hint soon: cached until the grace after it",
			stored:     hinted(srcAccess("fresh", srcT0.Add(24*time.Hour)), srcT0.Add(20*time.Minute)),
			wantExpiry: srcT0.Add(20*time.Minute + vbctoken.DefaultRefreshGrace),
			cachedFor:  20*time.Minute + vbctoken.DefaultRefreshGrace - time.Nanosecond,
		},
		{
			name:       "custom grace",
			opts:       []vbctoken.SourceOption{vbctoken.WithRefreshGrace(5 * time.Second)},
			stored:     hinted(srcAccess("fresh", srcT0.Add(24*time.Hour)), srcT0.Add(20*time.Minute)),
			wantExpiry: srcT0.Add(20*time.Minute + 5*time.Second),
			cachedFor:  20*time.Minute + 5*time.Second - time.Nanosecond,
		},
		{
			name:       "hint far away: the max cache age still bounds it",
			stored:     hinted(srcAccess("fresh", srcT0.Add(24*time.Hour)), srcT0.Add(22*time.Hour)),
			wantExpiry: srcT0.Add(vbctoken.DefaultMaxCacheAge),
			cachedFor:  vbctoken.DefaultMaxCacheAge - time.Nanosecond,
		},
		{
			name:       "hint passed, token not replaced (keeper late): re-read after the grace",
			stored:     hinted(srcAccess("old", srcT0.Add(90*time.Minute)), srcT0.Add(-30*time.Minute)),
			wantExpiry: srcT0.Add(vbctoken.DefaultRefreshGrace),
			cachedFor:  vbctoken.DefaultRefreshGrace - time.Nanosecond,
		},
		{
			name:       "hint past the early expiry: never cached beyond it",
			stored:     hinted(srcAccess("short", srcT0.Add(40*time.Minute)), srcT0.Add(50*time.Minute)),
			wantExpiry: srcT0.Add(40*time.Minute - early),
			cachedFor:  40*time.Minute - early - time.Nanosecond,
		},
		{
			name:       "token inside the early window is used but re-read every second",
			stored:     srcAccess("late", srcT0.Add(3*time.Minute)),
			wantExpiry: srcT0.Add(time.Second),
			cachedFor:  time.Second - time.Nanosecond,
		},
		{
			name:       "token about to expire is never cached past its expiry",
			start:      -300 * time.Millisecond, // stored times have whole seconds
			stored:     srcAccess("dying", srcT0),
			wantExpiry: srcT0,
			cachedFor:  300*time.Millisecond - time.Nanosecond,
		},
		{
			name:    "expired token is an error",
			stored:  srcAccess("expired", srcT0.Add(-time.Minute)),
			wantErr: vbctoken.ErrNoValidToken,
			wantMsg: "expired at 2026-11-24T08:59:00Z",
		},
		{
			name:    "token expiring right now is an error",
			stored:  srcAccess("now", srcT0),
			wantErr: vbctoken.ErrNoValidToken,
			wantMsg: "expired at",
		},
		{
			name:    "placeholder {\"version\":1} means not connected",
			stored:  vbctoken.AccessToken{},
			wantErr: vbctoken.ErrNoValidToken,
			wantMsg: "not connected: an admin must consent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newSrcClock()
			clock.Advance(tt.start)
			store := srcStore(t, tt.stored)
			opts := append([]vbctoken.SourceOption{vbctoken.WithClock(clock.Now), vbctoken.WithEarlyExpiry(early)}, tt.opts...)
			src := vbctoken.NewSource(store, opts...)

			tok, err := src.Token()
			srcNoSecret(t, err)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("err = %q, want it to say %q", err, tt.wantMsg)
				}
				if tok != nil {
					t.Fatal("a token came with the error")
				}
				// Nothing is cached: the next call reads again.
				if _, err := src.Token(); !errors.Is(err, tt.wantErr) {
					t.Fatalf("second call: %v", err)
				}
				if got := srcReads(store); got != 2 {
					t.Fatalf("%d reads, want 2", got)
				}
				return
			}
			srcWant(t, tok, err, strings.TrimPrefix(tt.stored.AccessToken.Reveal(), srcSecret))
			if !tok.Expiry.Equal(tt.wantExpiry) {
				t.Errorf("Expiry = %s, want %s", tok.Expiry, tt.wantExpiry)
			}
			if tok.Type() != "Bearer" {
				t.Errorf("Type = %q", tok.Type())
			}
			clock.Advance(tt.cachedFor)
			if _, err := src.Token(); err != nil {
				t.Fatal(err)
			}
			if got := srcReads(store); got != 1 {
				t.Fatalf("%d reads within the cache time, want 1", got)
			}
			clock.Advance(time.Nanosecond)
			_, _ = src.Token()
			if got := srcReads(store); got != 2 {
				t.Fatalf("%d reads after the cache time, want 2", got)
			}
		})
	}
}

// A late keeper's token is re-read every WithMinReread, and its successor picked up as
// soon as it is written.
func TestSourceLateKeeper(t *testing.T) {
	clock := newSrcClock()
	store := srcStore(t, srcAccess("old", srcT0.Add(2*time.Minute)))
	src := vbctoken.NewSource(store, vbctoken.WithClock(clock.Now), vbctoken.WithMinReread(10*time.Second))

	for range 3 { // 30 s of calls, 10 per second
		for range 10 {
			tok, err := src.Token()
			srcWant(t, tok, err, "old")
			clock.Advance(100 * time.Millisecond)
		}
		clock.Advance(9 * time.Second)
	}
	if got := srcReads(store); got != 3 {
		t.Fatalf("%d reads in 30 s with a 10 s min re-read, want 3", got)
	}
	if err := store.PutAccess(context.Background(), srcAccess("new", srcT0.Add(25*time.Hour))); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	tok, err := src.Token()
	srcWant(t, tok, err, "new")
}

// A 401 makes the app call Invalidate; the next Token re-reads and returns what the keeper
// wrote, and a token the keeper has not replaced is re-read at most once per min re-read.
func TestSourceInvalidate(t *testing.T) {
	type step struct {
		do        string // "token", "invalidate", "write <name>", "advance"
		want      string // token expected from "token"
		wantReads int    // reads so far, after a "token"
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "keeper wrote a new token: the re-read returns it",
			steps: []step{
				{do: "token", want: "t0", wantReads: 1},
				{do: "write t1"},
				{do: "token", want: "t0", wantReads: 1}, // still cached: no 401 yet
				{do: "invalidate"},
				{do: "token", want: "t1", wantReads: 2},
				{do: "token", want: "t1", wantReads: 2},
			},
		},
		{
			name: "repeated Invalidate before the next read is one re-read",
			steps: []step{
				{do: "token", want: "t0", wantReads: 1},
				{do: "write t1"},
				{do: "invalidate"},
				{do: "invalidate"},
				{do: "invalidate"},
				{do: "token", want: "t1", wantReads: 2},
				{do: "token", want: "t1", wantReads: 2},
			},
		},
		{
			name: "keeper has not replaced the token: no hammering",
			steps: []step{
				{do: "token", want: "t0", wantReads: 1},
				{do: "invalidate"},
				{do: "token", want: "t0", wantReads: 2}, // first 401: always re-read
				{do: "invalidate"},
				{do: "token", want: "t0", wantReads: 2}, // same token again: wait a second
				{do: "invalidate"},
				{do: "token", want: "t0", wantReads: 2},
				{do: "advance"},
				{do: "token", want: "t0", wantReads: 3},
				{do: "write t1"},
				{do: "invalidate"},
				{do: "token", want: "t0", wantReads: 3}, // within the second: not yet seen
				{do: "advance"},
				{do: "token", want: "t1", wantReads: 4},
				{do: "invalidate"},
				{do: "token", want: "t1", wantReads: 5}, // a new token's first 401: re-read at once
			},
		},
		{
			name: "Invalidate on a cold cache does nothing",
			steps: []step{
				{do: "invalidate"},
				{do: "token", want: "t0", wantReads: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newSrcClock()
			store := srcStore(t, srcAccess("t0", srcT0.Add(24*time.Hour)))
			src := vbctoken.NewSource(store, vbctoken.WithClock(clock.Now))
			for i, st := range tt.steps {
				switch {
				case st.do == "token":
					tok, err := src.Token()
					srcWant(t, tok, err, st.want)
					if got := srcReads(store); got != st.wantReads {
						t.Fatalf("step %d: %d reads, want %d", i, got, st.wantReads)
					}
				case st.do == "invalidate":
					src.Invalidate()
				case st.do == "advance":
					clock.Advance(vbctoken.DefaultMinReread)
				case strings.HasPrefix(st.do, "write "):
					name := strings.TrimPrefix(st.do, "write ")
					if err := store.PutAccess(context.Background(), srcAccess(name, clock.Now().Add(24*time.Hour))); err != nil {
						t.Fatal(err)
					}
				default:
					t.Fatalf("bad step %q", st.do)
				}
			}
		})
	}
}

// A failed read is returned wrapped and not cached; a still-valid token rides it out.
func TestSourceLoaderErrors(t *testing.T) {
	errStore := errors.New("secrets manager unavailable")
	tests := []struct {
		name string
		// warm: Token once while the store works, then move the clock this far.
		warm      bool
		advance   time.Duration
		invalid   bool // Invalidate before the failing read
		wantToken string
		wantErr   error
	}{
		{name: "cold cache: the error", wantErr: errStore},
		{name: "cached token expired: the error", warm: true, advance: 24 * time.Hour, wantErr: errStore},
		{name: "cached token in the early window: served", warm: true, advance: 24*time.Hour - time.Minute, wantToken: "t0"},
		{name: "cached token rejected with a 401: the error", warm: true, invalid: true, wantErr: errStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newSrcClock()
			var failing atomic.Bool
			loader := &srcLoader{load: func(ctx context.Context) (vbctoken.AccessToken, error) {
				if failing.Load() {
					return vbctoken.AccessToken{}, fmt.Errorf("fake store: %w", errStore)
				}
				return srcAccess("t0", srcT0.Add(24*time.Hour)), nil
			}}
			src := vbctoken.NewSource(loader, vbctoken.WithClock(clock.Now))
			reads := int64(0)
			if tt.warm {
				if _, err := src.Token(); err != nil {
					t.Fatal(err)
				}
				reads++
			}
			clock.Advance(tt.advance)
			if tt.invalid {
				src.Invalidate()
			}
			failing.Store(true)

			tok, err := src.Token()
			reads++
			srcNoSecret(t, err)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				// Not cached: the next call retries.
				if _, err := src.Token(); !errors.Is(err, tt.wantErr) {
					t.Fatalf("retry: %v", err)
				}
				reads++
			} else {
				srcWant(t, tok, err, tt.wantToken)
				// Served without a read for min re-read, then retried.
				_, _ = src.Token()
				clock.Advance(vbctoken.DefaultMinReread)
				_, _ = src.Token()
				reads++
			}
			if got := loader.reads.Load(); got != reads {
				t.Fatalf("%d reads, want %d", got, reads)
			}

			failing.Store(false) // the store is back
			clock.Advance(vbctoken.DefaultMinReread)
			if tt.advance < 24*time.Hour {
				tok, err = src.Token()
				srcWant(t, tok, err, "t0")
			}
		})
	}
}

// The memstore answers ErrNotFound before the keeper ever wrote the access secret.
func TestSourceSecretNotWrittenYet(t *testing.T) {
	src := vbctoken.NewSource(memstore.New(vbctoken.Credentials{}))
	_, err := src.Token()
	if !errors.Is(err, vbctoken.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// No error of the Source carries a token value, whatever path produced it.
func TestSourceErrorsNeverCarryTokens(t *testing.T) {
	clock := newSrcClock()
	var answer atomic.Value // func() (vbctoken.AccessToken, error)
	loader := &srcLoader{load: func(ctx context.Context) (vbctoken.AccessToken, error) {
		return answer.Load().(func() (vbctoken.AccessToken, error))()
	}}
	src := vbctoken.NewSource(loader, vbctoken.WithClock(clock.Now))
	cases := map[string]func() (vbctoken.AccessToken, error){
		"expired":     func() (vbctoken.AccessToken, error) { return srcAccess("expired", srcT0.Add(-time.Hour)), nil },
		"placeholder": func() (vbctoken.AccessToken, error) { return vbctoken.AccessToken{}, nil },
		"load error": func() (vbctoken.AccessToken, error) {
			return srcAccess("partial", srcT0.Add(time.Hour)), errors.New("decode failed")
		},
	}
	for name, f := range cases {
		answer.Store(f)
		_, err := src.Token()
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		srcNoSecret(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	block := make(chan struct{})
	answer.Store(func() (vbctoken.AccessToken, error) { <-block; return vbctoken.AccessToken{}, nil })
	_, err := src.TokenContext(ctx)
	close(block)
	srcNoSecret(t, err)
}

// TokenContext stops waiting when its context ends; the read it started completes and fills
// the cache for everyone.
func TestSourceTokenContextCancel(t *testing.T) {
	clock := newSrcClock()
	started, release := make(chan struct{}), make(chan struct{})
	loader := &srcLoader{load: func(ctx context.Context) (vbctoken.AccessToken, error) {
		close(started)
		<-release
		if err := ctx.Err(); err != nil {
			return vbctoken.AccessToken{}, err // a caller's cancel must not reach the read
		}
		return srcAccess("t0", srcT0.Add(24*time.Hour)), nil
	}}
	src := vbctoken.NewSource(loader, vbctoken.WithClock(clock.Now))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := src.TokenContext(ctx)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(release)
	tok, err := src.Token() // shares the read still in flight, or finds its result cached
	srcWant(t, tok, err, "t0")
	if got := loader.reads.Load(); got != 1 {
		t.Fatalf("%d reads, want 1", got)
	}
}

// Each read gets its own deadline, WithLoadTimeout from now, even without a caller context.
func TestSourceLoadTimeout(t *testing.T) {
	for _, d := range []time.Duration{0, 3 * time.Second} {
		t.Run(fmt.Sprint(d), func(t *testing.T) {
			want := d
			if d == 0 {
				want = vbctoken.DefaultLoadTimeout
			}
			var left time.Duration
			loader := &srcLoader{load: func(ctx context.Context) (vbctoken.AccessToken, error) {
				dl, ok := ctx.Deadline()
				if !ok {
					return vbctoken.AccessToken{}, errors.New("no deadline")
				}
				left = time.Until(dl)
				return srcAccess("t0", time.Now().Add(time.Hour)), nil
			}}
			if _, err := vbctoken.NewSource(loader, vbctoken.WithLoadTimeout(d)).Token(); err != nil {
				t.Fatal(err)
			}
			if left <= 0 || left > want {
				t.Fatalf("deadline %s away, want within %s", left, want)
			}
		})
	}
}

// Property: whatever the clock, the keeper and the store do, a returned token is valid at
// the time it is returned, its Expiry never goes past the stored expires_at nor more than
// the max cache age ahead, and a token the store holds that is valid now never ends in an
// error unless the read failed.
func TestSourceNeverReturnsExpiredToken(t *testing.T) {
	configs := []struct {
		name                            string
		early, minReread, grace, maxAge time.Duration
	}{
		{"defaults", vbctoken.DefaultEarlyExpiry, vbctoken.DefaultMinReread, vbctoken.DefaultRefreshGrace, vbctoken.DefaultMaxCacheAge},
		{"no early expiry", 0, vbctoken.DefaultMinReread, vbctoken.DefaultRefreshGrace, vbctoken.DefaultMaxCacheAge},
		{"no min re-read", vbctoken.DefaultEarlyExpiry, 0, vbctoken.DefaultRefreshGrace, vbctoken.DefaultMaxCacheAge},
		{"no grace", vbctoken.DefaultEarlyExpiry, vbctoken.DefaultMinReread, 0, vbctoken.DefaultMaxCacheAge},
		{"long windows", 3 * time.Hour, 10 * time.Minute, 30 * time.Minute, 48 * time.Hour},
	}
	for i, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(uint64(i), 2026))
			clock := newSrcClock()
			var (
				stored   = srcAccess("k0", srcT0.Add(24*time.Hour))
				expiries = map[string]time.Time{stored.AccessToken.Reveal(): stored.ExpiresAt}
				failNext bool
				failed   bool
			)
			loader := &srcLoader{load: func(ctx context.Context) (vbctoken.AccessToken, error) {
				if failNext {
					failNext, failed = false, true
					return vbctoken.AccessToken{}, errors.New("injected")
				}
				return stored, nil
			}}
			src := vbctoken.NewSource(loader, vbctoken.WithClock(clock.Now),
				vbctoken.WithEarlyExpiry(cfg.early), vbctoken.WithMinReread(cfg.minReread),
				vbctoken.WithRefreshGrace(cfg.grace), vbctoken.WithMaxCacheAge(cfg.maxAge))
			var served, errs int
			latest := srcT0 // the latest time the clock has read: no read happened after it
			for n := range 20000 {
				now := clock.Now()
				switch r := rng.IntN(100); {
				case r < 8: // the keeper writes a token, sometimes already stale or expired
					name := fmt.Sprintf("k%d", n)
					stored = srcAccess(name, now.Add(time.Duration(rng.Int64N(int64(26*time.Hour)))-2*time.Hour))
					if rng.IntN(3) > 0 { // a hint, sometimes passed or past the expiry
						stored.RefreshAt = now.Add(time.Duration(rng.Int64N(int64(28*time.Hour))) - 2*time.Hour)
					}
					expiries[stored.AccessToken.Reveal()] = stored.ExpiresAt
				case r < 10:
					stored = vbctoken.AccessToken{} // chain lost, placeholder rewritten
				case r < 16:
					src.Invalidate()
				case r < 20:
					failNext = true
				case r < 22: // the wall clock steps back
					clock.Advance(-time.Duration(rng.Int64N(int64(time.Hour))))
				case r < 34 && !stored.ExpiresAt.IsZero(): // land exactly on a boundary of the stored token
					bounds := []time.Duration{0, -time.Nanosecond, time.Nanosecond, -cfg.early, -cfg.early - time.Nanosecond}
					clock.Set(stored.ExpiresAt.Add(bounds[rng.IntN(len(bounds))]))
				case r < 70:
					clock.Advance(time.Duration(rng.Int64N(int64(2 * time.Second))))
				default:
					clock.Advance(time.Duration(rng.Int64N(int64(time.Hour))))
				}

				failed = false
				tok, err := src.Token()
				now = clock.Now()
				if now.After(latest) {
					latest = now
				}
				if err != nil {
					errs++
					if !failed && stored.Valid(now) {
						t.Fatalf("step %d: error although the store holds a token valid until %s at %s: %v", n, stored.ExpiresAt, now, err)
					}
					continue
				}
				served++
				exp, ok := expiries[tok.AccessToken]
				switch {
				case !ok:
					t.Fatalf("step %d: returned a token nobody wrote", n)
				case !now.Before(exp):
					t.Fatalf("step %d: returned a token at %s, at or after its expiry %s", n, now, exp)
				case tok.Expiry.After(exp):
					t.Fatalf("step %d: Expiry %s is past the stored expiry %s", n, tok.Expiry, exp)
				case !now.Before(tok.Expiry):
					t.Fatalf("step %d: Expiry %s is not after now %s", n, tok.Expiry, now)
				case tok.Expiry.After(latest.Add(max(cfg.maxAge, cfg.minReread))):
					t.Fatalf("step %d: Expiry %s is more than the max cache age after any read (by %s)", n, tok.Expiry, latest)
				}
			}
			t.Logf("%d tokens served, %d errors, %d reads", served, errs, loader.reads.Load())
		})
	}
}

// Each call gets its own *oauth2.Token, so several oauth2.NewClient clients over one Source
// (each wraps it in a ReuseTokenSource that writes to the tokens it gets) are race free.
func TestSourceWithManyOAuth2Clients(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+srcSecret+"t0" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	src := vbctoken.NewSource(srcStore(t, srcAccess("t0", time.Now().Add(time.Hour))))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := oauth2.NewClient(context.Background(), src)
			for range 5 {
				res, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					t.Errorf("status %d", res.StatusCode)
				}
			}
		})
	}
	wg.Wait()

	a, _ := src.Token()
	b, _ := src.Token()
	if a == b {
		t.Fatal("two calls share one *oauth2.Token")
	}
}

// The reader rule on a week of keeper refreshes that kill the old token (WSO2): with the
// keeper's refresh_at a Source serves a revoked token for at most the refresh grace, and
// through the Transport the app never sees a 401; without the hint the max cache age
// bounds it. BenchmarkSourceReadsPerDay reports the same figures per second of calls.
func TestSourceReaderRule(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates three days per scenario")
	}
	const step = 30 * time.Second // coarser than the benchmark's: this runs under -race
	for _, sc := range readerScenarios {
		t.Run(sc.name, func(t *testing.T) {
			st := step
			if sc.app == appTransport {
				st = simTransportStep
			}
			sim := simulateReader(t, sc, 3, st)
			t.Log(sim)
			perDay := float64(sim.reads) / float64(sim.days*simApps)
			var maxRevoked time.Duration
			var maxReads float64
			switch {
			case sc.app == appTransport:
				maxReads = 30 // the max cache age, and one re-read per 401
			case sc.hint == hintNone && len(sc.opts) > 0: // the old reader
				maxRevoked, maxReads = 24*time.Hour, 2
			case sc.hint == hintNone || sc.forced:
				maxRevoked, maxReads = vbctoken.DefaultMaxCacheAge+step, 30
			default:
				maxRevoked, maxReads = vbctoken.DefaultRefreshGrace+step, 30
			}
			if sc.forced && sc.hint != hintNone {
				// An off-schedule refresh makes the keeper's next hint early by up to one
				// run period: readers re-read once a minute until the scheduled run.
				maxReads += 60
			}
			if sim.failures != 0 {
				t.Errorf("%d calls failed although the store held a valid token", sim.failures)
			}
			if sim.longestRevoked > maxRevoked {
				t.Errorf("a revoked token was served for %s, want at most %s", sim.longestRevoked, maxRevoked)
			}
			if perDay > maxReads {
				t.Errorf("%.1f reads per day, want at most %.0f", perDay, maxReads)
			}
		})
	}
}
