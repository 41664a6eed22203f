package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// AccountsDir is the subdirectory of a Fleet that holds one directory per account.
const AccountsDir = "accounts"

// Fleet is a vbctoken.Fleet over a directory, the local mirror of accounts mode
// (docs/design.md "Accounts mode"):
//
//	<dir>/credentials.json               the client credentials, shared by every account
//	<dir>/accounts/<account>/pair.json   each account's pair, access token, … (a Store)
//
// An account's directory is created, mode 0700, on its store's first write, never by Open.
// Each account's store is a Store with the same guarantees (atomic replaces, the
// compare-and-write under flock), reading the shared credentials file.
type Fleet struct {
	dir  string
	root *Store // dir itself, for the shared credentials
}

var _ vbctoken.Fleet = (*Fleet)(nil)

// NewFleet opens (creating it when needed) the fleet directory dir, as New does a store's.
// Accounts are created on their first write.
func NewFleet(dir string) (*Fleet, error) {
	root, err := New(dir)
	if err != nil {
		return nil, fmt.Errorf("file fleet: %w", err)
	}
	if err := restrict(filepath.Join(dir, AccountsDir), 0o700); err != nil {
		return nil, fmt.Errorf("file fleet: %w", err)
	}
	return &Fleet{dir: dir, root: root}, nil
}

// Dir returns the fleet's directory.
func (f *Fleet) Dir() string { return f.dir }

// Open returns the store of account, a *Store, refusing an invalid account id with
// vbctoken.ErrBadInput. Nothing is read or created until the store is used; its directory
// is created on its first write.
func (f *Fleet) Open(account string) (vbctoken.Store, error) {
	if err := vbctoken.CheckAccount(account); err != nil {
		return nil, fmt.Errorf("file fleet: %w", err)
	}
	dir := filepath.Join(f.dir, AccountsDir, account)
	return &Store{dir: dir, credentials: f.root.credentials, lazy: true}, nil
}

// Accounts lists the accounts whose directory holds a pair, sorted: a pair.json, or a
// pair.pending.json that a first write left behind (its keeper finishes it, so the account
// must be refreshed). Entries that are not account directories are ignored.
func (f *Fleet) Accounts(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(f.dir, AccountsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	var ids []string
	for _, e := range entries { // sorted by name
		if !e.IsDir() || vbctoken.CheckAccount(e.Name()) != nil {
			continue
		}
		for _, name := range []string{pairFile, pendingFile} {
			_, err := os.Stat(filepath.Join(f.dir, AccountsDir, e.Name(), name))
			if err == nil {
				ids = append(ids, e.Name())
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("list accounts: %w", err)
			}
		}
	}
	return ids, nil
}

// LoadCredentials reads the shared credentials.json; a missing file or a placeholder is
// vbctoken.ErrNoCredentials.
func (f *Fleet) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	return f.root.LoadCredentials(ctx)
}

// SaveCredentials writes the shared credentials.json, for local setup.
func (f *Fleet) SaveCredentials(ctx context.Context, c vbctoken.Credentials) error {
	return f.root.SaveCredentials(ctx, c)
}
