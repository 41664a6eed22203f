package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// Backend is the store under test: how to reach it without faults (the checker's view)
// and how to open it for one process, with that process's faults injected.
type Backend struct {
	name  string
	clean vbctoken.Store
	setup func(ctx context.Context, c vbctoken.Credentials) error
	open  func(p *process) vbctoken.Store
}

// Name returns "mem", "file" or "moto".
func (b Backend) Name() string { return b.name }

// MemBackend is the in-memory store (internal/memstore). Faults wrap its calls; a death
// in the middle of a commit uses memstore.StrandCommits.
func MemBackend() Backend {
	ms := memstore.New(credentials)
	// StrandCommits applies to the store's next commit, whoever makes it: commits are
	// serialised so that it hits the dying process's own.
	commits := &sync.Mutex{}
	strand := func(ctx context.Context, p *vbctoken.Pair, prev string) (string, bool, error) {
		ms.StrandCommits(0, 1)
		defer ms.StrandCommits(0, 0)
		version, err := ms.CommitPair(ctx, p, prev)
		if errors.Is(err, vbctoken.ErrTransient) {
			return "", true, nil
		}
		return version, false, err
	}
	return Backend{
		name:  "mem",
		clean: ms,
		setup: func(context.Context, vbctoken.Credentials) error { return nil },
		open: func(p *process) vbctoken.Store {
			return &faultStore{p: p, inner: ms, commits: commits, strand: strand}
		},
	}
}

// FileBackend is the file store in dir (a t.TempDir). Every process opens its own
// filestore.Store on the directory, as separate Lambda or CLI processes would; faults wrap its
// calls, and a death in the middle of a commit leaves pair.pending.json behind as
// filestore.Store.CommitPair would (strandFile).
func FileBackend(dir string) (Backend, error) {
	fs, err := filestore.New(dir)
	if err != nil {
		return Backend{}, err
	}
	return Backend{
		name:  "file",
		clean: fs,
		setup: func(ctx context.Context, c vbctoken.Credentials) error { return fs.SaveCredentials(ctx, c) },
		open: func(p *process) vbctoken.Store {
			own, err := filestore.New(dir)
			if err != nil {
				panic(fmt.Sprintf("soak: reopen file store: %v", err))
			}
			return &faultStore{p: p, inner: own, strand: strandFile(dir, own)}
		},
	}, nil
}

// SecretsManagerBackend is smstore.Store over api (moto_server's client in
// the tests) on the three secrets ids, which must exist. Faults are injected at the API:
// each GetSecretValue, PutSecretValue and UpdateSecretVersionStage may be throttled, fail
// with a 5xx or time out, before or after it took effect.
func SecretsManagerBackend(api smstore.API, ids smstore.SecretIDs) Backend {
	versions := &versionLog{m: map[string]string{}}
	return Backend{
		name:  "moto",
		clean: smstore.New(api, ids),
		setup: func(ctx context.Context, c vbctoken.Credentials) error {
			data, err := vbctoken.EncodeCredentials(c)
			if err != nil {
				return err
			}
			_, err = api.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
				SecretId: aws.String(ids.Credentials), SecretString: aws.String(string(data)),
			})
			return err
		},
		open: func(p *process) vbctoken.Store {
			return smstore.New(&faultAPI{p: p, inner: api, ids: ids, versions: versions}, ids)
		},
	}
}

// history records every pair commit that landed, whatever its caller was told.
type history struct {
	mu sync.Mutex
	rt map[string]bool
	n  int
}

func (h *history) add(refreshToken string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rt == nil {
		h.rt = map[string]bool{}
	}
	h.rt[refreshToken] = true
	h.n++
}

func (h *history) has(refreshToken string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rt[refreshToken]
}

// faultStore wraps a Store for one process: each call may fail before it takes effect,
// each write also after (the answer is lost), a pair commit may die half-way (strand),
// and a dead process makes no calls.
type faultStore struct {
	p     *process
	inner vbctoken.Store
	// commits, when set, serialises pair commits across processes.
	commits sync.Locker
	// strand writes a pair commit as the store keeps one whose writer died before it
	// became current (pending), if prev is still current; stranded false means it did a
	// plain commit instead (a conflict, or the pair is already stored).
	strand func(ctx context.Context, p *vbctoken.Pair, prev string) (version string, stranded bool, err error)
}

var _ vbctoken.Store = (*faultStore)(nil)

func (s *faultStore) do(ctx context.Context, op string, write bool, call func() error, landed func() error) error {
	s.p.storeLatency(ctx)
	if err := s.p.alive(); err != nil {
		return err
	}
	kind, after := s.p.storeFault(write)
	if kind != "" && !after {
		return s.p.injectStore(op, kind, false)
	}
	if err := call(); err != nil {
		return err
	}
	if landed != nil {
		if err := landed(); err != nil {
			return err
		}
	}
	if kind != "" {
		return s.p.injectStore(op, kind, true)
	}
	return nil
}

// LoadCredentials implements vbctoken.Store.
func (s *faultStore) LoadCredentials(ctx context.Context) (c vbctoken.Credentials, err error) {
	err = s.do(ctx, "LoadCredentials", false, func() (err error) { c, err = s.inner.LoadCredentials(ctx); return }, nil)
	return c, err
}

// LoadPair implements vbctoken.Store.
func (s *faultStore) LoadPair(ctx context.Context) (v vbctoken.Versioned, err error) {
	err = s.do(ctx, "LoadPair", false, func() (err error) { v, err = s.inner.LoadPair(ctx); return }, nil)
	return v, err
}

// CommitPair implements vbctoken.Store.
func (s *faultStore) CommitPair(ctx context.Context, pair *vbctoken.Pair, prev string) (version string, err error) {
	err = s.do(ctx, "CommitPair", true,
		func() (err error) {
			if s.commits != nil {
				s.commits.Lock()
				defer s.commits.Unlock()
			}
			if s.strand != nil && s.p.midCommitDeath() {
				var stranded bool
				if version, stranded, err = s.strand(ctx, pair, prev); stranded {
					s.p.strandedBy(pair)
					return errKilled
				}
				return err
			}
			version, err = s.inner.CommitPair(ctx, pair, prev)
			return err
		},
		func() error { return s.p.landed(pair.RefreshToken.Reveal()) })
	if err != nil {
		return "", err
	}
	return version, nil
}

// PutAccess implements vbctoken.Store.
func (s *faultStore) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	return s.do(ctx, "PutAccess", true, func() error { return s.inner.PutAccess(ctx, a) },
		func() error { s.p.wrote(); s.p.sim.accessWritten(a.AccessToken.Reveal()); return nil })
}

// LoadAccess implements vbctoken.Store.
func (s *faultStore) LoadAccess(ctx context.Context) (a vbctoken.AccessToken, err error) {
	err = s.do(ctx, "LoadAccess", false, func() (err error) { a, err = s.inner.LoadAccess(ctx); return }, nil)
	return a, err
}

// landed records a pair commit that took effect and may kill the process right after it.
func (p *process) landed(refreshToken string) error {
	p.sim.hist.add(refreshToken)
	p.wrote()
	return p.maybeDieAfterCommit()
}

// versionLog maps pair secret VersionIds to the refresh token they hold, so that a stage
// move can be recorded as a landed commit.
type versionLog struct {
	mu sync.Mutex
	m  map[string]string
}

func (v *versionLog) put(version, rt string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[version] = rt
}

func (v *versionLog) get(version string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[version]
}

// faultAPI wraps the Secrets Manager API for one process.
type faultAPI struct {
	p        *process
	inner    smstore.API
	ids      smstore.SecretIDs
	versions *versionLog
}

var _ smstore.API = (*faultAPI)(nil)

// apiError builds what the SDK returns once its own retries gave up.
func (a *faultAPI) apiError(op, kind string, after bool) error {
	a.p.injectStore(op, kind, after)
	var err error
	switch kind {
	case StoreThrottling:
		err = &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded (soak)"}
	case Store5xx:
		err = &smithy.GenericAPIError{Code: "InternalServiceError", Message: "internal error (soak)", Fault: smithy.FaultServer}
	default:
		err = &smithyhttp.RequestSendError{Err: fmt.Errorf("soak: read tcp: %w", os.ErrDeadlineExceeded)}
	}
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: op, Err: err}
}

// GetSecretValue implements smstore.API.
func (a *faultAPI) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	a.p.storeLatency(ctx)
	if err := a.p.alive(); err != nil {
		return nil, err
	}
	if kind, _ := a.p.storeFault(false); kind != "" {
		return nil, a.apiError("GetSecretValue", kind, false)
	}
	return a.inner.GetSecretValue(ctx, in, optFns...)
}

// PutSecretValue implements smstore.API.
func (a *faultAPI) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	const op = "PutSecretValue"
	a.p.storeLatency(ctx)
	if err := a.p.alive(); err != nil {
		return nil, err
	}
	kind, after := a.p.storeFault(true)
	if kind != "" && !after {
		return nil, a.apiError(op, kind, false)
	}
	out, err := a.inner.PutSecretValue(ctx, in, optFns...)
	if err != nil {
		return nil, err
	}
	if aws.ToString(in.SecretId) == a.ids.Pair {
		pair, derr := vbctoken.DecodePair([]byte(aws.ToString(in.SecretString)))
		rt := ""
		if derr == nil {
			rt = pair.RefreshToken.Reveal()
		}
		a.versions.put(aws.ToString(out.VersionId), rt)
		switch {
		case slices.Contains(out.VersionStages, "AWSCURRENT"):
			if err := a.p.landed(rt); err != nil {
				return nil, err
			}
		case a.p.midCommitDeath():
			// Killed between PutSecretValue and UpdateSecretVersionStage: the version
			// keeps the pending label and never becomes current.
			if derr != nil {
				pair = &vbctoken.Pair{}
			}
			a.p.strandedBy(pair)
			return nil, errKilled
		}
	} else {
		a.p.wrote()
		if acc, derr := vbctoken.DecodeAccess([]byte(aws.ToString(in.SecretString))); derr == nil {
			a.p.sim.accessWritten(acc.AccessToken.Reveal())
		}
	}
	if kind != "" {
		return nil, a.apiError(op, kind, true)
	}
	return out, nil
}

// UpdateSecretVersionStage implements smstore.API.
func (a *faultAPI) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	const op = "UpdateSecretVersionStage"
	a.p.storeLatency(ctx)
	if err := a.p.alive(); err != nil {
		return nil, err
	}
	kind, after := a.p.storeFault(true)
	if kind != "" && !after {
		return nil, a.apiError(op, kind, false)
	}
	out, err := a.inner.UpdateSecretVersionStage(ctx, in, optFns...)
	if err != nil {
		return nil, err
	}
	if aws.ToString(in.SecretId) == a.ids.Pair && aws.ToString(in.VersionStage) == "AWSCURRENT" {
		if err := a.p.landed(a.versions.get(aws.ToString(in.MoveToVersionId))); err != nil {
			return nil, err
		}
	}
	if kind != "" {
		return nil, a.apiError(op, kind, true)
	}
	return out, nil
}
