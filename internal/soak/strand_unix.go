//go:build unix

package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// strandFile returns the file backend's half-way commit: what filestore.Store.CommitPair
// leaves when its process dies after writing pair.pending.json and before renaming it over
// pair.json (filestore.Store's documented layout: the commit lock dir/.commit.lock, the
// pending file dir/pair.pending.json). It takes the commit lock, so no other commit
// interleaves; when prev is no longer current or the pair is already stored it commits
// through own instead, which answers as the file store does.
func strandFile(dir string, own *filestore.Store) func(context.Context, *vbctoken.Pair, string) (string, bool, error) {
	return func(ctx context.Context, p *vbctoken.Pair, prev string) (string, bool, error) {
		data, err := vbctoken.EncodePair(p)
		if err != nil {
			return "", false, err
		}
		stranded, err := func() (bool, error) {
			unlock, err := flockFile(ctx, filepath.Join(dir, ".commit.lock"))
			if err != nil {
				return false, err
			}
			defer unlock()
			cur, err := own.LoadPair(ctx)
			if err != nil {
				return false, err
			}
			raw, err := os.ReadFile(filepath.Join(dir, "pair.json"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return false, err
			}
			if cur.Version != prev || bytes.Equal(raw, data) {
				return false, nil
			}
			return true, writeAtomically(filepath.Join(dir, "pair.pending.json"), data)
		}()
		if err != nil {
			return "", false, fmt.Errorf("soak: strand a file commit: %w", err)
		}
		if stranded {
			return "", true, nil
		}
		version, err := own.CommitPair(ctx, p, prev)
		return version, false, err
	}
}

// flockFile takes an exclusive flock(2) on path, polling until ctx ends.
func flockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return func() { f.Close() }, nil
		case errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		default:
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// writeAtomically replaces path with data: a temporary file, fsync, rename.
func writeAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".soak-pending-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
