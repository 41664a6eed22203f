package filestore_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

var fileNames = map[storetest.Secret]string{
	storetest.Credentials: "credentials.json",
	storetest.Pair:        "pair.json",
	storetest.Access:      "access.json",
}

func newFileStore(t *testing.T, dir string) *filestore.Store {
	t.Helper()
	s, err := filestore.New(dir)
	if err != nil {
		t.Fatalf("NewFileStore: %v", err)
	}
	return s
}

func TestFileStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		dir := filepath.Join(t.TempDir(), "store")
		s := newFileStore(t, dir)
		return storetest.Harness{
			Store: s,
			Seed: func(t *testing.T, which storetest.Secret, data []byte) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(dir, fileNames[which]), data, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			PairWrites: func(*testing.T) int { return s.PairWrites() },
		}
	})
}

func TestFileStorePermissions(t *testing.T) {
	t.Parallel()
	// GIVEN a directory and a hand-written credentials file readable by everyone
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cred := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(cred, []byte(`{"client_id":"a","client_secret":"b"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cred, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	// WHEN the store opens it and writes every file
	s := newFileStore(t, dir)
	ctx := context.Background()
	if _, err := s.CommitPair(ctx, storetest.NewPair(), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAccess(ctx, storetest.NewPair().Access()); err != nil {
		t.Fatal(err)
	}
	// THEN the directory is 0700 and every file 0600
	wantMode(t, dir, 0o700)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
		wantMode(t, filepath.Join(dir, e.Name()), 0o600)
	}
	// AND a fresh directory is created 0700
	fresh := filepath.Join(t.TempDir(), "a", "b")
	newFileStore(t, fresh)
	wantMode(t, fresh, 0o700)
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %v, want %v", filepath.Base(path), got, want)
	}
}

func TestFileStoreCredentials(t *testing.T) {
	t.Parallel()
	s := newFileStore(t, t.TempDir())
	ctx := context.Background()
	if err := s.SaveCredentials(ctx, vbctoken.Credentials{ClientID: "app"}); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("SaveCredentials without a secret: err = %v, want ErrBadInput", err)
	}
	want := vbctoken.Credentials{ClientID: "app", ClientSecret: "cs-s3cr3t"}
	if err := s.SaveCredentials(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadCredentials(ctx)
	if err != nil || got != want {
		t.Fatalf("LoadCredentials = %v, %v; want %v", got, err, want)
	}
}

func TestFileStoreRefusesToOverwriteNewerSchema(t *testing.T) {
	t.Parallel()
	// GIVEN a pair written by a newer vbctoken, and a caller that knows its exact version
	dir := t.TempDir()
	s := newFileStore(t, dir)
	newer := []byte(`{"version":2,"refresh_token":"rt-s3cr3t"}`)
	if err := os.WriteFile(filepath.Join(dir, "pair.json"), newer, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(newer)
	// WHEN it commits over it
	_, err := s.CommitPair(context.Background(), storetest.NewPair(), hex.EncodeToString(sum[:16]))
	// THEN the commit is refused and the file is untouched
	if !errors.Is(err, vbctoken.ErrNewerSchema) {
		t.Fatalf("CommitPair: err = %v, want ErrNewerSchema", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "pair.json")); !bytes.Equal(got, newer) {
		t.Error("newer pair was overwritten")
	}
}

func TestNewFileStoreRejectsEmptyDir(t *testing.T) {
	t.Parallel()
	if _, err := filestore.New(""); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("NewFileStore(\"\"): err = %v, want ErrBadInput", err)
	}
}

// Two OS processes share one directory; each adds 1 to a counter kept in the pair, many
// times. A lost update (an interleaved compare-and-write) would leave the counter short.
const (
	helperEnv   = "VBC_FILESTORE_HELPER"
	helperDir   = "VBC_FILESTORE_HELPER_DIR"
	helperIncs  = 40
	helperGoTag = "go"
)

func TestFileStoreTwoProcesses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the file store needs flock")
	}
	t.Parallel()
	for _, mode := range []string{"cas"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := newFileStore(t, dir)
			if _, err := s.CommitPair(context.Background(), counterPair(0), ""); err != nil {
				t.Fatal(err)
			}
			var outs [2]bytes.Buffer
			var cmds [2]*exec.Cmd
			for i := range cmds {
				cmds[i] = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
				cmds[i].Env = append(os.Environ(), helperEnv+"="+mode, helperDir+"="+dir)
				cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
				if err := cmds[i].Start(); err != nil {
					t.Fatal(err)
				}
			}
			// Release both at once.
			if err := os.WriteFile(filepath.Join(dir, helperGoTag), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			conflicts := 0
			for i, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
				}
				n, err := helperResult(outs[i].String())
				if err != nil {
					t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
				}
				conflicts += n
			}
			got, err := s.LoadPair(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.Pair.Scope != strconv.Itoa(2*helperIncs) {
				t.Errorf("counter = %s after 2×%d increments: updates were lost", got.Pair.Scope, helperIncs)
			}
			t.Logf("%s: %d conflicts resolved by re-reading", mode, conflicts)
		})
	}
}

func counterPair(n int) *vbctoken.Pair {
	p := storetest.NewPair()
	p.Scope = strconv.Itoa(n)
	// NewPair's serial is per process: without the pid the two helpers can write
	// byte-identical pairs, which the store rightly takes for one write (a retry), and the
	// test would count a lost increment.
	p.IDToken = vbctoken.Secret(fmt.Sprintf("%s-pid%d", p.IDToken.Reveal(), os.Getpid()))
	return p
}

func helperResult(out string) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "HELPER conflicts="); ok {
			return strconv.Atoi(rest)
		}
	}
	return 0, errors.New("no result line")
}

// TestHelperProcess is one of TestFileStoreTwoProcesses' processes; it does nothing in a
// normal run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process of TestFileStoreTwoProcesses")
	}
	dir := os.Getenv(helperDir)
	s := newFileStore(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(filepath.Join(dir, helperGoTag)); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("never released")
		}
		time.Sleep(time.Millisecond)
	}
	conflicts := 0
	for range helperIncs {
		for {
			err := increment(ctx, s, mode)
			if err == nil {
				break
			}
			if !errors.Is(err, vbctoken.ErrConflict) {
				t.Fatal(err)
			}
			conflicts++
		}
	}
	fmt.Printf("HELPER conflicts=%d\n", conflicts)
}

func increment(ctx context.Context, s *filestore.Store, mode string) error {
	cur, err := s.LoadPair(ctx)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(cur.Pair.Scope)
	if err != nil {
		return err
	}
	_, err = s.CommitPair(ctx, cur.Pair.WithTokens(counterPair(n+1)), cur.Version)
	return err
}
