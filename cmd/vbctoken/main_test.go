//go:build unix

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envRunMain makes the test binary run main instead of the tests, so the tests below drive
// the real process (signals, exit status) without building it first.
const envRunMain = "VBCTOKEN_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// Ctrl-C (SIGINT) and SIGTERM stop `vbctoken serve` cleanly with exit status 0, so
// `make local` does not end with "make: *** Error 1".
func TestServeExitsZeroOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			cmd := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0", "--store", dir)
			cmd.Env = append(os.Environ(), envRunMain+"=1")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			lines := bufio.NewScanner(stderr)
			var seen []string
			serving := false
			for !serving && lines.Scan() {
				seen = append(seen, lines.Text())
				serving = strings.HasPrefix(lines.Text(), "vbctoken serving on ")
			}
			if !serving {
				_ = cmd.Process.Kill()
				t.Fatalf("serve did not start:\n%s", strings.Join(seen, "\n"))
			}
			go func() {
				for lines.Scan() {
				}
				done <- cmd.Wait()
			}()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve after %v: %v, want exit status 0", sig, err)
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("serve did not stop after %v", sig)
			}
			if _, err := os.Stat(filepath.Join(dir, "serve.json")); !os.IsNotExist(err) {
				t.Errorf("serve.json left behind: %v", err)
			}
		})
	}
}
