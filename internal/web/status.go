package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// DefaultStatusRefresh is how often the status page reloads itself, in seconds.
const DefaultStatusRefresh = 3

// StatusView is what the local status page of `vbctoken serve` shows: the keeper's Status
// plus what the built-in scheduler last did. It holds no token.
type StatusView struct {
	Status vbctoken.Status
	// Last is the scheduler's latest refresh that did something (refreshed, superseded or
	// failed); nil before the first one.
	Last *LastRefresh
	// LastCheck is when the scheduler last looked at the pair (keeper clock); zero before
	// its first run.
	LastCheck time.Time
	// Refreshes counts the pairs the scheduler stored since serve started.
	Refreshes int
	// ConnectURL is the target of the Connect button; default "/consent".
	ConnectURL string
	// Mode says in one line what serve talks to, e.g. "local VBC sandbox".
	Mode string
	// Store says where the secrets live, e.g. "files in .vbctoken".
	Store string
	// Location formats times; default UTC.
	Location *time.Location
	// RefreshSeconds is the page's reload interval; default DefaultStatusRefresh.
	RefreshSeconds int
}

// LastRefresh is the outcome of one scheduled refresh.
type LastRefresh struct {
	// At is when it ran, on the keeper's clock.
	At time.Time
	// Result is what the keeper reported.
	Result vbctoken.Result
	// Err is the keeper's error, nil on success. The page shows a short, safe text chosen
	// by its kind, never Err.Error().
	Err error
}

// StatusPage builds the status page of `vbctoken serve`, in the look of the callback
// pages. It reloads itself every few seconds and offers a Connect button while there is
// no live connection.
func StatusPage(v StatusView) Page {
	st := v.Status
	now := st.Now
	if v.ConnectURL == "" {
		v.ConnectURL = "/consent"
	}
	if v.RefreshSeconds <= 0 {
		v.RefreshSeconds = DefaultStatusRefresh
	}
	t := func(at time.Time) string { return fmtTimeAt(at, v.Location) + " · " + unbreakable(Relative(at, now)) }

	p := Page{Status: http.StatusOK, Refresh: v.RefreshSeconds}
	hasPair := !st.RefreshExpiresAt.IsZero()
	// A refresh that VBC rejected after the current pair was stored means the chain is dead
	// even though the stored refresh token has not expired yet.
	chainDead := st.Connected && v.Last != nil && errors.Is(v.Last.Err, vbctoken.ErrReconsentRequired) &&
		!v.Last.At.Before(st.ObtainedAt)
	failedSince := st.Connected && v.Last != nil && v.Last.Err != nil && !v.Last.At.Before(st.ObtainedAt)

	switch {
	case !st.Connected && st.Reason == vbctoken.ReasonRefreshExpired:
		p.Tone, p.Title = ToneBad, "Re-consent needed"
		p.Lead = "The refresh token expired " + unbreakable(Relative(st.RefreshExpiresAt, now)) + ", so the chain is gone. Only a new consent in the browser restores the connection."
		p.LinkURL, p.LinkText = v.ConnectURL, "Connect again"
	case !st.Connected && st.Reason == vbctoken.ReasonRejected:
		p.Tone, p.Title = ToneBad, "Re-consent needed"
		p.Lead = "VBC rejected the stored refresh token, so the chain is gone. Only a new consent in the browser restores the connection."
		p.LinkURL, p.LinkText = v.ConnectURL, "Connect again"
	case !st.Connected:
		p.Tone, p.Title = ToneWarn, "Not connected to VBC yet"
		p.Lead = "No admin has consented yet. Click Connect, approve on the VBC consent page, and this page updates by itself."
		p.LinkURL, p.LinkText = v.ConnectURL, "Connect to VBC"
	case chainDead:
		p.Tone, p.Title = ToneBad, "Re-consent needed"
		p.Lead = "VBC rejected the stored refresh token " + unbreakable(Relative(v.Last.At, now)) + " (revoked, or used by someone else). Only a new consent in the browser restores the connection."
		p.LinkURL, p.LinkText = v.ConnectURL, "Connect again"
	case failedSince:
		p.Tone, p.Title = ToneWarn, "Connected — the last refresh failed"
		p.Lead = refreshProblem(v.Last.Err) + " The current access token is valid until " + fmtTimeAt(st.AccessExpiresAt, v.Location) + "."
	default:
		p.Tone, p.Title = ToneOK, "Connected to VBC"
		p.Lead = "Apps read a valid access token, and the scheduler refreshes the pair before it expires. Nothing to do."
	}
	if p.LinkURL != "" {
		p.Next, p.NextCode = "Or, from a terminal:", "vbctoken consent-url"
	}

	if hasPair {
		p.Facts = append(p.Facts,
			Fact{"Grant", GrantText(st.Grant)},
			Fact{"Obtained", t(st.ObtainedAt)},
			Fact{validUntil("Access token", st.AccessExpiresAt, now), t(st.AccessExpiresAt)},
			Fact{validUntil("Refresh token", st.RefreshExpiresAt, now), t(st.RefreshExpiresAt)},
		)
	}
	if st.Connected && !chainDead && !st.NextRefresh.IsZero() {
		next := t(st.NextRefresh)
		if !st.NextRefresh.After(now) {
			next = "due now, at the scheduler's next run"
		}
		p.Facts = append(p.Facts, Fact{"Next refresh", next})
	}
	if v.Last != nil {
		p.Facts = append(p.Facts, Fact{"Last refresh", v.Last.Summary() + " · " + unbreakable(Relative(v.Last.At, now))})
	}
	if !st.LoginLockedUntil.IsZero() {
		p.Facts = append(p.Facts, Fact{"Password login", "VBC user locked until " + t(st.LoginLockedUntil) + "; every attempt extends the lock by 30 minutes"})
	}
	if !v.LastCheck.IsZero() {
		p.Facts = append(p.Facts, Fact{"Last check", unbreakable(Relative(v.LastCheck, now))})
	}
	p.Facts = append(p.Facts, Fact{"Refreshes since start", strconv.Itoa(v.Refreshes)})
	if v.Mode != "" {
		p.Facts = append(p.Facts, Fact{"Talking to", v.Mode})
	}
	if v.Store != "" {
		p.Facts = append(p.Facts, Fact{"Store", v.Store})
	}
	p.Facts = append(p.Facts, Fact{"Clock", fmtTimeAt(now, v.Location)})
	return p
}

// unbreakable joins the words of a short phrase such as "in 23h 59m" with no-break spaces,
// so a narrow page never splits it across lines.
func unbreakable(s string) string { return strings.ReplaceAll(s, " ", "\u00a0") }

// validUntil labels an expiry: "<what> expires", or "<what> expired" once it passed.
func validUntil(what string, expires, now time.Time) string {
	if !now.Before(expires) {
		return what + " expired"
	}
	return what + " expires"
}

// GrantText explains a grant in a few words.
func GrantText(g vbctoken.Grant) string {
	switch g {
	case vbctoken.GrantAuthorizationCode:
		return "authorization_code (browser consent)"
	case vbctoken.GrantRefreshToken:
		return "refresh_token (refreshed by the keeper)"
	case vbctoken.GrantPassword:
		return "password (password grant login)"
	case "":
		return "unknown"
	}
	return string(g)
}

// Summary says in a few safe words what the refresh did; never Err.Error().
func (l *LastRefresh) Summary() string {
	switch {
	case errors.Is(l.Err, vbctoken.ErrReconsentRequired):
		return "re-consent required"
	case l.Err != nil:
		return "failed: " + refreshProblem(l.Err)
	case l.Result.Outcome == vbctoken.OutcomeRefreshed && l.Result.Reason != "":
		return "refreshed (" + ReasonText(l.Result.Reason) + ")"
	case l.Result.Outcome == vbctoken.OutcomeSuperseded:
		return "another writer refreshed first; its pair is kept"
	}
	return string(l.Result.Outcome)
}

// ReasonText explains a policy reason in a few words.
func ReasonText(r vbctoken.Reason) string {
	switch r {
	case vbctoken.ReasonAccessExpiring:
		return "access token close to expiry"
	case vbctoken.ReasonMaxAge:
		return "pair older than the maximum age"
	case vbctoken.ReasonRefreshWindow:
		return "refresh token close to expiry"
	case vbctoken.ReasonForced:
		return "forced"
	case vbctoken.ReasonFresh:
		return "the pair is fresh"
	case vbctoken.ReasonNotConnected:
		return "no admin has consented yet"
	case vbctoken.ReasonRefreshExpired:
		return "the refresh token expired"
	case vbctoken.ReasonRejected:
		return "VBC rejected the stored refresh token"
	}
	return string(r)
}

// refreshProblem says in one safe sentence why a refresh failed.
func refreshProblem(err error) string {
	switch {
	case errors.Is(err, vbctoken.ErrTransient), errors.Is(err, context.DeadlineExceeded):
		return "VBC or the store did not answer; the scheduler tries again on its next run."
	case errors.Is(err, vbctoken.ErrBadClient):
		return "VBC rejected this app's client credentials; an operator must fix the credentials secret."
	case errors.Is(err, vbctoken.ErrNoCredentials):
		return "The client credentials are not configured."
	}
	return "The refresh failed; the details are in the logs."
}

// Relative says how far t is from now: "in 3h 5m", "2m 10s ago" or "now".
func Relative(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := t.Sub(now)
	switch {
	case d >= time.Second:
		return "in " + HumanDuration(d)
	case d <= -time.Second:
		return HumanDuration(-d) + " ago"
	}
	return "now"
}

// HumanDuration writes d with its two largest units: "6d 23h", "21h 58m", "4m 2s", "12s".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Truncate(time.Second)
	units := []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	for i, u := range units {
		if d < u.size && i < len(units)-1 {
			continue
		}
		out := fmt.Sprintf("%d%s", d/u.size, u.name)
		if i+1 < len(units) {
			out += fmt.Sprintf(" %d%s", (d%u.size)/units[i+1].size, units[i+1].name)
		}
		return out
	}
	return "0s"
}

func fmtTimeAt(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "unknown"
	}
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format("2 Jan 2006, 15:04:05 MST")
}

// StoreErrorPage is the status page of `vbctoken serve` when the store cannot be read, with
// what to do about it. resetCommand (such as "vbctoken reset --store .vbctoken") sets a
// damaged pair aside, keeping a copy; it is "" where there is no such command (Secrets
// Manager: restore the previous version as the README's runbook says). err's text never
// reaches the page. The page reloads itself, so it turns into the status page once the
// store is readable again.
func StoreErrorPage(err error, resetCommand string) Page {
	p := Page{Status: http.StatusServiceUnavailable, Tone: ToneBad, Refresh: DefaultStatusRefresh}
	switch {
	case errors.Is(err, vbctoken.ErrNewerSchema):
		p.Title = "A newer vbctoken wrote the stored pair"
		p.Lead = "This vbctoken does not know the stored pair's schema version and will not overwrite it. Upgrade vbctoken and start it again."
	case errors.Is(err, vbctoken.ErrMalformedSecret):
		p.Title = "The stored token pair is damaged"
		p.Lead = "vbctoken cannot read the stored pair, so apps get no new token and the scheduler cannot refresh."
		if resetCommand != "" {
			p.Next, p.NextCode = "Set it aside (a copy is kept) and connect again:", resetCommand
		} else {
			p.Next = "Restore the previous version of the pair secret (AWSPREVIOUS), as the README's runbook describes, or consent again."
		}
	default:
		p.Title = "Cannot read the stored pair"
		p.Lead = "vbctoken could not read its store. The details are in the logs; this page retries by itself."
	}
	return p
}
