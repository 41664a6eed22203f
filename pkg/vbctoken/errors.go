package vbctoken

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrReconsentRequired means the refresh chain is gone (no pair stored, the refresh token
	// expired, or VBC answered invalid_grant to it): an admin must consent in the browser again.
	ErrReconsentRequired = errors.New("re-consent required")
	// ErrBadClient means VBC rejected the client credentials (invalid_client).
	ErrBadClient = errors.New("client credentials rejected")
	// ErrInvalidGrant means VBC rejected a code, password or refresh token (invalid_grant).
	ErrInvalidGrant = errors.New("grant rejected")
	// ErrTransient marks a failure worth retrying later: 5xx, 429, timeouts, HTML error pages,
	// throttled or unavailable AWS calls.
	ErrTransient = errors.New("transient failure")
	// ErrOutcomeUnknown marks a token request that may have reached VBC although no usable
	// answer came back (a timeout, a 5xx, a body cut short): VBC may have acted on it. Such
	// errors also match ErrTransient. An authorization code or password is never sent again
	// after one; for a refresh it means the chain is in doubt, not gone.
	ErrOutcomeUnknown = errors.New("outcome unknown: VBC may have acted on the request")
	// ErrMalformedResponse means the token endpoint answered 200 with a body that is not a
	// usable token response (bad JSON, no access_token, bad expires_in).
	ErrMalformedResponse = errors.New("malformed token response")
	// ErrUpstreamRejected means the token endpoint refused the request for a reason other
	// than the grant or the client (another 4xx, e.g. invalid_request or unsupported_grant_type,
	// or a redirect): permanent, retrying the same request will not help.
	ErrUpstreamRejected = errors.New("token request rejected")
	// ErrConflict means a compare-and-swap write lost: the stored version is not the one read.
	ErrConflict = errors.New("stored version changed")
	// ErrNotFound means a secret or file does not exist or holds no value yet.
	ErrNotFound = errors.New("not found")
	// ErrNoCredentials means the client credentials secret is missing or incomplete.
	ErrNoCredentials = errors.New("client credentials not configured")
	// ErrMalformedSecret means a stored value is not valid JSON of the expected shape.
	ErrMalformedSecret = errors.New("malformed stored value")
	// ErrNewerSchema means a stored value has a schema version this build does not know;
	// it is refused, never overwritten.
	ErrNewerSchema = errors.New("stored value has a newer schema version")
	// ErrBadInput means a caller passed an unusable argument (empty code, bad username).
	ErrBadInput = errors.New("bad input")
	// ErrAccountLocked means VBC has locked the user of a password grant after failed
	// attempts (WSO2 error 17003), or a lock the keeper recorded has not ended yet. Errors
	// matching it are a *LockedError.
	ErrAccountLocked = errors.New("VBC user locked")
)

// AccountLockout is how long VBC keeps a user locked, counted from the last attempt: every
// attempt during a lock, right password or not, starts it again.
const AccountLockout = 30 * time.Minute

// LockedError reports a VBC user locked after failed password attempts. It matches
// ErrAccountLocked.
type LockedError struct {
	User  string    // USER@vbc.prod
	Until time.Time // when the lock ends if nobody tries again
	// Known says the lock was recorded by an earlier attempt and nothing was sent now.
	Known bool
	Err   error // VBC's answer (nil when Known)
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("VBC has locked user %s after failed password attempts; it unlocks at %s if nobody tries before (every attempt during the lock extends it by %s)",
		e.User, e.Until.UTC().Format(time.RFC3339), AccountLockout)
	if e.Known {
		msg += "; nothing was sent"
	}
	return msg
}

// Unwrap exposes VBC's answer.
func (e *LockedError) Unwrap() error { return e.Err }

// Is matches ErrAccountLocked.
func (e *LockedError) Is(target error) bool { return target == ErrAccountLocked }

// UpstreamError describes a failed call to the VBC token endpoint without any secret in it.
// It matches ErrTransient, ErrBadClient, ErrInvalidGrant, ErrMalformedResponse or
// ErrUpstreamRejected through Is, as its Kind says, and ErrOutcomeUnknown when an attempt
// may have reached VBC without a usable answer.
type UpstreamError struct {
	Op         string // "exchange", "refresh", "password"
	StatusCode int    // HTTP status, 0 when no response arrived
	Code       string // OAuth error code (invalid_grant, …) when the body carried one
	Kind       error  // one of the sentinels above
	Attempts   int    // how many requests were made
	// Locked says VBC answered that the user is locked (an error_description starting
	// with WSO2's 17003); such an error also matches ErrAccountLocked.
	Locked bool
	// Unknown says this attempt, or an earlier one of the same call, may have reached VBC
	// without a usable answer: an invalid_grant after it may mean VBC rotated the token
	// and the answer was lost in transit.
	Unknown bool
	Err     error // the underlying cause; never holds a secret

	// salvage is a pair rescued from a 200 that was otherwise unusable (a rotated refresh
	// token without a usable access token): the keeper stores it rather than lose the chain.
	salvage *Pair
}

func (e *UpstreamError) Error() string {
	msg := fmt.Sprintf("vbc %s: %v", e.Op, e.Kind)
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(" (HTTP %d", e.StatusCode)
		if e.Code != "" {
			msg += " " + e.Code
		}
		msg += ")"
	} else if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Attempts > 1 {
		msg += fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	if e.Unknown && e.Kind == ErrTransient {
		msg += "; VBC may have acted on it"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes the cause.
func (e *UpstreamError) Unwrap() error { return e.Err }

// Is matches the error's Kind, and ErrOutcomeUnknown for a transient failure that may have
// reached VBC.
func (e *UpstreamError) Is(target error) bool {
	return target == e.Kind || target == ErrOutcomeUnknown && e.Unknown && e.Kind == ErrTransient ||
		target == ErrAccountLocked && e.Locked
}

// SchemaError reports a stored value written by a newer vbctoken. It matches ErrNewerSchema.
type SchemaError struct {
	What    string // "pair" or "access token"
	Version int
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s has schema version %d; this build knows %d: upgrade vbctoken, nothing was overwritten", e.What, e.Version, SchemaVersion)
}

// Is matches ErrNewerSchema.
func (e *SchemaError) Is(target error) bool { return target == ErrNewerSchema }
