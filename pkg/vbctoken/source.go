package vbctoken

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// AccessLoader reads the app-facing access token. It is all a Source needs; every Store
// satisfies it, and so does any function an app wires up with a one-method adapter.
type AccessLoader interface {
	LoadAccess(ctx context.Context) (AccessToken, error)
}

var _ AccessLoader = Store(nil)

// Defaults of NewSource.
const (
	// DefaultEarlyExpiry is how long before expires_at a Source stops handing out a token.
	DefaultEarlyExpiry = 5 * time.Minute
	// DefaultLoadTimeout bounds each read of the access secret.
	DefaultLoadTimeout = 10 * time.Second
	// DefaultMinReread is the least time between two reads that may return the same token
	// (after Invalidate, or while the keeper is late).
	DefaultMinReread = time.Second
	// DefaultRefreshGrace is how long after the keeper's planned refresh (the access
	// secret's refresh_at) a Source re-reads the secret, and how often it re-reads while
	// that time has passed and the keeper has not replaced the token yet.
	DefaultRefreshGrace = time.Minute
	// DefaultMaxCacheAge is the longest a Source serves one read of the secret: the bound
	// on how long a token replaced without notice (an operator's forced refresh, or a
	// keeper that writes no refresh_at) can be served to a caller that never reports a 401.
	DefaultMaxCacheAge = time.Hour
)

// ErrNoValidToken means the access secret was read but holds no token that is valid now:
// either none yet (no admin has consented) or only an expired one (the keeper has not
// replaced it). Apps cannot fix this by retrying quickly; it is not transient.
var ErrNoValidToken = errors.New("no valid access token")

// sourceConfig is what SourceOptions set.
type sourceConfig struct {
	early       time.Duration
	now         func() time.Time
	loadTimeout time.Duration
	minReread   time.Duration
	grace       time.Duration
	maxAge      time.Duration
}

// SourceOption configures NewSource.
type SourceOption func(*sourceConfig)

// WithEarlyExpiry makes the Source treat a token as expired d before its expires_at, so a
// request never leaves with a token about to die. Default DefaultEarlyExpiry; d < 0 is 0.
func WithEarlyExpiry(d time.Duration) SourceOption {
	return func(c *sourceConfig) { c.early = max(d, 0) }
}

// WithClock replaces time.Now (tests). nil keeps time.Now.
func WithClock(now func() time.Time) SourceOption {
	return func(c *sourceConfig) {
		if now != nil {
			c.now = now
		}
	}
}

// WithLoadTimeout bounds each read of the access secret; Token has no context, so this is
// what keeps it from hanging. Default DefaultLoadTimeout; d <= 0 keeps the default.
func WithLoadTimeout(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d > 0 {
			c.loadTimeout = d
		}
	}
}

// WithMinReread sets the least time between two reads of the secret that may return the
// same token: after Invalidate once the re-read came back with the rejected token, and while
// the keeper is late (the token read is already inside the early-expiry window). Default
// DefaultMinReread; d < 0 is 0 (no throttle).
func WithMinReread(d time.Duration) SourceOption {
	return func(c *sourceConfig) { c.minReread = max(d, 0) }
}

// WithRefreshGrace sets how long after the access secret's refresh_at the Source re-reads
// it (the keeper's run takes a few seconds to write the new token), and how often it
// re-reads once refresh_at has passed while the secret still holds the same token (the
// keeper is late or its run failed). Default DefaultRefreshGrace; d < 0 is 0.
func WithRefreshGrace(d time.Duration) SourceOption {
	return func(c *sourceConfig) { c.grace = max(d, 0) }
}

// WithMaxCacheAge bounds how long one read of the secret is served, whatever its
// refresh_at says: how long a token replaced without notice can be served to callers that
// never report a 401 (the Transport does, and re-reads at once). Default
// DefaultMaxCacheAge; d <= 0 keeps the default.
func WithMaxCacheAge(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d > 0 {
			c.maxAge = d
		}
	}
}

// Source is the reader apps use: an oauth2.TokenSource over the app-facing access secret
// that the keeper rewrites about once a day. It never refreshes anything and holds no
// client credentials. Most apps call through its Client, a Transport, which re-reads the
// secret and retries once when the API answers 401; an app that uses the token another
// way calls Invalidate on a 401, never a refresh endpoint (refresh tokens rotate, and only
// the keeper may use them).
//
// VBC kills the old access token the moment the keeper refreshes, so a Source caches one
// read of the secret, on its own clock, until the earliest of
//   - refresh_at plus WithRefreshGrace, when the secret carries the keeper's hint (once that
//     time has passed with the token not yet replaced: WithRefreshGrace from the read);
//   - WithMaxCacheAge after the read;
//   - expires_at minus WithEarlyExpiry.
//
// An expired token is never returned. A token read when it is already inside the
// early-expiry window (the keeper is late) is returned while it is valid but re-read at
// least every WithMinReread; a token read when it has already expired is an error matching
// ErrNoValidToken. When a re-read fails but the cached token is still valid and was not
// rejected, it is served for up to WithMinReread more before the next attempt.
//
// A Source is safe for concurrent use. A valid cached token costs an atomic load and a clock
// comparison; when the cache is stale, concurrent callers share one read of the secret.
//
// Each Token call returns its own *oauth2.Token, which the caller may keep or modify. (A
// shared pointer, as oauth2.ReuseTokenSource hands out, would save one small allocation
// per call but is not safe here: ReuseTokenSource, used by oauth2.NewClient, writes to the
// tokens it receives, so two clients built on one Source would race.) Its Expiry is when
// the Source stops serving it from cache, so wrappers that cache it too follow the rule.
type Source struct {
	loader AccessLoader
	cfg    sourceConfig
	cur    atomic.Pointer[sourceEntry]
	group  singleflight.Group
}

var _ oauth2.TokenSource = (*Source)(nil)

// sourceEntry is one cached read. Entries are immutable once published; Invalidate and the
// stale fallback publish modified copies.
type sourceEntry struct {
	access    string    // the bearer token
	tokenType string    // "Bearer"
	expiresAt time.Time // the stored expires_at
	until     time.Time // served from cache while now < until; until <= expiresAt
	readAt    time.Time // when the read that produced the entry finished
	// invalidated: Invalidate was called for this token (the app got a 401 with it).
	invalidated bool
	// rejected: the token had already been invalidated once and the re-read returned it
	// again, so further Invalidate calls re-read it at most once per minReread.
	rejected bool
}

func (e *sourceEntry) token() *oauth2.Token {
	return &oauth2.Token{AccessToken: e.access, TokenType: e.tokenType, Expiry: e.until}
}

// NewSource returns a Source reading loader, typically the Store the keeper writes
// (smstore.NewSource builds one on AWS Secrets Manager, dynamostore.NewSource on DynamoDB). It reads nothing until the first
// Token call. loader must not be nil.
func NewSource(loader AccessLoader, opts ...SourceOption) *Source {
	if loader == nil {
		panic("vbctoken: NewSource: nil AccessLoader")
	}
	cfg := sourceConfig{
		early:       DefaultEarlyExpiry,
		now:         time.Now,
		loadTimeout: DefaultLoadTimeout,
		minReread:   DefaultMinReread,
		grace:       DefaultRefreshGrace,
		maxAge:      DefaultMaxCacheAge,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Source{loader: loader, cfg: cfg}
}

// Token returns a valid access token, reading the access secret only when the cached one is
// stale. It implements oauth2.TokenSource; each read is bounded by WithLoadTimeout.
func (s *Source) Token() (*oauth2.Token, error) {
	if e := s.cur.Load(); e != nil && s.cfg.now().Before(e.until) {
		return e.token(), nil
	}
	return s.load(context.Background())
}

// TokenContext is Token for callers with a context: it stops waiting when ctx is done.
// A read already under way is not cancelled (other callers share it); it still completes,
// bounded by WithLoadTimeout, and fills the cache.
func (s *Source) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if e := s.cur.Load(); e != nil && s.cfg.now().Before(e.until) {
		return e.token(), nil
	}
	return s.load(ctx)
}

// Invalidate reports that the token last returned was rejected (the API answered 401).
// The next Token call re-reads the secret and so picks up the token the keeper wrote
// since. If that re-read returns the same token (the keeper has not replaced it yet), the
// next Invalidate lets Token re-read it only once WithMinReread has passed since that
// read, and Token returns the same token until then: a stream of 401s costs at most one
// read per WithMinReread. Calls before the next read are no-ops. Invalidate never
// refreshes anything.
//
// The Transport calls it for you. Invalidate reaches only callers that ask the Source for
// each request; the client of oauth2.NewClient keeps its own copy of the token
// (oauth2.ReuseTokenSource) until that copy's Expiry.
func (s *Source) Invalidate() { s.invalidate(nil) }

// reject is Invalidate for the token value rejected: it does nothing when the cache
// already holds another token (a concurrent request's re-read found the successor), so
// that many requests failing with one token at once cost one re-read.
func (s *Source) reject(rejected string) { s.invalidate(&rejected) }

func (s *Source) invalidate(rejected *string) {
	for {
		e := s.cur.Load()
		if e == nil || e.invalidated || (rejected != nil && e.access != *rejected) {
			return
		}
		n := *e
		n.invalidated = true
		if e.rejected {
			n.until = earliest(e.until, e.readAt.Add(s.cfg.minReread))
		} else {
			n.until = time.Time{}
		}
		if s.cur.CompareAndSwap(e, &n) {
			return
		}
	}
}

// String describes the cache without the token: when the cached read ends, or that there
// is none. (Printing the struct itself would race with concurrent callers.)
func (s *Source) String() string {
	e := s.cur.Load()
	if e == nil {
		return "vbctoken.Source{empty}"
	}
	return fmt.Sprintf("vbctoken.Source{cached_until=%s expires=%s}", e.until.UTC().Format(time.RFC3339), e.expiresAt.UTC().Format(time.RFC3339))
}

// GoString is String, so %#v prints no token and does not race.
func (s *Source) GoString() string { return s.String() }

// load runs one shared read of the secret and waits for it or for ctx.
func (s *Source) load(ctx context.Context) (*oauth2.Token, error) {
	ch := s.group.DoChan("access", func() (any, error) { return s.read(ctx) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*sourceEntry).token(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("token source: wait for access token: %w", ctx.Err())
	}
}

// read is the body of the shared read: it loads the secret and publishes the entry.
func (s *Source) read(ctx context.Context) (*sourceEntry, error) {
	prev := s.cur.Load()
	if prev != nil && s.cfg.now().Before(prev.until) {
		return prev, nil // a read that finished just before this one started
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.loadTimeout)
	a, err := s.loader.LoadAccess(lctx)
	cancel()
	now := s.cfg.now()
	if err != nil {
		err = fmt.Errorf("token source: read access token: %w", err)
		if prev == nil || prev.invalidated || !now.Before(prev.expiresAt) {
			return nil, err
		}
		// The cached token was not rejected and is still valid: serve it a little longer
		// rather than fail, and try again after minReread.
		n := *prev
		n.until = earliest(prev.expiresAt, now.Add(s.cfg.minReread))
		if !now.Before(n.until) || !s.cur.CompareAndSwap(prev, &n) {
			return nil, err
		}
		return &n, nil
	}
	if !a.Valid(now) {
		return nil, noValidToken(a)
	}
	n := &sourceEntry{
		access:    a.AccessToken.Reveal(),
		tokenType: a.TokenType,
		expiresAt: a.ExpiresAt,
		until:     s.cfg.cacheUntil(a, now),
		readAt:    now,
	}
	if !now.Before(n.until) {
		// The keeper is late: the token is inside the early window (or the hint has passed
		// and no grace is configured). Use it while it is valid, but look for its successor
		// every minReread.
		n.until = earliest(a.ExpiresAt, now.Add(s.cfg.minReread))
		if !now.Before(n.until) { // minReread 0: serve this once, cache nothing
			n.until = a.ExpiresAt
			return n, nil
		}
	}
	n.rejected = prev != nil && prev.invalidated && prev.access == n.access
	s.cur.Store(n)
	return n, nil
}

// noValidToken explains why a token read cannot be used, without the token.
func noValidToken(a AccessToken) error {
	if a.AccessToken.IsZero() {
		return fmt.Errorf("token source: %w: the access secret holds no token yet (not connected: an admin must consent)", ErrNoValidToken)
	}
	return fmt.Errorf("token source: %w: the stored access token expired at %s and the keeper has not replaced it (check the refresher; an admin may need to consent again)",
		ErrNoValidToken, a.ExpiresAt.UTC().Format(time.RFC3339))
}

// cacheUntil is the reader rule: how long a token read at now is served from cache. The
// examples in examples/python and examples/node implement the same rule; README "Apps"
// states it.
func (c *sourceConfig) cacheUntil(a AccessToken, now time.Time) time.Time {
	until := now.Add(c.maxAge)
	if !a.RefreshAt.IsZero() {
		hint := a.RefreshAt.Add(c.grace)
		if floor := now.Add(c.grace); hint.Before(floor) {
			hint = floor // the keeper's run is overdue: look again every grace
		}
		until = earliest(until, hint)
	}
	return earliest(until, a.ExpiresAt.Add(-c.early))
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
