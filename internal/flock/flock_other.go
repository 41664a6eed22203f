//go:build !unix

// Package flock takes flock(2) locks without waiting; on this system there are none.
package flock

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// Supported refuses: without flock two local processes could interleave their writes and
// break the refresh chain, so the file store is not offered here.
func Supported() error {
	return fmt.Errorf("%w: the file store needs flock(2), not available on %s; use the Secrets Manager store", errors.ErrUnsupported, runtime.GOOS)
}

// TryLock fails: see Supported.
func TryLock(*os.File, bool) (bool, error) { return false, Supported() }
