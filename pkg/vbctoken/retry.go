package vbctoken

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Default retry settings, used for the zero fields of a RetryPolicy.
const (
	defaultRetryInitial     = 200 * time.Millisecond
	defaultRetryMax         = 10 * time.Second
	defaultRetryMultiplier  = 2.0
	defaultRetryMaxAttempts = 8
)

// RetryPolicy is capped exponential backoff with full jitter. Its zero value is usable: every
// zero field takes the Default* value above.
//
// The n-th wait (n ≥ 1) is a random duration in [0, min(Max, Initial·Multiplier^(n-1))),
// or the server's Retry-After capped at Max when the operation reports one. Do never starts
// a wait that would end at or after ctx's deadline: it returns the last error instead, so
// the caller keeps its remaining time.
type RetryPolicy struct {
	Initial     time.Duration // first backoff ceiling; default 200 ms
	Max         time.Duration // ceiling of any single wait, Retry-After included; default 10 s
	Multiplier  float64       // growth of the ceiling per attempt (≥ 1); default 2
	MaxAttempts int           // attempts in all, first included; 0 = 8; negative = until ctx's deadline

	// Sleep waits d or until ctx is done, returning ctx's error then. Default: a timer.
	// Tests inject a fake that records d (and advances Now) so nothing really sleeps.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) for the jitter. Default: math/rand/v2.
	Rand func() float64
	// Now measures the time Do has spent, against the time ctx's deadline left when Do
	// started (read once from the real clock). Default time.Now; a fake Sleep advances a fake
	// Now, so the deadline rule is tested without waiting, whatever date the fake clock shows.
	Now func() time.Time
}

// withDefaults fills the zero fields.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Initial <= 0 {
		p.Initial = defaultRetryInitial
	}
	if p.Max <= 0 {
		p.Max = defaultRetryMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Multiplier < 1 || math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) {
		p.Multiplier = defaultRetryMultiplier
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = defaultRetryMaxAttempts
	}
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return p
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ceiling is the backoff ceiling before attempt+1, for attempt ≥ 1.
func (p RetryPolicy) ceiling(attempt int) time.Duration {
	c := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt-1))
	if c >= float64(p.Max) || math.IsInf(c, 0) || math.IsNaN(c) {
		return p.Max
	}
	return time.Duration(c)
}

// backoff is the wait after a failed attempt: full jitter under the ceiling, or the server's
// Retry-After (capped at Max) when it gave one.
func (p RetryPolicy) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, p.Max)
	}
	r := p.Rand()
	if r < 0 || r >= 1 || math.IsNaN(r) {
		r = 0.5
	}
	return time.Duration(r * float64(p.ceiling(attempt)))
}

// Do calls op until it succeeds, fails with an error retryable rejects, has been called
// MaxAttempts times, or the next wait would pass ctx's deadline. op receives the attempt
// number (1-based) and may return the server's Retry-After with its error (0 if none).
//
// Do returns how many times op ran and, on failure, op's last error. When ctx is cancelled
// or its deadline passes, the returned error wraps both op's last error and ctx's error, so
// errors.Is matches either. A nil retryable retries every error.
func (p RetryPolicy) Do(ctx context.Context, op func(attempt int) (retryAfter time.Duration, err error), retryable func(error) bool) (attempts int, err error) {
	p = p.withDefaults()
	start := p.Now()
	deadline, hasDeadline := ctx.Deadline()
	budget := time.Until(deadline)
	for attempt := 1; ; attempt++ {
		retryAfter, err := op(attempt)
		if err == nil {
			return attempt, nil
		}
		if retryable != nil && !retryable(err) {
			return attempt, err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return attempt, stopped(err, ctxErr)
		}
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return attempt, err
		}
		d := p.backoff(attempt, retryAfter)
		if hasDeadline && p.Now().Sub(start)+d >= budget {
			return attempt, err // waiting would use up the caller's time for nothing
		}
		if serr := p.Sleep(ctx, d); serr != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				serr = ctxErr
			}
			return attempt, stopped(err, serr)
		}
	}
}

// stopped wraps the last error with the context's, unless it already carries it.
func stopped(last, ctxErr error) error {
	if errors.Is(last, ctxErr) {
		return last
	}
	return fmt.Errorf("%w (stopped retrying: %w)", last, ctxErr)
}
