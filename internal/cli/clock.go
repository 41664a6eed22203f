package cli

import (
	"sync"
	"time"
)

// MaxClockSpeed bounds --clock-speed: at 100000× a VBC day passes in under a second.
const MaxClockSpeed = 100000

// clock is the clock serve shares between the sandbox, the keeper and the scheduler. At
// speed 1 it is the wall clock. Faster, it runs speed times faster, so that a VBC "day"
// passes in seconds. It starts at the wall clock's time, or later where an earlier serve's
// sped-up clock left the store (resume): a store's times never lie in its clock's future,
// so the clock of a store stands still while no serve runs and never goes back.
//
// hold slows it to real speed for a moment: the sandbox's authorization codes live
// vbcsandbox.CodeTTL (10 minutes) of sandbox time, which at 3600× is a sixth of a second,
// less than a browser needs to follow the redirect to the callback. Serve holds the clock
// from the sandbox's approval until the callback has exchanged the code.
type clock struct {
	wall   func() time.Time
	speed  float64
	offset time.Duration // at speed 1: how far ahead of the wall clock it runs

	mu        sync.Mutex
	baseWall  time.Time // wall time of the last rebase
	baseVirt  time.Time // clock time at baseWall
	held      bool
	holdUntil time.Time // wall time when a hold ends by itself
}

// rebaseEvery keeps the scaled elapsed time far from overflowing a Duration.
const rebaseEvery = time.Minute

func newClock(wall func() time.Time, speed float64, resume time.Time) *clock {
	now := wall()
	virt := now.Round(0)
	if resume.After(virt) {
		virt = resume
	}
	return &clock{wall: wall, speed: speed, baseWall: now, baseVirt: virt, offset: virt.Sub(now.Round(0))}
}

// Now returns the shared time.
func (c *clock) Now() time.Time {
	if c.speed == 1 {
		return c.wall().Add(c.offset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.wall()
	if c.held && !w.Before(c.holdUntil) {
		c.rebaseLocked(c.holdUntil)
		c.held = false
	}
	if w.Sub(c.baseWall) > rebaseEvery {
		c.rebaseLocked(w)
	}
	return c.atLocked(w)
}

// Speed returns how many times faster than the wall clock the clock runs.
func (c *clock) Speed() float64 { return c.speed }

// hold makes the clock run at real speed until release or until d of wall time has passed.
func (c *clock) hold(d time.Duration) {
	if c.speed == 1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.wall()
	c.rebaseLocked(w)
	c.held, c.holdUntil = true, w.Add(d)
}

// release ends a hold.
func (c *clock) release() {
	if c.speed == 1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return
	}
	w := c.wall()
	if w.After(c.holdUntil) {
		w = c.holdUntil
	}
	c.rebaseLocked(w)
	c.held = false
}

func (c *clock) rateLocked() float64 {
	if c.held {
		return 1
	}
	return c.speed
}

func (c *clock) atLocked(w time.Time) time.Time {
	return c.baseVirt.Add(time.Duration(float64(w.Sub(c.baseWall)) * c.rateLocked()))
}

func (c *clock) rebaseLocked(w time.Time) {
	if w.Before(c.baseWall) {
		return
	}
	c.baseVirt, c.baseWall = c.atLocked(w), w
}
