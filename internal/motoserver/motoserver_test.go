package motoserver_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/motoserver"
)

func TestMain(m *testing.M) { os.Exit(motoserver.Main(m)) }

func TestServer(t *testing.T) {
	srv := motoserver.Start(t)
	if again := motoserver.Start(t); again != srv {
		t.Fatal("Start returned a second server; want the shared one")
	}
	ctx := context.Background()
	ids := srv.CreateStoreSecrets(t, true)
	get := func(name string) string {
		t.Helper()
		out, err := srv.Client().GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
			SecretId: aws.String(name), VersionStage: aws.String("AWSCURRENT"),
		})
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		return aws.ToString(out.SecretString)
	}
	if got := get(ids.Pair); got != motoserver.PairPlaceholder {
		t.Errorf("pair placeholder = %s", got)
	}
	for i, v := range []string{`{"a":1}`, `{"a":2}`, `{"a":3}`} {
		srv.PutSecret(t, ids.Access, v)
		if got := get(ids.Access); got != v {
			t.Errorf("after PutSecret #%d current = %s, want %s", i, got, v)
		}
	}
	if n := srv.VersionCount(t, ids.Access); n != 4 {
		t.Errorf("VersionCount = %d, want 4", n)
	}

	empty := srv.CreateStoreSecrets(t, false)
	if n := srv.VersionCount(t, empty.Pair); n != 0 {
		t.Errorf("secret created without a value has %d versions", n)
	}
	srv.PutSecret(t, empty.Pair, `{"version":1}`)
	if got := get(empty.Pair); got != `{"version":1}` {
		t.Errorf("first PutSecret: current = %s", got)
	}

	if err := srv.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ids.Access)}); err == nil {
		t.Error("after Reset the secret still exists")
	}
}

func TestUniqueName(t *testing.T) {
	a, b := motoserver.UniqueName(t, "p"), motoserver.UniqueName(t, "p")
	if a == b {
		t.Errorf("UniqueName returned %q twice", a)
	}
}

func TestCreateTable(t *testing.T) {
	srv := motoserver.Start(t)
	ctx := context.Background()
	name := srv.CreateTable(t, "pk")
	if other := srv.CreateTable(t, "pk"); other == name {
		t.Fatalf("CreateTable returned %q twice", name)
	}
	c := dynamodb.NewFromConfig(srv.Config())
	desc, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &name})
	if err != nil {
		t.Fatal(err)
	}
	if ks := desc.Table.KeySchema; len(ks) != 1 || aws.ToString(ks[0].AttributeName) != "pk" || ks[0].KeyType != types.KeyTypeHash {
		t.Errorf("key schema = %+v, want the partition key pk only", ks)
	}
	key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "pair#acme"}}
	_, err = c.PutItem(ctx, &dynamodb.PutItemInput{TableName: &name, Item: key, ConditionExpression: aws.String("attribute_not_exists(pk)")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PutItem(ctx, &dynamodb.PutItemInput{TableName: &name, Item: key, ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var failed *types.ConditionalCheckFailedException
	if !errors.As(err, &failed) {
		t.Errorf("second conditional put: err = %v, want ConditionalCheckFailedException", err)
	}
}
