package lambdarun

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build compiles the main package pkg (an import path, or a directory such as
// ./functions/callback) with the Makefile's flags for provided.al2023 (CGO_ENABLED=0,
// -tags lambda.norpc, -trimpath, -ldflags='-s -w -buildid=') but for this machine's OS
// and architecture, and writes it to outDir/bootstrap. It returns that path. The go
// command is looked up in PATH, which `go test` fills in.
func Build(ctx context.Context, pkg, outDir string) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("lambdarun: build %s: %w", pkg, err)
	}
	out := filepath.Join(outDir, "bootstrap")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath",
		"-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lambdarun: build %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}
