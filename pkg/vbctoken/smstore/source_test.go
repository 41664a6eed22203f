package smstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

func TestNewSourceNeedsAnID(t *testing.T) {
	if _, err := smstore.NewSource(aws.Config{}, ""); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Fatalf("err = %v, want ErrBadInput", err)
	}
}

// NewSource builds a standard SDK client: pointed at a local endpoint, it
// reads the access secret with GetSecretValue and nothing else.
func TestNewSource(t *testing.T) {
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	secret, err := vbctoken.EncodeAccess(vbctoken.AccessToken{AccessToken: "access-sm", TokenType: "Bearer", ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if target := r.Header.Get("X-Amz-Target"); target != "secretsmanager.GetSecretValue" {
			t.Errorf("called %q", target)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprintf(w, `{"ARN":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:vbc-access","Name":"vbc-access","VersionId":"v1","SecretString":%q,"VersionStages":["AWSCURRENT"]}`, secret)
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_PROFILE", "unset")
	os.Unsetenv("AWS_PROFILE") // t.Setenv restores it after the test

	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	src, err := smstore.NewSource(cfg, "vbc-access")
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Fatal("NewSource read the secret before the first Token call")
	}
	for range 3 {
		tok, err := src.Token()
		if err != nil || tok.AccessToken != "access-sm" {
			t.Fatalf("token %v, err %v", tok, err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d GetSecretValue calls, want 1", got)
	}
}
