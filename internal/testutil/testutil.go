// Package testutil holds the small fakes that tests across vbctoken share: a settable clock
// whose Sleep only moves it, a buffer safe for concurrent writers (captured logs), and one
// RSA key for every VBC sandbox of a test binary.
package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"time"
)

// Clock is a fake clock: Now returns the set time, Advance and Sleep move it. It is safe
// for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
	// Yield, when set, makes Sleep also wait this long in real time after moving the clock,
	// so that concurrent goroutines progress while one backs off in a race test. No test
	// asserts on real time.
	Yield time.Duration
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Sleep advances the clock by d instead of waiting (a RetryPolicy.Sleep); it returns ctx's
// error when ctx is already done.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	if c.Yield > 0 {
		time.Sleep(c.Yield)
	}
	return nil
}

// Buffer is a bytes.Buffer safe for concurrent writers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Bytes returns a copy of everything written so far.
func (s *Buffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// SigningKey returns one 2048-bit RSA key per test binary, for sandboxes' id_tokens:
// generating one takes about half a second under the race detector.
var SigningKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("testutil: generate RSA key: " + err.Error())
	}
	return k
})
