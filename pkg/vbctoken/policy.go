package vbctoken

import (
	"fmt"
	"time"

	"github.com/vbctoken/vbctoken/internal/contract"
)

// Policy decides when the keeper refreshes.
type Policy struct {
	// Margin: refresh when the access token has less than this left.
	Margin time.Duration
	// MaxAge: refresh when the pair is older than this, which keeps the 7-day refresh window
	// far away even if access tokens were long-lived.
	MaxAge time.Duration
}

// DefaultPolicy refreshes when the access token has less than 2 hours left or the pair is
// a day old (docs/design.md "Configuration").
func DefaultPolicy() Policy {
	return Policy{Margin: contract.DefaultRefreshMargin, MaxAge: contract.DefaultRefreshMaxAge}
}

// Validate rejects settings that would refresh never or on every run.
func (p Policy) Validate() error {
	if p.Margin < 0 || p.Margin >= 24*time.Hour {
		return fmt.Errorf("%w: refresh margin %s must be in [0, 24h)", ErrBadInput, p.Margin)
	}
	if p.MaxAge <= 0 || p.MaxAge >= RefreshTokenLifetime {
		return fmt.Errorf("%w: refresh max age %s must be in (0, 168h)", ErrBadInput, p.MaxAge)
	}
	return nil
}

// Reason says why a decision was taken.
type Reason string

// The reasons Decide gives.
const (
	ReasonNotConnected   Reason = "not_connected"    // nothing stored: consent needed
	ReasonRefreshExpired Reason = "refresh_expired"  // the 7-day window has passed: consent needed
	ReasonAccessExpiring Reason = "access_expiring"  // access token inside the margin
	ReasonMaxAge         Reason = "max_age"          // pair older than MaxAge
	ReasonRefreshWindow  Reason = "refresh_expiring" // refresh token inside the margin of its end
	ReasonForced         Reason = "forced"           // the operator asked
	ReasonFresh          Reason = "fresh"            // nothing to do
	// ReasonUnknownWindow: a re-grant handed back a refresh token of unknown age; one
	// refresh restarts a known 7-day window.
	ReasonUnknownWindow Reason = "unknown_window"
	// ReasonAmbiguous: a pair beside the stored one may be the live one (a refresh
	// answered twice, or an answer only partly usable); the next refresh tells.
	ReasonAmbiguous Reason = "ambiguous"
	// ReasonRejected: VBC rejected the stored refresh token (recorded under a keeper's
	// lease): consent needed.
	ReasonRejected Reason = "rejected"
	// ReasonLeased: another keeper holds the refresh lease (a Refresh result, not a
	// decision of Decide).
	ReasonLeased Reason = "leased"
)

// decision is the outcome of Decide.
type decision struct {
	Refresh   bool   // call the token endpoint now
	Reconsent bool   // the chain is gone: only an admin consent helps
	Reason    Reason // why
}

// decide says what to do with pair at now. It is pure: same inputs, same answer.
func (p Policy) decide(pair *Pair, now time.Time, force bool) decision {
	switch {
	case pair == nil || pair.RefreshToken.IsZero():
		return decision{Reconsent: true, Reason: ReasonNotConnected}
	case pair.deadByRecord():
		return decision{Reconsent: true, Reason: ReasonRejected}
	case !now.Before(pair.latestRefreshExpiry()):
		return decision{Reconsent: true, Reason: ReasonRefreshExpired}
	case force:
		return decision{Refresh: true, Reason: ReasonForced}
	case pair.inDoubt() || pair.lease != nil && !pair.lease.liveFor("", now):
		// A lease left behind ended without a result: its holder died or lost the store
		// after it may have spent the token.
		return decision{Refresh: true, Reason: ReasonAmbiguous}
	case pair.estimated:
		return decision{Refresh: true, Reason: ReasonUnknownWindow}
	case pair.ExpiresAt.Sub(now) <= p.Margin:
		return decision{Refresh: true, Reason: ReasonAccessExpiring}
	case now.Sub(pair.ObtainedAt) >= p.MaxAge:
		return decision{Refresh: true, Reason: ReasonMaxAge}
	case pair.RefreshExpiresAt.Sub(now) <= p.Margin:
		return decision{Refresh: true, Reason: ReasonRefreshWindow}
	}
	return decision{Reason: ReasonFresh}
}

// NextRefresh is the earliest time a rule of the policy fires for pair: decide refreshes at
// it and after it, so a scheduled refresher acts on its first run at or after it. A pair
// in doubt or of unknown window is due at once, and one under a lease when the lease ends.
func (p Policy) NextRefresh(pair *Pair) time.Time {
	if pair.inDoubt() || pair.estimated {
		return pair.ObtainedAt
	}
	next := pair.ExpiresAt.Add(-p.Margin)
	if t := pair.ObtainedAt.Add(p.MaxAge); t.Before(next) {
		next = t
	}
	if t := pair.RefreshExpiresAt.Add(-p.Margin); t.Before(next) {
		next = t
	}
	if l := pair.lease; l != nil && l.ExpiresAt.Add(leaseSkew).Before(next) {
		next = l.ExpiresAt.Add(leaseSkew)
	}
	return next
}
