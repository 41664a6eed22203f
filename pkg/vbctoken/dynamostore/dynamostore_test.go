package dynamostore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

func TestMain(m *testing.M) { os.Exit(motoserver.Main(m)) }

// accounts hands out account ids no other test of this binary uses.
var accounts atomic.Int64

func newAccount(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), accounts.Add(1))
}

// table is a DynamoDB table on moto, as the CDK stack creates it, with a shared
// credentials secret beside it.
type table struct {
	srv     *motoserver.Server
	name    string
	client  *dynamodb.Client // raw access, for seeding and checking
	credsID string

	credsMu      sync.Mutex
	credsCreated bool
}

func newTable(t *testing.T) *table {
	t.Helper()
	srv := motoserver.Start(t)
	return &table{
		srv:     srv,
		name:    srv.CreateTable(t, dynamostore.PartitionKey),
		client:  dynamodb.NewFromConfig(srv.Config()),
		credsID: motoserver.UniqueName(t, "vbc/credentials"),
	}
}

// creds is the shared credentials secret's store, as accounts mode wires it.
func (tb *table) creds() *smstore.Store {
	return smstore.New(tb.srv.Client(), smstore.SecretIDs{Credentials: tb.credsID})
}

// fleet returns a fleet on the table calling api (when nil, the server's client whose
// conditional writes are atomic, as DynamoDB's are).
func (tb *table) fleet(t *testing.T, api dynamostore.API) *dynamostore.Fleet {
	t.Helper()
	if api == nil {
		api = tb.srv.SerialDynamoDB()
	}
	f, err := dynamostore.NewFleet(api, tb.name, tb.creds())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// store opens account's store in a fleet calling api.
func (tb *table) store(t *testing.T, api dynamostore.API, account string) *dynamostore.Store {
	t.Helper()
	s, err := tb.fleet(t, api).Open(account)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*dynamostore.Store)
}

func (tb *table) seedCredentials(t *testing.T, data string) {
	t.Helper()
	tb.credsMu.Lock()
	defer tb.credsMu.Unlock()
	if !tb.credsCreated {
		tb.srv.CreateSecret(t, tb.credsID, &data)
		tb.credsCreated = true
		return
	}
	tb.srv.PutSecret(t, tb.credsID, data)
}

// item reads an item as it is stored (nil when missing).
func (tb *table) item(t *testing.T, key string) map[string]types.AttributeValue {
	t.Helper()
	out, err := tb.client.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(tb.name), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{dynamostore.PartitionKey: &types.AttributeValueMemberS{Value: key}},
	})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return out.Item
}

// version is the pair item's version number, 0 when it does not exist.
func (tb *table) version(t *testing.T, key string) int {
	t.Helper()
	n, ok := tb.item(t, key)["version"].(*types.AttributeValueMemberN)
	if !ok {
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		t.Fatalf("%s: version %q", key, n.Value)
	}
	return v
}

// put writes an item as an operator or another vbctoken version would.
func (tb *table) put(t *testing.T, item map[string]types.AttributeValue) {
	t.Helper()
	if _, err := tb.client.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(tb.name), Item: item}); err != nil {
		t.Fatalf("put item: %v", err)
	}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func num(n int) types.AttributeValue    { return &types.AttributeValueMemberN{Value: strconv.Itoa(n)} }

// harness is storetest's view of one account's store in tb.
func (tb *table) harness(t *testing.T, account string) storetest.Harness {
	pairKey, accessKey := dynamostore.PairKeyPrefix+account, dynamostore.AccessKeyPrefix+account
	return storetest.Harness{
		Store: tb.store(t, nil, account),
		Seed: func(t *testing.T, which storetest.Secret, data []byte) {
			switch which {
			case storetest.Credentials:
				tb.seedCredentials(t, string(data))
			case storetest.Pair:
				tb.put(t, map[string]types.AttributeValue{
					dynamostore.PartitionKey: str(pairKey), "version": num(tb.version(t, pairKey) + 1), "json": str(string(data)),
				})
			case storetest.Access:
				tb.put(t, map[string]types.AttributeValue{dynamostore.PartitionKey: str(accessKey), "json": str(string(data))})
			}
		},
		PairWrites: func(t *testing.T) int { return tb.version(t, pairKey) },
	}
}

func TestDynamoDBStoreConformance(t *testing.T) {
	t.Parallel()
	// Every account in one table, as in production; each case gets its own account and
	// credentials secret.
	srv := motoserver.Start(t)
	name := srv.CreateTable(t, dynamostore.PartitionKey)
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		tb := &table{srv: srv, name: name, client: dynamodb.NewFromConfig(srv.Config()), credsID: motoserver.UniqueName(t, "vbc/credentials")}
		return tb.harness(t, newAccount("conf"))
	})
}

func TestNewRefusesBadInput(t *testing.T) {
	api := &dynamodb.Client{}
	for _, c := range []struct {
		name           string
		api            dynamostore.API
		table, account string
	}{
		{"bad account", api, "t", "Acme"},
		{"empty account", api, "t", ""},
		{"account with #", api, "t", "a#b"},
		{"no table", api, "", "acme"},
		{"no client", nil, "t", "acme"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := dynamostore.New(c.api, c.table, c.account, nil); !errors.Is(err, vbctoken.ErrBadInput) {
				t.Errorf("New: err = %v, want ErrBadInput", err)
			}
		})
	}
	if _, err := dynamostore.NewFleet(api, "t", nil); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("NewFleet without credentials: err = %v, want ErrBadInput", err)
	}
	f, err := dynamostore.NewFleet(api, "t", smstore.New(nil, smstore.SecretIDs{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Open("-acme"); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("Open(-acme): err = %v, want ErrBadInput", err)
	}
}
