//go:build !unix

package soak

import (
	"context"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// strandFile is nil where filestore.Store does not run (it needs flock).
func strandFile(string, *filestore.Store) func(context.Context, *vbctoken.Pair, string) (string, bool, error) {
	return nil
}
