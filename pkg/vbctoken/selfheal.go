package vbctoken

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// LoginSource supplies the VBC user and password of an opt-in self-heal: the keeper runs
// the password grant with them, at most once per SelfHealInterval, when the refresh chain is
// provably lost (docs/chain-safety.md "Self-heal"). Stores that keep a login secret
// implement it.
type LoginSource interface {
	LoadLogin(ctx context.Context) (username string, password Secret, err error)
}

// SelfHealInterval is the least time between two self-heal attempts: VBC's lock-out
// window, so that a wrong password can never keep the user locked.
const SelfHealInterval = AccountLockout

// selfHeal is the self-heal record in the pair secret ("self_heal").
type selfHeal struct {
	At     time.Time // the last attempt
	Halted bool      // VBC rejected the login: no keeper tries again until an admin connects
}

// selfHealDue reports whether a run may try self-heal on p: configured, not halted, and not
// tried within SelfHealInterval.
func (k *Keeper) selfHealDue(p *Pair) bool {
	if k.cfg.SelfHeal == nil {
		return false
	}
	h := p.selfHeal
	return h == nil || !h.Halted && !k.now().Before(h.At.Add(SelfHealInterval))
}

// ReasonSelfHealed: the chain was lost and the keeper restored it with the password grant.
const ReasonSelfHealed Reason = "self_healed"

// trySelfHeal runs the password grant once, under the lease held in leased, when self-heal
// is configured, not halted and not tried within SelfHealInterval. handled reports whether
// it decided the outcome; otherwise the caller declares re-consent, releasing the lease on
// the pair it returns.
//
// With WSO2's token reuse the grant hands back the active token of the user: the very pair
// whose answer was lost in transit, if the chain was the same user's. A rejection (wrong
// password, locked user, bad client) halts self-heal until an admin connects; a failure
// whose outcome is unknown leaves the chain in doubt until the next attempt.
func (k *Keeper) trySelfHeal(ctx context.Context, leased Versioned, reason Reason) (res Result, handled bool, latest Versioned, err error) {
	src := k.cfg.SelfHeal
	if src == nil {
		return Result{}, false, leased, nil
	}
	stored := leased.Pair
	switch {
	case stored.selfHeal != nil && stored.selfHeal.Halted:
		k.log.ErrorContext(ctx, "self-heal is halted since VBC rejected its login: fix the self-heal secret, then run `vbctoken login` or consent again")
		return Result{}, false, leased, nil
	case !k.selfHealDue(stored):
		k.release(ctx, leased)
		res, err := k.selfHealWaits(ctx, reason, stored)
		return res, true, leased, err
	}
	var user string
	var password Secret
	policy := k.cfg.StoreRetry
	policy.MaxAttempts = claimAttempts // nothing is spent: leave time to record the rejection
	_, err = policy.Do(ctx, func(int) (time.Duration, error) {
		var err error
		user, password, err = src.LoadLogin(ctx)
		return 0, err
	}, func(err error) bool { return errors.Is(err, ErrTransient) })
	switch {
	case errors.Is(err, ErrTransient):
		// The login could not be read this time: the chain is in doubt, not gone. The
		// rejection is recorded, so the next run tries again however fresh the pair looks.
		k.release(ctx, Versioned{Pair: stored.rejectedCopy(), Version: leased.Version})
		k.log.WarnContext(ctx, "self-heal: could not read its login; the chain is in doubt until the next run", "error", err)
		return resultOf(OutcomeInDoubt, reason, stored), true, leased, fmt.Errorf("self-heal: read the login: %w", err)
	case err != nil:
		k.log.ErrorContext(ctx, "self-heal: could not read its login", "error", err)
		return Result{}, false, leased, nil
	}
	// Record the attempt before it is made: a keeper that dies now still counts as having
	// tried, so no run sends the password again within the interval. The record also marks
	// the stored refresh token rejected (VBC rejected it and every kept one): until a pair
	// is stored, every run is due, and the first one after the interval tries again, however
	// fresh the dead pair's times look.
	marked := stored.rejectedCopy()
	marked.selfHeal = &selfHeal{At: k.now().UTC().Truncate(time.Second)}
	var version string
	version, err = k.commitRetried(ctx, marked, leased.Version)
	if err != nil {
		return resultOf(OutcomeInDoubt, reason, stored), true, leased, fmt.Errorf("self-heal: record the attempt: %w", err)
	}
	leased = Versioned{Pair: marked, Version: version}

	fresh, err := k.withClient(ctx, func(tokenCtx context.Context, c tokenClient) (*Pair, error) {
		return c.Password(tokenCtx, user, password)
	})
	switch {
	case err == nil:
		next := successor(marked, fresh)
		if reusedGrant(fresh) && fresh.RefreshToken != marked.RefreshToken {
			next.RefreshExpiresAt, next.estimated = fresh.ExpiresAt, true
		}
		next.selfHeal = nil
		k.log.WarnContext(ctx, "the refresh chain was lost and self-heal restored it with the password grant", "pair", fresh)
		res, err := k.commitRefresh(ctx, leased, next, ReasonSelfHealed)
		if err == nil && res.Outcome == OutcomeRefreshed {
			res.Outcome = OutcomeConnected
		}
		return res, true, leased, err
	case !errors.Is(err, ErrInvalidGrant) && !errors.Is(err, ErrBadClient) && !errors.Is(err, ErrAccountLocked):
		// No usable answer (a timeout, a 5xx, a malformed 200 that may carry a pair VBC
		// issued): in doubt until the next attempt. Only VBC rejecting the login halts.
		k.release(ctx, leased)
		k.log.WarnContext(ctx, "self-heal: the password grant got no usable answer; the chain is in doubt until the next attempt", "error", err)
		return resultOf(OutcomeInDoubt, reason, stored), true, leased, fmt.Errorf("self-heal: %w", err)
	}
	halted := marked.Clone()
	halted.selfHeal.Halted = true
	if v, herr := k.commitRetried(ctx, halted, leased.Version); herr != nil {
		k.log.WarnContext(ctx, "self-heal: could not record the halt", "error", herr)
	} else {
		leased = Versioned{Pair: halted, Version: v}
	}
	k.log.ErrorContext(ctx, "self-heal halted: VBC rejected its login; fix the self-heal secret, then run `vbctoken login` or consent again", "error", err)
	return Result{}, false, leased, nil
}

// selfHealPending reports whether p's chain is lost and waits for its next self-heal
// attempt: VBC rejected its refresh token, self-heal is configured and not halted, and the
// last attempt (whose outcome is unknown) was within SelfHealInterval.
func (k *Keeper) selfHealPending(p *Pair) bool {
	h := p.selfHeal
	return k.cfg.SelfHeal != nil && h != nil && !h.Halted && p.deadByRecord() && k.now().Before(h.At.Add(SelfHealInterval))
}

// selfHealWaits is the outcome of a run while self-heal waits for its next attempt: the
// chain is in doubt (the last attempt may have been answered with the very pair that was
// lost), not gone.
func (k *Keeper) selfHealWaits(ctx context.Context, reason Reason, stored *Pair) (Result, error) {
	next := stored.selfHeal.At.Add(SelfHealInterval)
	k.log.WarnContext(ctx, "self-heal tried recently; the next attempt is due then", "next_attempt", next)
	return resultOf(OutcomeInDoubt, reason, stored), fmt.Errorf("chain lost; %w: self-heal waits until %s",
		ErrTransient, next.UTC().Format(time.RFC3339))
}
