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

// schedulerWorkers bounds the accounts one scheduled check refreshes at once (accounts
// mode): one account's slow refresh never holds the others up for long, and a local serve
// never floods VBC.
const schedulerWorkers = 4

// scheduler runs the refresher's logic on serve's clock and remembers what it did for the
// status page: for the one pair, or in accounts mode for every account the fleet lists,
// each on its own (one account's failure never stops another's refresh).
type scheduler struct {
	keeper   *vbctoken.Keeper   // single-account mode
	accounts *vbctoken.Accounts // accounts mode
	every    time.Duration      // wall time between checks
	timeout  time.Duration
	now      func() time.Time // serve's clock
	log      *slog.Logger
	// storeFailures rate-limits "cannot read the pair" (single-account mode) and "cannot
	// list the accounts", shared with the pages.
	storeFailures *failureLog

	mu        sync.Mutex
	lastCheck time.Time
	refreshes int
	runs      map[string]*accountRun // by account; "" in single-account mode
}

// accountRun is what the scheduler remembers of one account ("" in single-account mode).
type accountRun struct {
	last *web.LastRefresh
	// deadSince is the ObtainedAt of a pair whose refresh token VBC rejected: it is not
	// tried again (every try would fail and log) until a consent stores a new pair.
	deadSince time.Time
	// expiredLogged is the RefreshExpiresAt of the expired pair last reported at ERROR.
	expiredLogged time.Time
	// failures rate-limits an account's unreadable pair (accounts mode).
	failures *failureLog
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

// tick runs one check of every chain.
func (s *scheduler) tick(ctx context.Context) {
	if s.accounts == nil {
		s.check(ctx, "", s.keeper)
		return
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	ids, err := s.accounts.List(lctx)
	cancel()
	s.mu.Lock()
	s.lastCheck = s.now()
	s.mu.Unlock()
	if err != nil {
		s.storeFailures.fail(slog.LevelWarn, "scheduler: cannot list the accounts", err)
		return
	}
	s.storeFailures.ok("the accounts can be listed again")
	var wg sync.WaitGroup
	sem := make(chan struct{}, schedulerWorkers)
	for _, id := range ids {
		k, err := s.accounts.Keeper(id)
		if err != nil {
			s.log.Warn("scheduler: cannot open an account", "account", id, "error", err)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.check(ctx, id, k)
		})
	}
	wg.Wait()
}

// check runs one check of one chain: like the scheduled Lambda, but it does not call the
// keeper while nobody has consented, so an unconnected serve stays quiet. When the chain
// dies (its refresh token expired, or VBC rejected it) it logs an ERROR once, as the
// refresher does. A check that has started finishes even when serve is stopping (bounded by
// the timeout): cancelling a refresh between VBC's answer and the store's write would lose
// the only live pair.
func (s *scheduler) check(ctx context.Context, account string, k *vbctoken.Keeper) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	log := s.log
	if account != "" {
		log = log.With("account", account)
	}
	st, err := k.Status(ctx)
	s.mu.Lock()
	s.lastCheck = s.now()
	run := s.runLocked(account)
	dead := run.deadSince
	failures := run.failures
	s.mu.Unlock()
	if failures == nil {
		failures = s.storeFailures
	}
	if err != nil {
		failures.fail(slog.LevelWarn, "scheduler: cannot read the pair", err)
		s.record(account, web.LastRefresh{At: s.now(), Err: err}, false)
		return
	}
	failures.ok("the stored pair is readable again")
	if !st.Connected {
		s.chainExpired(log, account, st)
		return
	}
	if !dead.IsZero() && st.ObtainedAt.Equal(dead) {
		return
	}
	res, err := k.Refresh(ctx, false)
	switch {
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		// The keeper has logged it at ERROR.
		s.mu.Lock()
		s.runLocked(account).deadSince = st.ObtainedAt
		s.mu.Unlock()
	case err != nil:
		log.Warn("scheduler: refresh failed; trying again at the next run", "error", err)
	case res.Outcome == vbctoken.OutcomeSkipped:
		log.Debug("scheduler: pair is fresh", "next_refresh", st.NextRefresh)
		return
	}
	s.record(account, web.LastRefresh{At: s.now(), Result: res, Err: err}, err == nil && res.Outcome == vbctoken.OutcomeRefreshed)
}

// runLocked returns the run of account, created on first use; s.mu is held.
func (s *scheduler) runLocked(account string) *accountRun {
	if s.runs == nil {
		s.runs = map[string]*accountRun{}
	}
	r := s.runs[account]
	if r == nil {
		r = &accountRun{}
		if account != "" && s.storeFailures != nil {
			r.failures = &failureLog{log: s.log.With("account", account), wall: s.storeFailures.wall, every: s.storeFailures.every}
		}
		s.runs[account] = r
	}
	return r
}

// chainExpired logs, once per pair, that its refresh token expired.
func (s *scheduler) chainExpired(log *slog.Logger, account string, st vbctoken.Status) {
	if st.Reason != vbctoken.ReasonRefreshExpired || st.RefreshExpiresAt.IsZero() {
		return
	}
	s.mu.Lock()
	run := s.runLocked(account)
	logged := st.RefreshExpiresAt.Equal(run.expiredLogged)
	run.expiredLogged = st.RefreshExpiresAt
	s.mu.Unlock()
	if !logged {
		next := "open the status page and click Connect again, or run `vbctoken consent-url`"
		if account != "" {
			next = "open the status page and connect the account again, or run `vbctoken consent-url --account " + account + "`"
		}
		log.Error("re-consent required: the refresh token expired, so the chain is gone; "+next,
			"refresh_expires_at", st.RefreshExpiresAt, "obtained_at", st.ObtainedAt)
	}
}

// record remembers what a refresh of account did.
func (s *scheduler) record(account string, l web.LastRefresh, refreshed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runLocked(account).last = &l
	if refreshed {
		s.refreshes++
	}
}

// snapshot returns what the scheduler last did for account, when it last checked and how
// many pairs it stored since serve started (all accounts).
func (s *scheduler) snapshot(account string) (last *web.LastRefresh, lastCheck time.Time, refreshes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.runs[account]; r != nil && r.last != nil {
		l := *r.last
		last = &l
	}
	return last, s.lastCheck, s.refreshes
}
