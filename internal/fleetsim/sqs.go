package fleetsim

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// message is one SQS message: {"account":…,"force":false} sent by a sweep.
type message struct {
	id        int64
	body      string
	sweep     int           // the sweep that sent it
	delay     time.Duration // DelaySeconds
	visibleAt time.Time
	receives  int
	receipt   int
	deleted   bool
}

// delivery is one receipt of a message (SQS's receipt handle).
type delivery struct {
	m       *message
	receipt int
}

// queue is an SQS standard queue with a redrive policy, as the event source mapping sees
// it: messages sent with DelaySeconds, received up to ten at a time, invisible for the
// visibility timeout after each receive, deleted by the poller when their record
// succeeded, moved to the dead-letter queue when received more than maxReceiveCount
// times, and now and then delivered twice (at-least-once delivery).
type queue struct {
	s *sim

	mu      sync.Mutex
	h       msgHeap
	live    int
	seq     int64
	waiters []*waiter
	closing bool

	dlq       map[string]int // account → messages moved to the DLQ
	sweepLeft map[int]int
	sweepDone map[int]time.Time // every message of the sweep deleted or moved to the DLQ
	sweepLast map[int]time.Time // the sweep's last successful record (deleted)

	sendBatches, receives, deleteBatches atomic.Int64
	duplicates                           atomic.Int64
}

func newQueue(s *sim) *queue {
	return &queue{s: s, dlq: map[string]int{}, sweepLeft: map[int]int{}, sweepDone: map[int]time.Time{}, sweepLast: map[int]time.Time{}}
}

// send enqueues one SendMessageBatch (up to ten messages) and wakes idle pollers.
func (q *queue) send(msgs []*message) {
	q.sendBatches.Add(1)
	q.mu.Lock()
	for _, m := range msgs {
		q.seq++
		m.id = q.seq
		heap.Push(&q.h, m)
		q.live++
		q.sweepLeft[m.sweep]++
	}
	ws := q.waiters
	q.waiters = nil
	q.mu.Unlock()
	for _, w := range ws {
		q.s.clock.wake(w)
	}
}

// close lets pollers exit once every message is gone.
func (q *queue) close() {
	q.mu.Lock()
	q.closing = true
	ws := q.waiters
	q.waiters = nil
	q.mu.Unlock()
	for _, w := range ws {
		q.s.clock.wake(w)
	}
}

// receive returns up to max visible messages, waiting in virtual time (long polling) for
// one to be sent or become visible; nil once the queue is closing and empty.
func (q *queue) receive(max int) []delivery {
	for {
		q.mu.Lock()
		got := q.takeLocked(q.s.clock.Now(), max)
		if len(got) > 0 {
			q.mu.Unlock()
			q.receives.Add(1)
			return got
		}
		if q.live == 0 && q.closing {
			q.mu.Unlock()
			return nil
		}
		until, _ := q.nextVisibleLocked()
		w := newWaiter()
		q.waiters = append(q.waiters, w)
		q.mu.Unlock()
		q.s.clock.wait(w, until)
	}
}

// tryReceive returns up to max messages visible now, without waiting.
func (q *queue) tryReceive(max int) []delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	got := q.takeLocked(q.s.clock.Now(), max)
	if len(got) > 0 {
		q.receives.Add(1)
	}
	return got
}

func (q *queue) takeLocked(now time.Time, max int) []delivery {
	var got []delivery
	var back []*message
	cfg := &q.s.cfg
	for len(got) < max && len(q.h) > 0 && !q.h[0].visibleAt.After(now) {
		m := heap.Pop(&q.h).(*message)
		if m.deleted {
			continue
		}
		m.receives++
		if m.receives > cfg.MaxReceiveCount {
			m.deleted = true
			q.goneLocked(m, now)
			q.dlq[accountOf(m.body)]++
			continue
		}
		m.visibleAt = now.Add(cfg.VisibilityTimeout)
		m.receipt++
		got = append(got, delivery{m: m, receipt: m.receipt})
		back = append(back, m)
	}
	for _, m := range back {
		heap.Push(&q.h, m)
	}
	if p := cfg.Plan.Duplicate; p > 0 {
		for _, d := range got {
			if q.s.driverChance(p) {
				// At-least-once delivery: another poller gets the same message.
				q.seq++
				dup := &message{id: q.seq, body: d.m.body, sweep: d.m.sweep, visibleAt: now}
				heap.Push(&q.h, dup)
				q.live++
				q.sweepLeft[dup.sweep]++
				q.duplicates.Add(1)
			}
		}
	}
	return got
}

func (q *queue) nextVisibleLocked() (time.Time, bool) {
	for len(q.h) > 0 {
		if q.h[0].deleted {
			heap.Pop(&q.h)
			continue
		}
		return q.h[0].visibleAt, true
	}
	return time.Time{}, false
}

// delete removes a delivered message; a stale receipt (the message was received again
// since) deletes nothing, as in SQS.
func (q *queue) delete(d delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d.m.deleted || d.m.receipt != d.receipt {
		return
	}
	d.m.deleted = true
	now := q.s.clock.Now()
	q.sweepLast[d.m.sweep] = now
	q.goneLocked(d.m, now)
}

func (q *queue) goneLocked(m *message, now time.Time) {
	q.live--
	q.sweepLeft[m.sweep]--
	if q.sweepLeft[m.sweep] == 0 {
		q.sweepDone[m.sweep] = now
	}
	if q.live == 0 && q.closing {
		ws := q.waiters
		q.waiters = nil
		for _, w := range ws {
			q.s.clock.wake(w)
		}
	}
}

func accountOf(body string) string {
	var b messageBody
	_ = json.Unmarshal([]byte(body), &b)
	return b.Account
}

type msgHeap []*message

func (h msgHeap) Len() int { return len(h) }
func (h msgHeap) Less(i, j int) bool {
	if !h[i].visibleAt.Equal(h[j].visibleAt) {
		return h[i].visibleAt.Before(h[j].visibleAt)
	}
	return h[i].id < h[j].id
}
func (h msgHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *msgHeap) Push(x any)   { *h = append(*h, x.(*message)) }
func (h *msgHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return m
}

// Lambda execution environments are recycled when idle or old (a cold start each time).
const (
	envIdle   = 10 * time.Minute
	envMaxAge = 2 * time.Hour
	// recordMargin is what each record's deadline keeps back from the invocation's, to
	// answer with batchItemFailures in time.
	recordMargin = 2 * time.Second
)

// slot is one of the event source mapping's N concurrent invocations: it polls the queue
// and invokes the refresher with each batch, on an execution environment it keeps warm
// until Lambda recycles it (idle, old) or the invocation dies.
func (s *sim) slot() {
	var e *env
	for {
		batch := s.q.receive(s.cfg.BatchSize)
		if batch == nil {
			return
		}
		if w := s.cfg.BatchWindow; w > 0 && len(batch) < s.cfg.BatchSize {
			s.clock.sleep(w)
			batch = append(batch, s.q.tryReceive(s.cfg.BatchSize-len(batch))...)
		}
		now := s.clock.Now()
		cold := e == nil || e.dead.Load() || now.Sub(e.lastUsed) > envIdle || now.Sub(e.born) > envMaxAge
		if cold {
			e = s.newEnv(roleRefresher, s.newPacer(), true)
		}
		s.invoke(e, batch, cold)
		e.lastUsed = s.clock.Now()
	}
}

func (s *sim) newPacer() *pacer {
	if s.cfg.WriteBudget <= 0 {
		return nil
	}
	return &pacer{interval: time.Duration(float64(time.Second) * float64(s.cfg.Concurrency) / s.cfg.WriteBudget)}
}

// invoke is one refresher invocation with an SQS batch: each record on its own actor
// with its own deadline; the records that succeeded are deleted, the others are the
// batchItemFailures and come back after the visibility timeout. A killed invocation
// answers nothing: every message of its batch comes back.
func (s *sim) invoke(e *env, batch []delivery, cold bool) {
	start := s.clock.Now()
	overhead := e.expDur(8*time.Millisecond, 8*time.Millisecond)
	if cold {
		overhead += e.expDur(120*time.Millisecond, 60*time.Millisecond) // init: runtime, SDK config
	}
	s.clock.sleep(overhead)
	ictx, cancel := s.clock.withTimeout(e.ctx, s.cfg.LambdaTimeout-overhead)
	var finished atomic.Bool
	if e.chance(s.cfg.Plan.Kill) {
		at := time.Duration(e.float() * float64(s.cfg.Plan.KillWithin))
		s.clock.spawn(func() {
			s.clock.sleep(at)
			if !finished.Load() {
				s.stats.kills.Add(1)
				e.kill()
			}
		})
	}
	ok := make([]bool, len(batch))
	g := group{c: s.clock}
	for i, d := range batch {
		g.spawn(func() { ok[i] = s.record(ictx, e, d) })
	}
	g.wait()
	finished.Store(true)
	cancel()
	s.stats.refresher.add(s.clock.Now().Sub(start))
	s.stats.records.Add(int64(len(batch)))
	if e.dead.Load() {
		s.stats.killedInvocations.Add(1)
		return
	}
	deleted := 0
	for i, d := range batch {
		if ok[i] {
			s.q.delete(d)
			deleted++
		} else {
			s.stats.batchItemFailures.Add(1)
		}
	}
	if deleted > 0 {
		s.q.deleteBatches.Add(1)
	}
}

// record is the refresher's handling of one SQS record: the account's keeper refreshes
// it under the record's own deadline.
func (s *sim) record(ictx context.Context, e *env, d delivery) bool {
	var b messageBody
	if err := json.Unmarshal([]byte(d.m.body), &b); err != nil {
		s.violation("the refresher got an unreadable message")
		return true
	}
	rctx, cancel := s.clock.withTimeout(ictx, s.cfg.LambdaTimeout-recordMargin)
	defer cancel()
	k, err := e.accounts.Keeper(b.Account)
	if err != nil {
		s.violation("no keeper for account %s: %v", b.Account, err)
		return false
	}
	t0 := s.clock.Now()
	res, err := k.Refresh(rctx, b.Force)
	ms := s.clock.Now().Sub(t0).Milliseconds()
	switch res.Outcome {
	case vbctoken.OutcomeRefreshed:
		s.stats.refreshMs.Add(ms)
	case vbctoken.OutcomeSkipped:
		s.stats.skipMs.Add(ms)
	}
	s.observe(e, b.Account, res, err)
	return err == nil
}

// sweepSenders is how many SendMessageBatch calls the sweep makes at once.
const sweepSenders = 8

// sweep is the hourly EventBridge rule's invocation of the refresher with no account: it
// lists the accounts (the index shards) and sends one message per account, spread with
// DelaySeconds over the configured spread.
func (s *sim) sweep(h int) {
	e := s.newEnv(roleSweeper, nil, false)
	start := s.clock.Now()
	s.clock.sleep(e.expDur(130*time.Millisecond, 60*time.Millisecond))
	ctx, cancel := s.clock.withTimeout(e.ctx, time.Minute)
	defer cancel()
	ids, err := e.accounts.List(ctx)
	if err != nil {
		s.violation("sweep %d could not list the accounts: %v", h, err)
		s.stats.sweeper.add(s.clock.Now().Sub(start))
		return
	}
	var batches [][]*message
	for i := 0; i < len(ids); i += 10 {
		var b []*message
		for _, id := range ids[i:min(i+10, len(ids))] {
			delay := time.Duration(e.float()*float64(s.cfg.Spread/time.Second+1)) * time.Second
			b = append(b, &message{body: encodeBody(id), sweep: h, delay: delay})
		}
		batches = append(batches, b)
	}
	next := 0
	var mu sync.Mutex
	g := group{c: s.clock}
	for range sweepSenders {
		g.spawn(func() {
			for {
				mu.Lock()
				if next == len(batches) {
					mu.Unlock()
					return
				}
				b := batches[next]
				next++
				mu.Unlock()
				s.clock.sleep(e.expDur(8*time.Millisecond, 6*time.Millisecond))
				now := s.clock.Now()
				for _, m := range b {
					m.visibleAt = now.Add(m.delay)
				}
				s.q.send(b)
			}
		})
	}
	g.wait()
	s.stats.sweeper.add(s.clock.Now().Sub(start))
	s.mu.Lock()
	s.sweeps = append(s.sweeps, sweepInfo{hour: h, start: start, accounts: len(ids)})
	s.mu.Unlock()
}

// lambdaUse accumulates one function's invocations and billed duration (1 ms
// granularity).
type lambdaUse struct {
	invocations atomic.Int64
	billedMs    atomic.Int64
}

func (l *lambdaUse) add(d time.Duration) {
	l.invocations.Add(1)
	l.billedMs.Add(int64((d + time.Millisecond - 1) / time.Millisecond))
}

// errIsThrottle reports whether err comes from Secrets Manager throttling: the quota, the
// SDK's retry quota, or the refresher's own write pacer.
func errIsThrottle(err error) bool {
	var quota ratelimit.QuotaExceededError
	return apiCode(err) == "ThrottlingException" || errors.As(err, &quota)
}
