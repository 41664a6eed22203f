package smstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

// fleetCalls is a smstore.FleetAPI that records every call with the secret it names, and
// fails the test if any names a secret outside the fleet's prefix other than the shared
// credentials: the IAM policy grants nothing else (docs/design.md "Accounts mode").
type fleetCalls struct {
	smstore.FleetAPI
	prefix, creds string

	mu  sync.Mutex
	all []string // every secret id named
	log []string // "Op short-id" since the last take
	// beforeCreate, when set, runs before a CreateSecret is passed on.
	beforeCreate func(name string)
}

func (r *fleetCalls) add(op, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, id)
	short := strings.TrimPrefix(id, r.prefix)
	if id == r.creds {
		short = "credentials"
	}
	r.log = append(r.log, op+" "+short)
}

func (r *fleetCalls) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	r.add("Get", aws.ToString(in.SecretId))
	return r.FleetAPI.GetSecretValue(ctx, in, opts...)
}

func (r *fleetCalls) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	r.add("Put", aws.ToString(in.SecretId))
	return r.FleetAPI.PutSecretValue(ctx, in, opts...)
}

func (r *fleetCalls) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	r.add("Stage", aws.ToString(in.SecretId))
	return r.FleetAPI.UpdateSecretVersionStage(ctx, in, opts...)
}

func (r *fleetCalls) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	r.add("Create", aws.ToString(in.Name))
	if r.beforeCreate != nil {
		r.beforeCreate(aws.ToString(in.Name))
	}
	return r.FleetAPI.CreateSecret(ctx, in, opts...)
}

// take returns the calls since the last take.
func (r *fleetCalls) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.log
	r.log = nil
	return log
}

// checkScope fails t for every call that named a secret outside the prefix.
func (r *fleetCalls) checkScope(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.all {
		if !strings.HasPrefix(id, r.prefix) && id != r.creds {
			t.Errorf("the fleet called Secrets Manager on %q, outside its prefix %q", id, r.prefix)
		}
	}
}

// fleetFixture is a fleet under a fresh prefix on moto, with its credentials secret
// created (without a value, as the stack leaves it) and nothing else.
type fleetFixture struct {
	srv    *motoserver.Server
	prefix string
	creds  string
	kms    string
	calls  *fleetCalls
	fleet  *smstore.Fleet
}

const testKMSKey = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"

func newFleetFixture(t *testing.T) *fleetFixture {
	t.Helper()
	srv := motoserver.Start(t)
	f := &fleetFixture{
		srv:    srv,
		prefix: motoserver.UniqueName(t, "fleet") + "/",
		creds:  motoserver.UniqueName(t, "vbc/credentials"),
		kms:    testKMSKey,
	}
	srv.CreateSecret(t, f.creds, nil)
	f.calls = &fleetCalls{FleetAPI: srv.SerialClient(), prefix: f.prefix, creds: f.creds}
	t.Cleanup(func() { f.calls.checkScope(t) })
	f.fleet = f.process(t)
	return f
}

// process returns another Fleet on the same secrets, as a second Lambda or CLI would have:
// nothing cached, calls recorded with the fixture's.
func (f *fleetFixture) process(t *testing.T) *smstore.Fleet {
	t.Helper()
	fl, err := smstore.NewFleet(f.calls, smstore.FleetConfig{Prefix: f.prefix, KMSKeyID: f.kms, CredentialsSecretID: f.creds})
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func open(t *testing.T, fl *smstore.Fleet, account string) *smstore.Store {
	t.Helper()
	s, err := fl.Open(account)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*smstore.Store)
}

func shard(account string) string { return fmt.Sprintf("_index/%02d", smstore.ShardOf(account)) }

func listed(t *testing.T, fl *smstore.Fleet) []string {
	t.Helper()
	ids, err := fl.Accounts(context.Background())
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	return ids
}

func TestFleetStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		f := newFleetFixture(t)
		s := open(t, f.fleet, "acme")
		ids := s.IDs()
		if n := f.srv.VersionCount(t, ids.Pair) + f.srv.VersionCount(t, ids.Access); n != 0 {
			t.Fatalf("a fresh account has %d secret versions, want none", n)
		}
		names := map[storetest.Secret]string{
			storetest.Credentials: ids.Credentials,
			storetest.Pair:        ids.Pair,
			storetest.Access:      ids.Access,
		}
		return storetest.Harness{
			Store: s,
			Seed: func(t *testing.T, which storetest.Secret, data []byte) {
				f.srv.SetSecret(t, names[which], string(data))
			},
			PairWrites: func(t *testing.T) int { return f.srv.VersionCount(t, ids.Pair) },
		}
	})
}

// The calls of an account's life, as the IAM policy and the cost model count them.
func TestFleetCallSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetFixture(t)
	acme := open(t, f.fleet, "acme")

	// Nothing is called until the store is used.
	wantCalls(t, "Open", f.calls.take())

	// First consent, first write (the keeper records the consent nonce): the index shard
	// does not exist yet, so it is created with the account, then the pair secret.
	v1, err := acme.CommitPair(ctx, storetest.NewPair(), "")
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "first CommitPair", f.calls.take(), "Get "+shard("acme"), "Create "+shard("acme"), "Create acme/pair")
	// The keeper then commits the exchanged pair and writes the access secret.
	v2, err := acme.CommitPair(ctx, storetest.NewPair(), v1)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "second CommitPair", f.calls.take(), "Put acme/pair", "Stage acme/pair")
	if err := acme.PutAccess(ctx, storetest.NewPair().Access()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "first PutAccess", f.calls.take(), "Put acme/access", "Create acme/access")

	// An hourly check and a refresh cost what they cost in single-account mode.
	if got, err := acme.LoadPair(ctx); err != nil || got.Version != v2 {
		t.Fatalf("LoadPair = %s, %v; want %s", got.Version, err, v2)
	}
	wantCalls(t, "LoadPair", f.calls.take(), "Get acme/pair")
	if _, err := acme.CommitPair(ctx, storetest.NewPair(), v2); err != nil {
		t.Fatal(err)
	}
	if err := acme.PutAccess(ctx, storetest.NewPair().Access()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "refresh", f.calls.take(), "Put acme/pair", "Stage acme/pair", "Put acme/access")

	// Another process's first write of an account in an existing shard: compare-and-swap
	// on the shard, then the create.
	other := ""
	for i := 0; other == ""; i++ {
		if id := fmt.Sprintf("acct-%d", i); smstore.ShardOf(id) == smstore.ShardOf("acme") {
			other = id
		}
	}
	if _, err := open(t, f.process(t), other).CommitPair(ctx, storetest.NewPair(), ""); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "first CommitPair in an existing shard", f.calls.take(),
		"Get "+shard(other), "Put "+shard(other), "Stage "+shard(other), "Create "+other+"/pair")

	// Listing reads the 16 shards, whatever the number of accounts.
	if ids := listed(t, f.process(t)); !slices.Equal(ids, []string{other, "acme"}) {
		t.Errorf("Accounts = %v, want [%s acme]", ids, other)
	}
	if n := len(f.calls.take()); n != smstore.IndexShards {
		t.Errorf("Accounts made %d calls, want %d", n, smstore.IndexShards)
	}

	// The created secrets carry the account tag and the fleet's key.
	for _, id := range []string{acme.IDs().Pair, acme.IDs().Access} {
		d, err := f.srv.Client().DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(d.KmsKeyId) != f.kms {
			t.Errorf("%s KmsKeyId = %q, want %q", id, aws.ToString(d.KmsKeyId), f.kms)
		}
		if len(d.Tags) != 1 || aws.ToString(d.Tags[0].Key) != "vbctoken:account" || aws.ToString(d.Tags[0].Value) != "acme" {
			t.Errorf("%s tags = %v, want vbctoken:account=acme", id, d.Tags)
		}
	}
}

// Two keepers (two processes) make the first commit of one account at once: exactly one
// creates the pair, the other sees vbctoken.ErrConflict and, re-reading, the winner's pair.
func TestFleetFirstCommitsRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetFixture(t)
	for round := range storetest.Rounds {
		account := fmt.Sprintf("race-%d", round)
		stores := [2]*smstore.Store{open(t, f.process(t), account), open(t, f.process(t), account)}
		pairs := [2]*vbctoken.Pair{storetest.NewPair(), storetest.NewPair()}
		var versions [2]string
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range stores {
			wg.Go(func() {
				<-start
				versions[i], errs[i] = stores[i].CommitPair(ctx, pairs[i], "")
			})
		}
		close(start)
		wg.Wait()

		winner := slices.IndexFunc(errs[:], func(err error) bool { return err == nil })
		loser := 1 - winner
		if winner < 0 || errs[loser] == nil || !errors.Is(errs[loser], vbctoken.ErrConflict) {
			t.Fatalf("round %d: errors %v, want one winner and one ErrConflict", round, errs)
		}
		got, err := stores[loser].LoadPair(ctx)
		if err != nil || got.Version != versions[winner] || !got.Pair.SameTokens(pairs[winner]) {
			t.Fatalf("round %d: the loser reads %v at %s (%v), want the winner's pair at %s", round, got.Pair, got.Version, err, versions[winner])
		}
		if n := f.srv.VersionCount(t, stores[0].IDs().Pair); n != 1 {
			t.Fatalf("round %d: the pair secret has %d versions, want 1", round, n)
		}
	}
	want := make([]string, storetest.Rounds)
	for i := range want {
		want[i] = fmt.Sprintf("race-%d", i)
	}
	slices.Sort(want)
	if got := listed(t, f.process(t)); !slices.Equal(got, want) {
		t.Errorf("Accounts = %v, want %v", got, want)
	}
}

// A retried CreateSecret whose first attempt landed (its answer lost) succeeds with the
// same version, without a second one; one that never arrived creates the secret. The
// account's secret is never created before its index entry.
func TestFleetCreateRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, landed := range []bool{true, false} {
		t.Run(fmt.Sprintf("landed=%v", landed), func(t *testing.T) {
			t.Parallel()
			f := newFleetFixture(t)
			flaky := &flakyCreate{FleetAPI: f.calls, landed: landed, fail: map[string]bool{}}
			fl, err := smstore.NewFleet(flaky, smstore.FleetConfig{Prefix: f.prefix, CredentialsSecretID: f.creds})
			if err != nil {
				t.Fatal(err)
			}
			s, _ := fl.Open("acme")
			p := storetest.NewPair()
			// The index shard's create fails: the pair is not created.
			flaky.failNext(f.prefix + shard("acme"))
			if _, err := s.CommitPair(ctx, p, ""); !errors.Is(err, vbctoken.ErrTransient) {
				t.Fatalf("CommitPair: %v, want ErrTransient", err)
			}
			if n := f.srv.VersionCount(t, f.prefix+"acme/pair"); n != 0 {
				t.Fatalf("the pair was created (%d versions) before its account was in the index", n)
			}
			// The pair's create fails.
			flaky.failNext(f.prefix + "acme/pair")
			if _, err := s.CommitPair(ctx, p, ""); !errors.Is(err, vbctoken.ErrTransient) {
				t.Fatalf("CommitPair: %v, want ErrTransient", err)
			}
			// The caller retries the same commit.
			v, err := s.CommitPair(ctx, p.Clone(), "")
			if err != nil {
				t.Fatalf("retried CommitPair: %v", err)
			}
			got, err := s.LoadPair(ctx)
			if err != nil || got.Version != v || !got.Pair.SameTokens(p) {
				t.Fatalf("stored %v at %s (%v), want the pair at %s", got.Pair, got.Version, err, v)
			}
			if n := f.srv.VersionCount(t, f.prefix+"acme/pair"); n != 1 {
				t.Errorf("pair secret has %d versions, want 1", n)
			}
			if ids := listed(t, f.fleet); !slices.Equal(ids, []string{"acme"}) {
				t.Errorf("Accounts = %v, want [acme]", ids)
			}
		})
	}
}

// flakyCreate fails the next CreateSecret of a secret chosen with failNext with a lost
// connection, after passing it on when landed.
type flakyCreate struct {
	smstore.FleetAPI
	landed bool
	mu     sync.Mutex
	fail   map[string]bool
}

func (f *flakyCreate) failNext(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[name] = true
}

func (f *flakyCreate) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	f.mu.Lock()
	failing := f.fail[aws.ToString(in.Name)]
	delete(f.fail, aws.ToString(in.Name))
	f.mu.Unlock()
	if !failing {
		return f.FleetAPI.CreateSecret(ctx, in, opts...)
	}
	if f.landed {
		_, _ = f.FleetAPI.CreateSecret(ctx, in, opts...)
	}
	return nil, lostResponse("CreateSecret")
}

// The account is listed after its first consent, and at no moment does a secret of it
// exist without its index entry: the keeper's real path, through vbctoken.Accounts, with
// the VBC sandbox.
func TestFleetListsAccountAfterFirstConsent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetFixture(t)
	const clientID, clientSecret, redirect = "client-abc", "cs-s3cr3t-fleet", "https://keeper.example/callback"
	creds, _ := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret})
	f.srv.SetSecret(t, f.creds, string(creds))

	// Every CreateSecret of an account's secret finds the account already listed by a
	// process that has never seen it.
	observer, err := smstore.NewFleet(f.srv.SerialClient(), smstore.FleetConfig{Prefix: f.prefix, CredentialsSecretID: f.creds})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var created []string
	f.calls.beforeCreate = func(name string) {
		rest := strings.TrimPrefix(name, f.prefix)
		if strings.HasPrefix(rest, "_index/") {
			return
		}
		account, _, _ := strings.Cut(rest, "/")
		mu.Lock()
		created = append(created, rest)
		mu.Unlock()
		ids, err := observer.Accounts(ctx)
		if err != nil || !slices.Contains(ids, account) {
			t.Errorf("creating %s while Accounts = %v (%v): the account is not listed yet", rest, ids, err)
		}
	}

	sb := vbcsandbox.New(vbcsandbox.Options{Clients: []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirect}}}})
	hs := httptest.NewServer(sb)
	defer hs.Close()
	f.calls.take()
	accounts, err := vbctoken.NewAccounts(f.fleet, vbctoken.KeeperConfig{Client: vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: hs.URL + vbcsandbox.AuthorizePath, TokenURL: hs.URL + vbcsandbox.TokenPath},
		RedirectURL: redirect,
	}})
	if err != nil {
		t.Fatal(err)
	}
	k, err := accounts.Keeper("acme")
	if err != nil {
		t.Fatal(err)
	}
	link, err := k.ConsentURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids := listed(t, observer); len(ids) != 0 {
		t.Fatalf("Accounts before the consent = %v, want none", ids)
	}
	cb, err := sb.ApproveAs(link, "admin-acme")
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.Parse(cb)
	account, res, err := accounts.CompleteConsent(ctx, q.Query().Get("state"), vbctoken.Secret(q.Query().Get("code")))
	if err != nil || account != "acme" || res.Outcome != vbctoken.OutcomeConnected {
		t.Fatalf("CompleteConsent = %q, %+v, %v", account, res, err)
	}
	t.Logf("consent link and first consent: %d calls: %v", len(f.calls.log), f.calls.take())
	if ids := listed(t, observer); !slices.Equal(ids, []string{"acme"}) {
		t.Errorf("Accounts after the consent = %v, want [acme]", ids)
	}
	slices.Sort(created)
	if !slices.Equal(created, []string{"acme/access", "acme/pair"}) {
		t.Errorf("created %v, want acme's pair and access secrets", created)
	}
	if st, err := k.Status(ctx); err != nil || !st.Connected {
		t.Errorf("Status = %+v, %v; want connected", st, err)
	}
	f.calls.take()
	if res, err := k.Refresh(ctx, false); err != nil || res.Outcome != vbctoken.OutcomeSkipped {
		t.Errorf("hourly check = %+v, %v; want skipped", res, err)
	}
	t.Logf("hourly check: %v", f.calls.take())
	if res, err := k.Refresh(ctx, true); err != nil || res.Outcome != vbctoken.OutcomeRefreshed {
		t.Errorf("forced refresh = %+v, %v; want refreshed", res, err)
	}
	t.Logf("refresh: %v", f.calls.take())
	src := vbctoken.NewSource(open(t, f.fleet, "acme"))
	if tok, err := src.Token(); err != nil || tok.AccessToken == "" {
		t.Errorf("the app's source reads %v, %v; want the access token", tok, err)
	}
}

// 300 accounts, created by 16 concurrent writers in two processes, are all listed, each
// once, sorted; and a bulk Register writes each shard once.
func TestFleetListsManyAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetFixture(t)
	const n = 300
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("customer-%03d", i)
	}
	fleets := [2]*smstore.Fleet{f.fleet, f.process(t)}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range work {
				s, _ := fleets[w%2].Open(want[i])
				if _, err := s.CommitPair(ctx, storetest.NewPair(), ""); err != nil {
					t.Errorf("first commit of %s: %v", want[i], err)
				}
			}
		})
	}
	for i := range want {
		work <- i
	}
	close(work)
	wg.Wait()
	if got := listed(t, f.process(t)); !slices.Equal(got, want) {
		t.Fatalf("Accounts listed %d accounts, want %d: %v", len(got), n, got)
	}

	// A bulk import of 100 more (and 10 already there): one compare-and-swap per shard.
	more := make([]string, 0, 110)
	for i := range 100 {
		more = append(more, fmt.Sprintf("import-%03d", i))
	}
	more = append(more, want[:10]...)
	f.calls.take()
	if err := f.process(t).Register(ctx, more...); err != nil {
		t.Fatal(err)
	}
	if writes := countOps(f.calls.take(), "Put"); writes != smstore.IndexShards {
		t.Errorf("bulk Register made %d index writes, want %d (one per shard)", writes, smstore.IndexShards)
	}
	all := append(slices.Clone(want), more[:100]...)
	slices.Sort(all)
	if got := listed(t, f.process(t)); !slices.Equal(got, all) {
		t.Errorf("Accounts after the import listed %d, want %d", len(got), len(all))
	}
}

func countOps(calls []string, op string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, op+" ") {
			n++
		}
	}
	return n
}

// An index shard is compare-and-swapped like the pair: fields unknown to this build are
// kept, a newer schema is refused and never overwritten, a broken shard is an error that
// names it.
func TestFleetIndexShardContent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetFixture(t)
	id := f.prefix + shard("acme")
	read := func() string {
		out, err := f.srv.Client().GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id), VersionStage: aws.String("AWSCURRENT")})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.SecretString)
	}

	f.srv.SetSecret(t, id, `{"version":1,"accounts":["zeta"],"note":{"kept":true}}`)
	if err := f.fleet.Register(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), `{"version":1,"accounts":["acme","zeta"],"note":{"kept":true}}`; got != want {
		t.Errorf("shard = %s, want %s", got, want)
	}

	for _, c := range []struct {
		stored string
		want   error
	}{
		{`{"version":2,"accounts":["acme"],"buckets":{}}`, vbctoken.ErrNewerSchema},
		{`{"accounts":["acme"]}`, vbctoken.ErrMalformedSecret},
		{`{"version":1,"accounts":"acme"}`, vbctoken.ErrMalformedSecret},
		{`{"version":1,"accounts":["Not An Id"]}`, vbctoken.ErrMalformedSecret},
		{`["acme"]`, vbctoken.ErrMalformedSecret},
	} {
		f.srv.SetSecret(t, id, c.stored)
		fresh := f.process(t)
		if _, err := fresh.Accounts(ctx); !errors.Is(err, c.want) || !strings.Contains(err.Error(), shard("acme")) {
			t.Errorf("Accounts over %s: %v, want %v naming the shard", c.stored, err, c.want)
		}
		if err := fresh.Register(ctx, "acme"); !errors.Is(err, c.want) {
			t.Errorf("Register over %s: %v, want %v", c.stored, err, c.want)
		}
		if _, err := open(t, fresh, "acme").CommitPair(ctx, storetest.NewPair(), ""); !errors.Is(err, c.want) {
			t.Errorf("first CommitPair over %s: %v, want %v", c.stored, err, c.want)
		}
		if got := read(); got != c.stored {
			t.Errorf("shard rewritten to %s, want %s kept", got, c.stored)
		}
	}
}

// A shard that cannot take another account without passing 64 KB refuses it with
// smstore.ErrIndexFull, and the account gets no secret.
func TestFleetIndexFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetFixture(t)
	// The longest account id, and the shard it belongs to filled with 53-character ids
	// until the next one would not fit: less room is left than the long id needs.
	long := ""
	for i := 0; long == ""; i++ {
		if id := fmt.Sprintf("%063d", i); smstore.ShardOf(id) == smstore.ShardOf("acme") {
			long = id
		}
	}
	var ids []string
	size := len(`{"version":1,"accounts":[]}`) - 1 // the first entry has no comma
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", strings.Repeat("x", 50), 100+i)
		if smstore.ShardOf(id) != smstore.ShardOf(long) {
			continue
		}
		if size+len(id)+3 > 65536 {
			break
		}
		ids = append(ids, id)
		size += len(id) + 3
	}
	if err := f.fleet.Register(ctx, ids...); err != nil {
		t.Fatalf("Register %d accounts into one shard: %v", len(ids), err)
	}
	_, err := open(t, f.process(t), long).CommitPair(ctx, storetest.NewPair(), "")
	if !errors.Is(err, smstore.ErrIndexFull) {
		t.Fatalf("first CommitPair into a full shard: %v, want ErrIndexFull", err)
	}
	if n := f.srv.VersionCount(t, f.prefix+long+"/pair"); n != 0 {
		t.Errorf("the pair of an unlisted account was created (%d versions)", n)
	}
	t.Logf("a shard took %d accounts of %d characters (%d bytes); %v", len(ids), len(ids[0]), size, err)
}

func TestNewFleetRefusesBadConfig(t *testing.T) {
	t.Parallel()
	api := &fleetCalls{}
	good := smstore.FleetConfig{Prefix: "vbctoken/accounts/", CredentialsSecretID: "vbc/credentials"}
	for name, change := range map[string]func(*smstore.FleetConfig){
		"empty prefix":        func(c *smstore.FleetConfig) { c.Prefix = "" },
		"IAM wildcard":        func(c *smstore.FleetConfig) { c.Prefix = "vbctoken/*" },
		"ARN":                 func(c *smstore.FleetConfig) { c.Prefix = "arn:aws:secretsmanager:us-east-1:1:secret:x/" },
		"space":               func(c *smstore.FleetConfig) { c.Prefix = "vbc token/" },
		"too long":            func(c *smstore.FleetConfig) { c.Prefix = strings.Repeat("p", 443) },
		"no credentials name": func(c *smstore.FleetConfig) { c.CredentialsSecretID = "" },
	} {
		cfg := good
		change(&cfg)
		if _, err := smstore.NewFleet(api, cfg); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", name, err)
		}
	}
	if _, err := smstore.NewFleet(nil, good); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("no client: err = %v, want ErrBadInput", err)
	}
	longest := good
	longest.Prefix = strings.Repeat("p", 442)
	fl, err := smstore.NewFleet(api, longest)
	if err != nil {
		t.Fatalf("the longest prefix: %v", err)
	}
	for _, bad := range []string{"", "Acme", "-acme", "a_b", "../x", strings.Repeat("a", 64)} {
		if _, err := fl.Open(bad); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("Open(%q): err = %v, want ErrBadInput", bad, err)
		}
		if err := fl.Register(context.Background(), "acme", bad); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("Register(%q): err = %v, want ErrBadInput", bad, err)
		}
	}
	if calls := api.take(); len(calls) != 0 {
		t.Errorf("refused input made calls %v", calls)
	}
}
