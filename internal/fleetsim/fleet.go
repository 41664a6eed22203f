package fleetsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// The deployment's names (docs/design.md "Accounts mode", docs/fleet.md).
const (
	accountPrefix       = "vbctoken/accounts/"
	credentialsSecretID = "vbctoken/credentials"
	kmsKeyID            = "alias/vbctoken-accounts"
	indexShards         = 16
	// indexPending labels an index version written but not yet current (the same
	// two-call compare-and-swap as the pair, smstore's VBCTOKEN_PENDING).
	indexPending = "VBCTOKEN_PENDING"
)

func pairID(account string) string   { return accountPrefix + account + "/pair" }
func accessID(account string) string { return accountPrefix + account + "/access" }
func indexID(shard int) string       { return fmt.Sprintf("%s_index/%02d", accountPrefix, shard) }

func shardOf(account string) int {
	h := fnv.New32a()
	h.Write([]byte(account))
	return int(h.Sum32() % indexShards)
}

// index is the JSON of one index shard.
type index struct {
	Version  int      `json:"version"`
	Accounts []string `json:"accounts"`
}

// fleet is the simulation's vbctoken.Fleet for one process: the Secrets Manager backend of
// docs/design.md "Accounts mode" over the model. Each account's store is the real smstore.Store on
// <prefix><account>/pair and /access; on the account's first write the fleet lists the
// account in its index shard <prefix>_index/NN (compare-and-swap, before anything else)
// and then creates both secrets (CreateSecret with the KMS key and the account tag).
// Accounts reads the 16 shards: ListSecrets would need Resource "*".
//
// The production backend is another session's (pkg/vbctoken's accounts stores); this one
// follows the same contract so the simulation counts the same calls.
type fleet struct {
	api           fleetAPI
	count         func(op int) // counts store-level operations; nil: none
	prefix        string
	credentialsID string
	kmsKeyID      string

	mu      sync.Mutex
	created map[string]bool // accounts whose secrets this process created or found
}

var _ vbctoken.Fleet = (*fleet)(nil)

// fleetAPI is what the fleet calls: smstore's API and CreateSecret.
type fleetAPI interface {
	smstore.API
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput) (*secretsmanager.CreateSecretOutput, error)
}

// Open implements vbctoken.Fleet.
func (f *fleet) Open(account string) (vbctoken.Store, error) {
	if err := vbctoken.CheckAccount(account); err != nil {
		return nil, err
	}
	ids := smstore.SecretIDs{Credentials: f.credentialsID, Pair: pairID(account), Access: accessID(account)}
	return &accountStore{f: f, account: account, Store: smstore.New(f.api, ids)}, nil
}

// Accounts implements vbctoken.Fleet: the union of the index shards, sorted.
func (f *fleet) Accounts(ctx context.Context) ([]string, error) {
	var all []string
	for shard := range indexShards {
		idx, _, err := f.readIndex(ctx, shard)
		if err != nil {
			return nil, err
		}
		all = append(all, idx.Accounts...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// LoadCredentials implements vbctoken.Fleet.
func (f *fleet) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	return smstore.New(f.api, smstore.SecretIDs{Credentials: f.credentialsID}).LoadCredentials(ctx)
}

func (f *fleet) readIndex(ctx context.Context, shard int) (index, string, error) {
	out, err := f.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(indexID(shard)), VersionStage: aws.String(stageCurrent)})
	if err != nil {
		return index{}, "", storeError("read account index", err)
	}
	var idx index
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &idx); err != nil {
		return index{}, "", fmt.Errorf("read account index %02d: %w: %v", shard, vbctoken.ErrMalformedSecret, err)
	}
	return idx, aws.ToString(out.VersionId), nil
}

// ensure lists account in its index shard, then creates its two secrets.
func (f *fleet) ensure(ctx context.Context, account string) error {
	f.mu.Lock()
	done := f.created[account]
	f.mu.Unlock()
	if done {
		return nil
	}
	if err := f.list(ctx, account); err != nil {
		return err
	}
	for _, id := range []string{pairID(account), accessID(account)} {
		_, err := f.api.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
			Name:     aws.String(id),
			KmsKeyId: aws.String(f.kmsKeyID),
			Tags:     []smtypes.Tag{{Key: aws.String("vbctoken:account"), Value: aws.String(account)}},
		})
		if err != nil && apiCode(err) != "ResourceExistsException" {
			return storeError("create account secret", err)
		}
	}
	f.mu.Lock()
	if f.created == nil {
		f.created = map[string]bool{}
	}
	f.created[account] = true
	f.mu.Unlock()
	return nil
}

// list adds account to its index shard with compare-and-swap: put the new content under a
// pending label, then move AWSCURRENT from the version read; a refused move is a lost race.
func (f *fleet) list(ctx context.Context, account string) error {
	shard := shardOf(account)
	id := indexID(shard)
	for range 32 {
		idx, prev, err := f.readIndex(ctx, shard)
		if err != nil {
			return err
		}
		if _, found := slices.BinarySearch(idx.Accounts, account); found {
			return nil
		}
		idx.Accounts = append(idx.Accounts, account)
		slices.Sort(idx.Accounts)
		content, _ := json.Marshal(idx)
		sum := sha256.Sum256(append([]byte(prev+"\x00"), content...))
		put, err := f.api.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
			SecretId: aws.String(id), SecretString: aws.String(string(content)),
			ClientRequestToken: aws.String(hex.EncodeToString(sum[:])), VersionStages: []string{indexPending},
		})
		if err != nil {
			return storeError("update account index", err)
		}
		_, err = f.api.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
			SecretId: aws.String(id), VersionStage: aws.String(stageCurrent),
			MoveToVersionId: put.VersionId, RemoveFromVersionId: aws.String(prev),
		})
		if err == nil {
			return nil
		}
		if apiCode(err) == "InvalidParameterException" {
			continue // lost a race, or an earlier attempt's move landed: read again
		}
		return storeError("update account index", err)
	}
	return fmt.Errorf("update account index: %w: too many concurrent writers", vbctoken.ErrConflict)
}

// accountStore is one account's store: smstore.Store, creating the account's secrets on
// its first write.
type accountStore struct {
	*smstore.Store
	f       *fleet
	account string
}

// Store-level operations, counted per role: the DynamoDB backend's requests are these
// (cost.go), whatever Secrets Manager calls each one takes.
const (
	stLoadPair = iota
	stCommitPair
	stPutAccess
	stLoadAccess
	stLoadCredentials
	numStoreOps
)

var storeOpNames = [numStoreOps]string{"LoadPair", "CommitPair", "PutAccess", "LoadAccess", "LoadCredentials"}

func (s *accountStore) count(op int) {
	if s.f.count != nil {
		s.f.count(op)
	}
}

// LoadPair implements vbctoken.Store.
func (s *accountStore) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	s.count(stLoadPair)
	return s.Store.LoadPair(ctx)
}

// LoadAccess implements vbctoken.Store.
func (s *accountStore) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	s.count(stLoadAccess)
	return s.Store.LoadAccess(ctx)
}

// LoadCredentials implements vbctoken.Store.
func (s *accountStore) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	s.count(stLoadCredentials)
	return s.Store.LoadCredentials(ctx)
}

// CommitPair implements vbctoken.Store.
func (s *accountStore) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	s.count(stCommitPair)
	v, err := s.Store.CommitPair(ctx, p, prev)
	if prev == "" && errors.Is(err, vbctoken.ErrNotFound) {
		if err := s.f.ensure(ctx, s.account); err != nil {
			return "", fmt.Errorf("commit pair: %w", err)
		}
		return s.Store.CommitPair(ctx, p, prev)
	}
	return v, err
}

// PutAccess implements vbctoken.Store.
func (s *accountStore) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	s.count(stPutAccess)
	err := s.Store.PutAccess(ctx, a)
	if errors.Is(err, vbctoken.ErrNotFound) {
		if err := s.f.ensure(ctx, s.account); err != nil {
			return fmt.Errorf("put access token: %w", err)
		}
		return s.Store.PutAccess(ctx, a)
	}
	return err
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

var retryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// storeError classifies a failed call as smstore does: what the SDK would retry, a
// deadline and the retry quota are transient for the keeper.
func storeError(what string, err error) error {
	var quota ratelimit.QuotaExceededError
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &quota),
		retryables.IsErrorRetryable(err) == aws.TrueTernary, apiCode(err) == "InternalServiceError":
		return fmt.Errorf("%s: %w: %w", what, vbctoken.ErrTransient, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
