package vbctoken

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// TokenClient is what the keeper needs from the VBC OAuth client; *Client implements it.
type TokenClient interface {
	AuthCodeURL(state, verifier string) string
	Exchange(ctx context.Context, code Secret, verifier string) (*Pair, error)
	Refresh(ctx context.Context, refreshToken Secret) (*Pair, error)
	Password(ctx context.Context, username string, password Secret) (*Pair, error)
}

var _ TokenClient = (*Client)(nil)

// locker is implemented by stores that can serialise whole operations across processes
// (FileStore). Secrets Manager has no lock; there compare-and-swap alone keeps the chain.
type locker interface {
	Lock(ctx context.Context) (unlock func(), err error)
}

// Defaults of the keeper.
const (
	// DefaultStoreReserve is the part of an operation's deadline kept back for storing a
	// freshly issued pair: the token call must finish before it, so that a pair VBC issued
	// always has time to be written.
	DefaultStoreReserve = 10 * time.Second
	// DefaultSupersedeAttempts: with the default store backoff (200 ms doubling, capped at
	// 10 s, full jitter) about 20 s on average, well inside a refresher's timeout, and far
	// longer than a concurrent writer needs to store a pair it already has.
	DefaultSupersedeAttempts = 9
	// maxConsentNonces bounds the used-nonce list kept in the pair secret.
	maxConsentNonces = 100
	// maxCommitRounds bounds compare-and-swap rounds against concurrent writers.
	maxCommitRounds = 32
)

// KeeperConfig configures a Keeper. Store and Client are required.
type KeeperConfig struct {
	Store Store
	// Client builds the OAuth client once the credentials are loaded from the store.
	Client ClientConfig
	// NewClient overrides how a TokenClient is built (tests); default NewClient(Client, creds).
	NewClient func(Credentials) TokenClient
	Policy    Policy        // default DefaultPolicy()
	StateTTL  time.Duration // default DefaultStateTTL
	// StoreRetry retries transient store failures; its Sleep is swapped in tests.
	StoreRetry   RetryPolicy
	StoreReserve time.Duration // default DefaultStoreReserve
	// SupersedeAttempts bounds the re-reads after VBC rejected a refresh token, waiting for
	// a concurrent writer that used it to store its pair; default DefaultSupersedeAttempts.
	SupersedeAttempts int
	Now               func() time.Time
	Logger            *slog.Logger
}

// Keeper owns the token pair: it completes consents, refreshes the pair on its policy and
// keeps the app-facing access secret in step. Every write of the pair is a
// compare-and-swap; a Keeper is safe for concurrent use and any number of keepers (Lambda
// execution environments, CLI runs) may run at once without breaking the chain.
type Keeper struct {
	cfg   KeeperConfig
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	creds  Credentials
	client TokenClient
}

// NewKeeper checks cfg and returns a Keeper. Credentials are loaded lazily, on the first
// operation that needs them, so an hourly check that skips reads two secrets only (the pair,
// and the access secret to check it is in step).
func NewKeeper(cfg KeeperConfig) (*Keeper, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("new keeper: %w: no store", ErrBadInput)
	}
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy()
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("new keeper: %w", err)
	}
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = DefaultStateTTL
	}
	if cfg.SupersedeAttempts <= 0 {
		cfg.SupersedeAttempts = DefaultSupersedeAttempts
	}
	if cfg.StoreReserve <= 0 {
		cfg.StoreReserve = DefaultStoreReserve
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client.Now == nil {
		cfg.Client.Now = cfg.Now
	}
	if cfg.NewClient == nil {
		cc := cfg.Client
		cfg.NewClient = func(c Credentials) TokenClient { return NewClient(cc, c) }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{cfg: cfg, store: cfg.Store, log: log, now: cfg.Now}, nil
}

// Outcome says what an operation did.
type Outcome string

// The outcomes of keeper operations.
const (
	OutcomeSkipped    Outcome = "skipped"            // the pair is fresh; nothing called
	OutcomeRefreshed  Outcome = "refreshed"          // a new pair was obtained and stored
	OutcomeSuperseded Outcome = "superseded"         // another writer stored a newer pair first
	OutcomeConnected  Outcome = "connected"          // a consent or login stored a new chain
	OutcomeReconsent  Outcome = "reconsent_required" // the chain is gone
)

// Result reports an operation without any token: what happened and the stored pair's times.
type Result struct {
	Outcome          Outcome   `json:"outcome"`
	Reason           Reason    `json:"reason,omitempty"`
	Grant            Grant     `json:"grant,omitempty"`
	AccessExpiresAt  time.Time `json:"access_expires_at,omitzero"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
	ObtainedAt       time.Time `json:"obtained_at,omitzero"`
}

func resultOf(o Outcome, reason Reason, p *Pair) Result {
	r := Result{Outcome: o, Reason: reason}
	if p != nil && !p.RefreshToken.IsZero() {
		r.Grant, r.AccessExpiresAt, r.RefreshExpiresAt, r.ObtainedAt = p.Grant, p.ExpiresAt, p.RefreshExpiresAt, p.ObtainedAt
	}
	return r
}

// Refresh runs the refresher's logic once: read the pair, decide by the policy (force
// refreshes any live pair), refresh, store with compare-and-swap, update the access
// secret. A lost race against another writer that stored a newer pair is OutcomeSuperseded
// with a nil error. When the chain is gone the error matches ErrReconsentRequired.
func (k *Keeper) Refresh(ctx context.Context, force bool) (Result, error) {
	unlock, err := k.lock(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("refresh: %w", err)
	}
	defer unlock()

	cur, err := k.loadPair(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("refresh: %w", err)
	}
	d := k.cfg.Policy.Decide(cur.Pair, k.now(), force)
	if d.Reconsent {
		k.log.ErrorContext(ctx, "re-consent required: the refresh chain is gone; an admin must run `vbctoken consent-url` and approve in the browser",
			"reason", d.Reason, "pair", cur.Pair)
		return resultOf(OutcomeReconsent, d.Reason, cur.Pair), fmt.Errorf("refresh: %w (%s)", ErrReconsentRequired, d.Reason)
	}
	if !d.Refresh {
		k.log.DebugContext(ctx, "refresh skipped", "reason", d.Reason, "pair", cur.Pair)
		if err := k.syncAccess(ctx, cur.Pair); err != nil {
			return resultOf(OutcomeSkipped, d.Reason, cur.Pair), fmt.Errorf("refresh: %w", err)
		}
		return resultOf(OutcomeSkipped, d.Reason, cur.Pair), nil
	}

	fresh, err := k.withClient(ctx, func(tokenCtx context.Context, c TokenClient) (*Pair, error) {
		return c.Refresh(tokenCtx, cur.Pair.RefreshToken)
	})
	if errors.Is(err, ErrInvalidGrant) {
		// The refresh token is dead. Either another writer used it and is storing the new
		// pair (fine), or the chain is really gone.
		if latest, ok := k.awaitOtherWriter(ctx, cur); ok {
			k.log.InfoContext(ctx, "refresh superseded: another writer refreshed first", "pair", latest.Pair)
			return resultOf(OutcomeSuperseded, d.Reason, latest.Pair), nil
		}
		k.log.ErrorContext(ctx, "re-consent required: VBC rejected the stored refresh token; an admin must run `vbctoken consent-url` and approve in the browser",
			"error", err)
		return resultOf(OutcomeReconsent, d.Reason, cur.Pair), fmt.Errorf("refresh: %w: %w", ErrReconsentRequired, err)
	}
	if err != nil {
		return resultOf("", d.Reason, cur.Pair), fmt.Errorf("refresh: %w", err)
	}

	stored, out, err := k.commit(ctx, cur, fresh, false)
	if err != nil {
		return resultOf("", d.Reason, cur.Pair), fmt.Errorf("refresh: %w", err)
	}
	if out == OutcomeSuperseded {
		return resultOf(out, d.Reason, stored), nil
	}
	k.log.InfoContext(ctx, "refreshed", "reason", d.Reason, "pair", stored)
	return resultOf(OutcomeRefreshed, d.Reason, stored), nil
}

// awaitOtherWriter re-reads the pair after VBC rejected cur's refresh token, giving a
// concurrent writer that used the token a bounded time (SupersedeAttempts reads with the
// store's backoff) to store the pair it got. It reports the newer stored pair, if any.
func (k *Keeper) awaitOtherWriter(ctx context.Context, cur Versioned) (Versioned, bool) {
	policy := k.cfg.StoreRetry
	policy.MaxAttempts = k.cfg.SupersedeAttempts
	var latest Versioned
	errUnchanged := errors.New("stored refresh token unchanged")
	_, err := policy.Do(ctx, func(int) (time.Duration, error) {
		v, err := k.store.LoadPair(ctx)
		if err != nil {
			return 0, err
		}
		if v.Pair == nil || v.Pair.RefreshToken == cur.Pair.RefreshToken || !v.Pair.Connected(k.now()) {
			return 0, errUnchanged
		}
		latest = v
		return 0, nil
	}, func(err error) bool { return err == errUnchanged || errors.Is(err, ErrTransient) })
	return latest, err == nil
}

// ConsentURL mints a signed, single-use consent state and returns the authorize URL an admin
// opens in the browser.
func (k *Keeper) ConsentURL(ctx context.Context) (string, error) {
	creds, client, err := k.clientFor(ctx)
	if err != nil {
		return "", fmt.Errorf("consent url: %w", err)
	}
	signer := k.signer(creds)
	state, nonce, err := signer.Mint(k.now())
	if err != nil {
		return "", fmt.Errorf("consent url: %w", err)
	}
	verifier := ""
	if k.cfg.Client.PKCE {
		verifier = signer.PKCEVerifier(nonce)
	}
	return client.AuthCodeURL(state, verifier), nil
}

// CompleteConsent is the callback's logic: verify the state, spend its nonce (a replay is
// ErrStateReused), exchange the code and store the new pair. Nothing is written when the
// state is bad. A consent always wins over a concurrent refresh: it is the admin's newest
// intent, and its pair is live.
func (k *Keeper) CompleteConsent(ctx context.Context, state string, code Secret) (Result, error) {
	if code.IsZero() {
		return Result{}, fmt.Errorf("consent: %w: empty code", ErrBadInput)
	}
	creds, _, err := k.clientFor(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
	}
	signer := k.signer(creds)
	claims, err := signer.Verify(state, k.now())
	if err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
	}

	unlock, err := k.lock(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
	}
	defer unlock()

	reserved, err := k.spendNonce(ctx, claims)
	if err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
	}
	verifier := ""
	if k.cfg.Client.PKCE {
		verifier = signer.PKCEVerifier(claims.Nonce)
	}
	fresh, err := k.withClient(ctx, func(tokenCtx context.Context, c TokenClient) (*Pair, error) {
		return c.Exchange(tokenCtx, code, verifier)
	})
	if err != nil {
		return Result{}, fmt.Errorf("consent: exchange code: %w", err)
	}
	stored, _, err := k.commit(ctx, reserved, fresh, true)
	if err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
	}
	k.log.InfoContext(ctx, "connected by consent", "pair", stored)
	return resultOf(OutcomeConnected, "", stored), nil
}

// Login bootstraps the chain with the password grant (server-to-server use only). The
// username gets "@vbc.prod" appended when it has no domain.
func (k *Keeper) Login(ctx context.Context, username string, password Secret) (Result, error) {
	user, err := NormalizeUsername(username)
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	if password.IsZero() {
		return Result{}, fmt.Errorf("login: %w: empty password", ErrBadInput)
	}
	unlock, err := k.lock(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	defer unlock()
	cur, err := k.loadPair(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	fresh, err := k.withClient(ctx, func(tokenCtx context.Context, c TokenClient) (*Pair, error) {
		return c.Password(tokenCtx, user, password)
	})
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	stored, _, err := k.commit(ctx, cur, fresh, true)
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	k.log.InfoContext(ctx, "connected by password grant", "pair", stored)
	return resultOf(OutcomeConnected, "", stored), nil
}

// Status describes the stored pair for operators; it never holds a token.
type Status struct {
	Connected        bool      `json:"connected"`
	Grant            Grant     `json:"grant,omitempty"`
	ObtainedAt       time.Time `json:"obtained_at,omitzero"`
	AccessExpiresAt  time.Time `json:"access_expires_at,omitzero"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
	// NextRefresh is when the policy will next refresh (the next scheduled run after it).
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	Reason      Reason    `json:"reason"`
	Now         time.Time `json:"now"`
}

// Status reads the pair and reports its state by the policy.
func (k *Keeper) Status(ctx context.Context) (Status, error) {
	cur, err := k.loadPair(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	now := k.now()
	d := k.cfg.Policy.Decide(cur.Pair, now, false)
	st := Status{Connected: !d.Reconsent, Reason: d.Reason, Now: now}
	if p := cur.Pair; p != nil && !p.RefreshToken.IsZero() {
		st.Grant, st.ObtainedAt, st.AccessExpiresAt, st.RefreshExpiresAt = p.Grant, p.ObtainedAt, p.ExpiresAt, p.RefreshExpiresAt
		if !d.Reconsent {
			st.NextRefresh = k.cfg.Policy.NextRefresh(p)
		}
	}
	return st, nil
}

// commit stores fresh on top of base with compare-and-swap, retrying transient failures
// until ctx's deadline, then updates the access secret. On a conflict it re-reads:
//   - the stored tokens are still base's (only bookkeeping such as consent nonces moved):
//     rebase fresh onto the stored pair and try again;
//   - the stored pair already is fresh (a retried write that had landed): done;
//   - another live pair was stored: for a refresh that is OutcomeSuperseded; a consent or
//     login (wins) rebases and overwrites it, because it is the admin's newest grant.
func (k *Keeper) commit(ctx context.Context, base Versioned, fresh *Pair, wins bool) (*Pair, Outcome, error) {
	for round := 0; round < maxCommitRounds; round++ {
		next := base.Pair.WithTokens(fresh)
		next.ConsentNonces = pruneNonces(next.ConsentNonces, k.now())
		_, err := k.retryStore(ctx, func(ctx context.Context) error {
			_, err := k.store.CommitPair(ctx, next, base.Version)
			return err
		})
		if err == nil {
			if err := k.putAccessSettled(ctx, next); err != nil {
				return next, OutcomeRefreshed, err
			}
			return next, OutcomeRefreshed, nil
		}
		if !errors.Is(err, ErrConflict) {
			// The new pair is the only live one and it is not stored. Say so loudly,
			// without the pair itself.
			k.log.ErrorContext(ctx, "could not store the new token pair before the deadline; the refresh chain may be lost",
				"error", err, "pair", fresh)
			return nil, "", fmt.Errorf("store new pair: %w", err)
		}
		latest, lerr := k.loadPair(ctx)
		if lerr != nil {
			k.log.ErrorContext(ctx, "could not re-read the pair after a conflict; the new token pair may be lost",
				"error", lerr, "pair", fresh)
			return nil, "", fmt.Errorf("re-read after conflict: %w", lerr)
		}
		switch {
		case latest.Pair.SameTokens(fresh):
			if err := k.putAccessSettled(ctx, latest.Pair); err != nil {
				return latest.Pair, OutcomeRefreshed, err
			}
			return latest.Pair, OutcomeRefreshed, nil
		case latest.Pair.RefreshToken == base.Pair.RefreshToken || wins:
			base = latest
		default:
			k.log.WarnContext(ctx, "another writer stored a different pair first; keeping theirs", "stored", latest.Pair)
			return latest.Pair, OutcomeSuperseded, nil
		}
	}
	return nil, "", fmt.Errorf("store new pair: %w: too many concurrent writers", ErrConflict)
}

// spendNonce records the state's nonce in the pair secret before the code is exchanged, so
// a replayed consent link is refused even when two callbacks race.
func (k *Keeper) spendNonce(ctx context.Context, claims StateClaims) (Versioned, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Versioned{}, fmt.Errorf("record consent nonce: %w", err)
	}
	claim := hex.EncodeToString(b[:])
	for round := 0; round < maxCommitRounds; round++ {
		cur, err := k.loadPair(ctx)
		if err != nil {
			return Versioned{}, err
		}
		for _, n := range cur.Pair.ConsentNonces {
			if n.Nonce == claims.Nonce && n.Claim == claim {
				return cur, nil // our own write landed; its answer was lost
			}
			if n.Nonce == claims.Nonce {
				return Versioned{}, ErrStateReused
			}
		}
		next := cur.Pair.Clone()
		next.ConsentNonces = pruneNonces(append(next.ConsentNonces, UsedNonce{Nonce: claims.Nonce, ExpiresAt: claims.ExpiresAt.UTC(), Claim: claim}), k.now())
		var version string
		_, err = k.retryStore(ctx, func(ctx context.Context) error {
			var err error
			version, err = k.store.CommitPair(ctx, next, cur.Version)
			return err
		})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Versioned{}, fmt.Errorf("record consent nonce: %w", err)
		}
		return Versioned{Pair: next, Version: version}, nil
	}
	return Versioned{}, fmt.Errorf("record consent nonce: %w: too many concurrent writers", ErrConflict)
}

// pruneNonces drops expired nonces and keeps at most maxConsentNonces, newest expiry first.
func pruneNonces(in []UsedNonce, now time.Time) []UsedNonce {
	out := make([]UsedNonce, 0, len(in))
	for _, n := range in {
		if now.Before(n.ExpiresAt) {
			out = append(out, n)
		}
	}
	if len(out) > maxConsentNonces {
		sort.SliceStable(out, func(i, j int) bool { return out[i].ExpiresAt.After(out[j].ExpiresAt) })
		out = out[:maxConsentNonces]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// syncAccess rewrites the access secret from the stored pair when it does not hold the
// pair's access token. A writer that stored a pair may have died or run out of time before
// writing the access secret, and no later run would write it before the next refresh, long
// after the old access token expired: the pair is the source of truth, so every run that
// does not refresh brings the derived secret back in step (one more read).
//
// p is the pair the run read earlier. When the access secret differs from it, the pair is
// read again before anything is written: a concurrent writer may have stored a newer pair
// and written its access token meanwhile, which must not be replaced with p's.
func (k *Keeper) syncAccess(ctx context.Context, p *Pair) error {
	var a AccessToken
	_, err := k.retryStore(ctx, func(ctx context.Context) error {
		var err error
		a, err = k.store.LoadAccess(ctx)
		return err
	})
	if err == nil && a.AccessToken == p.AccessToken {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMalformedSecret) {
		return fmt.Errorf("check access secret: %w", err)
	}
	latest, lerr := k.loadPair(ctx)
	if lerr != nil {
		return fmt.Errorf("check access secret: %w", lerr)
	}
	if err == nil && a.AccessToken == latest.Pair.AccessToken {
		return nil // a concurrent writer stored a newer pair and its access token
	}
	k.log.WarnContext(ctx, "the access secret did not hold the stored pair's access token; rewriting it", "pair", latest.Pair)
	return k.putAccess(ctx, latest.Pair)
}

// putAccessSettled writes p's access token, then re-reads the pair: writes of the access
// secret are not ordered by compare-and-swap, so when another writer committed a newer pair
// right after ours, our access write may have landed after theirs. Whichever write lands
// last, the re-read makes the access secret end on the newest pair's token (one more read
// per stored pair; found by TestConsentRacesRefresher).
func (k *Keeper) putAccessSettled(ctx context.Context, p *Pair) error {
	if err := k.putAccess(ctx, p); err != nil {
		return err
	}
	latest, err := k.loadPair(ctx)
	if err != nil {
		return fmt.Errorf("re-read pair after access write: %w", err)
	}
	if latest.Pair.SameTokens(p) || latest.Pair.AccessToken.IsZero() {
		return nil
	}
	return k.putAccess(ctx, latest.Pair)
}

func (k *Keeper) putAccess(ctx context.Context, p *Pair) error {
	_, err := k.retryStore(ctx, func(ctx context.Context) error { return k.store.PutAccess(ctx, p.Access()) })
	if err != nil {
		k.log.ErrorContext(ctx, "pair stored but the access secret could not be updated; apps may read an older token",
			"error", err)
		return fmt.Errorf("update access secret: %w", err)
	}
	return nil
}

func (k *Keeper) loadPair(ctx context.Context) (Versioned, error) {
	var v Versioned
	_, err := k.retryStore(ctx, func(ctx context.Context) error {
		var err error
		v, err = k.store.LoadPair(ctx)
		return err
	})
	if err != nil {
		return Versioned{}, fmt.Errorf("load pair: %w", err)
	}
	if v.Pair == nil {
		v.Pair = &Pair{}
	}
	return v, nil
}

// retryStore runs op, retrying transient store failures with the store retry policy: until
// ctx's deadline when it has one (unless MaxAttempts says otherwise), else MaxAttempts times.
func (k *Keeper) retryStore(ctx context.Context, op func(context.Context) error) (int, error) {
	policy := k.cfg.StoreRetry
	if _, ok := ctx.Deadline(); ok && policy.MaxAttempts == 0 {
		policy.MaxAttempts = -1 // until the deadline: a new pair may be the only live one
	}
	return policy.Do(ctx, func(int) (time.Duration, error) { return 0, op(ctx) },
		func(err error) bool { return errors.Is(err, ErrTransient) })
}

func (k *Keeper) lock(ctx context.Context) (func(), error) {
	if l, ok := k.store.(locker); ok {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return nil, fmt.Errorf("lock store: %w", err)
		}
		return unlock, nil
	}
	return func() {}, nil
}

func (k *Keeper) signer(c Credentials) *StateSigner {
	return NewStateSigner(StateKeyFromClientSecret(c.ClientSecret), k.cfg.StateTTL)
}

// clientFor returns the cached credentials and client, loading them on first use.
func (k *Keeper) clientFor(ctx context.Context) (Credentials, TokenClient, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client != nil {
		return k.creds, k.client, nil
	}
	var creds Credentials
	_, err := k.retryStore(ctx, func(ctx context.Context) error {
		var err error
		creds, err = k.store.LoadCredentials(ctx)
		return err
	})
	if err != nil {
		return Credentials{}, nil, fmt.Errorf("load credentials: %w", err)
	}
	k.creds, k.client = creds, k.cfg.NewClient(creds)
	return k.creds, k.client, nil
}

// forgetClient drops cached credentials so the next call reloads them (after an admin
// rotated the client secret). It reports whether the reloaded credentials differ.
func (k *Keeper) reloadClient(ctx context.Context) (bool, error) {
	k.mu.Lock()
	old := k.creds
	k.client = nil
	k.mu.Unlock()
	creds, _, err := k.clientFor(ctx)
	if err != nil {
		return false, err
	}
	return creds.ClientID != old.ClientID || creds.ClientSecret != old.ClientSecret, nil
}

// withClient calls the token endpoint through op with a context whose deadline keeps
// StoreReserve back for storing the result. When VBC rejects the client and the
// credentials secret has changed since it was cached, it retries once with the new ones.
func (k *Keeper) withClient(ctx context.Context, op func(context.Context, TokenClient) (*Pair, error)) (*Pair, error) {
	_, client, err := k.clientFor(ctx)
	if err != nil {
		return nil, err
	}
	tokenCtx, cancel := k.tokenContext(ctx)
	defer cancel()
	p, err := op(tokenCtx, client)
	if errors.Is(err, ErrBadClient) {
		changed, rerr := k.reloadClient(ctx)
		if rerr == nil && changed {
			_, client, _ = k.clientFor(ctx)
			return op(tokenCtx, client)
		}
	}
	return p, err
}

func (k *Keeper) tokenContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := k.cfg.StoreReserve
	if left := time.Until(deadline); reserve > left/2 {
		reserve = left / 2
	}
	return context.WithDeadline(ctx, deadline.Add(-reserve))
}
