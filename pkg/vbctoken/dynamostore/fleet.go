package dynamostore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Fleet is the DynamoDB backend of accounts mode (docs/design.md "Accounts mode"): every
// account's store in one table, and the shared credentials from a CredentialsLoader. It is
// safe for concurrent use.
type Fleet struct {
	api   API
	table string
	creds CredentialsLoader
	// pageLimit caps the items a Scan page evaluates; 0 leaves DynamoDB's 1 MB pages.
	// Tests lower it to force pagination.
	pageLimit int32
}

var _ vbctoken.Fleet = (*Fleet)(nil)

// NewFleet returns the fleet kept in table, calling api (a *dynamodb.Client in
// production). creds loads the shared client credentials, typically an *smstore.Store on
// VBC_CREDENTIALS_SECRET_ID. Nothing is read until it is used.
func NewFleet(api API, table string, creds CredentialsLoader) (*Fleet, error) {
	if api == nil || table == "" || creds == nil {
		return nil, fmt.Errorf("new dynamodb fleet: %w: a client, a table name and a credentials loader are all required", vbctoken.ErrBadInput)
	}
	return &Fleet{api: api, table: table, creds: creds}, nil
}

// NewFleetFromConfig builds the SDK client from cfg, keeping the SDK's standard retryer
// and endpoint resolution (AWS_ENDPOINT_URL_DYNAMODB, as loaded by config.LoadDefaultConfig,
// points it at a local emulator).
func NewFleetFromConfig(cfg aws.Config, table string, creds CredentialsLoader) (*Fleet, error) {
	return NewFleet(dynamodb.NewFromConfig(cfg), table, creds)
}

// Open returns the store of account; nothing is read or written until it is used, and its
// items are created on their first write.
func (f *Fleet) Open(account string) (vbctoken.Store, error) {
	return New(f.api, f.table, account, f.creds)
}

// LoadCredentials returns the shared client credentials.
func (f *Fleet) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	return f.creds.LoadCredentials(ctx)
}

// Accounts lists the accounts that have a pair item, sorted.
//
// It scans the table (paginated, eventually consistent, only the key projected, pair
// items filtered by prefix) rather than querying: the table's only key is the partition
// key, so no Query returns more than one item. The alternatives each add a structure to
// keep in step: a list item (a hot partition and a second write before every first
// commit, the Secrets Manager backend's sharded index) or a global secondary index (its
// own writes, KMS key and IAM). A Scan derives the list from the pair items themselves, so
// an account with a stored pair can never be missing from it, and it costs little: it
// reads every item once, pair and access, at half a read unit per 4 KB of items (the
// package documentation has the numbers for 10,000 accounts). A pair written in the last
// second may be missed by one call and is seen by the next.
func (f *Fleet) Accounts(ctx context.Context) ([]string, error) {
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(f.table),
		ProjectionExpression:      aws.String("#k"),
		FilterExpression:          aws.String("begins_with(#k, :p)"),
		ExpressionAttributeNames:  map[string]string{"#k": PartitionKey},
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: PairKeyPrefix}},
	}
	pages := dynamodb.NewScanPaginator(f.api, in, func(o *dynamodb.ScanPaginatorOptions) {
		o.Limit = f.pageLimit
	})
	var ids []string
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list accounts: %w", classify("Scan", f.table, "", err))
		}
		for _, item := range page.Items {
			k, ok := item[PartitionKey].(*types.AttributeValueMemberS)
			if !ok {
				continue
			}
			id, ok := strings.CutPrefix(k.Value, PairKeyPrefix)
			// An item whose key holds no valid account id is not an account's (written by
			// hand, or by something else sharing the table): it cannot be opened, so it is
			// not listed.
			if ok && vbctoken.CheckAccount(id) == nil {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}
