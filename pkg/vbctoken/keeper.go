package vbctoken

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
)

// tokenClient is what the keeper needs from the VBC OAuth client; *client implements it.
type tokenClient interface {
	AuthCodeURL(state, verifier string) string
	Exchange(ctx context.Context, code Secret, verifier string) (*Pair, error)
	Refresh(ctx context.Context, refreshToken Secret) (*Pair, error)
	Password(ctx context.Context, username string, password Secret) (*Pair, error)
}

var _ tokenClient = (*client)(nil)

// Defaults of the keeper.
const (
	// defaultStoreReserve is the part of an operation's deadline kept back for storing a
	// freshly issued pair: the token call must finish before it, so that a pair VBC issued
	// always has time to be written.
	defaultStoreReserve = 10 * time.Second
	// maxConsentNonces bounds the used-nonce list kept in the pair secret.
	maxConsentNonces = 100
	// maxCommitRounds bounds compare-and-swap rounds against concurrent writers.
	maxCommitRounds = 32
	// claimAttempts bounds the tries to write a lease: nothing is spent yet, so a store
	// that keeps failing means "try again next run".
	claimAttempts = 3
	// leasePollInitial and leasePollMax pace the re-reads of a keeper waiting for
	// another's lease.
	leasePollInitial = 250 * time.Millisecond
	leasePollMax     = 2 * time.Second
)

// errRejectedBefore stands for VBC's answer to a refresh token it rejected on an earlier run.
var errRejectedBefore = errors.New("VBC rejected the stored refresh token on an earlier run")

// errLeaseHeld is what a keeper waiting for another's lease retries on.
var errLeaseHeld = errors.New("another keeper holds the refresh lease")

// KeeperConfig configures a Keeper. Store is required.
type KeeperConfig struct {
	Store Store
	// Client builds the OAuth client once the credentials are loaded from the store.
	Client   ClientConfig
	Policy   Policy        // default DefaultPolicy()
	StateTTL time.Duration // default DefaultStateTTL
	// StoreRetry retries transient store failures; its Sleep is swapped in tests.
	StoreRetry   RetryPolicy
	StoreReserve time.Duration // default defaultStoreReserve
	// Holder names this keeper in the refresh leases it writes, for operators (for example
	// the Lambda function's name, or "cli"); each operation adds a random suffix. Default
	// "keeper".
	Holder string
	// Account is the VBC account this keeper's store belongs to, in accounts mode (a valid
	// account id; docs/design.md "Accounts mode"): its consent links carry it, signed, and
	// its log lines name it. "" in a single-account deployment.
	Account string
	// SelfHeal, when set, lets the keeper restore a provably lost chain with the password
	// grant of the user it supplies (server-to-server deployments only; off by default;
	// docs/chain-safety.md "Self-heal").
	SelfHeal LoginSource
	Now      func() time.Time
	Logger   *slog.Logger

	// shared, set by Accounts, loads the credentials all of a fleet's keepers share.
	shared *sharedCredentials
}

// Keeper owns the token pair: it completes consents, refreshes the pair on its policy and
// keeps the app-facing access secret in step. A Keeper is safe for concurrent use, and any
// number of keepers (Lambda execution environments, CLI runs, a local serve, a second
// deployment on the same secrets) may run at once without breaking the chain: every write
// of the pair is a compare-and-swap, and a keeper spends the refresh token only under a
// lease it wrote into the pair secret (docs/chain-safety.md).
type Keeper struct {
	cfg   KeeperConfig
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	creds  Credentials
	client tokenClient
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
	if cfg.StoreReserve <= 0 {
		cfg.StoreReserve = defaultStoreReserve
	}
	if cfg.Holder == "" {
		cfg.Holder = "keeper"
	}
	if cfg.Account != "" {
		if err := CheckAccount(cfg.Account); err != nil {
			return nil, fmt.Errorf("new keeper: %w", err)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client.Now == nil {
		cfg.Client.Now = cfg.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Account != "" {
		log = log.With("account", cfg.Account)
	}
	return &Keeper{cfg: cfg, store: cfg.Store, log: log, now: cfg.Now}, nil
}

// newHolder names one operation's lease: the configured holder and a random suffix, so
// that two claims never write identical content (which a store would take for one write).
func (k *Keeper) newHolder() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return k.cfg.Holder + "/" + hex.EncodeToString(b[:])
}

// Outcome says what an operation did.
type Outcome string

// The outcomes of keeper operations.
const (
	OutcomeSkipped    Outcome = "skipped"            // the pair is fresh; nothing called
	OutcomeRefreshed  Outcome = "refreshed"          // a new pair was obtained and stored
	OutcomeSuperseded Outcome = "superseded"         // another writer stored a newer pair first
	OutcomeConnected  Outcome = "connected"          // a consent or login stored a pair
	OutcomeReconsent  Outcome = "reconsent_required" // the chain is gone
	// OutcomeInDoubt: VBC did not answer a refresh usably, or the lease could not be
	// written; the chain is in doubt, not gone, and the next run tries again.
	OutcomeInDoubt Outcome = "in_doubt"
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

// Refresh runs the refresher's logic once: read the pair (finishing a write an earlier run
// left pending), decide by the policy (force refreshes any live pair), claim the refresh
// lease, refresh, store with compare-and-swap and update the access secret.
//
// Another keeper's newer pair, or its live lease that outlasts this run, is
// OutcomeSuperseded with a nil error. A refresh whose outcome VBC left unknown (a timeout,
// a 5xx) is OutcomeInDoubt with an error matching ErrTransient: the chain is in doubt, not
// gone, and the next run tries again. Only when VBC rejected every refresh token the store
// holds, under this keeper's lease, does the error match ErrReconsentRequired.
func (k *Keeper) Refresh(ctx context.Context, force bool) (Result, error) {
	ctx, cancel := withOpDeadline(ctx)
	defer cancel()
	res, err := k.refresh(ctx, force)
	if err != nil {
		err = fmt.Errorf("refresh: %w", err)
	}
	return res, err
}

func (k *Keeper) refresh(ctx context.Context, force bool) (Result, error) {
	holder := k.newHolder()
	cur, err := k.loadCurrent(ctx)
	if err != nil {
		return Result{}, err
	}
	first := cur.Pair.RefreshToken
	for round := 0; round < maxCommitRounds; round++ {
		now := k.now()
		moved := cur.Pair.RefreshToken != first
		d := k.cfg.Policy.decide(cur.Pair, now, force && !moved)
		switch {
		case moved && !d.Refresh:
			k.log.InfoContext(ctx, "refresh superseded: another keeper stored a new pair", "pair", cur.Pair)
			return k.settle(ctx, OutcomeSuperseded, d.Reason, cur.Pair, false)
		case cur.Pair.RefreshToken.IsZero() && len(cur.Pair.kept) == 0:
			if k.cfg.Account != "" {
				// An account whose first consent has not completed: a fleet lists it before
				// it is connected. Not an alarm; the admin knows a link is out.
				k.log.WarnContext(ctx, "not connected yet: the account has no stored pair; an admin must run `vbctoken consent-url --account "+k.cfg.Account+"` and approve in the browser")
			} else {
				k.log.ErrorContext(ctx, "re-consent required: no token pair is stored; an admin must run `vbctoken consent-url` and approve in the browser",
					"reason", d.Reason)
			}
			return resultOf(OutcomeReconsent, d.Reason, cur.Pair), fmt.Errorf("%w (%s)", ErrReconsentRequired, d.Reason)
		case !d.Refresh && !d.Reconsent:
			k.log.DebugContext(ctx, "refresh skipped", "reason", d.Reason, "pair", cur.Pair)
			return k.settle(ctx, OutcomeSkipped, d.Reason, cur.Pair, false)
		case d.Reason == ReasonRejected && k.selfHealPending(cur.Pair):
			// The last self-heal attempt's outcome is unknown: in doubt until the next one.
			return k.selfHealWaits(ctx, d.Reason, cur.Pair)
		case d.Reason == ReasonRejected && !k.selfHealDue(cur.Pair):
			// VBC rejected this refresh token under a lease already: it is dead for good, and
			// sending it again each hour would only cost writes and a token request.
			k.log.ErrorContext(ctx, "re-consent required: VBC rejected the stored refresh token; an admin must run `vbctoken consent-url` and approve in the browser")
			return resultOf(OutcomeReconsent, d.Reason, cur.Pair), fmt.Errorf("%w: VBC rejected the stored refresh token", ErrReconsentRequired)
		}
		// A refresh is due. When the records say the refresh token has expired, VBC still
		// decides: re-consent is declared only after it rejects the token.
		if l := cur.Pair.lease; l.liveFor(holder, now) {
			k.log.InfoContext(ctx, "another keeper holds the refresh lease; waiting for its result",
				"holder", l.Holder, "lease_expires_at", l.ExpiresAt)
			latest, err := k.awaitLease(ctx, cur, holder)
			if err != nil {
				k.log.InfoContext(ctx, "the other keeper's lease outlasts this run; leaving the refresh to it",
					"holder", l.Holder, "lease_expires_at", l.ExpiresAt)
				return resultOf(OutcomeSuperseded, ReasonLeased, cur.Pair), nil
			}
			cur = latest
			continue
		}
		leased, err := k.claim(ctx, cur, holder)
		if errors.Is(err, ErrConflict) {
			if cur, err = k.loadCurrent(ctx); err != nil {
				return Result{}, err
			}
			continue
		}
		if err != nil {
			return resultOf(OutcomeInDoubt, d.Reason, cur.Pair), fmt.Errorf("claim the refresh lease: %w", err)
		}
		return k.spend(ctx, leased, d.Reason)
	}
	return Result{}, fmt.Errorf("%w: too many concurrent writers", ErrConflict)
}

// claim writes the pair back with this keeper's lease (compare-and-swap on cur's version).
// The lease ends with the operation's deadline: past it this keeper writes nothing, so a
// keeper that finds the lease expired may take over.
func (k *Keeper) claim(ctx context.Context, cur Versioned, holder string) (Versioned, error) {
	deadline, _ := ctx.Deadline()
	next := cur.Pair.Clone()
	// Rounded up to the second the store keeps: the lease may outlive the deadline by
	// under a second, never end before it.
	until := k.now().Add(time.Until(deadline) + time.Second - 1).Truncate(time.Second)
	next.lease = &lease{Holder: holder, ExpiresAt: until}
	var version string
	policy := k.cfg.StoreRetry
	policy.MaxAttempts = claimAttempts // nothing is spent yet: give up early, retry next run
	_, err := policy.Do(ctx, func(int) (time.Duration, error) {
		var err error
		version, err = k.store.CommitPair(ctx, next, cur.Version)
		return 0, err
	}, func(err error) bool { return errors.Is(err, ErrTransient) })
	if err != nil {
		return Versioned{}, err
	}
	return Versioned{Pair: next, Version: version}, nil
}

// spend refreshes under the lease held in leased: first the stored refresh token, then,
// only if VBC rejects it, each kept pair. From the first request on it runs on a context
// that ignores cancellation (SIGINT, shutdown) until the deadline: VBC may issue a pair,
// and a pair VBC issued must reach the store.
func (k *Keeper) spend(ctx context.Context, leased Versioned, reason Reason) (Result, error) {
	work, stop := shield(ctx)
	defer stop()
	stored := leased.Pair
	candidates := make([]*Pair, 0, 1+len(stored.kept))
	var rejected error
	if stored.deadByRecord() {
		rejected = errRejectedBefore
	} else if !stored.RefreshToken.IsZero() {
		candidates = append(candidates, stored)
	}
	candidates = append(candidates, stored.kept...)
	lostInTransit := false
	for _, c := range candidates {
		fresh, err := k.withClient(work, func(tokenCtx context.Context, tc tokenClient) (*Pair, error) {
			return tc.Refresh(tokenCtx, c.RefreshToken)
		})
		var ue *UpstreamError
		if errors.As(err, &ue) && ue.salvage != nil {
			// A 200 whose refresh token may or may not be real: keep it beside the stored
			// pair, which stays current; the next run finds out which one VBC accepts.
			k.log.WarnContext(ctx, "VBC answered the refresh with a refresh token but no usable access token; it is kept beside the stored pair and the next run settles which one lives",
				"error", err)
			k.keepAndRelease(work, leased, successor(c, ue.salvage))
			k.repairAccess(work, stored)
			return resultOf(OutcomeInDoubt, reason, stored), err
		}
		switch {
		case err == nil:
			next := successor(c, fresh)
			if c != stored {
				k.log.WarnContext(ctx, "VBC rejected the stored refresh token; recovered the chain from a pair kept beside it")
				next.retired = compactRetired(append([]string{tokenHash(stored.RefreshToken)}, next.retired...), next.RefreshToken)
			}
			for _, other := range stored.kept {
				// VBC accepted c: whatever shared its turn of the chain is dead.
				if other != c && !c.related(other) && !stored.related(other) {
					next.kept = append(next.kept, other)
				}
			}
			next, _ = next.withKept(nil, k.now())
			return k.commitRefresh(work, leased, next, reason)
		case errors.Is(err, ErrInvalidGrant):
			rejected = err
			lostInTransit = lostInTransit || (ue != nil && ue.Unknown) || c.awaitsAnswer()
			// A keeper whose expired lease this one took over may have stored its pair
			// since, or left it pending: look before trying anything else.
			latest, lerr := k.loadCurrent(work)
			if lerr == nil && latest.Pair.RefreshToken != stored.RefreshToken && !latest.Pair.RefreshToken.IsZero() {
				k.log.InfoContext(ctx, "refresh superseded: another keeper stored a new pair", "pair", latest.Pair)
				return k.settle(work, OutcomeSuperseded, reason, latest.Pair, false)
			}
		default:
			unknown := errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrMalformedResponse)
			released := stored
			if unknown {
				// VBC may have rotated the token (a malformed 200 says it did): the next
				// run refreshes at once, however fresh the pair looks, and finds out.
				released = stored.Clone()
				released.unanswered = tokenHash(stored.RefreshToken)
			}
			k.release(work, Versioned{Pair: released, Version: leased.Version})
			if unknown || errors.Is(err, ErrTransient) {
				k.log.WarnContext(ctx, "refresh outcome unknown: VBC did not answer usably; the chain is in doubt, not gone, and the next run tries again",
					"error", err)
				k.repairAccess(work, stored)
				return resultOf(OutcomeInDoubt, reason, stored), err
			}
			return resultOf("", reason, stored), err
		}
	}
	// VBC rejected every refresh token the store holds, nothing newer was stored, and this
	// keeper's lease means no other keeper is spending one: the chain is gone, unless an
	// opt-in self-heal restores it.
	res, handled, leased, err := k.trySelfHeal(work, leased, reason)
	if handled {
		return res, err
	}
	k.release(work, Versioned{Pair: leased.Pair.rejectedCopy(), Version: leased.Version})
	cause := "VBC rejected the stored refresh token"
	if lostInTransit {
		cause = "VBC rejected the stored refresh token after an earlier attempt got no usable answer: VBC may have rotated it and its answer been lost in transit"
	}
	k.log.ErrorContext(ctx, "re-consent required: "+cause+"; an admin must run `vbctoken consent-url` and approve in the browser",
		"error", rejected)
	return resultOf(OutcomeReconsent, reason, stored), fmt.Errorf("%w: %w", ErrReconsentRequired, rejected)
}

// commitRefresh stores next, the successor of the pair leased (whose lease this keeper
// holds), with compare-and-swap, retrying transient failures until the deadline, then
// updates the access secret. On a conflict it re-reads:
//   - the stored refresh token is still the leased one (only bookkeeping moved, such as a
//     consent nonce, or a keeper took over a lease it thought expired): rebase and retry;
//   - the stored pair already is next (a retried write that had landed): done;
//   - the stored chain has moved past next: OutcomeSuperseded;
//   - another pair was stored (a consent, or a sibling from a race): keep next beside it,
//     to be tried before any re-consent, and report OutcomeSuperseded.
func (k *Keeper) commitRefresh(ctx context.Context, leased Versioned, next *Pair, reason Reason) (Result, error) {
	// The new access token is valid at VBC the moment VBC answered, and the old one is
	// dead: apps get it first. A keeper that dies between the two writes then leaves apps a
	// live token, not a dead one until the next run.
	early := k.putAccessEarly(ctx, next)
	base := leased
	for round := 0; round < maxCommitRounds; round++ {
		var write *Pair
		outcome := OutcomeRefreshed
		switch cur := base.Pair; {
		case cur.SameTokens(next):
			return k.settle(ctx, OutcomeRefreshed, reason, cur, true) // a retried write had landed
		case cur.RefreshToken == leased.Pair.RefreshToken:
			write = cur.WithTokens(next)
		case cur.retires(next):
			return k.settle(ctx, OutcomeSuperseded, reason, cur, false)
		default:
			kept, changed := cur.withKept(next, k.now())
			if !changed {
				return k.settle(ctx, OutcomeSuperseded, reason, cur, false)
			}
			k.log.WarnContext(ctx, "another keeper stored a different pair first; ours is kept beside it and tried before any re-consent",
				"stored", cur)
			write, outcome = kept, OutcomeSuperseded
		}
		write.ConsentNonces = pruneNonces(write.ConsentNonces, k.now())
		_, err := k.commitRetried(ctx, write, base.Version)
		if err == nil {
			if outcome != OutcomeRefreshed {
				return k.settle(ctx, outcome, reason, write, false)
			}
			k.log.InfoContext(ctx, "refreshed", "reason", reason, "pair", write)
			if early {
				// A stale writer may have overwritten the early write: one read checks.
				return resultOf(outcome, reason, write), k.syncAccess(ctx, write)
			}
			return k.settle(ctx, outcome, reason, write, true)
		}
		if !errors.Is(err, ErrConflict) {
			// The new pair may be the only live one. Say so loudly, without the pair.
			k.log.ErrorContext(ctx, "could not store the new token pair before the deadline; if the write reached the store, the next run finishes it, else the refresh chain may be lost",
				"error", err, "pair", next)
			return resultOf("", reason, leased.Pair), fmt.Errorf("store new pair: %w", err)
		}
		if base, err = k.loadCurrent(ctx); err != nil {
			k.log.ErrorContext(ctx, "could not re-read the pair after a conflict; the new token pair may be lost",
				"error", err, "pair", next)
			return resultOf("", reason, leased.Pair), fmt.Errorf("re-read after conflict: %w", err)
		}
	}
	return Result{}, fmt.Errorf("store new pair: %w: too many concurrent writers", ErrConflict)
}

// awaitLease waits, re-reading the pair, until the other keeper's lease on cur's refresh
// token is released or expired, or the stored token changed. It returns the pair read
// last, or an error when this run's time is up first.
func (k *Keeper) awaitLease(ctx context.Context, cur Versioned, holder string) (Versioned, error) {
	policy := k.cfg.StoreRetry
	policy.Initial, policy.Max, policy.Multiplier, policy.MaxAttempts = leasePollInitial, leasePollMax, 2, -1
	latest := cur
	_, err := policy.Do(ctx, func(int) (time.Duration, error) {
		v, err := k.loadCurrent(ctx)
		if err != nil {
			return 0, err
		}
		latest = v
		if v.Pair.RefreshToken != cur.Pair.RefreshToken || !v.Pair.lease.liveFor(holder, k.now()) {
			return 0, nil
		}
		return 0, errLeaseHeld
	}, func(err error) bool { return errors.Is(err, errLeaseHeld) || errors.Is(err, ErrTransient) })
	return latest, err
}

// keepAndRelease stores p beside the leased pair and drops the lease, re-reading on
// conflicts (best effort beyond the deadline: the error is logged).
func (k *Keeper) keepAndRelease(ctx context.Context, leased Versioned, p *Pair) {
	base := leased
	for round := 0; round < maxCommitRounds; round++ {
		next, _ := base.Pair.withKept(p, k.now())
		if next.lease != nil && next.lease.Holder == leased.Pair.lease.Holder {
			next.lease = nil
		}
		_, err := k.commitRetried(ctx, next, base.Version)
		if !errors.Is(err, ErrConflict) {
			if err != nil {
				k.log.ErrorContext(ctx, "could not keep a pair VBC may have issued", "error", err, "pair", p)
			}
			return
		}
		if base, err = k.loadCurrent(ctx); err != nil {
			k.log.ErrorContext(ctx, "could not keep a pair VBC may have issued", "error", err, "pair", p)
			return
		}
	}
}

// release drops this keeper's lease (best effort: the lease expires by itself anyway).
func (k *Keeper) release(ctx context.Context, leased Versioned) {
	next := leased.Pair.Clone()
	next.lease = nil
	if _, err := k.commitRetried(ctx, next, leased.Version); err != nil {
		k.log.DebugContext(ctx, "could not release the refresh lease; it expires by itself", "error", err)
	}
}

// settle brings the access secret in step with p, the pair now stored, and returns the
// result of the operation: when this keeper just stored p (wrote), p's access token is
// written; otherwise the access secret is checked and repaired only when it is behind.
func (k *Keeper) settle(ctx context.Context, o Outcome, reason Reason, p *Pair, wrote bool) (Result, error) {
	res := resultOf(o, reason, p)
	if wrote {
		return res, k.putAccessSettled(ctx, p)
	}
	return res, k.syncAccess(ctx, p)
}

// ConsentURL mints a signed, single-use consent state and returns the authorize URL an admin
// opens in the browser.
func (k *Keeper) ConsentURL(ctx context.Context) (string, error) {
	creds, client, err := k.clientFor(ctx)
	if err != nil {
		return "", fmt.Errorf("consent url: %w", err)
	}
	signer := k.signer(creds)
	state, nonce, err := signer.Mint(k.now(), k.cfg.Account)
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
// ErrStateReused), exchange the code and store the pair. Nothing is written when the state
// or the code is bad. The code is never sent twice: when VBC's answer is lost the error
// matches ErrOutcomeUnknown and the stored chain is kept.
//
// VBC may answer with the token it already issued for this client and user (WSO2 reuses
// an active token): the stored chain then stays as it is, its expiry included, and a pair
// the stored chain has already moved past is never stored over it. A consent that starts
// a new chain replaces the stored one: it is the admin's newest grant.
func (k *Keeper) CompleteConsent(ctx context.Context, state string, code Secret) (Result, error) {
	ctx, cancel := withOpDeadline(ctx)
	defer cancel()
	if err := checkCode(code); err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
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
	if claims.Account != k.cfg.Account {
		// Signed by this deployment, but for another account (or mode): never store a
		// chain under an account the admin did not consent for.
		return Result{}, fmt.Errorf("consent: %w: the link was minted for another account", errStateMalformed)
	}
	reserved, err := k.spendNonce(ctx, claims)
	if err != nil {
		return Result{}, fmt.Errorf("consent: %w", err)
	}
	verifier := ""
	if k.cfg.Client.PKCE {
		verifier = signer.PKCEVerifier(claims.Nonce)
	}
	work, stop := shield(ctx)
	defer stop()
	fresh, err := k.withClient(work, func(tokenCtx context.Context, c tokenClient) (*Pair, error) {
		return c.Exchange(tokenCtx, code, verifier)
	})
	if err != nil {
		if errors.Is(err, ErrOutcomeUnknown) {
			k.log.WarnContext(ctx, "consent outcome unknown: VBC may have issued a pair whose answer was lost; the code is not sent again (VBC would revoke its token) and the stored chain is kept",
				"error", err)
		}
		return Result{}, fmt.Errorf("consent: exchange code: %w", err)
	}
	res, err := k.commitGrant(work, reserved, fresh)
	if err != nil {
		return res, fmt.Errorf("consent: %w", err)
	}
	k.log.InfoContext(ctx, "connected by consent", "pair", fresh)
	return res, nil
}

// Login bootstraps the chain with the password grant (server-to-server use only). The
// username gets "@vbc.prod" appended when it has no domain. Re-grants are handled as in
// CompleteConsent.
//
// The password is sent once: a rejected one is never retried, because VBC locks the user
// after a few failures for AccountLockout from the last attempt. When VBC answers that the
// user is locked, the lock is recorded in the pair secret and the error is a *LockedError;
// until the lock ends, Login refuses to send anything for that user (a *LockedError with
// Known set) unless force is true.
func (k *Keeper) Login(ctx context.Context, username string, password Secret, force bool) (Result, error) {
	ctx, cancel := withOpDeadline(ctx)
	defer cancel()
	user, err := NormalizeUsername(username)
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	if password.IsZero() {
		return Result{}, fmt.Errorf("login: %w: empty password", ErrBadInput)
	}
	cur, err := k.loadCurrent(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	if l := cur.Pair.loginLock; l != nil && l.User == user && k.now().Before(l.Until) && !force {
		return Result{}, fmt.Errorf("login: %w", &LockedError{User: user, Until: l.Until, Known: true})
	}
	work, stop := shield(ctx)
	defer stop()
	fresh, err := k.withClient(work, func(tokenCtx context.Context, c tokenClient) (*Pair, error) {
		return c.Password(tokenCtx, user, password)
	})
	if errors.Is(err, ErrAccountLocked) {
		until := k.now().Add(AccountLockout).Truncate(time.Second).Add(time.Second)
		k.recordLoginLock(work, &loginLock{User: user, Until: until})
		k.log.ErrorContext(ctx, "VBC has locked the password-grant user; no keeper tries it again before the lock ends", "user", user, "until", until)
		return Result{}, fmt.Errorf("login: %w", &LockedError{User: user, Until: until, Err: err})
	}
	if err != nil {
		return Result{}, fmt.Errorf("login: %w", err)
	}
	res, err := k.commitGrant(work, cur, fresh)
	if err != nil {
		return res, fmt.Errorf("login: %w", err)
	}
	k.log.InfoContext(ctx, "connected by password grant", "pair", fresh)
	return res, nil
}

// recordLoginLock writes l into the pair secret (best effort: the lock is VBC's either way,
// the record only spares further attempts).
func (k *Keeper) recordLoginLock(ctx context.Context, l *loginLock) {
	for round := 0; round < maxCommitRounds; round++ {
		cur, err := k.loadCurrent(ctx)
		if err != nil {
			k.log.WarnContext(ctx, "could not record the user lock", "error", err)
			return
		}
		next := cur.Pair.Clone()
		next.loginLock = l
		if _, err = k.commitRetried(ctx, next, cur.Version); !errors.Is(err, ErrConflict) {
			if err != nil {
				k.log.WarnContext(ctx, "could not record the user lock", "error", err)
			}
			return
		}
	}
}

// commitGrant stores the answer to a code or password grant on top of base with
// compare-and-swap, re-reading on conflicts, then updates the access secret:
//   - a refresh token the stored chain has retired (WSO2 handed back a token a refresh
//     rotated meanwhile) is dead: the stored pair stays;
//   - the stored refresh token itself (reuse): its access token is taken, the stored
//     refresh expiry and age stay (WSO2 does not restart the 7 days);
//   - any other token starts the stored chain anew. When its access token has clearly
//     less than 24 hours left, WSO2 reused a token of unknown age: the refresh expiry is
//     set conservatively to the access token's and the policy refreshes at the next run,
//     which restarts a known 7-day window.
func (k *Keeper) commitGrant(ctx context.Context, base Versioned, fresh *Pair) (Result, error) {
	for round := 0; round < maxCommitRounds; round++ {
		var write *Pair
		switch cur := base.Pair; {
		case cur.retires(fresh):
			k.log.InfoContext(ctx, "VBC answered the grant with a token the stored chain has already rotated; the stored, newer pair stays",
				"stored", cur)
			return k.settle(ctx, OutcomeConnected, "", cur, false)
		case cur.SameTokens(fresh):
			return k.settle(ctx, OutcomeConnected, "", cur, false)
		case fresh.RefreshToken == cur.RefreshToken:
			write = cur.Clone()
			write.AccessToken, write.TokenType, write.Scope, write.ExpiresAt = fresh.AccessToken, fresh.TokenType, fresh.Scope, fresh.ExpiresAt
			if !fresh.IDToken.IsZero() {
				write.IDToken = fresh.IDToken
			}
		default:
			write = cur.WithTokens(successor(cur, fresh))
			if reusedGrant(fresh) {
				write.RefreshExpiresAt, write.estimated = fresh.ExpiresAt, true
			}
		}
		write.ConsentNonces = pruneNonces(write.ConsentNonces, k.now())
		if write.loginLock != nil && !k.now().Before(write.loginLock.Until) {
			write.loginLock = nil
		}
		write.selfHeal = nil // an admin connected: self-heal may run again
		_, err := k.commitRetried(ctx, write, base.Version)
		if err == nil {
			return k.settle(ctx, OutcomeConnected, "", write, true)
		}
		if !errors.Is(err, ErrConflict) {
			k.log.ErrorContext(ctx, "could not store the new token pair before the deadline; if the write reached the store, the next run finishes it",
				"error", err, "pair", fresh)
			return Result{}, fmt.Errorf("store new pair: %w", err)
		}
		if base, err = k.loadCurrent(ctx); err != nil {
			k.log.ErrorContext(ctx, "could not re-read the pair after a conflict; the new token pair may be lost",
				"error", err, "pair", fresh)
			return Result{}, fmt.Errorf("re-read after conflict: %w", err)
		}
	}
	return Result{}, fmt.Errorf("store new pair: %w: too many concurrent writers", ErrConflict)
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
	// RefreshingBy and RefreshingUntil name the keeper holding a live refresh lease, if
	// any, and when the lease ends.
	RefreshingBy    string    `json:"refreshing_by,omitempty"`
	RefreshingUntil time.Time `json:"refreshing_until,omitzero"`
	// KeptPairs counts the pairs kept after a lost race, tried before any re-consent.
	KeptPairs int `json:"kept_pairs,omitempty"`
	// SelfHealAt is the last self-heal attempt; SelfHealHalted says VBC rejected its login
	// and self-heal waits for an admin to connect.
	SelfHealAt     time.Time `json:"self_heal_at,omitzero"`
	SelfHealHalted bool      `json:"self_heal_halted,omitempty"`
	// LoginLockedUntil is when a VBC user lock that a login met ends.
	LoginLockedUntil time.Time `json:"login_locked_until,omitzero"`
}

// Status reads the pair and reports its state by the policy.
func (k *Keeper) Status(ctx context.Context) (Status, error) {
	cur, err := k.loadPair(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	now := k.now()
	d := k.cfg.Policy.decide(cur.Pair, now, false)
	st := Status{Connected: !d.Reconsent, Reason: d.Reason, Now: now, KeptPairs: len(cur.Pair.kept)}
	if l := cur.Pair.lease; l.liveFor("", now) {
		st.RefreshingBy, st.RefreshingUntil = l.Holder, l.ExpiresAt
	}
	if h := cur.Pair.selfHeal; h != nil {
		st.SelfHealAt, st.SelfHealHalted = h.At, h.Halted
	}
	if l := cur.Pair.loginLock; l != nil && now.Before(l.Until) {
		st.LoginLockedUntil = l.Until
	}
	if p := cur.Pair; p != nil && !p.RefreshToken.IsZero() {
		st.Grant, st.ObtainedAt, st.AccessExpiresAt, st.RefreshExpiresAt = p.Grant, p.ObtainedAt, p.ExpiresAt, p.RefreshExpiresAt
		if !d.Reconsent {
			st.NextRefresh = k.cfg.Policy.NextRefresh(p)
		}
	}
	return st, nil
}

// spendNonce records the state's nonce in the pair secret before the code is exchanged, so
// a replayed consent link is refused even when two callbacks race.
func (k *Keeper) spendNonce(ctx context.Context, claims stateClaims) (Versioned, error) {
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
		// A replayed link is refused before anything is written, even the clean-up below.
		for _, p := range []*Pair{cur.Pair, cur.Pending} {
			if p == nil {
				continue
			}
			for _, n := range p.ConsentNonces {
				if n.Nonce == claims.Nonce && n.Claim == claim && p == cur.Pair {
					return cur, nil // our own write landed; its answer was lost
				}
				if n.Nonce == claims.Nonce && n.Claim != claim {
					return Versioned{}, ErrStateReused
				}
			}
		}
		if cur.Pending != nil {
			// Finish what an earlier run left pending before writing over it.
			if cur, err = k.loadCurrent(ctx); err != nil {
				return Versioned{}, err
			}
			if slices.ContainsFunc(cur.Pair.ConsentNonces, func(n UsedNonce) bool { return n.Nonce == claims.Nonce }) {
				continue // the pending write held this nonce and is now current: look again
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
	if err == nil && k.inStep(a, p) {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMalformedSecret) {
		return fmt.Errorf("check access secret: %w", err)
	}
	latest, lerr := k.loadPair(ctx)
	if lerr != nil {
		return fmt.Errorf("check access secret: %w", lerr)
	}
	if err == nil && k.inStep(a, latest.Pair) {
		return nil // a concurrent writer stored a newer pair and its access token
	}
	if err == nil && a.AccessToken == latest.Pair.AccessToken {
		k.log.InfoContext(ctx, "the access secret's refresh hint was out of date; rewriting it", "pair", latest.Pair)
	} else {
		k.log.WarnContext(ctx, "the access secret did not hold the stored pair's access token; rewriting it", "pair", latest.Pair)
	}
	return k.putAccessSettled(ctx, latest.Pair)
}

// repairAccess is syncAccess for a run that ends in doubt: the stored pair stays current, so
// its access token is the best one apps can have (a writer that died after committing it may
// have left an older one in the access secret). Its failure is logged, not returned: the
// run's error is the refresh's.
func (k *Keeper) repairAccess(ctx context.Context, p *Pair) {
	if err := k.syncAccess(ctx, p); err != nil {
		k.log.WarnContext(ctx, "could not check the access secret; the next run does", "error", err)
	}
}

// access derives the access secret of p: its access token, and as refresh_at the time the
// policy will next refresh it, until which readers may cache the token.
func (k *Keeper) access(p *Pair) AccessToken {
	a := p.Access()
	if !p.RefreshToken.IsZero() {
		a.RefreshAt = k.cfg.Policy.NextRefresh(p).UTC().Truncate(time.Second)
	}
	return a
}

// inStep reports whether the access secret a is what p derives.
func (k *Keeper) inStep(a AccessToken, p *Pair) bool {
	want := k.access(p)
	return a.AccessToken == want.AccessToken && a.RefreshAt.Equal(want.RefreshAt)
}

// putAccessSettled writes p's access token, then re-reads the pair: writes of the access
// secret are not ordered by compare-and-swap, so when another writer committed a newer pair
// right after ours, our access write may have landed after theirs. Whichever write lands
// last, the re-read makes the access secret end on the newest pair's token (one more read
// per stored pair; found by TestConsentRacesRefresher).
//
// Every write of the access secret is followed by that re-read (the early write of a
// refresh by a check of the access secret after the commit): whichever write lands last,
// its writer then sees the newest pair. A writer that skipped it could leave apps a token
// VBC has already killed.
func (k *Keeper) putAccessSettled(ctx context.Context, p *Pair) error {
	for round := 0; round < maxCommitRounds; round++ {
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
		p = latest.Pair
	}
	return fmt.Errorf("update access secret: %w: too many concurrent writers", ErrConflict)
}

// earlyAccessAttempts bounds the access write made before a refresh's pair commit: with the
// default policy its backoff waits at most 0.6 s, so the pair (the only copy of the live
// refresh token) is never held up for long; the write after the commit retries fully.
const earlyAccessAttempts = 3

// putAccessEarly writes p's access token ahead of its pair's commit, in a few quick attempts,
// and reports whether the write landed.
func (k *Keeper) putAccessEarly(ctx context.Context, p *Pair) bool {
	policy := k.cfg.StoreRetry
	policy.MaxAttempts = earlyAccessAttempts
	_, err := policy.Do(ctx, func(int) (time.Duration, error) { return 0, k.store.PutAccess(ctx, k.access(p)) },
		func(err error) bool { return errors.Is(err, ErrTransient) })
	return err == nil
}

func (k *Keeper) putAccess(ctx context.Context, p *Pair) error {
	_, err := k.retryStore(ctx, func(ctx context.Context) error { return k.store.PutAccess(ctx, k.access(p)) })
	if err != nil {
		k.log.ErrorContext(ctx, "pair stored but the access secret could not be updated; apps may read an older token",
			"error", err)
		return fmt.Errorf("update access secret: %w", err)
	}
	return nil
}

// loadCurrent reads the pair and finishes what an earlier run left pending in the store: a
// write that reached the store but never became current (its process died, or the final
// step failed until its deadline). A pending pair that follows the stored one (it retired
// the stored refresh token), or a newer code or password grant, is made current before any
// refresh token is spent; one the stored chain has moved past is dropped; any other is kept
// beside the stored pair and tried before re-consent. A failed clean-up is left for the next
// run; a failed promotion is an error (spending the stored token would be wrong).
func (k *Keeper) loadCurrent(ctx context.Context) (Versioned, error) {
	cur, err := k.loadPair(ctx)
	if err != nil || cur.Pending == nil {
		return cur, err
	}
	p := cur.Pending
	cur.Pending = nil
	var next *Pair
	promote := false
	switch {
	case p.RefreshToken.IsZero() || p.RefreshToken == cur.Pair.RefreshToken || cur.Pair.retires(p):
		// A bookkeeping write (a lease, a nonce) or a pair the chain has moved past:
		// nothing to finish. The next commit takes the pending label off it.
		return cur, nil
	case p.retires(cur.Pair) || (p.Grant != GrantRefreshToken && p.ObtainedAt.After(cur.Pair.ObtainedAt)):
		next = cur.Pair.WithTokens(p)
		next.lease = nil
		promote = true
	default:
		var changed bool
		if next, changed = cur.Pair.withKept(p, k.now()); !changed {
			return cur, nil
		}
	}
	version, err := k.commitRetried(ctx, next, cur.Version)
	switch {
	case errors.Is(err, ErrConflict):
		return k.loadPair(ctx) // another keeper moved the pair; it saw the same pending write
	case err != nil && promote:
		return Versioned{}, fmt.Errorf("finish a pending pair write: %w", err)
	case err != nil:
		k.log.DebugContext(ctx, "could not keep a pending pair write; the next run tries again", "error", err)
		return cur, nil
	case !promote:
		k.log.WarnContext(ctx, "kept a token pair an earlier run left pending in the store; it is tried before any re-consent", "pending", p)
		return Versioned{Pair: next, Version: version}, nil
	}
	k.log.WarnContext(ctx, "finished storing a token pair an earlier run left pending in the store", "pair", next)
	promoted := Versioned{Pair: next, Version: version}
	return promoted, k.putAccessSettled(ctx, next)
}

// commitRetried is one compare-and-swap write of the pair, retrying transient failures.
func (k *Keeper) commitRetried(ctx context.Context, p *Pair, prev string) (string, error) {
	var version string
	_, err := k.retryStore(ctx, func(ctx context.Context) error {
		var err error
		version, err = k.store.CommitPair(ctx, p, prev)
		return err
	})
	return version, err
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

func (k *Keeper) signer(c Credentials) *stateSigner {
	return newStateSigner(stateKeyFromClientSecret(c.ClientSecret), k.cfg.StateTTL)
}

// clientFor returns the cached credentials and client, loading them on first use.
func (k *Keeper) clientFor(ctx context.Context) (Credentials, tokenClient, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client != nil {
		return k.creds, k.client, nil
	}
	load := k.store.LoadCredentials
	if k.cfg.shared != nil {
		load = k.cfg.shared.load // accounts mode: one read per environment, not per account
	}
	var creds Credentials
	_, err := k.retryStore(ctx, func(ctx context.Context) error {
		var err error
		creds, err = load(ctx)
		return err
	})
	if err != nil {
		return Credentials{}, nil, fmt.Errorf("load credentials: %w", err)
	}
	k.creds, k.client = creds, newClient(k.cfg.Client, creds)
	return k.creds, k.client, nil
}

// reloadClient drops cached credentials and loads them again (after an admin rotated the
// client secret). It reports whether the reloaded credentials differ.
func (k *Keeper) reloadClient(ctx context.Context) (bool, error) {
	k.mu.Lock()
	old := k.creds
	k.client = nil
	k.mu.Unlock()
	if k.cfg.shared != nil {
		k.cfg.shared.forget(old)
	}
	creds, _, err := k.clientFor(ctx)
	if err != nil {
		return false, err
	}
	return creds.ClientID != old.ClientID || creds.ClientSecret != old.ClientSecret, nil
}

// withClient calls the token endpoint through op with a context whose deadline keeps
// StoreReserve back for storing the result. When VBC rejects the client and the
// credentials secret has changed since it was cached, it retries once with the new ones.
func (k *Keeper) withClient(ctx context.Context, op func(context.Context, tokenClient) (*Pair, error)) (*Pair, error) {
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

// withOpDeadline gives an operation without a deadline defaultOpTimeout: leases end with
// their holder's deadline, so every operation must have one.
func withOpDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultOpTimeout)
}

// shield returns a context that keeps ctx's values and deadline but ignores its
// cancellation: once a grant is sent, VBC may issue a pair, and that pair must reach the
// store even when the process is asked to stop (SIGINT, SIGTERM, Lambda shutdown). It ends
// when ctx's deadline passes (ctx ending with DeadlineExceeded counts, so a clock that is
// not the wall clock still bounds it) or when stop is called.
func shield(ctx context.Context) (context.Context, func()) {
	deadline, ok := ctx.Deadline()
	base := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if ok {
		base, cancel = context.WithDeadline(base, deadline)
	} else {
		base, cancel = context.WithCancel(base)
	}
	stopAfter := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	return base, func() { stopAfter(); cancel() }
}
