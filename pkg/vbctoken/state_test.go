package vbctoken_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

var stKey = vbctoken.StateKeyFromClientSecret("consumerSECRET-for-state")

// stSigner returns a signer whose nonces come from a fixed byte stream.
func stSigner(key []byte, seed byte) *vbctoken.StateSigner {
	s := vbctoken.NewStateSigner(key, 0)
	s.Rand = bytes.NewReader(bytes.Repeat([]byte{seed, seed + 1, seed + 2, seed + 3}, 64))
	return s
}

func TestStateRoundTrip(t *testing.T) {
	s := stSigner(stKey, 1)
	state, nonce, err := s.Mint(clT0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(state) > vbctoken.MaxStateLen || !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(state) {
		t.Errorf("state %q is not short unpadded base64url", state)
	}
	wantNonce := base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4})
	if nonce != wantNonce {
		t.Errorf("nonce = %q, want %q (16 bytes of the injected reader)", nonce, wantNonce)
	}
	if s.TTL() != vbctoken.DefaultStateTTL || vbctoken.DefaultStateTTL != 15*time.Minute {
		t.Errorf("TTL = %v, want the 15 min default", s.TTL())
	}
	for _, at := range []time.Duration{0, time.Minute, 15*time.Minute - time.Second} {
		claims, err := s.Verify(state, clT0.Add(at))
		if err != nil {
			t.Fatalf("Verify at +%v: %v", at, err)
		}
		if claims.Nonce != nonce || !claims.ExpiresAt.Equal(clT0.Add(15*time.Minute)) {
			t.Errorf("claims = %+v, want nonce %q expiring %v", claims, nonce, clT0.Add(15*time.Minute))
		}
	}
	// Another signer with the same key (the callback, not the CLI that minted) agrees.
	if _, err := vbctoken.NewStateSigner(stKey, time.Hour).Verify(state, clT0); err != nil {
		t.Errorf("same key, other signer: %v", err)
	}
}

func TestStateNoncesAreRandom(t *testing.T) {
	s := vbctoken.NewStateSigner(stKey, time.Minute) // crypto/rand
	seen := map[string]bool{}
	for range 200 {
		state, nonce, err := s.Mint(clT0, "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[nonce] || seen[state] {
			t.Fatalf("nonce or state repeated after %d mints", len(seen)/2)
		}
		seen[nonce], seen[state] = true, true
	}
}

func TestStateExpired(t *testing.T) {
	s := vbctoken.NewStateSigner(stKey, 10*time.Minute)
	state, _, err := s.Mint(clT0, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{10 * time.Minute, 10*time.Minute + time.Second, 48 * time.Hour} {
		_, err := s.Verify(state, clT0.Add(at))
		if !errors.Is(err, vbctoken.ErrStateExpired) || !errors.Is(err, vbctoken.ErrBadState) {
			t.Errorf("Verify at +%v = %v, want ErrStateExpired", at, err)
		}
	}
}

func TestStateTampered(t *testing.T) {
	s := stSigner(stKey, 9)
	state, _, err := s.Mint(clT0, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil {
		t.Fatal(err)
	}
	// Every byte (version, nonce, expiry, signature), every single bit and the whole byte.
	for i := range raw {
		for _, mask := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
			b := bytes.Clone(raw)
			b[i] ^= mask
			_, err := s.Verify(base64.RawURLEncoding.EncodeToString(b), clT0)
			if !errors.Is(err, vbctoken.ErrStateTampered) || !errors.Is(err, vbctoken.ErrBadState) {
				t.Fatalf("byte %d ^ %#x: Verify = %v, want ErrStateTampered", i, mask, err)
			}
		}
	}
	// Every character of the text replaced by another of the alphabet.
	for i := range state {
		for _, c := range []byte{'A', 'z', '-', '_'} {
			if state[i] == c {
				continue
			}
			mutated := state[:i] + string(c) + state[i+1:]
			if _, err := s.Verify(mutated, clT0); err == nil {
				t.Fatalf("char %d -> %c verified", i, c)
			}
		}
	}
	// A valid signature over an extended expiry still fails: the MAC covers the expiry.
	b := bytes.Clone(raw)
	b[len(b)-33]++ // last expiry byte: one second later
	if _, err := s.Verify(base64.RawURLEncoding.EncodeToString(b), clT0); !errors.Is(err, vbctoken.ErrStateTampered) {
		t.Errorf("extended expiry: %v, want ErrStateTampered", err)
	}
}

func TestStateWrongKeyIsTampered(t *testing.T) {
	state, _, err := vbctoken.NewStateSigner(vbctoken.StateKeyFromClientSecret("another-secret"), 0).Mint(clT0, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = vbctoken.NewStateSigner(stKey, 0).Verify(state, clT0)
	if !errors.Is(err, vbctoken.ErrStateTampered) {
		t.Errorf("Verify = %v, want ErrStateTampered", err)
	}
}

// Accounts mode: the account is bound into the signed state; a state whose account was
// changed does not verify, and a signed state with a length that does not match its layout
// is malformed.
func TestStateCarriesTheAccount(t *testing.T) {
	s := vbctoken.NewStateSigner(stKey, 0)
	state, _, err := s.Mint(clT0, "globex-eu")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(state, clT0)
	if err != nil || c.Account != "globex-eu" {
		t.Fatalf("claims %+v, err %v", c, err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(state)
	swapped := bytes.Replace(bytes.Clone(raw), []byte("globex-eu"), []byte("globex-us"), 1)
	if _, err := s.Verify(base64.RawURLEncoding.EncodeToString(swapped), clT0); !errors.Is(err, vbctoken.ErrStateTampered) {
		t.Errorf("another account: %v, want ErrStateTampered", err)
	}
	long := append(bytes.Clone(raw), 0)
	if _, err := s.Verify(base64.RawURLEncoding.EncodeToString(long), clT0); !errors.Is(err, vbctoken.ErrBadState) {
		t.Errorf("one byte long: %v, want ErrBadState", err)
	}
	for _, bad := range []string{"Acme", "-acme", "ac me", "acme/x", strings.Repeat("a", 64)} {
		if _, _, err := s.Mint(clT0, bad); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("Mint for account %q: %v, want ErrBadInput", bad, err)
		}
	}
	if len(state) > vbctoken.MaxStateLen {
		t.Errorf("a state for a 9-character account is %d characters", len(state))
	}
	longest, _, err := s.Mint(clT0, strings.Repeat("a", 63))
	if err != nil || len(longest) > vbctoken.MaxStateLen {
		t.Errorf("the longest account's state: %d characters, %v", len(longest), err)
	}
}

func TestCheckAccount(t *testing.T) {
	for id, ok := range map[string]bool{
		"acme": true, "globex-eu": true, "a": true, "0": true, "a-": true, strings.Repeat("z", 63): true,
		"": false, "-a": false, "Acme": false, "a_b": false, "a.b": false, "a b": false, "é": false,
		strings.Repeat("z", 64): false, "a\x00": false,
	} {
		if err := vbctoken.CheckAccount(id); (err == nil) != ok {
			t.Errorf("CheckAccount(%q) = %v, want ok %v", id, err, ok)
		}
	}
}

func TestStateMalformed(t *testing.T) {
	s := vbctoken.NewStateSigner(stKey, 0)
	good, _, err := s.Mint(clT0, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	cases := map[string]string{
		"empty":              "",
		"too long":           strings.Repeat("A", vbctoken.MaxStateLen+1),
		"huge":               strings.Repeat("A", 1<<20),
		"not base64":         "!!!!not-a-state!!!!",
		"padding appended":   good + "=",
		"standard alphabet":  strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/",
		"one byte short":     base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]),
		"newline inside":     good[:10] + "\n" + good[10:],
		"trailing CR":        good + "\r",
		"space":              good[:10] + " " + good[10:],
		"a single character": "A",
		"unicode":            "état",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.Verify(in, clT0)
			if !errors.Is(err, vbctoken.ErrStateMalformed) || !errors.Is(err, vbctoken.ErrBadState) {
				t.Errorf("Verify = %v, want ErrStateMalformed", err)
			}
			if in != "" && len(in) > 3 && err != nil && strings.Contains(err.Error(), in) {
				t.Errorf("error %q quotes the input", err)
			}
		})
	}
}

func TestStateErrorsMatchTheirClass(t *testing.T) {
	all := []error{vbctoken.ErrStateMalformed, vbctoken.ErrStateTampered, vbctoken.ErrStateExpired, vbctoken.ErrStateReused}
	for i, e := range all {
		if !errors.Is(e, vbctoken.ErrBadState) {
			t.Errorf("%v does not match ErrBadState", e)
		}
		for j, other := range all {
			if (i == j) != errors.Is(e, other) {
				t.Errorf("errors.Is(%v, %v) = %v", e, other, i != j)
			}
		}
		//lint:ignore SA1032 deliberately reversed: the parent must not match a specific error
		if errors.Is(vbctoken.ErrBadState, e) {
			t.Errorf("ErrBadState matches the specific %v", e)
		}
	}
}

func TestStateShortKey(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("short")} {
		s := vbctoken.NewStateSigner(key, 0)
		if _, _, err := s.Mint(clT0, ""); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("Mint with a %d-byte key = %v, want ErrBadInput", len(key), err)
		}
		if _, err := s.Verify("AAAA", clT0); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("Verify with a %d-byte key = %v, want ErrBadInput", len(key), err)
		}
	}
}

func TestStateRandomFailure(t *testing.T) {
	s := vbctoken.NewStateSigner(stKey, 0)
	s.Rand = iotest.ErrReader(errors.New("entropy gone"))
	if state, _, err := s.Mint(clT0, ""); err == nil || state != "" {
		t.Errorf("Mint = %q, %v; want an error", state, err)
	}
	s.Rand = bytes.NewReader(make([]byte, 5)) // too short for a nonce
	if _, _, err := s.Mint(clT0, ""); err == nil {
		t.Error("Mint with 5 random bytes succeeded")
	}
}

func TestStateKeyFromClientSecret(t *testing.T) {
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write([]byte("vbctoken/consent-state/v1"))
	if got := vbctoken.StateKeyFromClientSecret("s3cret"); !bytes.Equal(got, m.Sum(nil)) {
		t.Errorf("key = %x, want HMAC-SHA256(secret, label) = %x", got, m.Sum(nil))
	}
	if bytes.Equal(vbctoken.StateKeyFromClientSecret("a"), vbctoken.StateKeyFromClientSecret("b")) {
		t.Error("different secrets give the same key")
	}
	if bytes.Contains(vbctoken.StateKeyFromClientSecret("s3cret"), []byte("s3cret")) {
		t.Error("key contains the secret")
	}
}

func TestPKCEVerifier(t *testing.T) {
	s := vbctoken.NewStateSigner(stKey, 0)
	rfc7636 := regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
	_, nonce, err := s.Mint(clT0, "")
	if err != nil {
		t.Fatal(err)
	}
	v := s.PKCEVerifier(nonce)
	if !rfc7636.MatchString(v) {
		t.Errorf("verifier %q is not an RFC 7636 code verifier", v)
	}
	if again := vbctoken.NewStateSigner(stKey, time.Hour).PKCEVerifier(nonce); again != v {
		t.Errorf("verifier not deterministic: %q then %q", v, again)
	}
	_, nonce2, _ := s.Mint(clT0, "")
	if s.PKCEVerifier(nonce2) == v {
		t.Error("two nonces give the same verifier")
	}
	if vbctoken.NewStateSigner(vbctoken.StateKeyFromClientSecret("other"), 0).PKCEVerifier(nonce) == v {
		t.Error("two keys give the same verifier")
	}
	if strings.Contains(v, nonce) {
		t.Error("verifier contains the nonce (which travels in the URL)")
	}
}
