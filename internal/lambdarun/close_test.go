package lambdarun

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestInvokeReportsCloseOverTheExitItCaused pins down the race behind a flaky "Close
// during Invoke": Close closes f.closed and then stops the process, so on a loaded machine
// the invoking goroutine can wake to find both f.closed and p.exited ready, and select
// picks among ready cases at random. Here both are ready before the invocation even
// reaches its wait, every time; Invoke must say ErrClosed, not Runtime.ExitError, on every
// round (a coin flip per round would fail 64 rounds all but certainly).
func TestInvokeReportsCloseOverTheExitItCaused(t *testing.T) {
	self, err := os.Executable() // any executable will do: no process is started
	if err != nil {
		t.Fatal(err)
	}
	for round := range 64 {
		f, err := newFunction(Config{Binary: self, Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		p := &process{f: f, ready: make(chan struct{}), exited: make(chan struct{}), finished: make(chan struct{})}
		go func() {
			// The runtime takes the event; before the invoker hears of it, the Function
			// is closed and the process is gone.
			inv := <-f.queue
			f.mu.Lock()
			f.isClosed = true
			f.mu.Unlock()
			close(f.closed)
			close(p.exited)
			inv.taken <- time.Now()
		}()

		_, _, err = f.invokeOn(context.Background(), p, []byte(`{}`))

		if !errors.Is(err, ErrClosed) {
			t.Fatalf("round %d: invokeOn = %v, want ErrClosed", round, err)
		}
		f.logs.close()
	}
}
