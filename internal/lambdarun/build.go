package lambdarun

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vbctoken/vbctoken/internal/lambdabuild"
)

// Build compiles the main package pkg (an import path, or a directory such as
// ./functions/callback) with the flags vbctoken ships with (internal/lambdabuild:
// CGO_ENABLED=0, -tags lambda.norpc, -trimpath, -ldflags='-s -w -buildid=') but for this
// machine's OS and architecture, and writes it to outDir/bootstrap. It returns that path. The go
// command is looked up in PATH, which `go test` fills in.
func Build(ctx context.Context, pkg, outDir string) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("lambdarun: build %s: %w", pkg, err)
	}
	out := filepath.Join(outDir, lambdabuild.Binary)
	cmd := lambdabuild.Command(ctx, "go", "", pkg, outDir, runtime.GOOS, runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lambdarun: build %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}
