package lambdaaws_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/lambdaaws"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// lambdaEnv is what Lambda sets for a function (plus what a test adds).
func lambdaEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"AWS_REGION":            "eu-west-1",
		"AWS_DEFAULT_REGION":    "eu-west-1",
		"AWS_ACCESS_KEY_ID":     "ASIAEXAMPLEKEY",
		"AWS_SECRET_ACCESS_KEY": "example/secret",
		"AWS_SESSION_TOKEN":     "example-session-token",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name         string
		env          map[string]string
		wantRegion   string
		wantEndpoint string
	}{
		{"Lambda", lambdaEnv(nil), "eu-west-1", ""},
		{"AWS_DEFAULT_REGION only", map[string]string{"AWS_DEFAULT_REGION": "us-east-2", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, "us-east-2", ""},
		{"Secrets Manager endpoint", lambdaEnv(map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:4566"}), "eu-west-1", "http://127.0.0.1:4566"},
		{"service endpoint wins over the global one", lambdaEnv(map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:2"}), "eu-west-1", "http://127.0.0.1:2"},
		{"global endpoint", lambdaEnv(map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}), "eu-west-1", "http://127.0.0.1:1"},
		{"endpoints ignored", lambdaEnv(map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}), "eu-west-1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := lambdaaws.Config(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Region != tc.wantRegion {
				t.Errorf("region %q, want %q", cfg.Region, tc.wantRegion)
			}
			sm := lambdaaws.ForService(cfg, env(tc.env), lambdaaws.EnvEndpointSecrets)
			if got := aws.ToString(sm.BaseEndpoint); got != tc.wantEndpoint {
				t.Errorf("endpoint %q, want %q", got, tc.wantEndpoint)
			}
			// Another service ignores Secrets Manager's own override.
			ddb := lambdaaws.ForService(cfg, env(tc.env), lambdaaws.EnvEndpointDynamoDB)
			if got, want := aws.ToString(ddb.BaseEndpoint), env(tc.env)("AWS_ENDPOINT_URL"); tc.wantEndpoint != "" && got != want {
				t.Errorf("DynamoDB endpoint %q, want %q", got, want)
			}
			if cfg.Retryer == nil || cfg.Retryer().MaxAttempts() != 3 {
				t.Error("not the SDK's standard retryer")
			}
			creds, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil || creds.AccessKeyID != tc.env["AWS_ACCESS_KEY_ID"] || creds.SessionToken != tc.env["AWS_SESSION_TOKEN"] {
				t.Errorf("credentials %v, %v", creds.AccessKeyID, err)
			}
		})
	}
}

func TestConfigNamesEveryMissingVariable(t *testing.T) {
	_, err := lambdaaws.Config(env(nil))
	if err == nil {
		t.Fatal("no error for an empty environment")
	}
	for _, name := range []string{"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// A Secrets Manager client built from the configuration calls the configured endpoint,
// signed with Lambda's credentials for its region.
func TestConfigSignsRequestsToTheEndpoint(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Write([]byte(`{"Name":"vbc/access","VersionId":"v1","SecretString":"{}"}`))
	}))
	defer srv.Close()
	getenv := env(lambdaEnv(map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": srv.URL}))
	cfg, err := lambdaaws.Config(getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg = lambdaaws.ForService(cfg, getenv, lambdaaws.EnvEndpointSecrets)
	_, err = secretsmanager.NewFromConfig(cfg).GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("vbc/access")})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatal("the endpoint received nothing")
	}
	if target := got.Header.Get("X-Amz-Target"); target != "secretsmanager.GetSecretValue" {
		t.Errorf("X-Amz-Target %q", target)
	}
	if auth := got.Header.Get("Authorization"); !strings.Contains(auth, "Credential=ASIAEXAMPLEKEY/") || !strings.Contains(auth, "/eu-west-1/secretsmanager/aws4_request") {
		t.Errorf("Authorization %q", auth)
	}
	if tok := got.Header.Get("X-Amz-Security-Token"); tok != "example-session-token" {
		t.Errorf("X-Amz-Security-Token %q", tok)
	}
}
