package vbctoken

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultStateTTL is how long a consent link stays valid (docs/design.md "Consent state").
const DefaultStateTTL = 15 * time.Minute

// maxStateLen is the longest state Verify decodes; longer input is refused unread.
const maxStateLen = 256

// stateKeyLabel separates the consent-state key from every other use of the client secret.
const stateKeyLabel = "vbctoken/consent-state/v1"

// minStateKeyLen is the shortest key a stateSigner accepts (128 bits).
const minStateKeyLen = 16

// Wire layout of a state, before base64url (no padding):
//
//	version 1 (1) | nonce (16) | expiry, unix seconds, big-endian (8) | HMAC-SHA256 of the preceding (32)
//	version 2 (1) | nonce (16) | expiry (8) | account length (1) | account | HMAC-SHA256 of the preceding (32)
//
// Version 1 is a single-account deployment's link; version 2 binds the link to an account
// (accounts mode), so the callback never takes the account from an unsigned parameter.
const (
	stateVersion        = 1
	stateVersionAccount = 2
	stateNonceLen       = 16
	stateBodyLen        = 1 + stateNonceLen + 8
	stateLen            = stateBodyLen + sha256.Size
)

// ErrBadState matches every consent-state failure: malformed, tampered, expired or reused.
// The callback answers all of them alike; the specific errors below say which for the log.
var ErrBadState = errors.New("bad consent state")

// The specific consent-state failures. Each also matches ErrBadState through errors.Is.
var (
	// errStateMalformed: empty, too long, not base64url, wrong length or unknown version.
	errStateMalformed error = &stateError{"consent state malformed"}
	// errStateTampered: the signature does not match (altered, or minted with another key).
	errStateTampered error = &stateError{"consent state signature invalid"}
	// ErrStateExpired: the signature is good but the link's time is up.
	ErrStateExpired error = &stateError{"consent state expired"}
	// ErrStateReused: the nonce was already spent. The keeper returns it: only it knows
	// which nonces the stored pair remembers (Pair.ConsentNonces).
	ErrStateReused error = &stateError{"consent state already used"}
)

// stateError is a consent-state failure that also matches ErrBadState.
type stateError struct{ msg string }

func (e *stateError) Error() string { return e.msg }

// Is matches ErrBadState.
func (e *stateError) Is(target error) bool { return target == ErrBadState }

// stateClaims is what a verified state carries.
type stateClaims struct {
	Nonce     string    // base64url of 16 random bytes; the replay key
	ExpiresAt time.Time // end of the link's validity, whole seconds, UTC
	Account   string    // the account the link is for; "" in a single-account deployment
}

// stateSigner mints and verifies the signed consent state of docs/design.md "Consent state": a random nonce and
// an expiry under an HMAC, so the callback needs no storage to check a link it never saw,
// and derives the PKCE verifier from the same nonce.
//
// A stateSigner is safe for concurrent use as long as Rand is.
type stateSigner struct {
	// Rand is the nonce source; default crypto/rand.Reader. Tests inject a fixed reader.
	Rand io.Reader

	macKey  []byte // signs states
	pkceKey []byte // derives PKCE verifiers
	ttl     time.Duration
	keyOK   bool
}

// newStateSigner returns a signer for key (at least 16 bytes; see stateKeyFromClientSecret)
// whose states live ttl (DefaultStateTTL when ttl ≤ 0). A shorter key makes Mint and Verify
// fail with ErrBadInput.
func newStateSigner(key []byte, ttl time.Duration) *stateSigner {
	if ttl <= 0 {
		ttl = DefaultStateTTL
	}
	// Two subkeys, so a signature can never double as a verifier or the reverse.
	return &stateSigner{
		macKey:  hmacSum(key, []byte("state-mac")),
		pkceKey: hmacSum(key, []byte("pkce-verifier")),
		ttl:     ttl,
		keyOK:   len(key) >= minStateKeyLen,
	}
}

// stateKeyFromClientSecret derives the state key from the client secret:
// HMAC-SHA256(secret, "vbctoken/consent-state/v1"). Whoever can read the credentials secret
// (admins, the callback) can mint and verify states; nobody else can.
func stateKeyFromClientSecret(secret Secret) []byte {
	return hmacSum([]byte(secret.Reveal()), []byte(stateKeyLabel))
}

func hmacSum(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// TTL returns how long minted states live.
func (s *stateSigner) TTL() time.Duration { return s.ttl }

// Mint returns a new state valid until now+TTL, and its nonce (what PKCEVerifier and the
// replay check take). A non-empty account (a valid account id) is bound into the state.
func (s *stateSigner) Mint(now time.Time, account string) (state string, nonce string, err error) {
	if !s.keyOK {
		return "", "", fmt.Errorf("mint consent state: %w: key shorter than %d bytes", ErrBadInput, minStateKeyLen)
	}
	if account != "" {
		if err := CheckAccount(account); err != nil {
			return "", "", fmt.Errorf("mint consent state: %w", err)
		}
	}
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	buf := make([]byte, stateBodyLen, stateLen+1+len(account))
	buf[0] = stateVersion
	if _, err := io.ReadFull(r, buf[1:1+stateNonceLen]); err != nil {
		return "", "", fmt.Errorf("mint consent state: read random nonce: %w", err)
	}
	binary.BigEndian.PutUint64(buf[1+stateNonceLen:], uint64(now.Add(s.ttl).Unix()))
	if account != "" {
		buf[0] = stateVersionAccount
		buf = append(buf, byte(len(account)))
		buf = append(buf, account...)
	}
	buf = append(buf, hmacSum(s.macKey, buf)...)
	return base64.RawURLEncoding.EncodeToString(buf),
		base64.RawURLEncoding.EncodeToString(buf[1 : 1+stateNonceLen]), nil
}

// Verify checks state at now and returns its claims. Errors match ErrBadState and one of
// errStateMalformed, errStateTampered (including a state minted with another key) or
// ErrStateExpired; they never quote the input. Reuse is for the caller to check with the
// returned nonce.
func (s *stateSigner) Verify(state string, now time.Time) (stateClaims, error) {
	if !s.keyOK {
		return stateClaims{}, fmt.Errorf("verify consent state: %w: key shorter than %d bytes", ErrBadInput, minStateKeyLen)
	}
	if state == "" || len(state) > maxStateLen {
		return stateClaims{}, errStateMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(state)
	// The decoder skips CR and LF; insisting on the canonical form keeps one state per nonce.
	if err != nil || len(raw) < stateLen || base64.RawURLEncoding.EncodeToString(raw) != state {
		return stateClaims{}, errStateMalformed
	}
	body, sig := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	if !hmac.Equal(sig, hmacSum(s.macKey, body)) {
		return stateClaims{}, errStateTampered
	}
	account := ""
	switch {
	case body[0] == stateVersion && len(body) == stateBodyLen:
	case body[0] == stateVersionAccount && len(body) > stateBodyLen && int(body[stateBodyLen]) == len(body)-stateBodyLen-1:
		account = string(body[stateBodyLen+1:])
		if CheckAccount(account) != nil {
			return stateClaims{}, errStateMalformed
		}
	default:
		return stateClaims{}, errStateMalformed // signed by us, but a layout this build lacks
	}
	exp := binary.BigEndian.Uint64(body[1+stateNonceLen : stateBodyLen])
	if exp > maxStateExpiry {
		return stateClaims{}, errStateMalformed
	}
	claims := stateClaims{
		Nonce:     base64.RawURLEncoding.EncodeToString(body[1 : 1+stateNonceLen]),
		ExpiresAt: time.Unix(int64(exp), 0).UTC(),
		Account:   account,
	}
	if !now.Before(claims.ExpiresAt) {
		return stateClaims{}, ErrStateExpired
	}
	return claims, nil
}

// maxStateExpiry bounds a decoded expiry so the int64 conversion cannot wrap.
const maxStateExpiry = 1<<62 - 1

// PKCEVerifier derives the RFC 7636 code verifier for a consent link from its nonce and the
// key: base64url(HMAC-SHA256), 43 characters of [A-Za-z0-9_-]. The callback recomputes it
// from the verified state, so nothing has to be stored between the link and the callback.
func (s *stateSigner) PKCEVerifier(nonce string) string {
	return base64.RawURLEncoding.EncodeToString(hmacSum(s.pkceKey, []byte(nonce)))
}
