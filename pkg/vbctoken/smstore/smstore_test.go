package smstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

// smFixture is a store on fresh moto secrets.
type smFixture struct {
	srv   *motoserver.Server
	ids   smstore.SecretIDs
	calls *recorder
	store *smstore.Store
}

// newSMFixture creates the three secrets, with the CDK placeholders or with no value.
func newSMFixture(t *testing.T, placeholders bool) *smFixture {
	t.Helper()
	srv := motoserver.Start(t)
	ids := smstore.SecretIDs(srv.CreateStoreSecrets(t, placeholders))
	rec := &recorder{API: srv.Client()}
	return &smFixture{srv: srv, ids: ids, calls: rec, store: smstore.New(rec, ids)}
}

func TestSecretsManagerStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		f := newSMFixture(t, false)
		names := map[storetest.Secret]string{
			storetest.Credentials: f.ids.Credentials,
			storetest.Pair:        f.ids.Pair,
			storetest.Access:      f.ids.Access,
		}
		return storetest.Harness{
			Store: f.store,
			Seed: func(t *testing.T, which storetest.Secret, data []byte) {
				f.srv.PutSecret(t, names[which], string(data))
			},
			PairWrites: func(t *testing.T) int { return f.srv.VersionCount(t, f.ids.Pair) },
		}
	})
}

// recorder is an smstore.API that records the calls it passes on.
type recorder struct {
	smstore.API
	mu     sync.Mutex
	ops    []string
	puts   []*secretsmanager.PutSecretValueInput
	stages []*secretsmanager.UpdateSecretVersionStageInput
}

func (r *recorder) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	r.record("Get", nil, nil)
	return r.API.GetSecretValue(ctx, in, opts...)
}

func (r *recorder) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	r.record("Put", in, nil)
	return r.API.PutSecretValue(ctx, in, opts...)
}

func (r *recorder) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	r.record("Stage", nil, in)
	return r.API.UpdateSecretVersionStage(ctx, in, opts...)
}

func (r *recorder) record(op string, put *secretsmanager.PutSecretValueInput, stage *secretsmanager.UpdateSecretVersionStageInput) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	if put != nil {
		r.puts = append(r.puts, put)
	}
	if stage != nil {
		r.stages = append(r.stages, stage)
	}
}

// take returns the calls since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := r.ops
	r.ops = nil
	return ops
}

func wantCalls(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s made calls %v, want %v", what, got, want)
	}
}

func TestSecretsManagerStoreCallSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("from the CDK placeholder", func(t *testing.T) {
		t.Parallel()
		f := newSMFixture(t, true)
		cur, err := f.store.LoadPair(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The placeholder does not carry the pending label: LoadPair looks for a pending
		// write (a first consent whose stage move failed) and finds none.
		wantCalls(t, "LoadPair", f.calls.take(), "Get", "Get")

		v1, err := f.store.CommitPair(ctx, storetest.NewPair(), cur.Version)
		if err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "CommitPair", f.calls.take(), "Put", "Stage")
		put, stage := f.calls.puts[0], f.calls.stages[0]
		if n := len(aws.ToString(put.ClientRequestToken)); n < 32 || n > 64 {
			t.Errorf("ClientRequestToken has %d characters, want 32–64", n)
		}
		if !slices.Equal(put.VersionStages, []string{"VBCTOKEN_PENDING"}) {
			t.Errorf("put VersionStages = %v, want [%s] (AWSCURRENT must not move by itself)", put.VersionStages, "VBCTOKEN_PENDING")
		}
		if aws.ToString(stage.VersionStage) != "AWSCURRENT" || aws.ToString(stage.MoveToVersionId) != v1 ||
			aws.ToString(stage.RemoveFromVersionId) != cur.Version {
			t.Errorf("stage move = %s from %s to %s, want AWSCURRENT from %s to %s", aws.ToString(stage.VersionStage),
				aws.ToString(stage.RemoveFromVersionId), aws.ToString(stage.MoveToVersionId), cur.Version, v1)
		}

		// A lost race costs one more read, to tell it from a retry of a landed commit.
		if _, err := f.store.CommitPair(ctx, storetest.NewPair(), cur.Version); !errors.Is(err, vbctoken.ErrConflict) {
			t.Fatalf("stale CommitPair: err = %v, want ErrConflict", err)
		}
		wantCalls(t, "stale CommitPair", f.calls.take(), "Put", "Stage", "Get")

		// The same commit retried after it landed: the idempotent put reports AWSCURRENT.
		if v, err := f.store.CommitPair(ctx, nthPair(f, 0), cur.Version); err == nil && v != v1 {
			t.Errorf("retried commit returned %s, want %s", v, v1)
		}
		f.calls.take()

		if err := f.store.PutAccess(ctx, storetest.NewPair().Access()); err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "PutAccess", f.calls.take(), "Put")
		if _, err := f.store.LoadAccess(ctx); err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "LoadAccess", f.calls.take(), "Get")
	})

	t.Run("first version of an empty secret", func(t *testing.T) {
		t.Parallel()
		f := newSMFixture(t, false)
		if _, err := f.store.CommitPair(ctx, storetest.NewPair(), ""); err != nil {
			t.Fatal(err)
		}
		// Secrets Manager attaches AWSCURRENT to a secret's first version whatever the
		// labels asked for: no stage move is needed (or allowed: moto refuses it).
		wantCalls(t, "first CommitPair", f.calls.take(), "Put")
		if _, err := f.store.CommitPair(ctx, storetest.NewPair(), ""); !errors.Is(err, vbctoken.ErrConflict) {
			t.Fatalf(`second CommitPair with prev "": err = %v, want ErrConflict`, err)
		}
		wantCalls(t, `CommitPair with prev ""`, f.calls.take(), "Put", "Stage", "Get")
		if f.calls.stages[0].RemoveFromVersionId != nil {
			t.Errorf(`prev "" sent RemoveFromVersionId %q, want none`, aws.ToString(f.calls.stages[0].RemoveFromVersionId))
		}
	})

	t.Run("access content stored before", func(t *testing.T) {
		t.Parallel()
		f := newSMFixture(t, true)
		a, b := storetest.NewPair().Access(), storetest.NewPair().Access()
		for _, x := range []vbctoken.AccessToken{a, b} {
			if err := f.store.PutAccess(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		f.calls.take()
		// Writing a again reuses its token: Secrets Manager treats it as a repeat and keeps
		// AWSCURRENT on b, so the store puts it again under a token salted with b's version.
		if err := f.store.PutAccess(ctx, a); err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "PutAccess of earlier content", f.calls.take(), "Put", "Get", "Put")
		if got, err := f.store.LoadAccess(ctx); err != nil || got.AccessToken != a.AccessToken {
			t.Errorf("LoadAccess = %v, %v; want the token written last", got, err)
		}
	})
}

// nthPair returns the pair the fixture's n-th put wrote.
func nthPair(f *smFixture, n int) *vbctoken.Pair {
	p, err := vbctoken.DecodePair([]byte(aws.ToString(f.calls.puts[n].SecretString)))
	if err != nil {
		panic(err)
	}
	return p
}

func TestSecretsManagerStoreMissingSecrets(t *testing.T) {
	t.Parallel()
	srv := motoserver.Start(t)
	s := smstore.New(srv.Client(), smstore.SecretIDs{
		Credentials: motoserver.UniqueName(t, "missing"),
		Pair:        motoserver.UniqueName(t, "missing"),
		Access:      motoserver.UniqueName(t, "missing"),
	})
	ctx := context.Background()
	got, err := s.LoadPair(ctx)
	if err != nil || got.Pair == nil || got.Version != "" || !got.Pair.RefreshToken.IsZero() {
		t.Errorf("LoadPair of a missing secret = %+v, %v; want not connected, version \"\"", got, err)
	}
	// The store never creates secrets (the CDK stack does): writing is an error.
	if _, err := s.CommitPair(ctx, storetest.NewPair(), ""); !errors.Is(err, vbctoken.ErrNotFound) {
		t.Errorf("CommitPair to a missing secret: err = %v, want ErrNotFound", err)
	}
	if err := s.PutAccess(ctx, storetest.NewPair().Access()); !errors.Is(err, vbctoken.ErrNotFound) {
		t.Errorf("PutAccess to a missing secret: err = %v, want ErrNotFound", err)
	}
	if _, err := s.LoadAccess(ctx); !errors.Is(err, vbctoken.ErrNotFound) {
		t.Errorf("LoadAccess of a missing secret: err = %v, want ErrNotFound", err)
	}
	if _, err := s.LoadCredentials(ctx); !errors.Is(err, vbctoken.ErrNoCredentials) {
		t.Errorf("LoadCredentials of a missing secret: err = %v, want ErrNoCredentials", err)
	}
}

// faulty is an smstore.API whose calls can be made to fail before or after reaching moto.
type faulty struct {
	smstore.API
	put, stage, get func(call int) (forward bool, err error)
	calls           map[string]int
	mu              sync.Mutex
}

func (f *faulty) decide(op string, hook func(int) (bool, error)) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	if hook == nil {
		return true, nil
	}
	return hook(f.calls[op])
}

func (f *faulty) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	forward, ferr := f.decide("Put", f.put)
	if !forward {
		return nil, ferr
	}
	out, err := f.API.PutSecretValue(ctx, in, opts...)
	if ferr != nil {
		return nil, ferr // it landed, but the caller never hears so
	}
	return out, err
}

func (f *faulty) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	forward, ferr := f.decide("Stage", f.stage)
	if !forward {
		return nil, ferr
	}
	out, err := f.API.UpdateSecretVersionStage(ctx, in, opts...)
	if ferr != nil {
		return nil, ferr
	}
	return out, err
}

func (f *faulty) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	forward, ferr := f.decide("Get", f.get)
	if !forward {
		return nil, ferr
	}
	return f.API.GetSecretValue(ctx, in, opts...)
}

// lostResponse is what the SDK returns when a connection dies after its retries.
func lostResponse(op string) error {
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: op,
		Err: &retry.MaxAttemptsError{Attempt: 3, Err: syscall.ECONNRESET}}
}

func apiError(code, msg string) error {
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: "GetSecretValue",
		Err: &smithy.GenericAPIError{Code: code, Message: msg, Fault: smithy.FaultClient}}
}

// once fails the first call; landed says whether the call reaches moto anyway.
func once(landed bool, err error) func(int) (bool, error) {
	return func(call int) (bool, error) {
		if call == 1 {
			return landed, err
		}
		return true, nil
	}
}

func TestSecretsManagerStoreFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name       string
		fault      func(f *faulty)
		retryCalls []string // what the retried CommitPair calls
	}{
		{"put landed, response lost", func(f *faulty) { f.put = once(true, lostResponse("PutSecretValue")) },
			[]string{"Put", "Stage"}},
		{"put never arrived", func(f *faulty) { f.put = once(false, lostResponse("PutSecretValue")) },
			[]string{"Put", "Stage"}},
		{"stage move failed", func(f *faulty) { f.stage = once(false, lostResponse("UpdateSecretVersionStage")) },
			[]string{"Put", "Stage"}},
		{"stage move landed, response lost", func(f *faulty) { f.stage = once(true, lostResponse("UpdateSecretVersionStage")) },
			[]string{"Put"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// GIVEN a store at the CDK placeholder whose next call fails transiently
			fx := newSMFixture(t, true)
			cur, err := fx.store.LoadPair(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f := &faulty{API: fx.calls}
			c.fault(f)
			s := smstore.New(f, fx.ids)
			p := storetest.NewPair()
			// WHEN the commit fails
			_, err = s.CommitPair(ctx, p, cur.Version)
			if !errors.Is(err, vbctoken.ErrTransient) {
				t.Fatalf("CommitPair: err = %v, want ErrTransient", err)
			}
			versions := fx.srv.VersionCount(t, fx.ids.Pair)
			fx.calls.take()
			// THEN the same commit retried succeeds without a conflict or a second version
			v, err := s.CommitPair(ctx, p, cur.Version)
			if err != nil {
				t.Fatalf("retried CommitPair: %v", err)
			}
			wantCalls(t, "retried CommitPair", fx.calls.take(), c.retryCalls...)
			if n := fx.srv.VersionCount(t, fx.ids.Pair); n > 2 || n < versions {
				t.Errorf("pair secret has %d versions, want the placeholder and one new", n)
			}
			got, err := fx.store.LoadPair(ctx)
			if err != nil || got.Version != v || !got.Pair.SameTokens(p) {
				t.Errorf("stored = %v at %s (%v), want the committed pair at %s", got.Pair, got.Version, err, v)
			}
		})
	}
}

func TestSecretsManagerStorePermanentErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, code := range []string{"AccessDeniedException", "DecryptionFailure", "InvalidRequestException"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			f := &faulty{get: func(int) (bool, error) {
				return false, apiError(code, "User arn:aws:iam::123:role/x is not authorized")
			}}
			s := smstore.New(f, smstore.SecretIDs{Pair: "vbc/pair", Access: "vbc/access", Credentials: "vbc/cred"})
			_, err := s.LoadPair(ctx)
			var sme *smstore.Error
			if !errors.As(err, &sme) || sme.Code != code || sme.SecretID != "vbc/pair" || sme.Op != "GetSecretValue" {
				t.Fatalf("LoadPair: err = %v, want a SecretsManagerError %s on vbc/pair", err, code)
			}
			for _, kind := range []error{vbctoken.ErrTransient, vbctoken.ErrNotFound, vbctoken.ErrConflict, vbctoken.ErrNoCredentials} {
				if errors.Is(err, kind) {
					t.Errorf("%s matches %v, want a permanent error", code, kind)
				}
			}
			if code == "AccessDeniedException" && !strings.Contains(err.Error(), "access denied") {
				t.Errorf("error %q does not say access was denied", err)
			}
			if _, err := s.LoadCredentials(ctx); errors.Is(err, vbctoken.ErrNoCredentials) {
				t.Errorf("LoadCredentials with %s = %v, must not look like unset credentials", code, err)
			}
		})
	}
}

// sdkProxy stands between the SDK and moto and answers the first requests of an operation
// itself, with an AWS error, optionally after forwarding them.
type sdkProxy struct {
	target   string // X-Amz-Target operation to interfere with
	fail     int    // how many of its requests get the error
	forward  bool   // forward those requests to moto before answering the error
	status   int
	code     string
	upstream string
	seen     atomic.Int32
}

func (p *sdkProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	interfere := false
	if op == p.target {
		interfere = int(p.seen.Add(1)) <= p.fail
	}
	var resp *http.Response
	if !interfere || p.forward {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		var err error
		resp, err = http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
	}
	if interfere {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(p.status)
		io.WriteString(w, `{"__type":"`+p.code+`","message":"injected by the test proxy"}`)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func TestSecretsManagerStoreSDKRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name      string
		proxy     *sdkProxy
		wantErr   error
		wantSeen  int32
		operation func(s *smstore.Store) error
	}{
		// The fourth GetSecretValue looks for a pending write: the placeholder has no label.
		{"throttled twice, then served", &sdkProxy{target: "GetSecretValue", fail: 2, status: 400, code: "ThrottlingException"},
			nil, 4, func(s *smstore.Store) error { _, err := s.LoadPair(ctx); return err }},
		{"unavailable throughout", &sdkProxy{target: "GetSecretValue", fail: 99, status: 503, code: "ServiceUnavailable"},
			vbctoken.ErrTransient, 3, func(s *smstore.Store) error { _, err := s.LoadPair(ctx); return err }},
		{"throttled throughout", &sdkProxy{target: "UpdateSecretVersionStage", fail: 99, status: 400, code: "ThrottlingException"},
			vbctoken.ErrTransient, 3, func(s *smstore.Store) error {
				cur, err := s.LoadPair(ctx)
				if err != nil {
					return err
				}
				_, err = s.CommitPair(ctx, storetest.NewPair(), cur.Version)
				return err
			}},
		{"stage move landed, 500 answered, SDK retries the move", &sdkProxy{target: "UpdateSecretVersionStage", fail: 1, forward: true, status: 500, code: "InternalServiceError"},
			nil, 2, func(s *smstore.Store) error {
				cur, err := s.LoadPair(ctx)
				if err != nil {
					return err
				}
				p := storetest.NewPair()
				if _, err = s.CommitPair(ctx, p, cur.Version); err != nil {
					return err
				}
				if got, err := s.LoadPair(ctx); err != nil || !got.Pair.SameTokens(p) {
					return fmt.Errorf("stored %v (%v), want the committed pair", got.Pair, err)
				}
				return nil
			}},
		{"put landed, 500 answered, SDK retries the same token", &sdkProxy{target: "PutSecretValue", fail: 1, forward: true, status: 500, code: "InternalServiceError"},
			nil, 2, func(s *smstore.Store) error {
				cur, err := s.LoadPair(ctx)
				if err != nil {
					return err
				}
				_, err = s.CommitPair(ctx, storetest.NewPair(), cur.Version)
				return err
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := motoserver.Start(t)
			ids := smstore.SecretIDs(srv.CreateStoreSecrets(t, true))
			proxy := c.proxy
			proxy.upstream = srv.URL
			hs := httptest.NewServer(proxy)
			defer hs.Close()
			cfg := srv.Config() // the SDK's standard retryer, 3 attempts, short backoff
			cfg.BaseEndpoint = aws.String(hs.URL)
			s := smstore.NewFromConfig(cfg, ids)

			err := c.operation(s)
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if got := proxy.seen.Load(); got != c.wantSeen {
				t.Errorf("the SDK sent %s %d times, want %d", proxy.target, got, c.wantSeen)
			}
			if proxy.target == "PutSecretValue" {
				if n := srv.VersionCount(t, ids.Pair); n != 2 {
					t.Errorf("pair secret has %d versions after a retried put, want 2 (placeholder + one)", n)
				}
			}
			if err != nil {
				t.Logf("error as callers see it: %v", err)
			}
		})
	}
}

func TestNewSecretsManagerStoreFromConfigHonoursEndpointEnv(t *testing.T) {
	// Not parallel: it sets the environment LoadDefaultConfig reads.
	srv := motoserver.Start(t)
	ids := smstore.SecretIDs(srv.CreateStoreSecrets(t, true))
	motoserver.IsolateSDKEnv(t, "AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BaseEndpoint != nil {
		t.Fatalf("config set BaseEndpoint %q itself; the test must prove the service-specific variable", *cfg.BaseEndpoint)
	}
	s := smstore.NewFromConfig(cfg, ids)
	got, err := s.LoadPair(context.Background())
	if err != nil {
		t.Fatalf("LoadPair through AWS_ENDPOINT_URL_SECRETS_MANAGER: %v", err)
	}
	if got.Version == "" {
		t.Error("placeholder version not read from moto")
	}
}

// TestMotoSemantics pins the Secrets Manager behaviours the store relies on, as moto
// implements them (and AWS documents them), so an emulator upgrade that changes them fails
// here rather than in the store's tests.
func TestMotoSemantics(t *testing.T) {
	t.Parallel()
	srv := motoserver.Start(t)
	c := srv.Client()
	ctx := context.Background()
	put := func(name, value, token string, stages ...string) (*secretsmanager.PutSecretValueOutput, error) {
		return c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &value,
			ClientRequestToken: &token, VersionStages: stages})
	}
	move := func(name, to, from string) error {
		in := &secretsmanager.UpdateSecretVersionStageInput{SecretId: &name, VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: &to}
		if from != "" {
			in.RemoveFromVersionId = &from
		}
		_, err := c.UpdateSecretVersionStage(ctx, in)
		return err
	}
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return ""
	}
	tok := func(b byte) string { return strings.Repeat(string(b), 64) }

	empty := motoserver.UniqueName(t, "moto")
	srv.CreateSecret(t, empty, nil)
	out, err := put(empty, "a", tok('a'), "VBCTOKEN_PENDING")
	if err != nil || !slices.Contains(out.VersionStages, "AWSCURRENT") {
		t.Errorf("first put with a custom label: stages %v, err %v; want AWSCURRENT attached", out.VersionStages, err)
	}

	name := motoserver.UniqueName(t, "moto")
	srv.CreateSecret(t, name, aws.String("{}"))
	v0, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &name})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := put(name, "b", tok('b'), "VBCTOKEN_PENDING"); err != nil || slices.Contains(out.VersionStages, "AWSCURRENT") {
		t.Errorf("later put with a custom label: stages %v, err %v; want AWSCURRENT left alone", out.VersionStages, err)
	}
	if out, err := put(name, "b", tok('b'), "VBCTOKEN_PENDING"); err != nil || aws.ToString(out.VersionId) != tok('b') {
		t.Errorf("same token, same value: %v; want success on the same version", err)
	}
	if _, err := put(name, "c", tok('b'), "VBCTOKEN_PENDING"); code(err) != "ResourceExistsException" {
		t.Errorf("same token, different value: %v; want ResourceExistsException", err)
	}
	if err := move(name, tok('b'), ""); code(err) != "InvalidParameterException" {
		t.Errorf("move without RemoveFromVersionId while AWSCURRENT is elsewhere: %v; want InvalidParameterException", err)
	}
	if err := move(name, tok('b'), aws.ToString(v0.VersionId)); err != nil {
		t.Errorf("move from the current version: %v", err)
	}
	if _, err := put(name, "d", tok('d'), "VBCTOKEN_PENDING"); err != nil {
		t.Fatal(err)
	}
	if err := move(name, tok('d'), aws.ToString(v0.VersionId)); code(err) != "InvalidParameterException" {
		t.Errorf("move with a stale RemoveFromVersionId: %v; want InvalidParameterException", err)
	}
	if out, err := put(name, "b", tok('b'), "VBCTOKEN_PENDING"); err != nil || !slices.Contains(out.VersionStages, "AWSCURRENT") {
		t.Errorf("put retried after its version became current: stages %v, err %v; want AWSCURRENT reported", out.VersionStages, err)
	}
}
