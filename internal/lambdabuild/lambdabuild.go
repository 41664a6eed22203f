// Package lambdabuild is the one home of how vbctoken's Lambda functions are compiled for
// the provided.al2023 runtime. The Makefile (through cmd/lambdabuild), SAM's makefile build
// targets, the CDK construct's synth-time bundling (infra/keeper) and the local test
// harnesses all build with these flags, so what the tests run is what AWS runs.
//
// The flags: CGO_ENABLED=0 (a static binary; provided.al2023 has glibc, but a static one
// never depends on it), -tags lambda.norpc (aws-lambda-go without the net/rpc shim, which
// only the retired go1.x runtime used), -trimpath and -buildid= (the same source gives the
// same bytes on every machine, so CDK's asset hash changes only when the code does) and
// -s -w (no symbol table or DWARF: a smaller zip and a faster cold start).
package lambdabuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
)

// Lambda's target platform: the stack deploys arm64 functions on provided.al2023.
const (
	GOOS   = "linux"
	GOARCH = "arm64"
)

// Binary is the file name provided.al2023 runs.
const Binary = "bootstrap"

// Flags returns the go build flags, without -o and the package.
func Flags() []string {
	return []string{"-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w -buildid="}
}

// Env returns the variables added to the go command's environment to build for goos/goarch.
func Env(goos, goarch string) []string {
	return []string{"CGO_ENABLED=0", "GOOS=" + goos, "GOARCH=" + goarch}
}

// Command returns `go build` of the main package pkg (an import path, or a directory such
// as ./functions/callback relative to dir) for goos/goarch into outDir/bootstrap, run in
// dir with this process's environment plus Env. goBin is the go command to run ("go"
// looks it up in PATH).
func Command(ctx context.Context, goBin, dir, pkg, outDir, goos, goarch string) *exec.Cmd {
	args := append([]string{"build"}, Flags()...)
	args = append(args, "-o", filepath.Join(outDir, Binary), pkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), Env(goos, goarch)...)
	return cmd
}
