package fleetsim

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// TestClockOrdersActorsByVirtualTime: actors that sleep different durations finish in
// virtual-time order, and time moves only as far as the sleeps say, without real waiting.
func TestClockOrdersActorsByVirtualTime(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	var mu sync.Mutex
	var order []time.Duration
	c.run(func() {
		for _, d := range []time.Duration{3 * time.Hour, time.Second, 20 * time.Minute, 0} {
			c.spawn(func() {
				c.sleep(d)
				mu.Lock()
				order = append(order, c.Now().Sub(t0))
				mu.Unlock()
			})
		}
	})
	want := []time.Duration{0, time.Second, 20 * time.Minute, 3 * time.Hour}
	if len(order) != len(want) {
		t.Fatalf("order = %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order = %v, want %v", order, want)
		}
	}
}

// TestClockRoundsWakeUpsAndWakesThemTogether: wake-ups round up to the resolution, and
// actors due at one instant run at that instant.
func TestClockRoundsWakeUpsAndWakesThemTogether(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	var mu sync.Mutex
	var at []time.Time
	c.run(func() {
		for _, d := range []time.Duration{100 * time.Microsecond, 900 * time.Microsecond, time.Millisecond} {
			c.spawn(func() {
				c.sleep(d)
				mu.Lock()
				at = append(at, c.Now())
				mu.Unlock()
			})
		}
	})
	for _, a := range at {
		if !a.Equal(t0.Add(time.Millisecond)) {
			t.Fatalf("woke at %v, want all at +1ms", at)
		}
	}
	if c.steps != 1 {
		t.Errorf("clock moved %d times, want 1", c.steps)
	}
}

// TestClockWaiterHandsOverWithoutTimeJumping: an actor blocked on another resumes at the
// virtual instant it was woken, even when the waker sleeps right after waking it.
func TestClockWaiterHandsOverWithoutTimeJumping(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	w := newWaiter()
	var resumed time.Time
	var byWake bool
	c.run(func() {
		c.spawn(func() {
			byWake = c.wait(w, time.Time{})
			resumed = c.Now()
		})
		c.sleep(time.Minute)
		c.wake(w)
		c.sleep(time.Hour) // the waiter must run at +1m, not after this sleep
	})
	if !byWake || !resumed.Equal(t0.Add(time.Minute)) {
		t.Errorf("waiter resumed at %v (by wake %v), want +1m by wake", resumed.Sub(t0), byWake)
	}
}

// TestClockWaitTimesOut: a wait with a time limit ends then, reporting it was not woken.
func TestClockWaitTimesOut(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	var byWake bool
	var at time.Time
	c.run(func() {
		w := newWaiter()
		byWake = c.wait(w, t0.Add(5*time.Minute))
		at = c.Now()
		c.wake(w) // late: nothing happens
	})
	if byWake || !at.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("wait returned at %v by wake %v, want +5m by time", at.Sub(t0), byWake)
	}
}

// TestVirtualDeadline: a vctx expires when the clock passes its deadline, with
// DeadlineExceeded, and reports its deadline in virtual terms; a group waits for all.
func TestVirtualDeadline(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	var errAt, errAfter error
	var left time.Duration
	c.run(func() {
		ctx, cancel := c.withTimeout(context.Background(), time.Minute)
		defer cancel()
		d, _ := ctx.Deadline()
		left = time.Until(d)
		g := group{c: c}
		g.spawn(func() { c.sleep(59 * time.Second); errAt = ctx.Err() })
		g.spawn(func() { c.sleep(61 * time.Second); errAfter = ctx.Err() })
		g.wait()
	})
	if left < 59*time.Second || left > time.Minute {
		t.Errorf("Deadline is %v away, want about a minute", left)
	}
	if errAt != nil {
		t.Errorf("before the deadline Err = %v", errAt)
	}
	if !errors.Is(errAfter, context.DeadlineExceeded) {
		t.Errorf("after the deadline Err = %v, want DeadlineExceeded", errAfter)
	}
}

// TestClockDetectsDeadlock: actors that all wait on each other are a bug of the
// simulation, reported rather than hanging.
func TestClockDetectsDeadlock(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	defer func() {
		if recover() == nil {
			t.Error("no panic on deadlock")
		}
	}()
	c.mu.Lock()
	c.alive, c.running = 1, 0
	c.advanceLocked()
	c.mu.Unlock()
}

// TestPacerSpacesWrites: a pacer admits one write per interval and refuses a slot past
// the caller's deadline.
func TestPacerSpacesWrites(t *testing.T) {
	c := newClock(t0, time.Millisecond)
	p := &pacer{interval: 125 * time.Millisecond}
	var at []time.Duration
	var refused error
	c.run(func() {
		ctx, cancel := c.withTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		for range 5 {
			if err := p.wait(ctx, c); err != nil {
				refused = err
				break
			}
			at = append(at, c.Now().Sub(t0))
		}
	})
	want := []time.Duration{0, 125 * time.Millisecond, 250 * time.Millisecond, 375 * time.Millisecond}
	if len(at) != len(want) {
		t.Fatalf("writes at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("writes at %v, want %v", at, want)
		}
	}
	if !errors.Is(refused, errNoWriteSlot) {
		t.Errorf("fifth write: %v, want errNoWriteSlot", refused)
	}
}
