// Package memstore is an in-memory vbctoken.Store with compare-and-swap semantics, call
// counters and fault hooks: the fake that keeper, handler, soak and benchmark tests use
// where a real Secrets Manager (moto) or file system would only add noise.
package memstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Op names a store call for counters and fault hooks.
type Op string

// The operations of vbctoken.Store.
const (
	OpLoadCredentials Op = "LoadCredentials"
	OpLoadPair        Op = "LoadPair"
	OpCommitPair      Op = "CommitPair"
	OpPutAccess       Op = "PutAccess"
	OpLoadAccess      Op = "LoadAccess"
)

// Fault lets a test fail a call. Before runs before the call takes effect; After runs after
// it took effect (a write that landed but whose answer was lost). Either may return nil.
type Fault struct {
	Before func(op Op) error
	After  func(op Op) error
}

// Store is the in-memory store. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	creds   []byte
	pair    []byte
	version string
	pending []byte // a write that reached the store but never became current
	skip    int    // commits to let through before stranding (see StrandCommits)
	strand  int    // how many coming commits to leave pending (see StrandCommits)
	access  []byte
	calls   map[Op]int
	fault   Fault
	// history lists every committed pair in order (for soak invariants).
	history []*vbctoken.Pair
}

var _ vbctoken.Store = (*Store)(nil)

// New returns an empty store holding creds.
func New(creds vbctoken.Credentials) *Store {
	s := &Store{calls: map[Op]int{}}
	if creds.ClientID != "" {
		s.creds, _ = vbctoken.EncodeCredentials(creds)
	}
	return s
}

// StrandCommits lets the next skip commits that would succeed through, then makes the n
// after them reach the store without becoming current, as when a writer dies between
// Secrets Manager's two calls or the second keeps failing: the pair is kept as pending
// (LoadPair reports it) and the commit fails with a transient error.
func (s *Store) StrandCommits(skip, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skip, s.strand = skip, n
}

// SetFault installs fault hooks (zero Fault removes them).
func (s *Store) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Calls returns how many times op was called (including failed calls).
func (s *Store) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// TotalCalls returns the number of store calls of any kind.
func (s *Store) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

// ResetCalls zeroes the counters.
func (s *Store) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[Op]int{}
}

// Committed returns every pair committed so far, oldest first.
func (s *Store) Committed() []*vbctoken.Pair {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*vbctoken.Pair(nil), s.history...)
}

// SetRawPair replaces the stored pair JSON (for tests of malformed or newer data).
func (s *Store) SetRawPair(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pair = append([]byte(nil), data...)
	s.version = versionOf(s.version, data)
}

func versionOf(prev string, data []byte) string {
	h := sha256.Sum256(append([]byte(prev), data...))
	return hex.EncodeToString(h[:8])
}

func (s *Store) begin(op Op) (func() error, error) {
	s.calls[op]++
	if s.fault.Before != nil {
		if err := s.fault.Before(op); err != nil {
			return nil, err
		}
	}
	after := func() error {
		if s.fault.After != nil {
			return s.fault.After(op)
		}
		return nil
	}
	return after, nil
}

// LoadCredentials implements vbctoken.Store.
func (s *Store) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	after, err := s.begin(OpLoadCredentials)
	if err != nil {
		return vbctoken.Credentials{}, err
	}
	if s.creds == nil {
		return vbctoken.Credentials{}, fmt.Errorf("memstore: %w", vbctoken.ErrNoCredentials)
	}
	c, err := vbctoken.DecodeCredentials(s.creds)
	if err != nil {
		return c, err
	}
	return c, after()
}

// LoadPair implements vbctoken.Store.
func (s *Store) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	after, err := s.begin(OpLoadPair)
	if err != nil {
		return vbctoken.Versioned{}, err
	}
	if s.pair == nil {
		return vbctoken.Versioned{Pair: &vbctoken.Pair{}}, after()
	}
	p, err := vbctoken.DecodePair(s.pair)
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("memstore: %w", err)
	}
	v := vbctoken.Versioned{Pair: p, Version: s.version}
	if s.pending != nil {
		if pp, err := vbctoken.DecodePair(s.pending); err == nil {
			v.Pending = pp
		}
	}
	return v, after()
}

// CommitPair implements vbctoken.Store: it succeeds only when prev is the current version;
// re-committing the exact content that is current on top of prev is idempotent.
func (s *Store) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	after, err := s.begin(OpCommitPair)
	if err != nil {
		return "", err
	}
	data, err := vbctoken.EncodePair(p)
	if err != nil {
		return "", err
	}
	next := versionOf(prev, data)
	if s.version == next && s.version != "" { // the same call, retried after its answer was lost
		s.pending = nil
		return next, after()
	}
	if s.version != prev {
		return "", fmt.Errorf("memstore: commit pair: %w", vbctoken.ErrConflict)
	}
	if s.skip > 0 {
		s.skip--
	} else if s.strand > 0 {
		s.strand--
		s.pending = data
		return "", fmt.Errorf("memstore: commit pair: stranded as pending: %w", vbctoken.ErrTransient)
	}
	s.pair, s.version, s.pending = data, next, nil
	s.history = append(s.history, p.Clone())
	return next, after()
}

// PutAccess implements vbctoken.Store.
func (s *Store) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	after, err := s.begin(OpPutAccess)
	if err != nil {
		return err
	}
	data, err := vbctoken.EncodeAccess(a)
	if err != nil {
		return err
	}
	s.access = data
	return after()
}

// LoadAccess implements vbctoken.Store.
func (s *Store) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	after, err := s.begin(OpLoadAccess)
	if err != nil {
		return vbctoken.AccessToken{}, err
	}
	if s.access == nil {
		return vbctoken.AccessToken{}, fmt.Errorf("memstore: access secret: %w", vbctoken.ErrNotFound)
	}
	a, err := vbctoken.DecodeAccess(s.access)
	if err != nil {
		return a, err
	}
	return a, after()
}

// Fleet is a vbctoken.Fleet of in-memory stores, one per account, opened on first use and
// sharing the client credentials.
type Fleet struct {
	mu     sync.Mutex
	creds  vbctoken.Credentials
	stores map[string]*Store
}

var _ vbctoken.Fleet = (*Fleet)(nil)

// NewFleet returns an empty fleet whose accounts share creds.
func NewFleet(creds vbctoken.Credentials) *Fleet {
	return &Fleet{creds: creds, stores: map[string]*Store{}}
}

// Open implements vbctoken.Fleet.
func (f *Fleet) Open(account string) (vbctoken.Store, error) { return f.Store(account), nil }

// Store returns the memstore of account, for tests that look inside it.
func (f *Fleet) Store(account string) *Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.stores[account]
	if !ok {
		s = New(f.creds)
		f.stores[account] = s
	}
	return s
}

// Accounts implements vbctoken.Fleet: the accounts with a stored pair, sorted.
func (f *Fleet) Accounts(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id, s := range f.stores {
		s.mu.Lock()
		stored := s.pair != nil || s.pending != nil
		s.mu.Unlock()
		if stored {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// LoadCredentials implements vbctoken.Fleet.
func (f *Fleet) LoadCredentials(context.Context) (vbctoken.Credentials, error) {
	if f.creds.ClientID == "" {
		return vbctoken.Credentials{}, fmt.Errorf("memstore: %w", vbctoken.ErrNoCredentials)
	}
	return f.creds, nil
}
