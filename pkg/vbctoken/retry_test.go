package vbctoken_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

var (
	errRetryable = errors.New("retryable")
	errFatal     = errors.New("fatal")
)

func isRetryable(err error) bool { return errors.Is(err, errRetryable) }

// script returns an op that fails with errs in turn (nil = success), repeating the last,
// and reports retryAfter with each failure.
func script(calls *[]int, retryAfter time.Duration, errs ...error) func(int) (time.Duration, error) {
	return func(attempt int) (time.Duration, error) {
		*calls = append(*calls, attempt)
		err := errs[min(attempt, len(errs))-1]
		if err != nil {
			return retryAfter, err
		}
		return 0, nil
	}
}

func TestRetryDo(t *testing.T) {
	const ms = time.Millisecond
	cases := []struct {
		name         string
		policy       vbctoken.RetryPolicy
		retryAfter   time.Duration
		errs         []error
		wantAttempts int
		wantErr      error
		wantSleeps   []time.Duration
	}{
		{
			name:         "success at once",
			errs:         []error{nil},
			wantAttempts: 1,
		},
		{
			name:         "success after two failures",
			errs:         []error{errRetryable, errRetryable, nil},
			wantAttempts: 3,
			wantSleeps:   []time.Duration{100 * ms, 200 * ms},
		},
		{
			name:         "defaults: 8 attempts, ceiling doubling from 200 ms, capped at 10 s",
			errs:         []error{errRetryable},
			wantAttempts: 8,
			wantErr:      errRetryable,
			// Rand = 0.5: half of 200, 400, 800, 1600, 3200, 6400, 10000 (cap) ms.
			wantSleeps: []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms},
		},
		{
			name:         "not retryable stops at once",
			errs:         []error{errRetryable, errFatal},
			wantAttempts: 2,
			wantErr:      errFatal,
			wantSleeps:   []time.Duration{100 * ms},
		},
		{
			name:         "custom policy",
			policy:       vbctoken.RetryPolicy{Initial: time.Second, Max: 5 * time.Second, Multiplier: 3, MaxAttempts: 4},
			errs:         []error{errRetryable},
			wantAttempts: 4,
			wantErr:      errRetryable,
			wantSleeps:   []time.Duration{500 * ms, 1500 * ms, 2500 * ms},
		},
		{
			name:         "one attempt means no retry",
			policy:       vbctoken.RetryPolicy{MaxAttempts: 1},
			errs:         []error{errRetryable},
			wantAttempts: 1,
			wantErr:      errRetryable,
		},
		{
			name:         "Retry-After replaces the backoff",
			policy:       vbctoken.RetryPolicy{MaxAttempts: 3},
			retryAfter:   3 * time.Second,
			errs:         []error{errRetryable},
			wantAttempts: 3,
			wantErr:      errRetryable,
			wantSleeps:   []time.Duration{3 * time.Second, 3 * time.Second},
		},
		{
			name:         "Retry-After is capped at Max",
			policy:       vbctoken.RetryPolicy{MaxAttempts: 2, Max: 4 * time.Second},
			retryAfter:   time.Hour,
			errs:         []error{errRetryable},
			wantAttempts: 2,
			wantErr:      errRetryable,
			wantSleeps:   []time.Duration{4 * time.Second},
		},
		{
			name:         "nonsense fields take defaults",
			policy:       vbctoken.RetryPolicy{Initial: -1, Max: -1, Multiplier: 0.1, MaxAttempts: 3},
			errs:         []error{errRetryable},
			wantAttempts: 3,
			wantErr:      errRetryable,
			wantSleeps:   []time.Duration{100 * ms, 200 * ms},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClClock(clT0)
			p := tc.policy
			p.Sleep, p.Now, p.Rand = clock.Sleep, clock.Now, func() float64 { return 0.5 }
			var calls []int

			attempts, err := p.Do(context.Background(), script(&calls, tc.retryAfter, tc.errs...), isRetryable)

			if attempts != tc.wantAttempts || len(calls) != tc.wantAttempts {
				t.Errorf("attempts = %d (op ran %d times), want %d", attempts, len(calls), tc.wantAttempts)
			}
			for i, a := range calls {
				if a != i+1 {
					t.Errorf("op got attempt numbers %v, want 1, 2, …", calls)
					break
				}
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if got := clock.Sleeps(); !clEqualDurations(got, tc.wantSleeps) {
				t.Errorf("sleeps = %v, want %v", got, tc.wantSleeps)
			}
		})
	}
}

func TestRetryJitterStaysUnderTheCeiling(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.999999, -1, 1, 7} { // out-of-range values fall back to 0.5
		clock := newClClock(clT0)
		p := vbctoken.RetryPolicy{MaxAttempts: 6, Sleep: clock.Sleep, Now: clock.Now, Rand: func() float64 { return r }}
		var calls []int
		p.Do(context.Background(), script(&calls, 0, errRetryable), nil)
		ceiling := 200 * time.Millisecond // the default Initial
		for i, d := range clock.Sleeps() {
			if d < 0 || d >= ceiling {
				t.Errorf("rand %v: sleep %d = %v, want in [0, %v)", r, i+1, d, ceiling)
			}
			ceiling *= 2
		}
	}
}

func TestRetryDeadline(t *testing.T) {
	t.Run("stops when the next wait would pass the deadline", func(t *testing.T) {
		clock := newClClock(clT0) // a fake date: only the time spent counts against the deadline
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p := vbctoken.RetryPolicy{Initial: 2 * time.Second, Max: time.Minute, MaxAttempts: -1,
			Sleep: clock.Sleep, Now: clock.Now, Rand: func() float64 { return 0.999 }}
		var calls []int

		attempts, err := p.Do(ctx, script(&calls, 0, errRetryable), isRetryable)

		// Waits of ≈2 s and ≈4 s fit into 10 s; the next (≈8 s) would end past it.
		if attempts != 3 || !errors.Is(err, errRetryable) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("attempts = %d, err = %v; want 3 and the last op error alone", attempts, err)
		}
		if n := len(clock.Sleeps()); n != 2 {
			t.Errorf("slept %d times, want 2", n)
		}
	})
	t.Run("no MaxAttempts: retries until the deadline", func(t *testing.T) {
		clock := newClClock(clT0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p := vbctoken.RetryPolicy{Initial: time.Second, Max: time.Second, MaxAttempts: -1,
			Sleep: clock.Sleep, Now: clock.Now, Rand: func() float64 { return 0.5 }}
		var calls []int

		attempts, _ := p.Do(ctx, script(&calls, 0, errRetryable), nil)

		// 0.5 s per wait: the wait after attempt n ends at n·0.5 s; it must end before 60 s.
		if attempts < 115 || attempts > 121 {
			t.Errorf("attempts = %d, want ≈120", attempts)
		}
	})
	t.Run("cancelled during the wait wraps both errors", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		p := vbctoken.RetryPolicy{Sleep: func(ctx context.Context, d time.Duration) error {
			cancel()
			return ctx.Err()
		}}
		var calls []int

		attempts, err := p.Do(ctx, script(&calls, 0, errRetryable), isRetryable)

		if attempts != 1 || !errors.Is(err, errRetryable) || !errors.Is(err, context.Canceled) {
			t.Errorf("attempts = %d, err = %v; want 1, wrapping the op error and Canceled", attempts, err)
		}
	})
	t.Run("context already done: one attempt, both errors", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		clock := newClClock(clT0)
		p := vbctoken.RetryPolicy{Sleep: clock.Sleep, Now: clock.Now}
		var calls []int

		attempts, err := p.Do(ctx, script(&calls, 0, errRetryable), isRetryable)

		if attempts != 1 || !errors.Is(err, errRetryable) || !errors.Is(err, context.Canceled) || len(clock.Sleeps()) != 0 {
			t.Errorf("attempts = %d, err = %v, sleeps %v", attempts, err, clock.Sleeps())
		}
	})
	t.Run("the op's own context error is not repeated", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		op := func(int) (time.Duration, error) {
			cancel()
			return 0, ctx.Err()
		}

		_, err := vbctoken.RetryPolicy{}.Do(ctx, op, nil)

		if err != context.Canceled {
			t.Errorf("err = %v, want context.Canceled itself", err)
		}
	})
}

// TestRetryDefaultSleep checks the real timer only through paths that do not wait.
func TestRetryDefaultSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var calls []int
	start := time.Now()

	// The default Sleep meets a cancelled context: it must return at once, not after 200 ms.
	p := vbctoken.RetryPolicy{Rand: func() float64 { return 0.999 }}
	attempts, err := p.Do(ctx, func(a int) (time.Duration, error) {
		calls = append(calls, a)
		return time.Hour, errRetryable
	}, nil)

	if attempts != 1 || !errors.Is(err, context.Canceled) {
		t.Errorf("attempts = %d, err = %v", attempts, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Do waited %v on a cancelled context", time.Since(start))
	}
}
