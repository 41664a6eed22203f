//go:build !unix

package soak

import (
	"context"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// strandFile is nil where vbctoken.FileStore does not run (it needs flock).
func strandFile(string, *vbctoken.FileStore) func(context.Context, *vbctoken.Pair, string) (string, bool, error) {
	return nil
}
