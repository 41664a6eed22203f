package soak

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// leakKey is how many trailing bytes of a secret index it. Every secret of the simulation
// (UUID-shaped tokens and codes, JWT id_tokens, the client secret, the password) is longer.
const leakKey = 12

// leakGuard is invariant (d). It is the io.Writer behind every process's slog handler and
// also checks error strings and callback pages: nothing written may contain a secret value
// the simulation has seen so far (every token VBC issued or answered with, every code,
// the client secret, the password). Lines are scanned as they are written, so a leak is
// caught whichever process wrote it.
type leakGuard struct {
	mu      sync.Mutex
	index   map[string][]string // last leakKey bytes → secrets
	count   int
	lines   int
	leaks   int
	details []string
	trace   io.Writer
}

func newLeakGuard(trace io.Writer) *leakGuard {
	return &leakGuard{index: map[string][]string{}, trace: trace}
}

// add registers secret values; empty and short ones are ignored.
func (g *leakGuard) add(secrets ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, v := range secrets {
		if len(v) < leakKey {
			continue
		}
		k := v[len(v)-leakKey:]
		known := false
		for _, x := range g.index[k] {
			known = known || x == v
		}
		if !known {
			g.index[k] = append(g.index[k], v)
			g.count++
		}
	}
}

// Write implements io.Writer for slog: one call per log line.
func (g *leakGuard) Write(p []byte) (int, error) {
	g.check("log line", p)
	g.mu.Lock()
	g.lines++
	trace := g.trace
	g.mu.Unlock()
	if trace != nil {
		_, _ = trace.Write(p)
	}
	return len(p), nil
}

// check reports whether text holds a registered secret, recording a leak if so. The
// secret itself is never repeated in the record.
func (g *leakGuard) check(where string, text []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := 0; i+leakKey <= len(text); i++ {
		for _, v := range g.index[string(text[i:i+leakKey])] {
			if i+leakKey >= len(v) && bytes.Contains(text, []byte(v)) {
				g.leaks++
				if len(g.details) < 20 {
					g.details = append(g.details, fmt.Sprintf("a secret value (%d bytes) appears in a %s", len(v), where))
				}
				return true
			}
		}
	}
	return false
}

func (g *leakGuard) stats() (lines, secrets int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lines, g.count
}

func (g *leakGuard) leakCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leaks
}

func (g *leakGuard) leakDetails() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.details...)
}
