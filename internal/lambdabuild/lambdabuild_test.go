package lambdabuild

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestCommand_BuildsForTheTargetWithTheLambdaFlags(t *testing.T) {
	// WHEN the command for the refresher is built
	cmd := Command(context.Background(), "/usr/local/go/bin/go", "/src", "./functions/refresher", "/out", GOOS, GOARCH)

	// THEN it runs go build with the flags, into out/bootstrap, in dir
	want := []string{"/usr/local/go/bin/go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w -buildid=",
		"-o", filepath.Join("/out", "bootstrap"), "./functions/refresher"}
	if !reflect.DeepEqual(cmd.Args, want) {
		t.Errorf("args = %q, want %q", cmd.Args, want)
	}
	if cmd.Dir != "/src" {
		t.Errorf("dir = %q", cmd.Dir)
	}
	// AND the environment ends with the target (later entries win in os/exec)
	n := len(cmd.Env)
	if n < 3 || !slices.Equal(cmd.Env[n-3:], []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"}) {
		t.Errorf("env tail = %q", cmd.Env[max(0, n-3):])
	}
}
