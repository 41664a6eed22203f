package motoserver_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
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
