package smstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"golang.org/x/sync/errgroup"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// The layout of a fleet under its prefix (docs/design.md "Accounts mode").
const (
	// IndexShards is the number of index secrets, <prefix>_index/00 … <prefix>_index/15.
	IndexShards = 16
	// indexDir names the index secrets under the prefix; account ids cannot contain "_",
	// so no account's secrets can take these names.
	indexDir = contract.AccountIndexDir
	// indexVersion is the schema version of an index shard's JSON.
	indexVersion = 1
	// accountTagKey tags every secret the fleet creates for an account, with the account id.
	accountTagKey = contract.AccountTagKey
	// maxSecretString is the largest SecretString Secrets Manager stores (64 KB).
	maxSecretString = 65536
	// maxSecretName is the longest secret name Secrets Manager takes.
	maxSecretName = 512
	// longestSuffix is the longest account id with the longest suffix after it.
	longestSuffix = 63 + len(contract.AccountAccessSecretSuffix)
	// maxIndexRounds bounds the compare-and-swap rounds of one index update; losing that
	// many in a row to other writers is reported as ErrTransient.
	maxIndexRounds = 32
)

// ErrIndexFull is returned when an account does not fit into its index shard: the shard
// would exceed Secrets Manager's 64 KB secret size (docs/design.md "Accounts mode").
// Retrying does not help; such a fleet needs another backend.
var ErrIndexFull = errors.New("account index shard full")

// FleetAPI is the part of the Secrets Manager API a Fleet calls: a Store's API and
// CreateSecret, for an account's secrets and the index shards, which the fleet creates on
// their first write. *secretsmanager.Client implements it.
type FleetAPI interface {
	API
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
}

var _ FleetAPI = (*secretsmanager.Client)(nil)

// FleetConfig names a fleet's secrets (docs/design.md "Accounts mode").
type FleetConfig struct {
	// Prefix is VBC_ACCOUNT_SECRET_PREFIX, for example "vbctoken/accounts/". Account
	// acme's secrets are <Prefix>acme/pair and <Prefix>acme/access; the account index is
	// <Prefix>_index/00 … <Prefix>_index/15. A trailing "/" keeps IAM's
	// secret:<Prefix>* from matching other secrets.
	Prefix string
	// KMSKeyID is VBC_ACCOUNT_KMS_KEY_ID, the KMS key (ARN preferred, for IAM conditions)
	// the created secrets are encrypted with; "" means Secrets Manager's aws/secretsmanager.
	KMSKeyID string
	// CredentialsSecretID is VBC_CREDENTIALS_SECRET_ID, the shared client credentials.
	CredentialsSecretID string
}

// Fleet keeps the chains of many VBC accounts in Secrets Manager (a vbctoken.Fleet): per
// account a pair and an access secret under the prefix, and the sharded account index.
//
// The index replaces ListSecrets, which IAM allows only on Resource "*": 16 secrets
// <prefix>_index/NN, each {"version":1,"accounts":[…]} listing the accounts whose id
// hashes to it (FNV-1a 32 modulo 16), created on their first write and updated with the
// pair's compare-and-swap. An account is added to its shard before any of its secrets is
// created, so an account with secrets is always listed; a listed account without a pair
// is not connected yet. Entries are never removed.
//
// Calls (docs/design.md "Accounts mode"): an account's first write adds it to the index
// (GetSecretValue, then PutSecretValue and UpdateSecretVersionStage, or CreateSecret for a
// shard that does not exist yet) and creates the secret (CreateSecret); later writes of a
// process skip the index. Accounts reads the 16 shards at once (16 GetSecretValue).
//
// A Fleet is safe for concurrent use, and so are its stores.
type Fleet struct {
	api   FleetAPI
	cfg   FleetConfig
	creds *Store
	index *Store // writes index shards, creating them when missing

	mu         sync.Mutex
	registered map[string]bool // accounts known to be in the index
}

var _ vbctoken.Fleet = (*Fleet)(nil)

// NewFleet returns the fleet of cfg, calling api (a *secretsmanager.Client in production).
// It calls nothing yet; a bad prefix or a missing credentials secret is ErrBadInput.
func NewFleet(api FleetAPI, cfg FleetConfig) (*Fleet, error) {
	if api == nil {
		return nil, fmt.Errorf("new fleet: %w: no Secrets Manager client", vbctoken.ErrBadInput)
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	if cfg.CredentialsSecretID == "" {
		return nil, fmt.Errorf("new fleet: %w: no credentials secret", vbctoken.ErrBadInput)
	}
	return &Fleet{
		api:        api,
		cfg:        cfg,
		creds:      New(api, SecretIDs{Credentials: cfg.CredentialsSecretID}),
		index:      &Store{api: api, create: &creator{api: api, kmsKeyID: cfg.KMSKeyID}},
		registered: map[string]bool{},
	}, nil
}

// NewFleetFromConfig is NewFleet with an SDK client built from cfg (see NewFromConfig).
func NewFleetFromConfig(cfg aws.Config, fc FleetConfig) (*Fleet, error) {
	return NewFleet(secretsmanager.NewFromConfig(cfg), fc)
}

// checkPrefix accepts a prefix made of the characters Secrets Manager allows in a name
// (which also keeps IAM wildcards out), short enough for every name under it.
func checkPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty account secret prefix", vbctoken.ErrBadInput)
	}
	if len(p) > maxSecretName-longestSuffix {
		return fmt.Errorf("%w: the account secret prefix is longer than %d characters", vbctoken.ErrBadInput, maxSecretName-longestSuffix)
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_+=.@-", r)
		if !ok {
			return fmt.Errorf("%w: the account secret prefix may hold only letters, digits and /_+=.@-", vbctoken.ErrBadInput)
		}
	}
	return nil
}

// Open returns the store of account: <prefix><account>/pair and <prefix><account>/access
// with the shared credentials. Nothing is read or created until the store is used; its
// first write registers the account in the index and then creates the secret (CreateSecret
// with the content as its first version, the fleet's KMS key and the tag
// vbctoken:account=<account>). The store's compare-and-swap is the same as a Store's: two
// writers creating the same account's pair end with one winner and one vbctoken.ErrConflict.
func (f *Fleet) Open(account string) (vbctoken.Store, error) {
	if err := vbctoken.CheckAccount(account); err != nil {
		return nil, fmt.Errorf("open account store: %w", err)
	}
	return &Store{
		api: f.api,
		ids: SecretIDs{
			Credentials: f.cfg.CredentialsSecretID,
			Pair:        f.cfg.Prefix + account + contract.AccountPairSecretSuffix,
			Access:      f.cfg.Prefix + account + contract.AccountAccessSecretSuffix,
		},
		create: &creator{
			api:      f.api,
			kmsKeyID: f.cfg.KMSKeyID,
			tags:     []types.Tag{{Key: aws.String(accountTagKey), Value: aws.String(account)}},
			register: func(ctx context.Context) error { return f.Register(ctx, account) },
		},
	}, nil
}

// LoadCredentials reads the shared client credentials secret.
func (f *Fleet) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	return f.creds.LoadCredentials(ctx)
}

// Accounts returns every account of the index, sorted: those with a stored pair and those
// registered whose first consent has not completed yet (their stores are not connected).
// It reads the 16 shards concurrently; a missing shard is empty.
func (f *Fleet) Accounts(ctx context.Context) ([]string, error) {
	var shards [IndexShards][]string
	g, gctx := errgroup.WithContext(ctx)
	for i := range IndexShards {
		g.Go(func() error {
			idx, _, err := f.readShard(gctx, i)
			shards[i] = idx.accounts
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	var all []string
	for _, s := range shards {
		all = append(all, s...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	f.markRegistered(all)
	return all, nil
}

// Register adds accounts to the index (one compare-and-swap write per shard touched) and
// returns once they are all in it. A store of the fleet registers its account by itself
// before it creates the account's first secret; Register serves bulk imports (one index
// version for many accounts) and operators who list an account before its first consent.
// Registering a registered account costs nothing in a process that saw it registered
// (or listed it) and one GetSecretValue otherwise.
func (f *Fleet) Register(ctx context.Context, accounts ...string) error {
	var byShard [IndexShards][]string
	for _, a := range accounts {
		if err := vbctoken.CheckAccount(a); err != nil {
			return fmt.Errorf("register accounts: %w", err)
		}
		if !f.isRegistered(a) {
			byShard[shardOf(a)] = append(byShard[shardOf(a)], a)
		}
	}
	for shard, add := range byShard {
		if len(add) == 0 {
			continue
		}
		if err := f.addToShard(ctx, shard, add); err != nil {
			return fmt.Errorf("register accounts: %w", err)
		}
	}
	return nil
}

// addToShard puts add into the index shard, compare-and-swap, retrying lost races.
func (f *Fleet) addToShard(ctx context.Context, shard int, add []string) error {
	id := f.shardID(shard)
	for round := range maxIndexRounds {
		if round > 0 {
			if err := backoff(ctx, round); err != nil {
				return fmt.Errorf("update %s: %w", id, err)
			}
		}
		idx, prev, err := f.readShard(ctx, shard)
		if err != nil {
			return err
		}
		if !idx.add(add) {
			f.markRegistered(add)
			return nil
		}
		content := idx.encode()
		if len(content) > maxSecretString {
			return fmt.Errorf("update %s: %w: %d accounts would take %d bytes, more than Secrets Manager's %d",
				id, ErrIndexFull, len(idx.accounts), len(content), maxSecretString)
		}
		_, err = f.index.commit(ctx, id, content, indexToken(prev, content), prev)
		if errors.Is(err, vbctoken.ErrConflict) {
			continue // another writer updated the shard: read it again
		}
		if err != nil {
			return fmt.Errorf("update %s: %w", id, err)
		}
		f.markRegistered(add)
		return nil
	}
	return fmt.Errorf("update %s: %w: lost %d compare-and-swap rounds in a row to other writers", id, vbctoken.ErrTransient, maxIndexRounds)
}

// backoff waits a random time growing with round (at most 250 ms) so that writers racing
// for one shard spread out.
func backoff(ctx context.Context, round int) error {
	d := min(time.Duration(rand.Int64N(int64(round)*int64(10*time.Millisecond)))+time.Millisecond, 250*time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// readShard reads an index shard and its version ("" when it does not exist yet).
func (f *Fleet) readShard(ctx context.Context, shard int) (index, string, error) {
	id := f.shardID(shard)
	out, err := f.index.getCurrent(ctx, id)
	if errors.Is(err, vbctoken.ErrNotFound) {
		return index{}, "", nil
	}
	if err != nil {
		return index{}, "", fmt.Errorf("read account index: %w", err)
	}
	idx, err := decodeIndex([]byte(*out.SecretString))
	if err != nil {
		return index{}, "", fmt.Errorf("read account index %s: %w", id, err)
	}
	return idx, aws.ToString(out.VersionId), nil
}

func (f *Fleet) shardID(shard int) string {
	return fmt.Sprintf("%s%s%02d", f.cfg.Prefix, indexDir, shard)
}

func (f *Fleet) isRegistered(account string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registered[account]
}

func (f *Fleet) markRegistered(accounts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range accounts {
		f.registered[a] = true
	}
}

// shardOf is the index shard of an account: FNV-1a 32 of its id, modulo 16. It is part of
// the stored layout and never changes.
func shardOf(account string) int {
	h := fnv.New32a()
	h.Write([]byte(account))
	return int(h.Sum32() % IndexShards)
}

// indexToken derives the ClientRequestToken of an index shard write, as pairToken does.
func indexToken(prev string, content []byte) string {
	return writeToken("vbctoken index", prev, content)
}

// index is one shard of the account index: {"version":1,"accounts":[…]}, with any other
// field kept as it was on rewrite.
type index struct {
	accounts []string                   // sorted, unique, valid ids
	rest     map[string]json.RawMessage // fields this build does not know
}

// decodeIndex parses a shard. A newer version is vbctoken.ErrNewerSchema; anything else
// that is not a shard of valid account ids is vbctoken.ErrMalformedSecret.
func decodeIndex(data []byte) (index, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return index{}, fmt.Errorf("%w: an account index shard is a JSON object", vbctoken.ErrMalformedSecret)
	}
	var version int
	if err := json.Unmarshal(fields["version"], &version); err != nil || version < 1 {
		return index{}, fmt.Errorf("%w: an account index shard needs \"version\": %d", vbctoken.ErrMalformedSecret, indexVersion)
	}
	if version > indexVersion {
		return index{}, fmt.Errorf("%w: account index version %d (this build reads %d)", vbctoken.ErrNewerSchema, version, indexVersion)
	}
	var idx index
	if raw, ok := fields["accounts"]; ok {
		if err := json.Unmarshal(raw, &idx.accounts); err != nil {
			return index{}, fmt.Errorf("%w: \"accounts\" of an account index shard is a list of strings", vbctoken.ErrMalformedSecret)
		}
	}
	for i, a := range idx.accounts {
		if err := vbctoken.CheckAccount(a); err != nil {
			return index{}, fmt.Errorf("account index entry %d: %w: %w", i, vbctoken.ErrMalformedSecret, err)
		}
	}
	slices.Sort(idx.accounts)
	idx.accounts = slices.Compact(idx.accounts)
	delete(fields, "version")
	delete(fields, "accounts")
	if len(fields) > 0 {
		idx.rest = fields
	}
	return idx, nil
}

// add puts accounts into the shard and reports whether any was missing.
func (idx *index) add(accounts []string) bool {
	n := len(idx.accounts)
	for _, a := range accounts {
		if _, found := slices.BinarySearch(idx.accounts[:n], a); !found {
			idx.accounts = append(idx.accounts, a)
		}
	}
	if len(idx.accounts) == n {
		return false
	}
	slices.Sort(idx.accounts)
	idx.accounts = slices.Compact(idx.accounts)
	return true
}

// encode writes the shard, version first, the accounts sorted, other fields kept.
func (idx index) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"version":%d,"accounts":`, indexVersion)
	accounts := idx.accounts
	if accounts == nil {
		accounts = []string{}
	}
	list, _ := json.Marshal(accounts) // strings only: cannot fail
	b.Write(list)
	keys := make([]string, 0, len(idx.rest))
	for k := range idx.rest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key, _ := json.Marshal(k)
		b.WriteByte(',')
		b.Write(key)
		b.WriteByte(':')
		b.Write(idx.rest[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// creator creates the secrets of a fleet on their first write.
type creator struct {
	api      FleetAPI
	kmsKeyID string
	tags     []types.Tag
	// register runs before a secret is created: it adds the account to the index, so that
	// no account has secrets without being listed. nil for the index shards themselves.
	register func(ctx context.Context) error
}

// secret creates id with content as its first version, after register: one CreateSecret
// whose ClientRequestToken (token) makes a retry of a call that landed succeed without a
// second version. created is false, without an error, when the secret exists already.
func (c *creator) secret(ctx context.Context, id string, content []byte, token string) (version string, created bool, err error) {
	if c.register != nil {
		if err := c.register(ctx); err != nil {
			return "", false, err
		}
	}
	in := &secretsmanager.CreateSecretInput{
		Name:               aws.String(id),
		SecretString:       aws.String(string(content)),
		ClientRequestToken: aws.String(token),
		Tags:               c.tags,
	}
	if c.kmsKeyID != "" {
		in.KmsKeyId = aws.String(c.kmsKeyID)
	}
	out, err := c.api.CreateSecret(ctx, in)
	switch {
	case err == nil:
		return aws.ToString(out.VersionId), true, nil
	case isCode(err, "ResourceExistsException"):
		return "", false, nil
	}
	return "", false, smError("CreateSecret", id, err)
}

// first is the first step of a compare-and-swap from no version (prev ""): create the
// secret with content. When it exists already, its current version tells a lost race
// (vbctoken.ErrConflict) from a retry of this very write (success); done is false when it
// has no current version, and the caller puts the first one.
func (c *creator) first(ctx context.Context, s *Store, id string, content []byte, token string) (version string, done bool, err error) {
	version, created, err := c.secret(ctx, id, content, token)
	if err != nil || created {
		return version, true, err
	}
	cur, err := s.getCurrent(ctx, id)
	switch {
	case errors.Is(err, vbctoken.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", true, fmt.Errorf("secret exists, then: %w", err)
	case isOurs(cur, token, content):
		return aws.ToString(cur.VersionId), true, nil
	}
	return "", true, &Error{Op: "CreateSecret", SecretID: id, Code: "ResourceExistsException", Kind: vbctoken.ErrConflict}
}
