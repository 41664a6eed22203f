package dynamostore_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
)

// call is one request a meter passed on, with the capacity DynamoDB bills for it.
type call struct {
	Op  string // "Get", "Put", "Scan"
	Key string // the item's partition key ("" for a Scan)
	RRU float64
	WRU float64
	Err error
}

// meter is a dynamostore.API that records the calls it passes on and prices them in
// request units by DynamoDB's documented rules (Developer Guide, "Read/write capacity
// mode" and "Item sizes and formats"):
//   - an item's size is the sum of its attribute names' and values' lengths (a string's
//     UTF-8 bytes; a number ≈ 1 byte per two significant digits + 1);
//   - GetItem: 1 RRU per 4 KB of the item (strongly consistent; half eventually), at least
//     1 (0.5) even when the item does not exist;
//   - PutItem: 1 WRU per 1 KB of the larger of the old and new item, at least 1; a write
//     whose condition fails still consumes 1 WRU per 1 KB of the existing item, at least 1;
//   - Scan: 1 RRU per 4 KB of all the items a page evaluated (before the filter and the
//     projection), half for eventually consistent pages.
//
// It looks at the stored items through raw (uncounted) to know the sizes that matter.
type meter struct {
	dynamostore.API
	raw   dynamostore.API
	table string

	mu    sync.Mutex
	calls []call
	puts  []*dynamodb.PutItemInput
	gets  []*dynamodb.GetItemInput
	scans []*dynamodb.ScanInput
}

func newMeter(api dynamostore.API, raw dynamostore.API, table string) *meter {
	return &meter{API: api, raw: raw, table: table}
}

func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			digits := 0
			for _, r := range v.Value {
				if r >= '0' && r <= '9' {
					digits++
				}
			}
			n += (digits+1)/2 + 1
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		default:
			n += 1
		}
	}
	return n
}

func units(size, per int) float64 {
	return math.Max(1, math.Ceil(float64(size)/float64(per)))
}

func (m *meter) stored(ctx context.Context, key map[string]types.AttributeValue) map[string]types.AttributeValue {
	out, err := m.raw.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(m.table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil
	}
	return out.Item
}

func keyString(item map[string]types.AttributeValue) string {
	if k, ok := item[dynamostore.PartitionKey].(*types.AttributeValueMemberS); ok {
		return k.Value
	}
	return ""
}

func (m *meter) record(c call) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, c)
}

func (m *meter) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	m.mu.Lock()
	m.gets = append(m.gets, in)
	m.mu.Unlock()
	out, err := m.API.GetItem(ctx, in, opts...)
	c := call{Op: "Get", Key: keyString(in.Key), Err: err}
	if err == nil {
		c.RRU = units(itemSize(out.Item), 4096)
		if !aws.ToBool(in.ConsistentRead) {
			c.RRU /= 2
		}
	}
	m.record(c)
	return out, err
}

func (m *meter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	m.mu.Lock()
	m.puts = append(m.puts, in)
	m.mu.Unlock()
	key := map[string]types.AttributeValue{dynamostore.PartitionKey: in.Item[dynamostore.PartitionKey]}
	old := itemSize(m.stored(ctx, key))
	out, err := m.API.PutItem(ctx, in, opts...)
	c := call{Op: "Put", Key: keyString(in.Item), Err: err}
	var failed *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		c.WRU = units(max(old, itemSize(in.Item)), 1024)
	case errors.As(err, &failed):
		c.WRU = units(old, 1024)
	}
	m.record(c)
	return out, err
}

func (m *meter) Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	m.mu.Lock()
	m.scans = append(m.scans, in)
	m.mu.Unlock()
	out, err := m.API.Scan(ctx, in, opts...)
	c := call{Op: "Scan", Err: err}
	if err == nil {
		// The same page, unfiltered and unprojected: what DynamoDB read to answer it.
		page, rerr := m.raw.Scan(ctx, &dynamodb.ScanInput{TableName: in.TableName, Limit: in.Limit,
			ExclusiveStartKey: in.ExclusiveStartKey, ConsistentRead: in.ConsistentRead})
		if rerr == nil {
			size := 0
			for _, item := range page.Items {
				size += itemSize(item)
			}
			c.RRU = units(size, 4096)
			if !aws.ToBool(in.ConsistentRead) {
				c.RRU /= 2
			}
		}
	}
	m.record(c)
	return out, err
}

// take returns the calls since the last take.
func (m *meter) take() []call {
	m.mu.Lock()
	defer m.mu.Unlock()
	calls := m.calls
	m.calls = nil
	return calls
}

// ops lists the calls' operations.
func ops(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Op)
	}
	return out
}

// keys lists the distinct item keys the calls touched, sorted.
func keys(calls []call) []string {
	var out []string
	for _, c := range calls {
		if c.Key != "" && !slices.Contains(out, c.Key) {
			out = append(out, c.Key)
		}
	}
	slices.Sort(out)
	return out
}

// total adds the calls' request units.
func total(calls []call) (rru, wru float64) {
	for _, c := range calls {
		rru += c.RRU
		wru += c.WRU
	}
	return rru, wru
}
