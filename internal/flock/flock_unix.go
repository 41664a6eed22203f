//go:build unix

// Package flock takes flock(2) locks without waiting, for the local file store and the CLI's
// claim on it. The kernel drops a lock when its holder's descriptor closes, also when the
// process dies, so a stale lock never blocks anyone.
package flock

import (
	"errors"
	"os"
	"syscall"
)

// Supported reports whether locks work on this system (nil on unix).
func Supported() error { return nil }

// TryLock takes an exclusive (or shared) flock on f without waiting; false means another
// open file holds a conflicting lock.
func TryLock(f *os.File, exclusive bool) (bool, error) {
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
