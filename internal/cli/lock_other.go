//go:build !unix

package cli

import (
	"errors"
	"os"
)

// flockNB needs flock(2); like filestore.Store, serve's local store needs a unix system.
func flockNB(*os.File, bool) (bool, error) {
	return false, errors.New("locking the local store needs a unix system")
}
