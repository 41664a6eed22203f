package dynamostore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

// batchPut writes items 25 at a time (BatchWriteItem), the way a migration or a test
// fills a table quickly.
func (tb *table) batchPut(t *testing.T, items []map[string]types.AttributeValue) {
	t.Helper()
	ctx := context.Background()
	for chunk := range slices.Chunk(items, 25) {
		reqs := make([]types.WriteRequest, 0, len(chunk))
		for _, item := range chunk {
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
		}
		in := map[string][]types.WriteRequest{tb.name: reqs}
		for len(in[tb.name]) > 0 {
			out, err := tb.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: in})
			if err != nil {
				t.Fatalf("batch write: %v", err)
			}
			in = out.UnprocessedItems
		}
	}
}

// accountItems returns the pair and access items of n accounts named prefix-0000…, each
// with a pair JSON of pairSize bytes or more (a real pair with its bookkeeping).
func accountItems(prefix string, n int) (ids []string, items []map[string]types.AttributeValue) {
	for i := range n {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		p := storetest.NewPair()
		data, err := vbctoken.EncodePair(p)
		if err != nil {
			panic(err)
		}
		access, err := vbctoken.EncodeAccess(p.Access())
		if err != nil {
			panic(err)
		}
		ids = append(ids, id)
		items = append(items,
			map[string]types.AttributeValue{"pk": str(dynamostore.PairKeyPrefix + id), "version": num(1), "json": str(string(data))},
			map[string]types.AttributeValue{"pk": str(dynamostore.AccessKeyPrefix + id), "json": str(string(access))},
		)
	}
	return ids, items
}

func TestFleetAccountsPaginates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := newTable(t)
	m := newMeter(tb.client, tb.client, tb.name)
	fleet := tb.fleet(t, m)

	if got, err := fleet.Accounts(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Accounts of an empty table = %v, %v; want none", got, err)
	}
	m.take()

	// GIVEN 300 accounts with a pair (and an access item each), a few connected through
	// the fleet's own stores, an account with an access item only, and items that are no
	// account's
	want, items := accountItems("isv", 300)
	tb.batchPut(t, items)
	for _, id := range []string{"acme", "globex-eu", "9"} {
		s, err := fleet.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CommitPair(ctx, storetest.NewPair(), ""); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	slices.Sort(want)
	orphan, err := fleet.Open("access-only")
	if err != nil {
		t.Fatal(err)
	}
	if err := orphan.PutAccess(ctx, storetest.NewPair().Access()); err != nil {
		t.Fatal(err)
	}
	for _, junk := range []string{"pair#", "pair#Not_An_Id", "pair#-x", "pairs#acme", "index", "PAIR#acme"} {
		tb.put(t, map[string]types.AttributeValue{"pk": str(junk), "json": str("{}")})
	}
	m.take()

	// WHEN the fleet lists its accounts, 40 items per page
	dynamostore.SetPageLimit(fleet, 40)
	got, err := fleet.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// THEN it finds exactly the accounts with a pair, sorted, over every page
	if !slices.Equal(got, want) {
		t.Errorf("Accounts = %d ids (%v…), want %d (%v…)", len(got), got[:min(5, len(got))], len(want), want[:5])
	}
	calls := m.take()
	nItems := 2*300 + 3 + 1 + 6
	if pages := len(calls); pages < (nItems+39)/40 || pages > (nItems+39)/40+1 {
		t.Errorf("Accounts made %d Scan calls, want one per 40 items (%d items)", pages, nItems)
	}
	for _, in := range m.scans {
		if aws.ToBool(in.ConsistentRead) || aws.ToString(in.ProjectionExpression) != "#k" || in.ExpressionAttributeNames["#k"] != "pk" {
			t.Fatalf("Scan input = consistent %v, projection %q %v; want eventually consistent, the key only",
				aws.ToBool(in.ConsistentRead), aws.ToString(in.ProjectionExpression), in.ExpressionAttributeNames)
		}
	}
	rru, _ := total(calls)
	t.Logf("listing %d accounts (%d items) in %d pages of 40: %.1f RRU", len(got), nItems, len(calls), rru)
}

// TestFleetAccounts10000 lists 10,000 accounts the way the hourly sweep does, from a
// table that pages as DynamoDB does (1 MB of evaluated items per page; moto does too, but
// filling it with 20,000 items takes over half a minute), and reports what it costs.
func TestFleetAccounts10000(t *testing.T) {
	t.Parallel()
	want, items := accountItems("tenant", 10000)
	mem := newMemTable(items)
	f, err := dynamostore.NewFleet(mem, "vbctoken", smstore.New(nil, smstore.SecretIDs{}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Accounts = %d ids, want %d", len(got), len(want))
	}
	t.Logf("listing 10,000 accounts: %d Scan pages over %.1f MB of items, %.0f RRU", mem.pages, float64(mem.size)/(1<<20), mem.rru)
	if wantPages := mem.size/(1<<20) + 1; mem.pages != wantPages {
		t.Errorf("%d Scan pages over %d bytes, want %d (1 MB each)", mem.pages, mem.size, wantPages)
	}
}

// memTable is a dynamostore.API over items in memory whose Scan pages like DynamoDB's
// (at most 1 MB of evaluated items, or Limit items, per page) and understands exactly the
// fleet's request: a key prefix filter and the key projected. It prices pages like meter.
type memTable struct {
	dynamostore.API // nil: other calls panic
	items           []map[string]types.AttributeValue
	size            int
	pages           int
	rru             float64
}

func newMemTable(items []map[string]types.AttributeValue) *memTable {
	m := &memTable{items: slices.Clone(items)}
	slices.SortFunc(m.items, func(a, b map[string]types.AttributeValue) int { return strings.Compare(keyString(a), keyString(b)) })
	for _, item := range items {
		m.size += itemSize(item)
	}
	return m
}

func (m *memTable) Scan(_ context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	if aws.ToString(in.FilterExpression) != "begins_with(#k, :p)" || aws.ToString(in.ProjectionExpression) != "#k" || in.ExpressionAttributeNames["#k"] != "pk" {
		return nil, fmt.Errorf("memTable does not understand filter %q projection %q", aws.ToString(in.FilterExpression), aws.ToString(in.ProjectionExpression))
	}
	prefix := in.ExpressionAttributeValues[":p"].(*types.AttributeValueMemberS).Value
	start := 0
	if in.ExclusiveStartKey != nil {
		after := keyString(in.ExclusiveStartKey)
		start, _ = slices.BinarySearchFunc(m.items, after, func(item map[string]types.AttributeValue, k string) int { return strings.Compare(keyString(item), k) })
		start++
	}
	out := &dynamodb.ScanOutput{}
	read := 0
	i := start
	for ; i < len(m.items); i++ {
		size := itemSize(m.items[i])
		if read+size > 1<<20 || in.Limit != nil && int32(i-start) == *in.Limit {
			break
		}
		read += size
		if k := keyString(m.items[i]); strings.HasPrefix(k, prefix) {
			out.Items = append(out.Items, map[string]types.AttributeValue{"pk": str(k)})
		}
	}
	if i < len(m.items) {
		out.LastEvaluatedKey = map[string]types.AttributeValue{"pk": m.items[i-1]["pk"]}
	}
	m.pages++
	m.rru += units(read, 4096) / 2
	return out, nil
}

func TestFleetLoadCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := newTable(t)
	fleet := tb.fleet(t, nil)
	if _, err := fleet.LoadCredentials(ctx); !errors.Is(err, vbctoken.ErrNoCredentials) {
		t.Errorf("LoadCredentials before the admin filled the secret: err = %v, want ErrNoCredentials", err)
	}
	tb.seedCredentials(t, `{"client_id":"isv-app","client_secret":"cs-s3cr3t"}`)
	c, err := fleet.LoadCredentials(ctx)
	if err != nil || c.ClientID != "isv-app" {
		t.Fatalf("LoadCredentials = %v, %v", c, err)
	}
	s, _ := fleet.Open("acme")
	if c, err := s.LoadCredentials(ctx); err != nil || c.ClientSecret.Reveal() != "cs-s3cr3t" {
		t.Errorf("an account's LoadCredentials = %v, %v; want the shared credentials", c, err)
	}
}
