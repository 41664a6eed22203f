package dynamostore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

func wantOps(t *testing.T, what string, got []call, want ...string) {
	t.Helper()
	if g := ops(got); !slices.Equal(g, want) {
		t.Errorf("%s made calls %v, want %v", what, g, want)
	}
}

func TestDynamoDBStoreCallSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := newTable(t)
	m := newMeter(tb.client, tb.client, tb.name)
	acct := newAccount("seq")
	s := tb.store(t, m, acct)
	pairKey := dynamostore.PairKeyPrefix + acct

	cur, err := s.LoadPair(ctx)
	if err != nil || cur.Version != "" || !cur.Pair.RefreshToken.IsZero() {
		t.Fatalf("LoadPair of a new account = %+v, %v; want not connected, version \"\"", cur, err)
	}
	wantOps(t, "LoadPair", m.take(), "Get")
	if !aws.ToBool(m.gets[0].ConsistentRead) {
		t.Error("LoadPair read is not strongly consistent")
	}

	// The first commit creates the item: attribute_not_exists, version 1.
	p1 := storetest.NewPair()
	v1, err := s.CommitPair(ctx, p1, "")
	if err != nil || v1 != "1" {
		t.Fatalf("first CommitPair = %q, %v; want version 1", v1, err)
	}
	wantOps(t, "CommitPair", m.take(), "Put")
	put := m.puts[0]
	if got := aws.ToString(put.ConditionExpression); got != "attribute_not_exists(#k)" || put.ExpressionAttributeNames["#k"] != "pk" {
		t.Errorf("first commit condition = %q %v, want attribute_not_exists(pk)", got, put.ExpressionAttributeNames)
	}
	if put.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
		t.Errorf("ReturnValuesOnConditionCheckFailure = %q, want ALL_OLD", put.ReturnValuesOnConditionCheckFailure)
	}
	item := tb.item(t, pairKey)
	if n, ok := item["version"].(*types.AttributeValueMemberN); !ok || n.Value != "1" {
		t.Errorf("stored version = %v, want the number 1", item["version"])
	}

	// The next commit names the version read.
	p2 := storetest.NewPair()
	v2, err := s.CommitPair(ctx, p2, v1)
	if err != nil || v2 != "2" {
		t.Fatalf("second CommitPair = %q, %v; want version 2", v2, err)
	}
	wantOps(t, "CommitPair", m.take(), "Put")
	if put := m.puts[1]; aws.ToString(put.ConditionExpression) != "#v = :prev" || put.ExpressionAttributeNames["#v"] != "version" ||
		put.ExpressionAttributeValues[":prev"].(*types.AttributeValueMemberN).Value != "1" {
		t.Errorf("second commit condition = %q %v %v, want version = 1", aws.ToString(put.ConditionExpression), put.ExpressionAttributeNames, put.ExpressionAttributeValues)
	}

	// A lost race costs no extra read: the failed condition returns the stored item.
	if _, err := s.CommitPair(ctx, storetest.NewPair(), v1); !errors.Is(err, vbctoken.ErrConflict) {
		t.Fatalf("stale CommitPair: err = %v, want ErrConflict", err)
	}
	wantOps(t, "stale CommitPair", m.take(), "Put")

	// The same commit retried after it landed: success, same version, nothing written.
	if v, err := s.CommitPair(ctx, p2.Clone(), v1); err != nil || v != v2 {
		t.Fatalf("retried CommitPair = %q, %v; want %q", v, err, v2)
	}
	wantOps(t, "retried CommitPair", m.take(), "Put")
	if got := tb.version(t, pairKey); got != 2 {
		t.Errorf("version after the retry = %d, want 2", got)
	}

	// A version this store never returned is not the current one.
	for _, bad := range []string{"0", "02", "x", "-1", "AWSCURRENT"} {
		if _, err := s.CommitPair(ctx, storetest.NewPair(), bad); !errors.Is(err, vbctoken.ErrConflict) {
			t.Errorf("CommitPair(prev %q): err = %v, want ErrConflict", bad, err)
		}
	}
	wantOps(t, "CommitPair with foreign versions", m.take())

	if err := s.PutAccess(ctx, p2.Access()); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "PutAccess", m.take(), "Put")
	if put := m.puts[len(m.puts)-1]; put.ConditionExpression != nil {
		t.Errorf("PutAccess has condition %q, want none", aws.ToString(put.ConditionExpression))
	}
	if _, err := s.LoadAccess(ctx); err != nil {
		t.Fatal(err)
	}
	wantOps(t, "LoadAccess", m.take(), "Get")
}

// TestDynamoDBItemLayout pins the items apps, operators and IAM policies rely on:
// account X's pair at pair#X and its access token at access#X, separate items, each with
// the same JSON as the Secrets Manager secrets, so that a policy with
// dynamodb:LeadingKeys = access#X lets X's apps read their token and nothing else.
func TestDynamoDBItemLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := newTable(t)
	m := newMeter(tb.client, tb.client, tb.name)
	acme, other := newAccount("acme"), newAccount("acme") // acme-N-1 and acme-N-2 share a prefix
	s := tb.store(t, m, acme)

	p := storetest.NewPair()
	p.ExpiresAt = time.Now().Add(time.Hour).UTC().Truncate(time.Second) // for the app's Source below
	if _, err := s.CommitPair(ctx, p, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadPair(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(m.take()); !slices.Equal(got, []string{"pair#" + acme}) {
		t.Errorf("pair operations touched %v, want only pair#%s", got, acme)
	}
	if err := s.PutAccess(ctx, p.Access()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadAccess(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(m.take()); !slices.Equal(got, []string{"access#" + acme}) {
		t.Errorf("access operations touched %v, want only access#%s", got, acme)
	}

	pairItem, accessItem := tb.item(t, "pair#"+acme), tb.item(t, "access#"+acme)
	names := func(item map[string]types.AttributeValue) []string {
		var out []string
		for k := range item {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if got := names(pairItem); !slices.Equal(got, []string{"json", "pk", "version"}) {
		t.Errorf("pair item attributes = %v", got)
	}
	if got := names(accessItem); !slices.Equal(got, []string{"json", "pk"}) {
		t.Errorf("access item attributes = %v", got)
	}
	stored, err := vbctoken.DecodeAccess([]byte(accessItem["json"].(*types.AttributeValueMemberS).Value))
	if err != nil || stored.AccessToken != p.AccessToken {
		t.Errorf("access item JSON = %v, %v; want the access secret's JSON", stored, err)
	}
	if strings.Contains(accessItem["json"].(*types.AttributeValueMemberS).Value, p.RefreshToken.Reveal()) {
		t.Error("the access item carries the refresh token")
	}

	// An app's role: GetItem only, on access#acme only (what LeadingKeys enforces).
	app := &leadingKeys{API: tb.client, allowed: []string{"access#" + acme}}
	appStore := tb.store(t, app, acme)
	src := vbctoken.NewSource(appStore)
	tok, err := src.TokenContext(ctx)
	if err != nil || tok.AccessToken != p.AccessToken.Reveal() {
		t.Fatalf("app Source under LeadingKeys = %v; want the access token", err)
	}
	if _, err := appStore.LoadPair(ctx); !isAccessDenied(err) {
		t.Errorf("app LoadPair: err = %v, want access denied", err)
	}
	if _, err := tb.store(t, app, other).LoadAccess(ctx); !isAccessDenied(err) {
		t.Errorf("app LoadAccess of another account: err = %v, want access denied", err)
	}
	if err := appStore.PutAccess(ctx, p.Access()); !isAccessDenied(err) {
		t.Errorf("app PutAccess: err = %v, want access denied", err)
	}
}

func isAccessDenied(err error) bool {
	var e *dynamostore.Error
	return errors.As(err, &e) && e.Code == "AccessDeniedException" && e.Kind == nil &&
		strings.Contains(err.Error(), "access denied")
}

// leadingKeys is an app's IAM policy in front of the API: dynamodb:GetItem only, with
// ForAllValues:StringEquals dynamodb:LeadingKeys = allowed.
type leadingKeys struct {
	dynamostore.API
	allowed []string
}

func denied(op string) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: op,
		Err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: arn:aws:sts::123456789012:assumed-role/app is not authorized to perform: dynamodb:" + op, Fault: smithy.FaultClient}}
}

func (l *leadingKeys) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if !slices.Contains(l.allowed, keyString(in.Key)) {
		return nil, denied("GetItem")
	}
	return l.API.GetItem(ctx, in, opts...)
}

func (l *leadingKeys) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return nil, denied("PutItem")
}

func (l *leadingKeys) Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	return nil, denied("Scan")
}

func TestDynamoDBStoreMalformedItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tb := newTable(t)
	acct := newAccount("bad")
	s := tb.store(t, nil, acct)
	pairKey := dynamostore.PairKeyPrefix + acct
	ok := `{"version":1}`
	for name, item := range map[string]map[string]types.AttributeValue{
		"no version":         {"pk": str(pairKey), "json": str(ok)},
		"string version":     {"pk": str(pairKey), "json": str(ok), "version": str("1")},
		"zero version":       {"pk": str(pairKey), "json": str(ok), "version": num(0)},
		"fractional":         {"pk": str(pairKey), "json": str(ok), "version": &types.AttributeValueMemberN{Value: "1.5"}},
		"no json":            {"pk": str(pairKey), "version": num(1)},
		"json as a number":   {"pk": str(pairKey), "version": num(1), "json": num(1)},
		"json not an object": {"pk": str(pairKey), "version": num(1), "json": str(`["rt-s3cr3t"]`)},
	} {
		tb.put(t, item)
		_, err := s.LoadPair(ctx)
		if !errors.Is(err, vbctoken.ErrMalformedSecret) {
			t.Errorf("%s: LoadPair err = %v, want ErrMalformedSecret", name, err)
		}
	}
	tb.put(t, map[string]types.AttributeValue{"pk": str(dynamostore.AccessKeyPrefix + acct), "json": num(1)})
	if _, err := s.LoadAccess(ctx); !errors.Is(err, vbctoken.ErrMalformedSecret) {
		t.Errorf("LoadAccess of an item without JSON: err = %v, want ErrMalformedSecret", err)
	}
	// Without a credentials loader (an app's store) there are no credentials.
	app, err := dynamostore.New(tb.client, tb.name, acct, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.LoadCredentials(ctx); !errors.Is(err, vbctoken.ErrNoCredentials) {
		t.Errorf("LoadCredentials without a loader: err = %v, want ErrNoCredentials", err)
	}
}

// faulty is a dynamostore.API whose PutItem calls can fail before or after reaching moto.
type faulty struct {
	dynamostore.API
	put   func(call int) (forward bool, err error)
	mu    sync.Mutex
	calls int
}

func (f *faulty) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	forward, ferr := f.put(n)
	if !forward {
		return nil, ferr
	}
	out, err := f.API.PutItem(ctx, in, opts...)
	if ferr != nil {
		return nil, ferr // it landed, but the caller never hears so
	}
	return out, err
}

// lostResponse is what the SDK returns when a connection dies after its retries.
func lostResponse(op string) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: op,
		Err: &retry.MaxAttemptsError{Attempt: 3, Err: syscall.ECONNRESET}}
}

func TestDynamoDBStoreFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		landed bool
	}{
		{"put landed, response lost", true},
		{"put never arrived", false},
	} {
		for _, first := range []bool{true, false} {
			name := c.name
			if first {
				name += ", first write"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				// GIVEN an account whose next PutItem fails transiently
				tb := newTable(t)
				acct := newAccount("fault")
				pairKey := dynamostore.PairKeyPrefix + acct
				prev := ""
				if !first {
					v, err := tb.store(t, nil, acct).CommitPair(ctx, storetest.NewPair(), "")
					if err != nil {
						t.Fatal(err)
					}
					prev = v
				}
				f := &faulty{API: tb.client, put: func(call int) (bool, error) {
					if call == 1 {
						return c.landed, lostResponse("PutItem")
					}
					return true, nil
				}}
				s := tb.store(t, f, acct)
				p := storetest.NewPair()
				// WHEN the commit fails
				if _, err := s.CommitPair(ctx, p, prev); !errors.Is(err, vbctoken.ErrTransient) {
					t.Fatalf("CommitPair: err = %v, want ErrTransient", err)
				}
				// THEN the same commit retried succeeds, without a conflict or another write
				v, err := s.CommitPair(ctx, p.Clone(), prev)
				if err != nil {
					t.Fatalf("retried CommitPair: %v", err)
				}
				want := 1
				if !first {
					want = 2
				}
				if got := tb.version(t, pairKey); got != want || v != strconv.Itoa(want) {
					t.Errorf("version after the retry = %d (returned %s), want %d", got, v, want)
				}
				got, err := s.LoadPair(ctx)
				if err != nil || !got.Pair.SameTokens(p) {
					t.Errorf("stored = %v (%v), want the committed pair", got.Pair, err)
				}
			})
		}
	}
}
