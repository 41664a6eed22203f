package soak

import (
	"container/heap"
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the simulation's virtual clock, shared by the VBC sandbox, every keeper, every
// retry sleep and the app readers. Nothing in the simulation waits in real time.
//
// It is a small discrete-event scheduler. Goroutines started by Run are actors (one
// simulated process each). An actor is running, sleeping (in Sleep) or idle (blocked on
// another actor, see Idle). Time moves only when no actor is running: it jumps to the
// earliest sleeper's wake-up time and wakes that sleeper alone. So a keeper backing off for
// 10 s lets a concurrent keeper finish whatever it is doing first, exactly as in real time,
// and a keeper waiting for another writer (awaitOtherWriter) never gives up merely because
// the other one's HTTP round trip took real milliseconds. Between steps the driver moves
// time with AdvanceTo.
//
// Fake deadlines (Lambda timeouts) are contexts made by newOpContext: they expire when
// the clock passes them, whatever the real time.
type Clock struct {
	mu       sync.Mutex
	now      time.Time
	running  int
	sleepers sleeperHeap
	seq      uint64
	timers   []*opCtx
}

// NewClock returns a clock showing start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the virtual time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Run starts each function as an actor and returns when all of them have returned.
func (c *Clock) Run(actors ...func()) {
	var wg sync.WaitGroup
	c.mu.Lock()
	c.running += len(actors)
	c.mu.Unlock()
	for _, f := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				c.mu.Lock()
				c.running--
				c.advanceLocked()
				c.mu.Unlock()
			}()
			f()
		}()
	}
	wg.Wait()
}

// Sleep waits d of virtual time or until ctx is done; only actors may call it. It has the
// signature of vbctoken.RetryPolicy.Sleep.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		runtime.Gosched()
		return ctx.Err()
	}
	c.mu.Lock()
	s := &sleeper{wake: c.now.Add(d), seq: c.seq, ch: make(chan struct{})}
	c.seq++
	heap.Push(&c.sleepers, s)
	c.running--
	c.advanceLocked()
	c.mu.Unlock()
	select {
	case <-s.ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		if !s.woken {
			heap.Remove(&c.sleepers, s.index)
			c.running++
		}
		c.mu.Unlock()
		return ctx.Err()
	}
}

// Idle marks the calling actor as blocked on another actor rather than on time (waiting for
// a file lock held by a keeper that is backing off), so time may move meanwhile. The
// actor calls resume as soon as it runs again.
func (c *Clock) Idle() (resume func()) {
	c.mu.Lock()
	c.running--
	c.advanceLocked()
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.running++
			c.mu.Unlock()
		})
	}
}

// AdvanceTo moves the clock to t (never backwards). The driver calls it between steps,
// when no actor runs.
func (c *Clock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
		c.fireLocked()
	}
}

// advanceLocked wakes the earliest sleeper when nobody runs, moving time to its wake-up.
func (c *Clock) advanceLocked() {
	if c.running > 0 || len(c.sleepers) == 0 {
		return
	}
	s := heap.Pop(&c.sleepers).(*sleeper)
	if s.wake.After(c.now) {
		c.now = s.wake
		c.fireLocked()
	}
	s.woken = true
	c.running++
	close(s.ch)
}

// fireLocked expires the fake deadlines that time has passed.
func (c *Clock) fireLocked() {
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.deadline.After(c.now) {
			keep = append(keep, t)
			continue
		}
		t.expire()
	}
	clear(c.timers[len(keep):])
	c.timers = keep
}

func (c *Clock) addTimer(t *opCtx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, t)
}

func (c *Clock) removeTimer(t *opCtx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}

type sleeper struct {
	wake  time.Time
	seq   uint64
	ch    chan struct{}
	index int
	woken bool
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
func (h sleeperHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *sleeperHeap) Push(x any) {
	s := x.(*sleeper)
	s.index = len(*h)
	*h = append(*h, s)
}
func (h *sleeperHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// fakeDeadlineKey is the context key under which an opCtx exposes its virtual deadline.
type fakeDeadlineKey struct{}

// opCtx is the context of one simulated process: a virtual deadline (its Lambda timeout)
// and a cancel for process death.
//
// Deadline reports the real instant that lies as far ahead as the virtual deadline does
// now, so code that budgets with time.Until(deadline) — vbctoken.RetryPolicy.Do and the
// keeper's StoreReserve split — budgets in virtual time. Done closes when the clock passes
// the deadline or the process is killed; Err then says DeadlineExceeded or Canceled.
type opCtx struct {
	context.Context
	cancel   context.CancelFunc
	clock    *Clock
	deadline time.Time
	timedOut atomic.Bool
	onExpire func()
}

// newOpContext returns a context that expires d of virtual time from now. release must be
// called when the process ends.
func newOpContext(c *Clock, d time.Duration, onExpire func()) *opCtx {
	base, cancel := context.WithCancel(context.Background())
	ctx := &opCtx{Context: base, cancel: cancel, clock: c, deadline: c.Now().Add(d), onExpire: onExpire}
	c.addTimer(ctx)
	return ctx
}

// Deadline implements context.Context in virtual time (see opCtx).
func (c *opCtx) Deadline() (time.Time, bool) {
	return time.Now().Add(c.deadline.Sub(c.clock.Now())), true
}

// Err implements context.Context.
func (c *opCtx) Err() error {
	err := c.Context.Err()
	if err != nil && c.timedOut.Load() {
		return context.DeadlineExceeded
	}
	return err
}

// Value implements context.Context; fakeDeadlineKey yields the virtual deadline.
func (c *opCtx) Value(key any) any {
	if _, ok := key.(fakeDeadlineKey); ok {
		return c.deadline
	}
	return c.Context.Value(key)
}

// expire is called by the clock (under its lock) when the deadline passes.
func (c *opCtx) expire() {
	if c.Context.Err() != nil {
		return
	}
	c.timedOut.Store(true)
	if c.onExpire != nil {
		c.onExpire()
	}
	c.cancel()
}

// release ends the context and forgets its timer.
func (c *opCtx) release() {
	c.clock.removeTimer(c)
	c.cancel()
}
