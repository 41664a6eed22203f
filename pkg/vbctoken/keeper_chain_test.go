package vbctoken_test

// Chain safety against VBC's real token server (WSO2): one test per way the chain was
// lost before the refresh lease, pending-write recovery and re-grant rules (issue 10). The
// sandbox runs in ModeWSO2 unless a test says otherwise.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// wso2 runs the sandbox as VBC's token server behaves; race picks how it answers a second
// refresh of a token it is refreshing.
func wso2(race vbcsandbox.RaceOutcome) func(*vbcsandbox.Options) {
	return func(o *vbcsandbox.Options) {
		o.Mode = vbcsandbox.ModeWSO2
		o.Race = vbcsandbox.FixedRace(race)
	}
}

// roundTrip adapts a function to http.RoundTripper.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// via makes a keeper send its token requests through rt.
func via(rt http.RoundTripper) func(*vbctoken.KeeperConfig) {
	return func(c *vbctoken.KeeperConfig) { c.Client.HTTPClient = &http.Client{Transport: rt} }
}

// named sets the keeper's lease holder name.
func named(holder string) func(*vbctoken.KeeperConfig) {
	return func(c *vbctoken.KeeperConfig) { c.Holder = holder }
}

// racing is for keepers that run at once: their backoff waits a moment of real time and
// leaves the world's clock alone. A waiter's sleeps must not run the clock on a lease holder
// that, on a loaded machine, is still at work in real time: in real life time passes for
// both alike.
func (w *world) racing(c *vbctoken.KeeperConfig) {
	pause := func(ctx context.Context, _ time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
			return nil
		}
	}
	c.StoreRetry.Sleep, c.Client.Retry.Sleep = pause, pause
}

// fakeBudget makes the keeper's store retries measure their time on the world's clock, so a
// store that keeps failing gives up after a minute of fake time without real waiting.
func (w *world) fakeBudget(c *vbctoken.KeeperConfig) { c.StoreRetry.Now = w.clock.Now }

// afterCommit is a store that calls fn after each successful CommitPair.
type afterCommit struct {
	vbctoken.Store
	fn func(p *vbctoken.Pair)
}

func (s *afterCommit) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	v, err := s.Store.CommitPair(ctx, p, prev)
	if err == nil {
		s.fn(p)
	}
	return v, err
}

// wait receives from ch, failing the test if that takes absurdly long (a broken keeper
// would otherwise hang it). No assertion depends on how long it takes.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("gave up waiting: %s", what)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// 1. Two keepers at once (the Lambda and an operator's `refresh --force`): WSO2 would answer
// both 200 and kill the first pair. The second keeper finds the first's lease, never calls
// VBC, waits for the result and reports superseded.
func TestSecondKeeperWaitsForTheLeaseInsteadOfRefreshing(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceBothSucceed))
	w.connect(w.keeper(false))
	w.clock.Advance(23 * time.Hour)
	initial := w.stored()

	atVBC, release, stored := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var storedOnce, releaseOnce sync.Once
	lambda := w.build(&afterCommit{Store: w.store, fn: func(p *vbctoken.Pair) {
		if p.RefreshToken != initial.RefreshToken {
			storedOnce.Do(func() { close(stored) })
		}
	}}, named("lambda"), via(roundTrip(func(r *http.Request) (*http.Response, error) {
		close(atVBC) // the lease is claimed: the request is on its way
		wait(t, release, "the operator's keeper to wait for the lease")
		return http.DefaultTransport.RoundTrip(r)
	})))
	// The operator's keeper waits (its backoff sleeps) until the Lambda stored its pair.
	operator := w.build(w.store, named("cli"), func(c *vbctoken.KeeperConfig) {
		c.StoreRetry.Sleep = func(ctx context.Context, d time.Duration) error {
			releaseOnce.Do(func() { close(release) })
			select {
			case <-stored:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})

	lambdaDone := make(chan struct{})
	var lambdaRes vbctoken.Result
	var lambdaErr error
	go func() {
		defer close(lambdaDone)
		lambdaRes, lambdaErr = lambda.Refresh(ctxFor(t), false)
	}()
	wait(t, atVBC, "the Lambda's token request")
	opRes, opErr := operator.Refresh(ctxFor(t), true)
	wait(t, lambdaDone, "the Lambda's refresh")

	if lambdaErr != nil || lambdaRes.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("lambda: %+v %v", lambdaRes, lambdaErr)
	}
	if opErr != nil || opRes.Outcome != vbctoken.OutcomeSuperseded {
		t.Fatalf("operator: %+v %v", opRes, opErr)
	}
	if n := w.vbc.Stats().Requests["refresh_token"]; n != 1 {
		t.Errorf("VBC saw %d refresh requests, want 1", n)
	}
	w.assertChainLive()
}

// 1b. Any number of keepers at once, one of them forced, against every way WSO2's cluster
// answers racing refreshes: every refresh request VBC sees is one a keeper reports as its
// refresh (none wasted, none racing another), at least one per round, and the chain is
// alive after each. (A forced keeper that starts after another's refresh completed refreshes
// once more, as an operator asked.)
func TestManyKeepersAtOnceKeepTheChain(t *testing.T) {
	for _, race := range []vbcsandbox.RaceOutcome{vbcsandbox.RaceBothSucceed, vbcsandbox.RaceInvalidGrant, vbcsandbox.RaceServerError} {
		t.Run(race.String(), func(t *testing.T) {
			w := newWorld(t, wso2(race))
			w.connect(w.keeper(false))
			reported := 0
			for round := 0; round < 4; round++ {
				w.clock.Advance(23 * time.Hour)
				var wg sync.WaitGroup
				results := make([]vbctoken.Result, 4)
				errs := make([]error, len(results))
				for i := range results {
					wg.Add(1)
					go func() {
						defer wg.Done()
						results[i], errs[i] = w.build(w.store, w.racing).Refresh(ctxFor(t), i == 0)
					}()
				}
				wg.Wait()
				refreshed := 0
				for i, r := range results {
					if errs[i] != nil {
						t.Fatalf("round %d: keeper %d: %+v %v", round, i, r, errs[i])
					}
					if r.Outcome == vbctoken.OutcomeRefreshed {
						refreshed++
					}
				}
				if refreshed == 0 {
					t.Errorf("round %d: no refresh: %+v", round, results)
				}
				reported += refreshed
				w.assertChainLive()
			}
			if n := w.vbc.Stats().Requests["refresh_token"]; n != reported {
				t.Errorf("VBC saw %d refresh requests, keepers reported %d refreshes", n, reported)
			}
			if n := len(w.vbc.Stats().Races); n != 0 {
				t.Errorf("VBC saw racing refreshes: %v", w.vbc.Stats().Races)
			}
		})
	}
}

// 2. A consent answered from the active token (WSO2 reuse) while a refresh rotates the
// chain: the consent's pair is dead by the time it is stored, and must not replace the live
// one. Either VBC hands back the active pair itself (nothing to write), or, when only the
// access token had expired, a new access token on the same refresh token (a write that meets
// the refresher's).
func TestReusedConsentNeverOverwritesTheLiveSuccessor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		stat  func(vbcsandbox.Stats) int
	}{
		{"the active pair handed back", 23 * time.Hour, func(s vbcsandbox.Stats) int { return s.Reused }},
		{"a new access token on the same refresh token", 25 * time.Hour, func(s vbcsandbox.Stats) int { return s.RenewedAccess }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
			w.connect(w.keeper(false))
			w.clock.Advance(tc.after)
			refresher := w.keeper(false)
			var refreshRes vbctoken.Result
			var refreshErr error
			consent := w.build(w.store, via(roundTrip(func(r *http.Request) (*http.Response, error) {
				resp, err := http.DefaultTransport.RoundTrip(r)
				// VBC answered the exchange; before the callback stores the answer, the
				// refresher rotates the chain.
				refreshRes, refreshErr = refresher.Refresh(ctxFor(t), false)
				return resp, err
			})))
			q := w.consentQuery(consent)
			res, err := consent.CompleteConsent(ctxFor(t), q.Get("state"), vbctoken.Secret(q.Get("code")))
			if err != nil || res.Outcome != vbctoken.OutcomeConnected {
				t.Fatalf("consent: %+v %v", res, err)
			}
			if refreshErr != nil || refreshRes.Outcome != vbctoken.OutcomeRefreshed {
				t.Fatalf("refresh: %+v %v", refreshRes, refreshErr)
			}
			if tc.stat(w.vbc.Stats()) == 0 {
				t.Fatal("the sandbox did not reuse the active token: the test proves nothing")
			}
			if got := w.stored(); got.Grant != vbctoken.GrantRefreshToken {
				t.Errorf("stored pair came from %s, want the refresher's", got.Grant)
			}
			w.assertChainLive()
		})
	}
}

// 3. A pair whose write reached the store but never became current (every commit after the
// lease claim fails until the deadline) is finished by the next run before any refresh
// token is spent.
func TestStrandedPairIsFinishedByTheNextRun(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.strandARefresh(t)
	requests := w.vbc.Stats().Requests["refresh_token"]

	res, err := w.keeper(false).Refresh(ctxFor(t), false)
	if err != nil {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if n := w.vbc.Stats().Requests["refresh_token"] - requests; n != 0 {
		t.Errorf("the second run sent %d refresh requests, want 0 (the pending pair is fresh)", n)
	}
	if got := w.stored(); got.Grant != vbctoken.GrantRefreshToken {
		t.Errorf("stored %v, want the refreshed pair", got)
	}
	w.assertChainLive()
	if !strings.Contains(w.logs.String(), "finished storing a token pair an earlier run left pending") {
		t.Error("the recovery was not logged")
	}
}

// strandARefresh connects, lets a day pass and runs the refresh whose new pair reaches the
// store pending but never current: the lease claim lands, every later write is stranded
// until the deadline. The store works normally afterwards.
func (w *world) strandARefresh(t *testing.T) {
	t.Helper()
	w.connect(w.keeper(false))
	w.clock.Advance(23 * time.Hour)
	w.store.StrandCommits(1, 1<<20)
	if res, err := w.build(w.store, w.fakeBudget).Refresh(ctxFor(t), false); err == nil {
		t.Fatalf("stranded run: %+v, want an error (nothing could be stored)", res)
	}
	w.store.StrandCommits(0, 0)
}

// throttledStages fails UpdateSecretVersionStage calls beyond the first `after` with
// throttling, as a whole invocation's worth of Secrets Manager trouble would.
type throttledStages struct {
	smstore.API
	after int32
	n     atomic.Int32
}

func (s *throttledStages) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	if s.n.Add(1) > s.after {
		return nil, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	return s.API.UpdateSecretVersionStage(ctx, in, opts...)
}

// 3b. The same on Secrets Manager (moto): the stage move fails for a whole invocation.
func TestStrandedPairOnSecretsManager(t *testing.T) {
	moto := motoserver.Start(t)
	for _, tc := range []struct {
		name        string
		movesOK     int32 // stage moves that work in the first run (1: the lease claim)
		wantRequest bool  // the first run reaches VBC
	}{
		{"after the lease claim", 1, true},
		{"from the first call", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
			ids := smstore.SecretIDs(moto.CreateStoreSecrets(t, true))
			creds, _ := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret})
			moto.PutSecret(t, ids.Credentials, string(creds))
			store := smstore.New(moto.Client(), ids)
			res := w.connect(w.keeperWith(store, false))
			w.clock.Advance(23 * time.Hour)

			failing := smstore.New(&throttledStages{API: moto.Client(), after: tc.movesOK}, ids)
			before := w.vbc.Stats().Requests["refresh_token"]
			first, err := w.build(failing, w.fakeBudget).Refresh(ctxFor(t), false)
			if err == nil {
				t.Fatalf("first run: %+v, want an error", first)
			}
			if sent := w.vbc.Stats().Requests["refresh_token"] > before; sent != tc.wantRequest {
				t.Fatalf("first run reached VBC: %v, want %v (%+v %v)", sent, tc.wantRequest, first, err)
			}
			if !tc.wantRequest && first.Outcome != vbctoken.OutcomeInDoubt {
				t.Errorf("a run that could not write its lease: %s, want %s", first.Outcome, vbctoken.OutcomeInDoubt)
			}

			second, err := w.keeperWith(store, false).Refresh(ctxFor(t), false)
			if err != nil {
				t.Fatalf("second run: %+v %v", second, err)
			}
			cur, err := store.LoadPair(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !w.vbc.IsLiveRefreshToken(cur.Pair.RefreshToken.Reveal()) || !cur.Pair.ObtainedAt.After(res.ObtainedAt) {
				t.Fatalf("after the second run the stored pair is %v (live: %v)", cur.Pair, w.vbc.IsLiveRefreshToken(cur.Pair.RefreshToken.Reveal()))
			}
			a, err := store.LoadAccess(context.Background())
			if err != nil || !w.vbc.IsValidAccessToken(a.AccessToken.Reveal()) {
				t.Fatalf("access secret: %v %v", a, err)
			}
			if cur.Pending != nil {
				t.Errorf("a pending write is still reported")
			}
		})
	}
}

// 4. The answer to a code exchange is lost after VBC processed it. The code is never sent
// again (WSO2 would revoke the token it issued: with reuse, the live chain).
func TestLostExchangeAnswerIsNeverReplayed(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	w.clock.Advance(time.Hour)
	k := w.keeper(false)
	q := w.consentQuery(k)
	w.vbc.InjectNext(vbcsandbox.ProcessedButLost)
	_, err := k.CompleteConsent(ctxFor(t), q.Get("state"), vbctoken.Secret(q.Get("code")))
	if !errors.Is(err, vbctoken.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	if n := w.vbc.Stats().Requests["authorization_code"]; n != 2 { // the first consent and this one
		t.Errorf("VBC saw %d code exchanges, want 2 (none repeated)", n)
	}
	if n := w.vbc.Stats().CodeReplays; n != 0 {
		t.Errorf("%d code replays", n)
	}
	w.assertChainLive()
}

// 5. The process is asked to stop (SIGINT) right after VBC issued a new pair: the pair is
// stored anyway.
func TestCancelAfterVBCIssuedStillStores(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	w.clock.Advance(23 * time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := w.build(ctxStore{w.store}, via(roundTrip(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		cancel() // Ctrl-C while the answer is on its way
		return resp, err
	})))
	res, err := k.Refresh(ctx, false)
	if err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("%+v %v", res, err)
	}
	w.assertChainLive()
}

// ctxStore fails every call whose context is done, as the AWS SDK does.
type ctxStore struct{ vbctoken.Store }

func (s ctxStore) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	if err := ctx.Err(); err != nil {
		return vbctoken.Versioned{}, err
	}
	return s.Store.LoadPair(ctx)
}

func (s ctxStore) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return s.Store.CommitPair(ctx, p, prev)
}

func (s ctxStore) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.PutAccess(ctx, a)
}

// 6. A slow winner: its commit meets throttling for a while. The other keeper waits for
// its lease and reports superseded; nobody declares re-consent.
func TestSlowWinnerDoesNotMakeTheOtherDeclareReconsent(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	w.clock.Advance(23 * time.Hour)
	initial := w.stored()
	atVBC, stored := make(chan struct{}), make(chan struct{})
	var once sync.Once
	commits := 0
	slow := &flakyCommits{Store: w.store, fail: func() bool { commits++; return commits > 1 && commits <= 6 }}
	winner := w.build(&afterCommit{Store: slow, fn: func(p *vbctoken.Pair) {
		if p.RefreshToken != initial.RefreshToken {
			once.Do(func() { close(stored) })
		}
	}}, via(roundTrip(func(r *http.Request) (*http.Response, error) {
		close(atVBC)
		return http.DefaultTransport.RoundTrip(r)
	})))
	loser := w.build(w.store, func(c *vbctoken.KeeperConfig) {
		c.StoreRetry.Sleep = func(ctx context.Context, d time.Duration) error {
			select {
			case <-stored:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	done := make(chan struct{})
	var wres vbctoken.Result
	var werr error
	go func() {
		defer close(done)
		wres, werr = winner.Refresh(ctxFor(t), false)
	}()
	wait(t, atVBC, "the winner's token request")
	lres, lerr := loser.Refresh(ctxFor(t), false)
	wait(t, done, "the winner")
	if werr != nil || wres.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("winner: %+v %v", wres, werr)
	}
	if lerr != nil || lres.Outcome != vbctoken.OutcomeSuperseded {
		t.Fatalf("loser: %+v %v", lres, lerr)
	}
	if strings.Contains(w.logs.String(), "re-consent required") {
		t.Error("re-consent was declared")
	}
	w.assertChainLive()
}

// flakyCommits fails CommitPair with a transient error while fail says so.
type flakyCommits struct {
	vbctoken.Store
	mu   sync.Mutex
	fail func() bool
}

func (s *flakyCommits) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	s.mu.Lock()
	f := s.fail()
	s.mu.Unlock()
	if f {
		return "", errors.Join(errors.New("throttled"), vbctoken.ErrTransient)
	}
	return s.Store.CommitPair(ctx, p, prev)
}

// 7. Re-grants answered with an active token (WSO2 reuse) do not restart the 7 days: the
// same refresh token keeps the stored expiry; a token of unknown age gets a conservative
// expiry and is refreshed at the next run.
func TestReusedGrantsDoNotOverstateTheRefreshExpiry(t *testing.T) {
	t.Run("same refresh token as stored", func(t *testing.T) {
		w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
		k := w.keeper(false)
		w.connect(k)
		first := w.stored()
		w.clock.Advance(5 * time.Hour)
		res := w.connect(k) // VBC hands back the active pair with 19 h left
		if w.vbc.Stats().Reused == 0 {
			t.Fatal("no reuse: the test proves nothing")
		}
		if !res.RefreshExpiresAt.Equal(first.RefreshExpiresAt) || !w.stored().RefreshExpiresAt.Equal(first.RefreshExpiresAt) {
			t.Errorf("refresh expiry %v, want the stored %v", res.RefreshExpiresAt, first.RefreshExpiresAt)
		}
	})
	t.Run("unknown age", func(t *testing.T) {
		w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
		// Another deployment logged in 5 hours ago; this one starts empty.
		other := memstore.New(vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret})
		if _, err := w.keeperWith(other, false).Login(ctxFor(t), testUser, testPassword, false); err != nil {
			t.Fatal(err)
		}
		w.clock.Advance(5 * time.Hour)
		k := w.keeper(false)
		res, err := k.Login(ctxFor(t), testUser, testPassword, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := w.clock.Now().Add(19 * time.Hour); res.RefreshExpiresAt.After(want.Add(time.Minute)) {
			t.Errorf("refresh expiry %v, want no later than the access token's %v", res.RefreshExpiresAt, want)
		}
		st, err := k.Status(ctxFor(t))
		if err != nil || !st.Connected || st.Reason != vbctoken.ReasonUnknownWindow {
			t.Fatalf("status %+v %v, want connected with reason %s", st, err, vbctoken.ReasonUnknownWindow)
		}
		r, err := k.Refresh(ctxFor(t), false)
		if err != nil || r.Outcome != vbctoken.OutcomeRefreshed || r.Reason != vbctoken.ReasonUnknownWindow {
			t.Fatalf("refresh: %+v %v", r, err)
		}
		if want := w.clock.Now().Add(vbctoken.RefreshTokenLifetime); !r.RefreshExpiresAt.Equal(want) {
			t.Errorf("after the refresh: refresh expiry %v, want %v", r.RefreshExpiresAt, want)
		}
		w.assertChainLive()
	})
}

// 8. A refresh answered 200 with an expires_in VBC should not send keeps the rotated
// refresh token (the only live one), with a clamped time.
func TestOddExpiresInKeepsThePair(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	w.clock.Advance(23 * time.Hour)
	k := w.build(w.store, via(roundTrip(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = bytes.Replace(body, []byte(`"expires_in":86400`), []byte(`"expires_in":86399.75`), 1)
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		return resp, nil
	})))
	res, err := k.Refresh(ctxFor(t), false)
	if err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("%+v %v", res, err)
	}
	if got := res.AccessExpiresAt.Sub(res.ObtainedAt); got != 86399*time.Second {
		t.Errorf("access lifetime %v, want 86399s", got)
	}
	w.assertChainLive()
}

// A code that cannot be VBC's is refused before the consent link is spent: the same link
// still works with the real code.
func TestImpossibleCodeDoesNotSpendTheLink(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	k := w.keeper(false)
	q := w.consentQuery(k)
	for _, bad := range []string{strings.Repeat("c", 513), "abc\x00def", "abc\r\ndef"} {
		if _, err := k.CompleteConsent(ctxFor(t), q.Get("state"), vbctoken.Secret(bad)); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Fatalf("code %q: err = %v, want ErrBadInput", bad[:5], err)
		}
	}
	if n := w.vbc.Stats().Requests["authorization_code"]; n != 0 {
		t.Fatalf("%d exchanges sent", n)
	}
	if _, err := k.CompleteConsent(ctxFor(t), q.Get("state"), vbctoken.Secret(q.Get("code"))); err != nil {
		t.Fatalf("the real code after refused ones: %v", err)
	}
	w.assertChainLive()
}

// A 200 carrying a refresh token but no access token: the stored pair stays current, the
// odd token is kept beside it, and the next run settles which one VBC accepts.
func TestPartlyUsableAnswerIsKeptNotTrusted(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	k := w.keeper(false)
	w.connect(k)
	w.clock.Advance(23 * time.Hour)
	w.vbc.InjectNext(vbcsandbox.MissingAccessToken)
	res, err := k.Refresh(ctxFor(t), false)
	if !errors.Is(err, vbctoken.ErrMalformedResponse) || res.Outcome != vbctoken.OutcomeInDoubt {
		t.Fatalf("first run: %+v %v", res, err)
	}
	if st, _ := k.Status(ctxFor(t)); st.KeptPairs != 1 || st.Reason != vbctoken.ReasonAmbiguous {
		t.Fatalf("status after: %+v, want one kept pair and reason %s", st, vbctoken.ReasonAmbiguous)
	}
	res, err = k.Refresh(ctxFor(t), false)
	if err != nil || res.Outcome != vbctoken.OutcomeRefreshed || res.Reason != vbctoken.ReasonAmbiguous {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if st, _ := k.Status(ctxFor(t)); st.KeptPairs != 0 {
		t.Errorf("kept pairs after the chain moved on: %d", st.KeptPairs)
	}
	w.assertChainLive()
}

// A password is sent once per login, never retried; a locked user (WSO2 17003) gets a
// *LockedError naming when the lock ends, and later logins inside the window send nothing
// unless forced.
func TestLoginNeverLocksTheUserFurther(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	k := w.keeper(false)
	sent := func() int { return w.vbc.Stats().Requests["password"] }
	var locked *vbctoken.LockedError
	for i := 1; ; i++ {
		_, err := k.Login(ctxFor(t), testUser, "wrong-password", false)
		if sent() != i {
			t.Fatalf("after %d logins VBC saw %d password grants: a rejected password was retried", i, sent())
		}
		if errors.As(err, &locked) {
			break // VBC locked the user (the sandbox after 3 failures)
		}
		if !errors.Is(err, vbctoken.ErrInvalidGrant) || i == 5 {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	if locked.Known || locked.User != testUser+"@vbc.prod" {
		t.Fatalf("locked: %+v", locked)
	}
	attempts := sent()
	if want := w.clock.Now().Add(vbctoken.AccountLockout); locked.Until.Before(want) || locked.Until.After(want.Add(2*time.Second)) {
		t.Errorf("lock ends %v, want about %v", locked.Until, want)
	}
	// Inside the window: nothing is sent, by any keeper of this store.
	w.clock.Advance(10 * time.Minute)
	_, err := w.keeper(false).Login(ctxFor(t), testUser, testPassword, false)
	if !errors.As(err, &locked) || !locked.Known {
		t.Fatalf("login inside the lock: %v", err)
	}
	if sent() != attempts {
		t.Fatalf("VBC saw %d password grants, want %d", sent(), attempts)
	}
	// Forced: sent, and VBC's lock starts again from this attempt.
	if _, err = k.Login(ctxFor(t), testUser, testPassword, true); !errors.Is(err, vbctoken.ErrAccountLocked) || sent() != attempts+1 {
		t.Fatalf("forced login inside the lock: %v (%d sent)", err, sent())
	}
	// After the lock: the right password connects and the record is gone.
	w.clock.Advance(vbctoken.AccountLockout + time.Minute)
	if _, err := k.Login(ctxFor(t), testUser, testPassword, false); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	w.assertChainLive()
	if strings.Contains(w.logs.String(), "wrong-password") {
		t.Error("a password reached the logs")
	}
}

// loginFunc adapts a function to vbctoken.LoginSource.
type loginFunc func(ctx context.Context) (string, vbctoken.Secret, error)

func (f loginFunc) LoadLogin(ctx context.Context) (string, vbctoken.Secret, error) { return f(ctx) }

func selfHealWith(user, password string) func(*vbctoken.KeeperConfig) {
	return func(c *vbctoken.KeeperConfig) {
		c.SelfHeal = loginFunc(func(context.Context) (string, vbctoken.Secret, error) {
			return user, vbctoken.Secret(password), nil
		})
	}
}

// Self-heal (opt-in): the answer to a refresh is lost after VBC rotated the token, which
// no keeper can avoid; the password grant then hands back the very pair that was lost
// (WSO2 reuse), and the chain goes on without an admin.
func TestSelfHealRestoresALostChain(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	heal := selfHealWith(testUser, testPassword)
	if _, err := w.build(w.store, heal).Login(ctxFor(t), testUser, testPassword, false); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(23 * time.Hour)
	// Every attempt of this run is processed by VBC and its answer lost.
	w.vbc.SetFaults(func(_ *http.Request, grant string) vbcsandbox.Fault {
		if grant == "refresh_token" {
			return vbcsandbox.Fault{Kind: vbcsandbox.ProcessedButLost}
		}
		return vbcsandbox.Fault{}
	})
	k := w.build(w.store, heal, func(c *vbctoken.KeeperConfig) { c.Client.Retry.MaxAttempts = 1 })
	if res, err := k.Refresh(ctxFor(t), false); res.Outcome != vbctoken.OutcomeInDoubt || !errors.Is(err, vbctoken.ErrOutcomeUnknown) {
		t.Fatalf("lost answer: %+v %v", res, err)
	}
	w.vbc.SetFaults(nil)
	lost := w.vbc.Issued()[len(w.vbc.Issued())-1]
	res, err := k.Refresh(ctxFor(t), false)
	if err != nil || res.Outcome != vbctoken.OutcomeConnected || res.Reason != vbctoken.ReasonSelfHealed {
		t.Fatalf("self-heal: %+v %v", res, err)
	}
	if got := w.stored(); got.RefreshToken.Reveal() != lost.RefreshToken {
		t.Errorf("self-heal stored another pair than the one whose answer was lost")
	}
	w.assertChainLive()
	if strings.Contains(w.logs.String(), "re-consent required") {
		t.Error("re-consent was declared")
	}
}

// A self-heal login that VBC rejects halts self-heal: no keeper sends the password again
// (a retry loop would keep the user locked), and re-consent is declared.
func TestSelfHealHaltsOnARejectedLogin(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	k := w.build(w.store, selfHealWith(testUser, "wrong-password"))
	w.connect(k)
	w.vbc.Revoke(w.stored().RefreshToken.Reveal())
	for run := 0; run < 3; run++ {
		res, err := k.Refresh(ctxFor(t), true)
		if !errors.Is(err, vbctoken.ErrReconsentRequired) || res.Outcome != vbctoken.OutcomeReconsent {
			t.Fatalf("run %d: %+v %v", run, res, err)
		}
		w.clock.Advance(vbctoken.SelfHealInterval + time.Minute)
	}
	if n := w.vbc.Stats().Requests["password"]; n != 1 {
		t.Errorf("VBC saw %d password grants, want 1", n)
	}
	if !strings.Contains(w.logs.String(), "self-heal halted") {
		t.Error("the halt was not logged")
	}
	// An admin's consent clears the halt.
	w.connect(k)
	w.assertChainLive()
}

// Self-heal tries at most once per SelfHealInterval, and never for a chain merely in doubt.
func TestSelfHealIsRateLimited(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	k := w.build(w.store, selfHealWith(testUser, testPassword), func(c *vbctoken.KeeperConfig) { c.Client.Retry.MaxAttempts = 1 })
	w.connect(k)
	w.clock.Advance(23 * time.Hour)
	// In doubt (VBC answers 502 before processing): no self-heal.
	w.vbc.InjectNext(vbcsandbox.Status502)
	if res, _ := k.Refresh(ctxFor(t), false); res.Outcome != vbctoken.OutcomeInDoubt {
		t.Fatalf("in doubt: %+v", res)
	}
	if n := w.vbc.Stats().Requests["password"]; n != 0 {
		t.Fatalf("self-heal ran for a chain in doubt (%d password grants)", n)
	}
	// Lost: the password grant gets no usable answer either; the next run inside the
	// interval does not try again.
	w.vbc.Revoke(w.stored().RefreshToken.Reveal())
	w.vbc.SetFaults(func(_ *http.Request, grant string) vbcsandbox.Fault {
		if grant == "password" {
			return vbcsandbox.Fault{Kind: vbcsandbox.Status502}
		}
		return vbcsandbox.Fault{}
	})
	for run := 0; run < 2; run++ {
		if res, err := k.Refresh(ctxFor(t), false); res.Outcome != vbctoken.OutcomeInDoubt || errors.Is(err, vbctoken.ErrReconsentRequired) {
			t.Fatalf("run %d: %+v %v", run, res, err)
		}
		w.clock.Advance(10 * time.Minute)
	}
	if n := w.vbc.Stats().Requests["password"]; n != 1 {
		t.Errorf("VBC saw %d password grants within the interval, want 1", n)
	}
}

// Found by the soak with self-heal on: a login secret that cannot be read this time, or a
// malformed answer to the password grant, leaves the chain in doubt; neither declares
// re-consent nor halts self-heal.
func TestSelfHealTransientTroubleIsInDoubt(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	reads := 0
	k := w.build(w.store, func(c *vbctoken.KeeperConfig) {
		c.SelfHeal = loginFunc(func(context.Context) (string, vbctoken.Secret, error) {
			if reads++; reads <= 3 {
				return "", "", fmt.Errorf("throttled: %w", vbctoken.ErrTransient)
			}
			return testUser, testPassword, nil
		})
		c.StoreRetry.MaxAttempts = 2
		c.Client.Retry.MaxAttempts = 1
	})
	if _, err := k.Login(ctxFor(t), testUser, testPassword, false); err != nil {
		t.Fatal(err)
	}
	w.vbc.Revoke(w.stored().RefreshToken.Reveal())
	// The login cannot be read: in doubt.
	if res, err := k.Refresh(ctxFor(t), true); res.Outcome != vbctoken.OutcomeInDoubt || errors.Is(err, vbctoken.ErrReconsentRequired) {
		t.Fatalf("unreadable login: %+v %v", res, err)
	}
	// A malformed answer to the password grant: in doubt, not halted.
	w.vbc.SetFaults(func(_ *http.Request, grant string) vbcsandbox.Fault {
		if grant == "password" {
			return vbcsandbox.Fault{Kind: vbcsandbox.MalformedJSON}
		}
		return vbcsandbox.Fault{}
	})
	if res, err := k.Refresh(ctxFor(t), true); res.Outcome != vbctoken.OutcomeInDoubt || errors.Is(err, vbctoken.ErrReconsentRequired) {
		t.Fatalf("malformed answer: %+v %v", res, err)
	}
	if st, _ := k.Status(ctxFor(t)); st.SelfHealHalted {
		t.Fatal("a malformed answer halted self-heal")
	}
	w.vbc.SetFaults(nil)
	w.clock.Advance(vbctoken.SelfHealInterval + time.Minute)
	if res, err := k.Refresh(ctxFor(t), true); err != nil || res.Reason != vbctoken.ReasonSelfHealed {
		t.Fatalf("self-heal after the interval: %+v %v", res, err)
	}
	w.assertChainLive()
}

// Found by the soak with self-heal on: a self-heal attempt whose outcome is unknown (the
// password grant got a 503, the login could not be read) left a pair whose times looked
// fresh, and every scheduled run skipped it until it was due a day later while apps held a
// dead token. The rejection is recorded: runs inside the interval are in doubt and send
// nothing, and the first scheduled (not forced) run after it heals.
func TestSelfHealInDoubtIsRetriedWhenDue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(w *world, loginDown *bool) // makes the first self-heal attempt's outcome unknown
		wait  time.Duration                   // until the next attempt is due
	}{
		{"password grant 503", func(w *world, _ *bool) {
			w.vbc.SetFaults(func(_ *http.Request, grant string) vbcsandbox.Fault {
				if grant == "password" {
					return vbcsandbox.Fault{Kind: vbcsandbox.Status503}
				}
				return vbcsandbox.Fault{}
			})
		}, vbctoken.SelfHealInterval},
		{"login unreadable", func(_ *world, loginDown *bool) { *loginDown = true }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
			loginDown := false
			k := w.build(w.store, func(c *vbctoken.KeeperConfig) {
				c.SelfHeal = loginFunc(func(context.Context) (string, vbctoken.Secret, error) {
					if loginDown {
						return "", "", fmt.Errorf("throttled: %w", vbctoken.ErrTransient)
					}
					return testUser, testPassword, nil
				})
				c.Client.Retry.MaxAttempts = 1
			})
			if _, err := k.Login(ctxFor(t), testUser, testPassword, false); err != nil {
				t.Fatal(err)
			}
			w.vbc.Revoke(w.stored().RefreshToken.Reveal())
			tc.fault(w, &loginDown)
			// An operator's forced refresh finds the chain lost; self-heal cannot finish.
			if res, err := k.Refresh(ctxFor(t), true); res.Outcome != vbctoken.OutcomeInDoubt || errors.Is(err, vbctoken.ErrReconsentRequired) {
				t.Fatalf("forced run: %+v %v", res, err)
			}
			w.vbc.SetFaults(nil)
			loginDown = false
			if tc.wait > 0 {
				before := w.vbc.Stats().Requests
				w.clock.Advance(tc.wait / 2)
				if res, err := k.Refresh(ctxFor(t), false); res.Outcome != vbctoken.OutcomeInDoubt || !errors.Is(err, vbctoken.ErrTransient) {
					t.Fatalf("run inside the interval: %+v %v", res, err)
				}
				if after := w.vbc.Stats().Requests; !maps.Equal(before, after) {
					t.Fatalf("a run inside the interval called VBC: %v, then %v", before, after)
				}
				w.clock.Advance(tc.wait/2 + time.Minute)
			}
			// The pair's times still look fresh; the scheduled run heals all the same.
			if res, err := k.Refresh(ctxFor(t), false); err != nil || res.Reason != vbctoken.ReasonSelfHealed {
				t.Fatalf("scheduled run: %+v %v", res, err)
			}
			w.assertChainLive()
		})
	}
}

// Found by the soak with self-heal on: an operator's `refresh --force` on a fresh pair got
// no usable answer (the answer lost after VBC rotated, or a 200 with a broken body). The
// pair's times still looked fresh, so every scheduled run skipped it while apps held the
// token WSO2 had killed. The stored pair now records it, and the next run refreshes at once.
func TestUnansweredRefreshIsRetriedAtOnce(t *testing.T) {
	for _, tc := range []struct {
		fault vbcsandbox.FaultKind
		want  vbctoken.Reason // of the next scheduled run
	}{
		{vbcsandbox.ProcessedButLost, vbctoken.ReasonSelfHealed}, // rotated: the chain is lost
		{vbcsandbox.MalformedJSON, vbctoken.ReasonAmbiguous},     // not rotated: refreshed
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
			k := w.build(w.store, selfHealWith(testUser, testPassword), func(c *vbctoken.KeeperConfig) { c.Client.Retry.MaxAttempts = 1 })
			if _, err := k.Login(ctxFor(t), testUser, testPassword, false); err != nil {
				t.Fatal(err)
			}
			w.vbc.InjectNext(tc.fault)
			if res, _ := k.Refresh(ctxFor(t), true); res.Outcome != vbctoken.OutcomeInDoubt {
				t.Fatalf("forced run: %+v", res)
			}
			if st, err := k.Status(ctxFor(t)); err != nil || st.Reason != vbctoken.ReasonAmbiguous || st.NextRefresh.After(w.clock.Now()) {
				t.Errorf("status after the unanswered refresh: %+v %v", st, err)
			}
			w.clock.Advance(time.Hour)
			res, err := k.Refresh(ctxFor(t), false)
			if err != nil || res.Reason != tc.want {
				t.Fatalf("scheduled run: %+v %v, want reason %s", res, err, tc.want)
			}
			w.assertChainLive()
		})
	}
}

// Found by the soak with self-heal on: an operator's `refresh --force` on a fresh pair died
// when VBC's answer arrived (VBC had rotated). Nothing after its lease claim reached the
// store, and the pair's times looked fresh: every scheduled run skipped it. A lease that
// ended without a result now makes the pair due when it ends.
func TestAbandonedLeaseMakesThePairDue(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	heal := selfHealWith(testUser, testPassword)
	if _, err := w.build(w.store, heal).Login(ctxFor(t), testUser, testPassword, false); err != nil {
		t.Fatal(err)
	}
	dying := &diesAfterCommit{Store: w.store, dies: func(*vbctoken.Pair) bool { return true }}
	_, _ = w.build(dying, heal).Refresh(ctxFor(t), true) // nobody hears what it reports
	if !w.stored().RefreshToken.IsZero() && w.vbc.IsLiveRefreshToken(w.stored().RefreshToken.Reveal()) {
		t.Fatal("the dying keeper's refresh did not rotate the chain")
	}
	k := w.build(w.store, heal)
	w.clock.Advance(time.Hour)
	if st, err := k.Status(ctxFor(t)); err != nil || st.Reason != vbctoken.ReasonAmbiguous || st.NextRefresh.After(w.clock.Now()) {
		t.Errorf("status with an abandoned lease: %+v %v", st, err)
	}
	if res, err := k.Refresh(ctxFor(t), false); err != nil || res.Reason != vbctoken.ReasonSelfHealed {
		t.Fatalf("scheduled run: %+v %v", res, err)
	}
	w.assertChainLive()
}

// Found by the fleet simulation: once VBC rejected the stored refresh token under a lease,
// later runs declare re-consent without a lease write or a token request; a consent clears
// the mark.
func TestRejectedTokenIsNotSentAgain(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	k := w.keeper(false)
	w.connect(k)
	w.vbc.Revoke(w.stored().RefreshToken.Reveal())
	if _, err := k.Refresh(ctxFor(t), true); !errors.Is(err, vbctoken.ErrReconsentRequired) {
		t.Fatalf("first run: %v", err)
	}
	sent, commits := w.vbc.Stats().Requests["refresh_token"], len(w.store.Committed())
	for run := 0; run < 3; run++ {
		w.clock.Advance(time.Hour)
		res, err := k.Refresh(ctxFor(t), false)
		if !errors.Is(err, vbctoken.ErrReconsentRequired) || res.Outcome != vbctoken.OutcomeReconsent {
			t.Fatalf("run %d: %+v %v", run, res, err)
		}
	}
	if n := w.vbc.Stats().Requests["refresh_token"]; n != sent {
		t.Errorf("%d more refresh requests with a token VBC rejected", n-sent)
	}
	if n := len(w.store.Committed()); n != commits {
		t.Errorf("%d more writes", n-commits)
	}
	w.connect(k)
	w.clock.Advance(23 * time.Hour)
	if res, err := k.Refresh(ctxFor(t), false); err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("after a consent: %+v %v", res, err)
	}
	w.assertChainLive()
}

// diesAfterCommit is a store whose process dies right after a pair commit that dies says
// is its last: every later call fails, as if the Lambda was killed between its writes.
type diesAfterCommit struct {
	vbctoken.Store
	dies func(*vbctoken.Pair) bool
	mu   sync.Mutex
	dead bool
}

// afterRefreshCommit dies after the commit of a pair whose refresh token is not initial.
func afterRefreshCommit(initial vbctoken.Secret) func(*vbctoken.Pair) bool {
	return func(p *vbctoken.Pair) bool { return p.RefreshToken != initial }
}

func (s *diesAfterCommit) down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

func (s *diesAfterCommit) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	if s.down() {
		return vbctoken.Versioned{}, context.Canceled
	}
	return s.Store.LoadPair(ctx)
}

func (s *diesAfterCommit) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	if s.down() {
		return "", context.Canceled
	}
	v, err := s.Store.CommitPair(ctx, p, prev)
	if err == nil && s.dies(p) {
		s.mu.Lock()
		s.dead = true
		s.mu.Unlock()
	}
	return v, err
}

func (s *diesAfterCommit) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	if s.down() {
		return context.Canceled
	}
	return s.Store.PutAccess(ctx, a)
}

// 8. WSO2 kills the old access token the moment it answers a refresh. A keeper that dies
// between its writes must not leave apps that dead token until the next run: the new access
// token reaches apps before the pair is committed.
func TestKeeperDyingAfterItsCommitLeavesAppsALiveToken(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	w.clock.Advance(23 * time.Hour)
	store := &diesAfterCommit{Store: w.store, dies: afterRefreshCommit(w.stored().RefreshToken)}
	// What the dying keeper reports does not matter: nobody hears it.
	_, _ = w.build(store, w.fakeBudget).Refresh(ctxFor(t), false)
	if !store.down() {
		t.Fatal("the refresh was never committed: the test proves nothing")
	}
	w.assertChainLive()
}

// 9. Every write finishes what an earlier run left pending before it commits: a consent
// whose code VBC then refuses (its nonce write lands first) must not take the pending label
// off a stranded pair, the only live one.
func TestConsentDoesNotDropAStrandedPair(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.strandARefresh(t)

	k := w.keeper(false)
	q := w.consentQuery(k)
	if _, err := k.CompleteConsent(ctxFor(t), q.Get("state"), "not-the-code-vbc-issued"); err == nil {
		t.Fatal("a consent with a wrong code succeeded")
	}
	requests := w.vbc.Stats().Requests["refresh_token"]
	if res, err := w.keeper(false).Refresh(ctxFor(t), false); err != nil {
		t.Fatalf("next run: %+v %v", res, err)
	}
	if n := w.vbc.Stats().Requests["refresh_token"] - requests; n != 0 {
		t.Errorf("the next run sent %d refresh requests, want 0 (the stranded pair is fresh)", n)
	}
	w.assertChainLive()
}

// 10. A run that ends in doubt leaves apps the stored pair's access token: a writer that died
// after its commit may have left an older one in the access secret, and the refresh that
// would have replaced it got no usable answer.
func TestRunInDoubtRepairsTheAccessSecret(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	if err := w.store.PutAccess(context.Background(), vbctoken.AccessToken{AccessToken: "an-older-dead-token", TokenType: "Bearer"}); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(23 * time.Hour)
	w.vbc.SetFaults(func(_ *http.Request, grant string) vbcsandbox.Fault {
		if grant == "refresh_token" {
			return vbcsandbox.Fault{Kind: vbcsandbox.Status503}
		}
		return vbcsandbox.Fault{}
	})
	k := w.build(w.store, w.fakeBudget, func(c *vbctoken.KeeperConfig) { c.Client.Retry.MaxAttempts = 1 })
	if res, err := k.Refresh(ctxFor(t), false); res.Outcome != vbctoken.OutcomeInDoubt {
		t.Fatalf("%+v %v, want in doubt", res, err)
	}
	w.assertChainLive()
}

// heldAccessWrite holds the first PutAccess until release is closed, after closing at.
type heldAccessWrite struct {
	vbctoken.Store
	at, release chan struct{}
	once        sync.Once
}

func (s *heldAccessWrite) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	s.once.Do(func() {
		close(s.at)
		<-s.release
	})
	return s.Store.PutAccess(ctx, a)
}

// 11. A run that repairs the access secret read the pair before a concurrent refresh
// committed; its write lands last, with the token that refresh has just killed. It re-reads
// the pair after writing and puts the newest token back.
func TestLateAccessRepairDoesNotOutliveARefresh(t *testing.T) {
	w := newWorld(t, wso2(vbcsandbox.RaceInvalidGrant))
	w.connect(w.keeper(false))
	if err := w.store.PutAccess(context.Background(), vbctoken.AccessToken{AccessToken: "an-older-dead-token", TokenType: "Bearer"}); err != nil {
		t.Fatal(err)
	}
	held := &heldAccessWrite{Store: w.store, at: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	var res vbctoken.Result
	var err error
	go func() {
		defer close(done)
		res, err = w.build(held).Refresh(ctxFor(t), false) // the pair is fresh: a repair
	}()
	wait(t, held.at, "the repairing run's access write")
	if r, err := w.keeper(false).Refresh(ctxFor(t), true); err != nil || r.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("forced refresh: %+v %v", r, err)
	}
	close(held.release)
	wait(t, done, "the repairing run")
	if err != nil || res.Outcome != vbctoken.OutcomeSkipped {
		t.Fatalf("repairing run: %+v %v", res, err)
	}
	w.assertChainLive()
}
