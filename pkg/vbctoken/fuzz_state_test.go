package vbctoken_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// fzStateKey signs the states of FuzzStateVerify; its seed corpus holds states minted with
// it (and with another key) by fzMint.
var fzStateKey = vbctoken.StateKeyFromClientSecret("fuzz-state-client-secret")

// fzMint mints the states the fuzz target accepts: four fixed nonces at clT0.
func fzMint(t testing.TB) map[string]bool {
	t.Helper()
	minted := map[string]bool{}
	for seed := range byte(4) {
		s := vbctoken.NewStateSigner(fzStateKey, 0)
		s.Rand = bytes.NewReader(bytes.Repeat([]byte{seed}, 16))
		state, _, err := s.Mint(clT0, "")
		if err != nil {
			t.Fatal(err)
		}
		minted[state] = true
	}
	return minted
}

// FuzzStateVerify feeds arbitrary strings to Verify: it must never panic, only the states
// genuinely minted with the key verify, and every refusal matches ErrBadState.
func FuzzStateVerify(f *testing.F) {
	minted := fzMint(f)
	for state := range minted {
		f.Add(state)
	}
	f.Add("")
	f.Add("AQ")

	s := vbctoken.NewStateSigner(fzStateKey, 0)
	f.Fuzz(func(t *testing.T, state string) {
		claims, err := s.Verify(state, clT0.Add(time.Minute))
		if err != nil {
			if !errors.Is(err, vbctoken.ErrBadState) {
				t.Fatalf("Verify error %v does not match ErrBadState", err)
			}
			if claims != (vbctoken.StateClaims{}) {
				t.Fatalf("claims %+v returned with error %v", claims, err)
			}
			return
		}
		if !minted[state] {
			t.Fatalf("Verify accepted a state that was never minted: %q", state)
		}
		if claims.Nonce == "" || !claims.ExpiresAt.Equal(clT0.Add(vbctoken.DefaultStateTTL)) {
			t.Fatalf("claims %+v", claims)
		}
	})
}
