package vbctoken

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"time"
)

// The chain's bookkeeping in the pair secret (docs/design.md "The pair secret"): the lease
// that lets one keeper at a time spend the refresh token, the hashes of refresh tokens the
// chain has retired, and the pairs VBC issued that lost a race. docs/chain-safety.md says
// why each exists.

const (
	// leaseSkew is how much longer than its stated expiry another keeper respects a lease:
	// keepers' clocks differ a little, and a holder's last write may land just after its
	// deadline.
	leaseSkew = 10 * time.Second
	// defaultOpTimeout bounds an operation whose context has no deadline: a lease must end.
	defaultOpTimeout = 2 * time.Minute
	// maxRetired bounds the retired-token hashes kept in the pair secret.
	maxRetired = 16
	// maxKept bounds the kept pairs.
	maxKept = 4
	// accessLifetime is the access token lifetime VBC documents. A code or password grant
	// answered with clearly less is WSO2 handing back an active token (reuse), whose refresh
	// token may be days old.
	accessLifetime = 24 * time.Hour
	// reuseTolerance is how far below accessLifetime a fresh grant's expires_in may be
	// (network time, rounding) before it counts as reused.
	reuseTolerance = 10 * time.Minute
)

// lease is a keeper's claim on the stored refresh token: until ExpiresAt (no later than the
// holder's own deadline) only Holder may spend it.
type lease struct {
	Holder    string
	ExpiresAt time.Time
}

// loginLock is a VBC user locked after failed password attempts, until Until.
type loginLock struct {
	User  string
	Until time.Time
}

// liveFor reports whether the lease still binds a keeper other than holder at now.
func (l *lease) liveFor(holder string, now time.Time) bool {
	return l != nil && l.Holder != holder && now.Before(l.ExpiresAt.Add(leaseSkew))
}

// tokenHash is the short, one-way name of a refresh token kept in "retired": enough to
// recognise the token, useless to spend it.
func tokenHash(t Secret) string {
	sum := sha256.Sum256([]byte("vbctoken refresh token\x00" + t.Reveal()))
	return hex.EncodeToString(sum[:8])
}

// retires reports whether p's chain has spent or replaced q's refresh token: while p is
// live, q is dead.
func (p *Pair) retires(q *Pair) bool {
	return p != nil && q != nil && !q.RefreshToken.IsZero() && p.RefreshToken != q.RefreshToken &&
		slices.Contains(p.retired, tokenHash(q.RefreshToken))
}

// siblingOf reports whether p and q were both issued for the same refresh token (a
// refresh answered twice): at VBC at most one of them is alive.
func (p *Pair) siblingOf(q *Pair) bool {
	return p != nil && q != nil && p.RefreshToken != q.RefreshToken &&
		len(p.retired) > 0 && len(q.retired) > 0 && p.retired[0] == q.retired[0]
}

// childOf reports whether p was issued for q's refresh token.
func (p *Pair) childOf(q *Pair) bool {
	return p != nil && q != nil && !q.RefreshToken.IsZero() && len(p.retired) > 0 &&
		p.retired[0] == tokenHash(q.RefreshToken)
}

// related reports whether other belongs to the same turn of the chain as p: a sibling or
// a child of p. Once VBC accepted one of them, the others are dead (VBC keeps one active
// token per client, user and scope).
func (p *Pair) related(other *Pair) bool {
	return other.siblingOf(p) || other.childOf(p)
}

// inDoubt reports whether p keeps a sibling or a child of itself, or a refresh with its
// token got no usable answer: which pair VBC accepts, or whether it rotated p's token, is
// unknown until the next refresh, so the policy refreshes at once.
func (p *Pair) inDoubt() bool {
	if p.awaitsAnswer() {
		return true
	}
	for _, k := range p.kept {
		if p.related(k) {
			return true
		}
	}
	return false
}

// successor returns fresh as the next pair of base's chain: it retires base's refresh token
// (unless fresh carries the same one) on top of base's retired list. The lease and kept
// pairs are not carried over.
func successor(base, fresh *Pair) *Pair {
	out := fresh.Clone()
	out.lease, out.kept = nil, nil
	retired := slices.Clone(base.retired)
	if !base.RefreshToken.IsZero() && base.RefreshToken != fresh.RefreshToken {
		retired = append([]string{tokenHash(base.RefreshToken)}, retired...)
	}
	out.retired = compactRetired(append(retired, fresh.retired...), fresh.RefreshToken)
	return out
}

// compactRetired drops duplicates and the live token's own hash, newest first, bounded.
func compactRetired(in []string, live Secret) []string {
	own := ""
	if !live.IsZero() {
		own = tokenHash(live)
	}
	out := make([]string, 0, len(in))
	for _, h := range in {
		if h != own && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	if len(out) > maxRetired {
		out = out[:maxRetired]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// withKept returns a copy of p that also keeps k, unless k is p's own token, retired by
// p, already kept, or past its refresh expiry at now. It reports whether anything changed
// (expired kept pairs are dropped too). At most maxKept pairs stay, newest first.
func (p *Pair) withKept(k *Pair, now time.Time) (*Pair, bool) {
	out := p.Clone()
	changed := false
	live := out.kept[:0]
	for _, c := range out.kept {
		if !now.Before(c.latestRefreshExpiry()) || out.retires(c) || c.RefreshToken == out.RefreshToken {
			changed = true
			continue
		}
		live = append(live, c)
	}
	out.kept = live
	if k != nil && !k.RefreshToken.IsZero() && k.RefreshToken != out.RefreshToken && !out.retires(k) &&
		!slices.ContainsFunc(out.kept, func(c *Pair) bool { return c.RefreshToken == k.RefreshToken }) {
		c := k.Clone()
		c.lease, c.kept = nil, nil
		out.kept = append(out.kept, c)
		changed = true
	}
	sort.SliceStable(out.kept, func(i, j int) bool { return out.kept[i].ObtainedAt.After(out.kept[j].ObtainedAt) })
	if len(out.kept) > maxKept {
		out.kept = out.kept[:maxKept]
	}
	if len(out.kept) == 0 {
		out.kept = nil
	}
	return out, changed
}

// latestRefreshExpiry is the latest time p's refresh token can still work: its expiry, or
// for an estimated one the full lifetime from receipt.
func (p *Pair) latestRefreshExpiry() time.Time {
	if p.estimated {
		return p.ObtainedAt.Add(RefreshTokenLifetime)
	}
	return p.RefreshExpiresAt
}

// deadByRecord reports whether VBC already rejected p's refresh token under a keeper's lease
// and p keeps nothing else to try.
func (p *Pair) deadByRecord() bool {
	return !p.RefreshToken.IsZero() && p.rejected == tokenHash(p.RefreshToken) && len(p.kept) == 0
}

// awaitsAnswer reports whether a refresh with p's refresh token got no usable answer.
func (p *Pair) awaitsAnswer() bool {
	return !p.RefreshToken.IsZero() && p.unanswered == tokenHash(p.RefreshToken)
}

// rejectedCopy returns a copy of p recording that VBC rejected its refresh token and every
// kept one (which it drops): deadByRecord holds for it.
func (p *Pair) rejectedCopy() *Pair {
	dead := p.Clone()
	dead.kept = nil
	if !dead.RefreshToken.IsZero() {
		dead.rejected = tokenHash(dead.RefreshToken)
	}
	return dead
}

// reusedGrant reports whether a code or password grant's answer looks like WSO2 handing
// back an active token: an access token with clearly less than VBC's 24 hours left.
func reusedGrant(p *Pair) bool {
	return p.Grant != GrantRefreshToken && p.ExpiresAt.Sub(p.ObtainedAt) < accessLifetime-reuseTolerance
}
