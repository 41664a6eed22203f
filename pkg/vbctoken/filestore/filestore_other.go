//go:build !unix

package filestore

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// lockSupported refuses: without flock two local processes could interleave their writes
// and break the refresh chain, so the file store is not offered here.
func lockSupported() error {
	return fmt.Errorf("%w: the file store needs flock(2), not available on %s; use the Secrets Manager store", errors.ErrUnsupported, runtime.GOOS)
}

func tryLock(*os.File) (bool, error) { return false, lockSupported() }
