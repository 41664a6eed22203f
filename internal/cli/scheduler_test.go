package cli

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// schedulerFor is a scheduler over the harness's keeper, its clock as both the serve clock
// and the wall clock, logging into a buffer.
func schedulerFor(t *testing.T, h *harness) (*scheduler, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	k, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: h.store, Now: h.clock.Now, Logger: log,
		Client:     vbctoken.ClientConfig{Endpoints: vbctoken.Endpoints{AuthorizeURL: h.env["VBC_AUTHORIZE_URL"], TokenURL: h.env["VBC_TOKEN_URL"]}, RedirectURL: testRedirect},
		StoreRetry: vbctoken.RetryPolicy{Sleep: noSleep, MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return &scheduler{keeper: k, every: time.Second, timeout: time.Minute, now: h.clock.Now, log: log,
		storeFailures: &failureLog{log: log, wall: h.clock.Now, every: failureLogEvery}}, logs
}

func count(logs *testutil.Buffer, s string) int { return strings.Count(logs.String(), s) }

// When the refresh token expires the scheduler logs an ERROR once, as the refresher does,
// not on every tick and not before.
func TestSchedulerLogsTheChainsDeathOnce(t *testing.T) {
	h := newHarness(t)
	h.connect()
	s, logs := schedulerFor(t, h)
	s.tick(context.Background())
	if n := count(logs, `"level":"ERROR"`); n != 0 {
		t.Fatalf("ERROR while connected:\n%s", logs)
	}
	// Nobody refreshes: the refresh token dies after seven days.
	h.clock.Advance(8 * 24 * time.Hour)
	for range 5 {
		s.tick(context.Background())
		h.clock.Advance(time.Hour)
	}
	if n := count(logs, `re-consent required: the refresh token expired`); n != 1 {
		t.Errorf("%d ERROR lines about the expired chain, want 1:\n%s", n, logs)
	}
	// A new consent, then its death, is reported again.
	h.connect()
	s.tick(context.Background())
	h.clock.Advance(8 * 24 * time.Hour)
	s.tick(context.Background())
	if n := count(logs, `re-consent required: the refresh token expired`); n != 2 {
		t.Errorf("%d ERROR lines after the second chain died, want 2", n)
	}
}

// An unreadable store is logged once, then at most every failureLogEvery of wall time with
// the count of what was left out, and its recovery once: at --clock-speed 3600 the
// scheduler ticks every second.
func TestSchedulerRateLimitsStoreFailures(t *testing.T) {
	h := newHarness(t)
	h.connect()
	s, logs := schedulerFor(t, h)
	h.store.SetRawPair([]byte("{damaged"))
	for range 120 {
		s.tick(context.Background())
		h.clock.Advance(time.Second)
	}
	if n := count(logs, "scheduler: cannot read the pair"); n != 1 {
		t.Fatalf("%d WARN lines in two minutes, want 1:\n%s", n, logs)
	}
	h.clock.Advance(failureLogEvery)
	s.tick(context.Background())
	if n := count(logs, "scheduler: cannot read the pair"); n != 2 || !strings.Contains(logs.String(), `"repeated":119`) {
		t.Errorf("after %v: %d lines:\n%s", failureLogEvery, n, logs)
	}
	h.store.SetRawPair([]byte(`{"version":1}`))
	s.tick(context.Background())
	s.tick(context.Background())
	if n := count(logs, "the stored pair is readable again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs)
	}
}

func TestFailureLog(t *testing.T) {
	wall := newFakeClock()
	logs := &testutil.Buffer{}
	f := &failureLog{log: slog.New(slog.NewJSONHandler(logs, nil)), wall: wall.Now, every: time.Minute}
	boom := errors.New("boom")
	f.fail(slog.LevelWarn, "a", boom)
	f.fail(slog.LevelWarn, "a", boom)
	f.fail(slog.LevelError, "b", boom) // another failure is logged at once
	wall.Advance(time.Minute)
	f.fail(slog.LevelError, "b", boom)
	f.ok("fine")
	f.ok("fine")
	want := []string{`"msg":"a"`, `"msg":"b"`, `"msg":"b"`, `"msg":"fine"`}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", logs)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %s, want %s", i, lines[i], w)
		}
	}
}
