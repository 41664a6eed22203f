package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// The table's key and the items' keys. The table has the string partition key
// PartitionKey and no sort key; account X's items are PairKeyPrefix+X (the keeper's) and
// AccessKeyPrefix+X (what X's apps read, the dynamodb:LeadingKeys value of their IAM
// policy). Account ids cannot contain '#', so no key of one kind is a key of the other.
const (
	PartitionKey    = contract.TablePartitionKey
	PairKeyPrefix   = contract.PairKeyPrefix
	AccessKeyPrefix = contract.AccessKeyPrefix
)

// The items' other attributes.
const (
	// attrJSON holds the same JSON as the pair or access secret of docs/design.md "Secrets".
	attrJSON = "json"
	// attrVersion is the pair item's number, 1 for its first write and one more for each
	// commit: the compare-and-swap condition names it, and Versioned.Version is it in decimal.
	attrVersion = "version"
)

// API is the part of the DynamoDB API the stores and the fleet call; *dynamodb.Client
// implements it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

var _ API = (*dynamodb.Client)(nil)

// CredentialsLoader loads the shared client credentials, which stay in the Secrets Manager
// secret VBC_CREDENTIALS_SECRET_ID in accounts mode; *smstore.Store implements it.
type CredentialsLoader interface {
	LoadCredentials(ctx context.Context) (vbctoken.Credentials, error)
}

// Store is one account's store in a DynamoDB table: its pair item, written with
// compare-and-swap, its access item, and the shared credentials from a CredentialsLoader.
// It creates its items on their first write and never deletes one. It is safe for
// concurrent use.
//
// Errors from DynamoDB are *Error values (wrapped with what was being done): throttling,
// 5xx and timeouts, once the SDK's standard retryer has given up, match
// vbctoken.ErrTransient; a lost compare-and-swap matches vbctoken.ErrConflict. No error
// carries a token.
type Store struct {
	api     API
	table   string
	account string
	creds   CredentialsLoader
}

var _ vbctoken.Store = (*Store)(nil)

// New returns the store of account (a valid account id, else vbctoken.ErrBadInput) in
// table, calling api (a *dynamodb.Client in production). creds loads the shared
// credentials; nil makes LoadCredentials answer vbctoken.ErrNoCredentials (an app that
// only reads its access token needs none). Nothing is read until the store is used.
func New(api API, table, account string, creds CredentialsLoader) (*Store, error) {
	if err := vbctoken.CheckAccount(account); err != nil {
		return nil, fmt.Errorf("new dynamodb store: %w", err)
	}
	if api == nil || table == "" {
		return nil, fmt.Errorf("new dynamodb store: %w: no client or no table name", vbctoken.ErrBadInput)
	}
	return &Store{api: api, table: table, account: account, creds: creds}, nil
}

// NewSource is vbctoken.NewSource over account's access item in table, with the app's SDK
// configuration (typically config.LoadDefaultConfig; AWS_ENDPOINT_URL_DYNAMODB points it
// at a local endpoint). The app needs only dynamodb:GetItem on the table with the
// condition dynamodb:LeadingKeys = AccessKeyPrefix+account (and kms:Decrypt on the table's
// key when it is customer managed). Nothing is read until the first Token call.
func NewSource(cfg aws.Config, table, account string, opts ...vbctoken.SourceOption) (*vbctoken.Source, error) {
	s, err := New(dynamodb.NewFromConfig(cfg), table, account, nil)
	if err != nil {
		return nil, fmt.Errorf("new dynamodb source: %w", err)
	}
	return vbctoken.NewSource(s, opts...), nil
}

func (s *Store) pairKey() string   { return PairKeyPrefix + s.account }
func (s *Store) accessKey() string { return AccessKeyPrefix + s.account }

// LoadCredentials returns the shared client credentials from the CredentialsLoader.
func (s *Store) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	if s.creds == nil {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials: %w: the store has no credentials loader", vbctoken.ErrNoCredentials)
	}
	return s.creds.LoadCredentials(ctx)
}

// getItem reads the item key with a strongly consistent GetItem (a keeper that lost a
// race must see the winner's pair, an app the access token written a moment ago), nil
// when it does not exist.
func (s *Store) getItem(ctx context.Context, key string) (map[string]types.AttributeValue, error) {
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            keyOf(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, classify("GetItem", s.table, key, err)
	}
	return out.Item, nil
}

// LoadPair reads the pair item (one strongly consistent GetItem). A missing item is a
// not-connected pair with Version "". The item is written in one conditional request, so
// LoadPair never reports a Pending write.
func (s *Store) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	key := s.pairKey()
	item, err := s.getItem(ctx, key)
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair: %w", err)
	}
	if item == nil {
		return vbctoken.Versioned{Pair: &vbctoken.Pair{}}, nil
	}
	version, err := versionOf(item)
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair from %s: %w", key, err)
	}
	data, err := jsonOf(item)
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair from %s: %w", key, err)
	}
	p, err := vbctoken.DecodePair(data)
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair from %s: %w", key, err)
	}
	return vbctoken.Versioned{Pair: p, Version: strconv.FormatUint(version, 10)}, nil
}

// CommitPair stores p as the current pair if the item's version is still prev (the item
// does not exist when prev is ""), and returns the new version, prev + 1. prev must come
// from a successful LoadPair: that is how a pair written by a newer vbctoken is protected
// (LoadPair refuses it, so no caller holds its version).
//
// One PutItem with the condition `version = prev` (attribute_not_exists for prev "") and
// ReturnValuesOnConditionCheckFailure ALL_OLD. When the condition fails, the item sent back
// tells a lost race (vbctoken.ErrConflict) from a retry of this very commit whose write had
// landed, without another request: the stored item is then version prev + 1 holding this
// content byte for byte, which only this commit (or a byte-identical one) writes. The
// content plays the part of the Secrets Manager store's ClientRequestToken and costs no
// attribute. Retrying the same call after any failure is therefore safe; as with every
// store, two writers committing byte-identical pairs from the same prev both succeed.
func (s *Store) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	if p == nil {
		return "", fmt.Errorf("commit pair: %w: nil pair", vbctoken.ErrBadInput)
	}
	content, err := vbctoken.EncodePair(p)
	if err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	key := s.pairKey()
	in := &dynamodb.PutItemInput{
		TableName:                           aws.String(s.table),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	var next uint64 = 1
	if prev == "" {
		in.ConditionExpression = aws.String("attribute_not_exists(#k)")
		in.ExpressionAttributeNames = map[string]string{"#k": PartitionKey}
	} else {
		n, err := strconv.ParseUint(prev, 10, 64)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != prev {
			// Not a version this store ever returned, so not the current one.
			e := &Error{Op: "PutItem", Table: s.table, Key: key, Kind: vbctoken.ErrConflict}
			return "", fmt.Errorf("commit pair: %w: prev is not a version of this store", e)
		}
		next = n + 1
		in.ConditionExpression = aws.String("#v = :prev")
		in.ExpressionAttributeNames = map[string]string{"#v": attrVersion}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":prev": number(n)}
	}
	in.Item = map[string]types.AttributeValue{
		PartitionKey: &types.AttributeValueMemberS{Value: key},
		attrVersion:  number(next),
		attrJSON:     &types.AttributeValueMemberS{Value: string(content)},
	}
	_, err = s.api.PutItem(ctx, in)
	if err == nil {
		return strconv.FormatUint(next, 10), nil
	}
	var failed *types.ConditionalCheckFailedException
	if !errors.As(err, &failed) {
		return "", fmt.Errorf("commit pair: %w", classify("PutItem", s.table, key, err))
	}
	current := failed.Item
	failed.Item = nil // it holds tokens: never let it travel with the error
	v, verr := versionOf(current)
	data, jerr := jsonOf(current)
	if verr == nil && jerr == nil && v == next && string(data) == string(content) {
		// An earlier attempt of this commit landed (its response was lost, or the SDK
		// retried after a 5xx): it is the current pair.
		return strconv.FormatUint(v, 10), nil
	}
	return "", fmt.Errorf("commit pair: %w", classify("PutItem", s.table, key, err))
}

// PutAccess writes the access item (one unconditional PutItem): it is derived from the
// pair and may always be rewritten from it, so a retry is harmless.
func (s *Store) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	content, err := vbctoken.EncodeAccess(a)
	if err != nil {
		return fmt.Errorf("put access token: %w", err)
	}
	key := s.accessKey()
	_, err = s.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			PartitionKey: &types.AttributeValueMemberS{Value: key},
			attrJSON:     &types.AttributeValueMemberS{Value: string(content)},
		},
	})
	if err != nil {
		return fmt.Errorf("put access token: %w", classify("PutItem", s.table, key, err))
	}
	return nil
}

// LoadAccess reads the access item (what apps do; one strongly consistent GetItem): a
// missing item is vbctoken.ErrNotFound (the account is not connected yet).
func (s *Store) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	key := s.accessKey()
	item, err := s.getItem(ctx, key)
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token: %w", err)
	}
	if item == nil {
		e := &Error{Op: "GetItem", Table: s.table, Key: key, Kind: vbctoken.ErrNotFound}
		return vbctoken.AccessToken{}, fmt.Errorf("load access token: %w", e)
	}
	data, err := jsonOf(item)
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token from %s: %w", key, err)
	}
	a, err := vbctoken.DecodeAccess(data)
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token from %s: %w", key, err)
	}
	return a, nil
}

func keyOf(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{PartitionKey: &types.AttributeValueMemberS{Value: key}}
}

func number(n uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(n, 10)}
}

// versionOf reads an item's version, a positive integer.
func versionOf(item map[string]types.AttributeValue) (uint64, error) {
	n, ok := item[attrVersion].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("%w: no numeric %q attribute", vbctoken.ErrMalformedSecret, attrVersion)
	}
	v, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: attribute %q is not a positive integer", vbctoken.ErrMalformedSecret, attrVersion)
	}
	return v, nil
}

// jsonOf reads an item's JSON attribute.
func jsonOf(item map[string]types.AttributeValue) ([]byte, error) {
	s, ok := item[attrJSON].(*types.AttributeValueMemberS)
	if !ok {
		return nil, fmt.Errorf("%w: no string %q attribute", vbctoken.ErrMalformedSecret, attrJSON)
	}
	return []byte(s.Value), nil
}
