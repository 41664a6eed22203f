// Package filestore keeps vbctoken's secrets as files, for `vbctoken serve` and other local
// runs (docs/design.md "File store"): Store is one chain's directory (credentials, pair and
// access token, the mirror of the Secrets Manager store), Fleet many accounts' stores under
// one directory with shared credentials (accounts mode).
package filestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/vbctoken/vbctoken/internal/flock"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Files of a Store directory.
const (
	credentialsFile = "credentials.json"
	// loginFile holds the optional self-heal login {"username","password"}.
	loginFile  = "login.json"
	pairFile   = "pair.json"
	accessFile = "access.json"
	// pendingFile is a pair write on its way to pairFile: written and synced in full, then
	// renamed over pairFile. A process that dies in between leaves it behind, and LoadPair
	// reports it as Pending.
	pendingFile = "pair.pending.json"
	// commitLockFile is held by CommitPair for its compare-and-write.
	commitLockFile = ".commit.lock"
)

// Store keeps the secrets as files in one directory: the local mirror of the Secrets
// Manager store for `vbctoken serve` and other local runs.
//
// The directory is mode 0700 and every file 0600; looser modes found on open are tightened.
// Files are replaced atomically (temporary file, fsync, rename, directory fsync), so a
// crash leaves either the old or the new pair, never a torn one. A pair's Version is the
// hex SHA-256 (first 16 bytes) of its file's bytes.
//
// CommitPair's compare-and-write holds an exclusive flock(2) on dir/.commit.lock, so two
// processes (or goroutines) sharing the directory cannot interleave. It writes the new pair
// to pair.pending.json and renames it over pair.json; a pending file left by a process that
// died in between is reported by LoadPair. Locking needs a unix system; New fails
// elsewhere.
//
// The stores of a Fleet's accounts are Stores too: their directory is created on their
// first write, and their credentials are the fleet's shared file.
type Store struct {
	dir string
	// credentials is the credentials file's path: dir/credentials.json, or the fleet's
	// shared file for an account's store.
	credentials string
	// lazy says dir is created on the first write, not by the constructor (an account's
	// store in a Fleet).
	lazy   bool
	writes atomic.Int64 // pair versions written, for tests
}

var _ vbctoken.Store = (*Store)(nil)

// New opens (creating it when needed) the store directory dir.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("file store: %w: empty directory", vbctoken.ErrBadInput)
	}
	if err := flock.Supported(); err != nil {
		return nil, fmt.Errorf("file store %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("file store: create %s: %w", dir, err)
	}
	if err := restrict(dir, 0o700); err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	for _, name := range []string{credentialsFile, loginFile, pairFile, accessFile, pendingFile, commitLockFile} {
		if err := restrict(filepath.Join(dir, name), 0o600); err != nil {
			return nil, fmt.Errorf("file store: %w", err)
		}
	}
	return &Store{dir: dir, credentials: filepath.Join(dir, credentialsFile)}, nil
}

// restrict removes group and other permissions from an existing path; a missing path is fine.
func restrict(path string, want fs.FileMode) error {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, want); err != nil {
		return fmt.Errorf("restrict permissions of %s (mode %v): %w", path, info.Mode().Perm(), err)
	}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// read returns the bytes of dir/name; a missing file is an error matching missing.
func (s *Store) read(name string, missing error) ([]byte, error) {
	data, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", missing, s.path(name))
	}
	return data, err
}

// LoadCredentials reads credentials.json (a Fleet's shared one for an account's store); a
// missing file or a placeholder is vbctoken.ErrNoCredentials.
func (s *Store) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	data, err := os.ReadFile(s.credentials)
	if errors.Is(err, fs.ErrNotExist) {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials: %w: %s does not exist", vbctoken.ErrNoCredentials, s.credentials)
	}
	if err != nil {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials: %w", err)
	}
	c, err := vbctoken.DecodeCredentials(data)
	if err != nil {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials from %s: %w", s.credentials, err)
	}
	return c, nil
}

// LoadLogin reads login.json, the self-heal login (a vbctoken.LoginSource); a missing file is
// vbctoken.ErrNoCredentials.
func (s *Store) LoadLogin(ctx context.Context) (string, vbctoken.Secret, error) {
	data, err := s.read(loginFile, vbctoken.ErrNoCredentials)
	if err != nil {
		return "", "", fmt.Errorf("load login: %w", err)
	}
	user, pw, err := vbctoken.DecodeLogin(data)
	if err != nil {
		return "", "", fmt.Errorf("load login from %s: %w", s.path(loginFile), err)
	}
	return user, pw, nil
}

// SaveCredentials writes credentials.json, for local setup. Both fields are required.
func (s *Store) SaveCredentials(ctx context.Context, c vbctoken.Credentials) error {
	if c.ClientID == "" || c.ClientSecret.IsZero() {
		return fmt.Errorf("save credentials: %w: client_id and client_secret are both required", vbctoken.ErrBadInput)
	}
	data, err := vbctoken.EncodeCredentials(c)
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := replaceFile(s.credentials, data); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

// fileVersion is the Version of a pair file's content.
func fileVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// readPair returns the pair file's bytes and version; a missing file is (nil, "").
func (s *Store) readPair() ([]byte, string, error) {
	data, err := os.ReadFile(s.path(pairFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return data, fileVersion(data), nil
}

// LoadPair reads pair.json, and pair.pending.json when a write left it behind. A missing
// pair file is a not-connected pair with Version "".
func (s *Store) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	data, version, err := s.readPair()
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair: %w", err)
	}
	v := vbctoken.Versioned{Pair: &vbctoken.Pair{}, Version: version}
	if data != nil {
		if v.Pair, err = vbctoken.DecodePair(data); err != nil {
			return vbctoken.Versioned{}, fmt.Errorf("load pair from %s: %w", s.path(pairFile), err)
		}
	}
	pending, err := os.ReadFile(s.path(pendingFile))
	if err == nil && !bytes.Equal(pending, data) {
		// A pending file this build cannot read is left alone: it never becomes current.
		if p, err := vbctoken.DecodePair(pending); err == nil {
			v.Pending = p
		}
	}
	return v, nil
}

// CommitPair writes p if pair.json is still at version prev ("" when there is no file),
// under the commit lock, and returns the new version. A commit whose pair is already stored
// byte for byte succeeds without writing (a retry of a commit that landed; likewise a second
// writer of an identical pair). It refuses (vbctoken.ErrNewerSchema) to replace a pair written by a
// newer vbctoken even when prev names it.
func (s *Store) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	if p == nil {
		return "", fmt.Errorf("commit pair: %w: nil pair", vbctoken.ErrBadInput)
	}
	data, err := vbctoken.EncodePair(p)
	if err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	if err := s.ensureDir(); err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	unlock, err := s.flock(ctx, commitLockFile)
	if err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	defer unlock()

	cur, curVersion, err := s.readPair()
	if err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	if bytes.Equal(cur, data) && cur != nil {
		// Already stored: a retry of a commit that landed. A pending file left by an
		// earlier write is obsolete now.
		if err := os.Remove(s.path(pendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("commit pair: %w", err)
		}
		return curVersion, nil
	}
	if curVersion != prev {
		return "", fmt.Errorf("commit pair: %w: %s is at version %q, not %q", vbctoken.ErrConflict, s.path(pairFile), curVersion, prev)
	}
	if cur != nil {
		if _, err := vbctoken.DecodePair(cur); errors.Is(err, vbctoken.ErrNewerSchema) {
			return "", fmt.Errorf("commit pair: %w", err)
		}
	}
	if err := s.replace(pendingFile, data); err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	if err := s.rename(pendingFile, pairFile); err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	s.writes.Add(1)
	return fileVersion(data), nil
}

// PutAccess writes access.json (last writer wins: it is derived from the pair).
func (s *Store) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	data, err := vbctoken.EncodeAccess(a)
	if err != nil {
		return fmt.Errorf("put access token: %w", err)
	}
	if err := s.ensureDir(); err != nil {
		return fmt.Errorf("put access token: %w", err)
	}
	if err := s.replace(accessFile, data); err != nil {
		return fmt.Errorf("put access token: %w", err)
	}
	return nil
}

// LoadAccess reads access.json; a missing file is vbctoken.ErrNotFound, a placeholder a zero token.
func (s *Store) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	data, err := s.read(accessFile, vbctoken.ErrNotFound)
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token: %w", err)
	}
	a, err := vbctoken.DecodeAccess(data)
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token from %s: %w", s.path(accessFile), err)
	}
	return a, nil
}

// flock opens dir/name and takes an exclusive lock on it, polling so that ctx can end the wait.
func (s *Store) flock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(s.path(name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	wait := time.Millisecond
	for {
		ok, err := flock.TryLock(f, true)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		if ok {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("wait for %s: %w", f.Name(), ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 25*time.Millisecond)
	}
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			f.Close() // closing the descriptor releases the flock
		}
	}, nil
}

// rename renames dir/from over dir/to and makes it durable.
func (s *Store) rename(from, to string) error {
	if err := os.Rename(s.path(from), s.path(to)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// ensureDir creates the directory of a lazy store (an account's, on its first write), mode
// 0700 like its parents.
func (s *Store) ensureDir() error {
	if !s.lazy {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.dir, err)
	}
	return nil
}

// replace atomically replaces dir/name with data.
func (s *Store) replace(name string, data []byte) error { return replaceFile(s.path(name), data) }

// replaceFile atomically replaces path with data: a 0600 temporary file in the same
// directory, fsync, rename over path, fsync of the directory.
func replaceFile(path string, data []byte) (err error) {
	dir, name := filepath.Split(path)
	dir = filepath.Clean(dir)
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
