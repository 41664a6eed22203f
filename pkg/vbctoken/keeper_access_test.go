package vbctoken_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Found by the chaos soak (internal/soak, seed 1): a refresher that stored the new pair but
// died (or ran out of time) before writing the access secret left apps with the old access
// token. Every later run skipped — the pair was fresh — so nothing rewrote the access
// secret until the next refresh about 22 h later, while the old token died within 2 h of
// the refresh. A skipped run must bring the access secret in step with the pair.
func TestSkippedRunRepairsStaleAccessSecret(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	w.connect(k)
	before, err := w.store.LoadAccess(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// The refresh stores the pair, then the process dies before the access write.
	w.clock.Advance(23 * time.Hour)
	died := errors.New("process killed")
	w.store.SetFault(memstore.Fault{Before: func(op memstore.Op) error {
		if op == memstore.OpPutAccess {
			return died
		}
		return nil
	}})
	if _, err := w.keeper(false).Refresh(context.Background(), false); !errors.Is(err, died) {
		t.Fatalf("refresh: %v, want the access write to fail", err)
	}
	w.store.SetFault(memstore.Fault{})
	if a, _ := w.store.LoadAccess(context.Background()); a.AccessToken != before.AccessToken {
		t.Fatal("setup: the access secret was written")
	}

	// The next hourly run has nothing to refresh, but must repair the access secret.
	w.clock.Advance(time.Hour)
	res, err := w.keeper(false).Refresh(context.Background(), false)
	if err != nil || res.Outcome != vbctoken.OutcomeSkipped {
		t.Fatalf("hourly run: %+v %v", res, err)
	}
	w.assertChainLive()

	// And a run that finds them in step writes nothing.
	w.store.ResetCalls()
	if _, err := w.keeper(false).Refresh(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := w.store.Calls(memstore.OpPutAccess) + w.store.Calls(memstore.OpCommitPair); n != 0 {
		t.Errorf("%d writes when the access secret was in step", n)
	}
}

// Found by the chaos soak (strict sandbox, seed 6): a run that read the pair just before a
// concurrent refresher stored a new one, and then its access token, must not put the old
// access token back.
func TestSkippedRunKeepsAConcurrentWritersAccessToken(t *testing.T) {
	w := newWorld(t)
	k := w.keeper(false)
	w.connect(k)
	stale, err := w.store.LoadPair(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(22*time.Hour - time.Second) // just outside the margin: a run that reads now skips
	late := w.keeperWith(&staleFirstRead{Store: w.store, stale: stale}, false)
	w.clock.Advance(2 * time.Second)
	if res, err := k.Refresh(context.Background(), false); err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("refresh: %+v %v", res, err)
	}
	w.clock.Advance(-2 * time.Second) // the late run decided with its stale read
	res, err := late.Refresh(context.Background(), false)
	if err != nil || res.Outcome != vbctoken.OutcomeSkipped {
		t.Fatalf("late run: %+v %v", res, err)
	}
	w.assertChainLive()
}
