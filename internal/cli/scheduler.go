package cli

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// failureLogEvery is how often a failure that keeps repeating is logged again (wall time):
// at --clock-speed 3600 the scheduler checks every second, and the status page reloads
// every few seconds.
const failureLogEvery = 5 * time.Minute

// failureLog logs a failure that repeats (an unreadable store) once, then again at most every
// failureLogEvery of wall time with how many were left out, and once more when it ends.
type failureLog struct {
	log   *slog.Logger
	wall  func() time.Time
	every time.Duration

	mu         sync.Mutex
	failing    bool
	last       string    // the message last logged
	lastAt     time.Time // wall time it was logged
	suppressed int
}

// fail logs msg with err unless the same message was logged less than every ago.
func (f *failureLog) fail(level slog.Level, msg string, err error) {
	f.mu.Lock()
	now := f.wall()
	if f.failing && msg == f.last && now.Sub(f.lastAt) < f.every {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	n := f.suppressed
	f.failing, f.last, f.lastAt, f.suppressed = true, msg, now, 0
	f.mu.Unlock()
	attrs := []any{"error", err}
	if n > 0 {
		attrs = append(attrs, "repeated", n)
	}
	f.log.Log(context.Background(), level, msg, attrs...)
}

// ok ends a failure, logging that it did.
func (f *failureLog) ok(msg string) {
	f.mu.Lock()
	was, n := f.failing, f.suppressed
	f.failing, f.last, f.suppressed = false, "", 0
	f.mu.Unlock()
	if was {
		f.log.Info(msg, "repeated", n)
	}
}

// scheduler runs the refresher's logic on serve's clock and remembers what it did for the
// status page.
type scheduler struct {
	keeper  *vbctoken.Keeper
	every   time.Duration // wall time between checks
	timeout time.Duration
	now     func() time.Time // serve's clock
	log     *slog.Logger
	// storeFailures rate-limits "cannot read the pair", shared with the pages.
	storeFailures *failureLog

	mu        sync.Mutex
	last      *web.LastRefresh
	lastCheck time.Time
	refreshes int
	// deadSince is the ObtainedAt of a pair whose refresh token VBC rejected: it is not
	// tried again (every try would fail and log) until a consent stores a new pair.
	deadSince time.Time
	// expiredLogged is the RefreshExpiresAt of the expired pair last reported at ERROR.
	expiredLogged time.Time
}

func (s *scheduler) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick runs one check: like the scheduled Lambda, but it does not call the keeper while
// nobody has consented, so an unconnected serve stays quiet. When the chain dies (its
// refresh token expired, or VBC rejected it) it logs an ERROR once, as the refresher does.
// A check that has started finishes even when serve is stopping (bounded by the timeout):
// cancelling a refresh between VBC's answer and the store's write would lose the only live
// pair.
func (s *scheduler) tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	st, err := s.keeper.Status(ctx)
	s.mu.Lock()
	s.lastCheck = s.now()
	dead := s.deadSince
	s.mu.Unlock()
	if err != nil {
		s.storeFailures.fail(slog.LevelWarn, "scheduler: cannot read the pair", err)
		s.record(web.LastRefresh{At: s.now(), Err: err}, false)
		return
	}
	s.storeFailures.ok("the stored pair is readable again")
	if !st.Connected {
		s.chainExpired(st)
		return
	}
	if !dead.IsZero() && st.ObtainedAt.Equal(dead) {
		return
	}
	res, err := s.keeper.Refresh(ctx, false)
	switch {
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		// The keeper has logged it at ERROR.
		s.mu.Lock()
		s.deadSince = st.ObtainedAt
		s.mu.Unlock()
	case err != nil:
		s.log.Warn("scheduler: refresh failed; trying again at the next run", "error", err)
	case res.Outcome == vbctoken.OutcomeSkipped:
		s.log.Debug("scheduler: pair is fresh", "next_refresh", st.NextRefresh)
		return
	}
	s.record(web.LastRefresh{At: s.now(), Result: res, Err: err}, err == nil && res.Outcome == vbctoken.OutcomeRefreshed)
}

// chainExpired logs, once per pair, that its refresh token expired.
func (s *scheduler) chainExpired(st vbctoken.Status) {
	if st.Reason != vbctoken.ReasonRefreshExpired || st.RefreshExpiresAt.IsZero() {
		return
	}
	s.mu.Lock()
	logged := st.RefreshExpiresAt.Equal(s.expiredLogged)
	s.expiredLogged = st.RefreshExpiresAt
	s.mu.Unlock()
	if !logged {
		s.log.Error("re-consent required: the refresh token expired, so the chain is gone; open the status page and click Connect again, or run `vbctoken consent-url`",
			"refresh_expires_at", st.RefreshExpiresAt, "obtained_at", st.ObtainedAt)
	}
}

func (s *scheduler) record(l web.LastRefresh, refreshed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = &l
	if refreshed {
		s.refreshes++
	}
}

// snapshot returns what the scheduler last did.
func (s *scheduler) snapshot() (last *web.LastRefresh, lastCheck time.Time, refreshes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil {
		l := *s.last
		last = &l
	}
	return last, s.lastCheck, s.refreshes
}
