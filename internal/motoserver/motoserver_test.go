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
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

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

func TestCreateQueue(t *testing.T) {
	srv := motoserver.Start(t)
	ctx := context.Background()
	q := srv.CreateQueue(t, 2)
	if q.URL == "" || q.DeadLetterURL == "" || q.URL == q.DeadLetterURL {
		t.Fatalf("queue %+v", q)
	}
	if plain := srv.CreateQueue(t, 0); plain.DeadLetterURL != "" || plain.URL == q.URL {
		t.Fatalf("plain queue %+v", plain)
	}
	c := sqs.NewFromConfig(srv.Config())
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q.URL, MessageBody: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	// Received twice and put back each time: the third receive moves it to the dead-letter queue.
	for i := range 3 {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.URL, VisibilityTimeout: 30})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if len(out.Messages) != 0 {
				t.Fatalf("receive #%d got %d messages, want it moved to the dead-letter queue", i+1, len(out.Messages))
			}
			break
		}
		if len(out.Messages) != 1 {
			t.Fatalf("receive #%d got %d messages", i+1, len(out.Messages))
		}
		_, err = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &q.URL, ReceiptHandle: out.Messages[0].ReceiptHandle})
		if err != nil {
			t.Fatal(err)
		}
		waitVisible(t, c, q.URL)
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.DeadLetterURL, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "m" {
		t.Fatalf("dead-letter queue: %v, %+v", err, out)
	}
}

// waitVisible waits (bounded) until the queue counts a visible message: moto makes a
// message visible again one millisecond after ChangeMessageVisibility to 0.
func waitVisible(t *testing.T, c *sqs.Client, url string) {
	t.Helper()
	for range 100 {
		got, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
			QueueUrl: &url, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)] != "0" {
			return
		}
	}
	t.Fatal("the message did not become visible again")
}
