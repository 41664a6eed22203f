//go:build unix

package filestore

import (
	"errors"
	"os"
	"syscall"
)

// lockSupported reports whether Store can lock on this system.
func lockSupported() error { return nil }

// tryLock takes an exclusive flock on f without blocking; false means someone holds it.
func tryLock(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
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
