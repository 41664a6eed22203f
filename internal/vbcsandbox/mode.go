package vbcsandbox

import (
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Mode selects a whole behaviour of the token server at once. The boolean knobs of Options
// refine ModeLenient and ModeStrict; ModeWSO2 fixes them (see New).
type Mode int

// Modes.
const (
	// ModeLenient is the zero value and the sandbox's historic default: where VBC's
	// behaviour was unknown it takes the lenient choice (older chains and older access
	// tokens live until they expire, a replayed code revokes nothing), each refined by the
	// Options knobs.
	ModeLenient Mode = iota
	// ModeStrict is ModeLenient with RevokeOnConsent and RefreshRevokesAccess turned on:
	// a consent revokes the client's older chains, a refresh kills older access tokens.
	ModeStrict
	// ModeWSO2 behaves like VBC's real token server, WSO2 API Manager with the WSO2
	// Identity Server key manager: see the package documentation for its rules.
	ModeWSO2
)

var modeNames = [...]string{ModeLenient: "lenient", ModeStrict: "strict", ModeWSO2: "wso2"}

// String returns the mode's name as ParseMode reads it.
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode reads a mode name: "lenient", "strict" or "wso2".
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if s == name {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("vbcsandbox: unknown mode %q: want lenient, strict or wso2", s)
}

// RaceOutcome is how WSO2 answers the losing request of a refresh race: a refresh grant
// presenting a refresh token another request consumed within Options.ClusterLag (or that
// is still being answered). Inside one WSO2 node the loser waits and gets invalid_grant;
// across the nodes of a cluster it can also hit a database constraint (500) or succeed
// (product-is #5081, #18890, #24206).
type RaceOutcome int

// Race outcomes.
const (
	// RaceInvalidGrant answers the loser 400 invalid_grant, as one WSO2 node does.
	RaceInvalidGrant RaceOutcome = iota
	// RaceServerError answers the loser 500 server_error "Server Error"; nothing changes.
	RaceServerError
	// RaceBothSucceed answers the loser 200 with another new pair, and issuing it
	// expires the pair the chain held until then: typically the pair the winner's answer
	// carried, which is dead on arrival.
	RaceBothSucceed
)

var raceNames = [...]string{RaceInvalidGrant: "invalid_grant", RaceServerError: "server_error", RaceBothSucceed: "both_succeed"}

// String returns the outcome's name.
func (o RaceOutcome) String() string {
	if o >= 0 && int(o) < len(raceNames) {
		return raceNames[o]
	}
	return "RaceOutcome(" + strconv.Itoa(int(o)) + ")"
}

// MarshalText encodes the outcome by name, so Stats.Races reads well as JSON.
func (o RaceOutcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// RaceFunc decides how one refresh race ends; r is the losing request. It is called with
// the sandbox locked: it must not block or call the Sandbox's methods. It may be called
// concurrently from different sandboxes, never concurrently for one sandbox.
type RaceFunc func(r *http.Request) RaceOutcome

// FixedRace returns a RaceFunc that always answers o.
func FixedRace(o RaceOutcome) RaceFunc {
	return func(*http.Request) RaceOutcome { return o }
}

// RandomRace returns a RaceFunc that draws each outcome uniformly from a source seeded
// with seed: the same seed and the same sequence of races give the same outcomes. It is
// safe for concurrent use.
func RandomRace(seed uint64) RaceFunc {
	var mu sync.Mutex
	rng := mrand.New(mrand.NewPCG(seed, 0x7ace))
	return func(*http.Request) RaceOutcome {
		mu.Lock()
		defer mu.Unlock()
		return RaceOutcome(rng.IntN(len(raceNames)))
	}
}

// Defaults of the ModeWSO2 options.
const (
	// DefaultClusterLag is how long after a refresh consumed a token a second refresh of
	// the same token still counts as a race: the time a WSO2 cluster's nodes and caches
	// take to agree that the token is gone.
	DefaultClusterLag = 2 * time.Second
	// DefaultLockAfter is how many failed password attempts in a row lock a user. WSO2's
	// own default is 5; integrators report VBC locking after "a few", and 3 is the
	// strictest plausible value, so code that survives the sandbox survives VBC.
	DefaultLockAfter = 3
	// DefaultLockFor is how long a lock lasts after the last attempt, as reported of VBC.
	DefaultLockFor = 30 * time.Minute
)

// Kill says why an issued pair stopped working before its expiry, other than by a normal
// refresh of its own refresh token (that is IssuedPair.Replaces of the next pair).
type Kill string

// Kill causes.
const (
	// KillNone: the pair is live, expired, or was replaced by a normal refresh.
	KillNone Kill = ""
	// KillRace: a racing refresh (RaceBothSucceed) issued another pair, which expired
	// this one. IssuedPair.KilledBy names that pair.
	KillRace Kill = "race"
	// KillCodeReplay: the authorization code this pair was issued (or handed out again)
	// for was redeemed again (ModeWSO2, or Options.RevokeOnCodeReuse).
	KillCodeReplay Kill = "code_replay"
	// KillRevoked: Sandbox.Revoke or POST /revoke.
	KillRevoked Kill = "revoked"
	// KillConsent: a later consent revoked the chain (Options.RevokeOnConsent).
	// IssuedPair.KilledBy names the consent's pair.
	KillConsent Kill = "consent"
)
