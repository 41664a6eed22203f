package fleetsim

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// clock is the simulation's virtual clock: a discrete-event scheduler for goroutines
// ("actors": a refresher invocation, one SQS record, the hourly sweep, an admin). It takes
// the idea of internal/soak's Clock (time moves only when every actor is asleep or
// blocked) and changes two things for a fleet of 10,000 accounts:
//   - every actor due at the same virtual instant wakes at once, and wake-ups are rounded
//     up to a resolution (a millisecond), so actors of one instant run in parallel on the
//     machine's cores and a month costs millions, not billions, of scheduler steps;
//   - an actor blocked on another (a poller on an empty queue, an invocation on its
//     records) is handed back its "running" count by whoever wakes it, under the clock's
//     lock, so time can never jump while a woken actor has not run yet.
//
// A sleeping actor is not interrupted by its context: it sees ctx.Err() when its sleep
// ends. Sleeps are short (a store call's latency, a backoff that RetryPolicy never lets
// cross a deadline), and a killed process makes no further call anyway (env.dead).
type clock struct {
	mu       sync.Mutex
	now      time.Time
	res      time.Duration
	running  int
	alive    int
	sleepers sleeperHeap
	timers   timerHeap
	seq      uint64
	steps    uint64 // instants the clock moved to
	wakes    uint64 // actors woken
	done     chan struct{}

	// Finished actors' goroutines wait a while for the next actor: a keeper's call chain
	// grows a goroutine's stack to tens of kilobytes, and 7 million fresh goroutines
	// would copy their stacks as often.
	work     chan func()
	idle     atomic.Int32
	poolStop chan struct{}
}

// maxIdleWorkers bounds the goroutines kept for reuse.
const maxIdleWorkers = 512

func newClock(start time.Time, res time.Duration) *clock {
	if res <= 0 {
		res = time.Millisecond
	}
	return &clock{now: start, res: res, work: make(chan func()), poolStop: make(chan struct{})}
}

// Now returns the virtual time.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// run starts f as the first actor and returns once every actor has ended.
func (c *clock) run(f func()) {
	c.mu.Lock()
	c.done = make(chan struct{})
	done := c.done
	c.mu.Unlock()
	c.spawn(f)
	<-done
	close(c.poolStop)
}

// spawn starts f as an actor running at the current virtual time.
func (c *clock) spawn(f func()) {
	c.mu.Lock()
	c.running++
	c.alive++
	c.mu.Unlock()
	select {
	case c.work <- f:
	default:
		go c.worker(f)
	}
}

// worker runs actors until none comes while it idles (or too many idle already).
func (c *clock) worker(f func()) {
	for {
		c.runActor(f)
		if c.idle.Add(1) > maxIdleWorkers {
			c.idle.Add(-1)
			return
		}
		select {
		case f = <-c.work:
			c.idle.Add(-1)
		case <-c.poolStop:
			c.idle.Add(-1)
			return
		}
	}
}

func (c *clock) runActor(f func()) {
	defer c.exit()
	f()
}

func (c *clock) exit() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running--
	c.alive--
	if c.alive == 0 {
		if c.done != nil {
			close(c.done)
			c.done = nil
		}
		return
	}
	c.advanceLocked()
}

// Sleep waits d of virtual time (rounded up to the clock's resolution); only actors may
// call it. It has the signature of vbctoken.RetryPolicy.Sleep and returns ctx's error
// when ctx ended before or during the sleep.
func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleep(d)
	return ctx.Err()
}

func (c *clock) sleep(d time.Duration) {
	c.mu.Lock()
	w := newWaiter()
	c.parkLocked(w, c.now.Add(max(d, 0)))
	c.mu.Unlock()
	<-w.ch
}

// sleepUntil sleeps until t (at once when t has passed).
func (c *clock) sleepUntil(t time.Time) {
	c.sleep(t.Sub(c.Now()))
}

// parkLocked blocks w's actor until wake(w) or, when until is not zero, until then
// (rounded up to the clock's resolution).
func (c *clock) parkLocked(w *waiter, until time.Time) {
	if !until.IsZero() {
		if until.Before(c.now) {
			until = c.now
		}
		if r := until.Sub(c.now) % c.res; r != 0 {
			until = until.Add(c.res - r)
		}
		heap.Push(&c.sleepers, &sleeper{wake: until, seq: c.seq, w: w})
		c.seq++
	}
	w.parked = true
	c.running--
	c.advanceLocked()
}

// advanceLocked moves time when no actor runs: to the earliest wake-up, waking every
// actor due then; it expires the virtual deadlines time passes. A sleeper whose waiter
// was woken early by another actor is stale and skipped.
func (c *clock) advanceLocked() {
	for c.running == 0 {
		if len(c.sleepers) == 0 {
			if c.alive > 0 {
				panic(fmt.Sprintf("fleetsim: deadlock: %d actors blocked, none asleep", c.alive))
			}
			return
		}
		t := c.sleepers[0].wake
		if t.After(c.now) {
			c.now = t
			c.steps++
			c.fireLocked()
		}
		for len(c.sleepers) > 0 && !c.sleepers[0].wake.After(c.now) {
			s := heap.Pop(&c.sleepers).(*sleeper)
			if !s.w.woken {
				c.wakes++
				c.wakeLocked(s.w)
			}
		}
	}
}

// waiter is one actor blocked on another (not on time).
type waiter struct {
	ch     chan struct{}
	parked bool
	woken  bool
	byWake bool // woken by wake, not by time
}

func newWaiter() *waiter { return &waiter{ch: make(chan struct{})} }

// wait blocks the calling actor until wake(w), or until the virtual time until when it
// is not zero; it returns at once if w was woken already. It reports whether w was woken
// by wake (false: the time ran out).
func (c *clock) wait(w *waiter, until time.Time) bool {
	c.mu.Lock()
	if w.woken {
		c.mu.Unlock()
		return true
	}
	c.parkLocked(w, until)
	c.mu.Unlock()
	<-w.ch
	return w.byWake
}

// wake releases w, counting its actor as running at once (before the caller may sleep).
func (c *clock) wake(w *waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !w.woken {
		w.byWake = true
	}
	c.wakeLocked(w)
}

func (c *clock) wakeLocked(w *waiter) {
	if w.woken {
		return
	}
	w.woken = true
	if w.parked {
		c.running++
	}
	close(w.ch)
}

// group waits for a set of actors, as sync.WaitGroup does, in virtual time.
type group struct {
	c *clock
	n int
	w *waiter
}

// spawn starts f as an actor of the group.
func (g *group) spawn(f func()) {
	g.c.mu.Lock()
	g.n++
	g.c.mu.Unlock()
	g.c.spawn(func() {
		defer g.done()
		f()
	})
}

func (g *group) done() {
	g.c.mu.Lock()
	defer g.c.mu.Unlock()
	g.n--
	if g.n == 0 && g.w != nil {
		g.w.byWake = true
		g.c.wakeLocked(g.w)
		g.w = nil
	}
}

// wait blocks the calling actor until every actor of the group has ended.
func (g *group) wait() {
	g.c.mu.Lock()
	if g.n == 0 {
		g.c.mu.Unlock()
		return
	}
	w := newWaiter()
	g.w = w
	g.c.parkLocked(w, time.Time{})
	g.c.mu.Unlock()
	<-w.ch
}

// vctx is a context with a virtual deadline: it ends when the clock passes the deadline
// (Err then says DeadlineExceeded) or when its parent ends. Deadline reports the real
// instant that lies as far ahead as the virtual deadline does now, so code that budgets
// with time.Until(deadline) — vbctoken.RetryPolicy.Do, the keeper's StoreReserve split and
// lease length — budgets in virtual time (internal/soak's opCtx does the same).
type vctx struct {
	context.Context
	cancel   context.CancelFunc
	clock    *clock
	deadline time.Time
	timedOut atomic.Bool
	index    int
}

// withTimeout returns a child of parent that expires d of virtual time from now.
func (c *clock) withTimeout(parent context.Context, d time.Duration) (*vctx, context.CancelFunc) {
	base, cancel := context.WithCancel(parent)
	c.mu.Lock()
	v := &vctx{Context: base, cancel: cancel, clock: c, deadline: c.now.Add(d)}
	heap.Push(&c.timers, v)
	c.mu.Unlock()
	return v, func() {
		c.mu.Lock()
		if v.index >= 0 {
			heap.Remove(&c.timers, v.index)
		}
		c.mu.Unlock()
		cancel()
	}
}

// Deadline implements context.Context in virtual time.
func (v *vctx) Deadline() (time.Time, bool) {
	return time.Now().Add(v.deadline.Sub(v.clock.Now())), true
}

// Err implements context.Context.
func (v *vctx) Err() error {
	err := v.Context.Err()
	if err != nil && v.timedOut.Load() {
		return context.DeadlineExceeded
	}
	return err
}

// virtualDeadline returns the virtual deadline of ctx: exact for a vctx, else converted
// from its real deadline (a context the keeper derived with context.WithDeadline).
func (c *clock) virtualDeadline(ctx context.Context) (time.Time, bool) {
	if v, ok := ctx.(*vctx); ok {
		return v.deadline, true
	}
	d, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, false
	}
	return c.Now().Add(time.Until(d)), true
}

// fireLocked expires the deadlines time has passed.
func (c *clock) fireLocked() {
	for len(c.timers) > 0 && !c.timers[0].deadline.After(c.now) {
		v := heap.Pop(&c.timers).(*vctx)
		v.timedOut.Store(true)
		v.cancel()
	}
}

type sleeper struct {
	wake time.Time
	seq  uint64
	w    *waiter
}

// sleeperHeap orders sleepers by wake-up time, then by arrival.
type sleeperHeap []*sleeper

func (h sleeperHeap) Len() int { return len(h) }
func (h sleeperHeap) Less(i, j int) bool {
	if !h[i].wake.Equal(h[j].wake) {
		return h[i].wake.Before(h[j].wake)
	}
	return h[i].seq < h[j].seq
}
func (h sleeperHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sleeperHeap) Push(x any)   { *h = append(*h, x.(*sleeper)) }
func (h *sleeperHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// timerHeap orders virtual deadlines.
type timerHeap []*vctx

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	v := x.(*vctx)
	v.index = len(*h)
	*h = append(*h, v)
}
func (h *timerHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	v.index = -1
	return v
}
