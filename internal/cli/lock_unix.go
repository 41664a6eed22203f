//go:build unix

package cli

import (
	"errors"
	"os"
	"syscall"
)

// flockNB takes an flock(2) on f without waiting: exclusive for serve's claim on a store,
// shared for a reader that only asks whether a serve holds it. false means another open
// file holds a conflicting lock. The kernel drops the lock when its holder's descriptor
// closes, also when the process dies, so a stale claim never blocks a new serve.
func flockNB(f *os.File, exclusive bool) (bool, error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, err
		}
	}
}
