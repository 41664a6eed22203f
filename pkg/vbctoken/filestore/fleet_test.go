package filestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

func newFleet(t *testing.T, dir string) *filestore.Fleet {
	t.Helper()
	f, err := filestore.NewFleet(dir)
	if err != nil {
		t.Fatalf("NewFleet: %v", err)
	}
	return f
}

// An account's store passes the same conformance suite as a single store; its credentials
// are the fleet's shared file.
func TestFleetStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		dir := filepath.Join(t.TempDir(), "fleet")
		f := newFleet(t, dir)
		st, err := f.Open("acme")
		if err != nil {
			t.Fatal(err)
		}
		account := filepath.Join(dir, filestore.AccountsDir, "acme")
		return storetest.Harness{
			Store: st,
			Seed: func(t *testing.T, which storetest.Secret, data []byte) {
				t.Helper()
				path := filepath.Join(account, fileNames[which])
				if which == storetest.Credentials {
					path = filepath.Join(dir, fileNames[which])
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			PairWrites: func(*testing.T) int { return st.(*filestore.Store).PairWrites() },
		}
	})
}

func TestFleetAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// GIVEN a fleet with shared credentials and no accounts
	dir := filepath.Join(t.TempDir(), "fleet")
	f := newFleet(t, dir)
	if f.Dir() != dir {
		t.Errorf("Dir = %q", f.Dir())
	}
	if ids, err := f.Accounts(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("Accounts of an empty fleet = %v, %v", ids, err)
	}
	creds := vbctoken.Credentials{ClientID: "isv-app", ClientSecret: "cs-s3cr3t"}
	if err := f.SaveCredentials(ctx, creds); err != nil {
		t.Fatal(err)
	}

	// WHEN accounts are opened, read and only some written
	stores := map[string]vbctoken.Store{}
	for _, id := range []string{"globex-eu", "acme", "initech", "never-written"} {
		st, err := f.Open(id)
		if err != nil {
			t.Fatalf("Open(%s): %v", id, err)
		}
		stores[id] = st
		if got, err := st.LoadCredentials(ctx); err != nil || got != creds {
			t.Errorf("%s: LoadCredentials = %v, %v: want the shared ones", id, got, err)
		}
		if v, err := st.LoadPair(ctx); err != nil || v.Version != "" || !v.Pair.RefreshToken.IsZero() {
			t.Errorf("%s: LoadPair of a new account = %+v, %v", id, v, err)
		}
		if _, err := st.LoadAccess(ctx); !errors.Is(err, vbctoken.ErrNotFound) {
			t.Errorf("%s: LoadAccess of a new account: err = %v, want ErrNotFound", id, err)
		}
	}
	// THEN reading created nothing
	if _, err := os.Stat(filepath.Join(dir, filestore.AccountsDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reading created the accounts directory: %v", err)
	}

	for _, id := range []string{"globex-eu", "acme"} {
		if _, err := stores[id].CommitPair(ctx, storetest.NewPair(), ""); err != nil {
			t.Fatalf("%s: CommitPair: %v", id, err)
		}
	}
	// An account whose first write died between the pending file and the rename still has
	// a pair: it is listed, so its keeper finishes the write.
	if err := os.MkdirAll(filepath.Join(dir, filestore.AccountsDir, "initech"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filestore.AccountsDir, "initech", "pair.pending.json"), []byte(`{"version":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Only the access token written: no pair, not listed. Strays are ignored.
	if err := stores["never-written"].PutAccess(ctx, vbctoken.AccessToken{}); err != nil {
		t.Fatal(err)
	}
	for _, stray := range []string{"Not_An_Account", ".tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, filestore.AccountsDir, stray), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filestore.AccountsDir, stray, "pair.json"), []byte(`{"version":1}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, filestore.AccountsDir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	ids, err := f.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"acme", "globex-eu", "initech"}; !slices.Equal(ids, want) {
		t.Errorf("Accounts = %v, want %v", ids, want)
	}
	// AND each account's files are its own, modes 0700 and 0600
	a, _ := stores["acme"].LoadPair(ctx)
	g, _ := stores["globex-eu"].LoadPair(ctx)
	if a.Pair.RefreshToken == g.Pair.RefreshToken {
		t.Error("two accounts share a pair")
	}
	wantMode(t, filepath.Join(dir, filestore.AccountsDir), 0o700)
	wantMode(t, filepath.Join(dir, filestore.AccountsDir, "acme"), 0o700)
	wantMode(t, filepath.Join(dir, filestore.AccountsDir, "acme", "pair.json"), 0o600)
	if _, err := os.Stat(filepath.Join(dir, filestore.AccountsDir, "acme", "credentials.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an account got its own credentials file: %v", err)
	}
}

func TestFleetRefusesBadAccountIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFleet(t, dir)
	for _, id := range []string{"", "Acme", "../etc", "acme/x", "-acme", "a_b", strings.Repeat("a", 64), "acme\x00"} {
		if _, err := f.Open(id); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("Open(%q): err = %v, want ErrBadInput", id, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("bad ids created %v", entries)
	}
	if _, err := filestore.NewFleet(""); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("NewFleet(\"\"): err = %v, want ErrBadInput", err)
	}
}

// Two accounts' keepers commit concurrently on first write: both directories appear and
// neither write is lost.
func TestFleetConcurrentFirstWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleet(t, t.TempDir())
	ids := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"}
	errs := make(chan error, len(ids))
	for _, id := range ids {
		go func() {
			st, err := f.Open(id)
			if err == nil {
				_, err = st.CommitPair(ctx, storetest.NewPair(), "")
			}
			errs <- err
		}()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got, err := f.Accounts(ctx)
	if err != nil || !slices.Equal(got, ids) {
		t.Errorf("Accounts = %v, %v; want %v", got, err, ids)
	}
}
