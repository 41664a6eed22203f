package fleetsim

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
)

// leakGuard is the "no secret in logs" invariant. It is the io.Writer behind every
// process's slog handler and also checks error strings. Every token and code the VBC
// sandbox issues is UUID-shaped and nothing else the keeper logs is (account ids, lease
// holders and version ids are not), so a line holding a UUID-shaped value, a JWT, or the
// client secret is a leak — whichever token it is. (internal/soak indexes every issued
// value instead; with 340,000 pairs a shape check is as strict and costs no memory.)
type leakGuard struct {
	mu     sync.Mutex
	trace  io.Writer
	secret []byte
	lines  int
	leaks  int
	msgs   map[string]int
}

func newLeakGuard(trace io.Writer, clientSecret string) *leakGuard {
	return &leakGuard{trace: trace, secret: []byte(clientSecret), msgs: map[string]int{}}
}

// Write implements io.Writer for slog: one call per log line.
func (g *leakGuard) Write(p []byte) (int, error) {
	leak := hasSecret(p, g.secret)
	var line struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
	}
	_ = json.Unmarshal(p, &line)
	g.mu.Lock()
	g.lines++
	if leak {
		g.leaks++
	}
	g.msgs[line.Level+" "+line.Msg]++
	trace := g.trace
	g.mu.Unlock()
	if trace != nil {
		_, _ = trace.Write(p)
	}
	return len(p), nil
}

// check records a leak when text (an error message) holds a secret.
func (g *leakGuard) check(_ string, text []byte) {
	if hasSecret(text, g.secret) {
		g.mu.Lock()
		g.leaks++
		g.mu.Unlock()
	}
}

func (g *leakGuard) stats() (lines, leaks int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lines, g.leaks
}

func (g *leakGuard) messages() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.msgs))
	for k, v := range g.msgs {
		out[k] = v
	}
	return out
}

// hasSecret reports whether text holds a UUID-shaped value (8-4-4-4-12 hex digits), a
// JWT ("eyJ" then a dot-separated segment) or the client secret.
func hasSecret(text, clientSecret []byte) bool {
	if len(clientSecret) > 0 && bytes.Contains(text, clientSecret) {
		return true
	}
	if i := bytes.Index(text, []byte("eyJ")); i >= 0 && bytes.IndexByte(text[i:], '.') > 10 {
		return true
	}
	groups := [...]int{8, 4, 4, 4, 12}
	for i := 0; i+36 <= len(text); i++ {
		j, ok := i, true
		for g, n := range groups {
			for k := 0; k < n; k++ {
				if !isHex(text[j]) {
					ok = false
					break
				}
				j++
			}
			if !ok {
				break
			}
			if g < len(groups)-1 {
				if text[j] != '-' {
					ok = false
					break
				}
				j++
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
