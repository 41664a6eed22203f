package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	s, err := FromEnv(env(nil), Need{})
	if err != nil {
		t.Fatal(err)
	}
	if s.AuthorizeURL != contract.DefaultAuthorizeURL || s.TokenURL != contract.DefaultTokenURL || s.Scope != "openid" || s.PKCE ||
		s.Policy != vbctoken.DefaultPolicy() || s.UsesSecretsManager() {
		t.Errorf("defaults: %+v", s)
	}
}

func TestAllSet(t *testing.T) {
	s, err := FromEnv(env(map[string]string{
		EnvCredentialsSecretID: "arn:creds", EnvTokenSecretID: "pair", EnvAccessSecretID: "access",
		EnvTokenURL: "http://127.0.0.1:9999/token", EnvAuthorizeURL: "https://tenant.example/authorize",
		EnvRedirectURL: "https://x.execute-api.eu-west-1.amazonaws.com/callback", EnvPKCE: "true",
		EnvRefreshMargin: "3h", EnvRefreshMaxAge: "12h", EnvScope: "openid",
	}), Need{Secrets: true, RedirectURL: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.PKCE || s.Policy.Margin != 3*time.Hour || s.Policy.MaxAge != 12*time.Hour || !s.UsesSecretsManager() {
		t.Errorf("parsed: %+v", s)
	}
	cc := s.ClientConfig()
	if cc.TokenURL != "http://127.0.0.1:9999/token" || cc.RedirectURL == "" || !cc.PKCE {
		t.Errorf("client config: %+v", cc)
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	_, err := FromEnv(env(map[string]string{
		EnvTokenSecretID: "pair", EnvTokenURL: "http://api.vonage.com/token", EnvPKCE: "maybe",
		EnvRefreshMargin: "soon", EnvRefreshMaxAge: "400h",
	}), Need{RedirectURL: true})
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, vbctoken.ErrBadInput) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{EnvCredentialsSecretID, EnvAccessSecretID, EnvTokenURL, EnvRedirectURL, EnvPKCE, EnvRefreshMargin, "max age"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestURLRules(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://api.vonage.com/token": true, "http://127.0.0.1:8080/token": true, "http://localhost/x": true,
		"http://[::1]:9/x": true, "http://10.0.0.1/token": false, "ftp://x/y": false, "/token": false, "": false,
	} {
		if err := checkURL(raw); (err == nil) != ok {
			t.Errorf("checkURL(%q) = %v", raw, err)
		}
	}
}

func TestAccountsMode(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		need     Need
		accounts bool
		problems []string // each must be mentioned; none means no error
	}{
		{
			name: "single account: the accounts variables are off",
			env:  map[string]string{EnvCredentialsSecretID: "c", EnvTokenSecretID: "p", EnvAccessSecretID: "a"},
			need: Need{Secrets: true},
		},
		{
			name:     "accounts mode needs only the credentials secret",
			env:      map[string]string{EnvAccountSecretPrefix: "vbctoken/accounts/", EnvCredentialsSecretID: "arn:aws:secretsmanager:eu-west-1:1:secret:c"},
			need:     Need{Secrets: true},
			accounts: true,
		},
		{
			name: "accounts mode with every variable",
			env: map[string]string{EnvAccountSecretPrefix: "isv/", EnvCredentialsSecretID: "c", EnvAccountKMSKeyID: "alias/vbc",
				EnvTableName: "vbctoken-accounts", EnvAccountQueueURL: "https://sqs.eu-west-1.amazonaws.com/1/vbc", EnvSelfHealSecretID: "heal"},
			accounts: true,
		},
		{
			name:     "accounts mode without the credentials secret",
			env:      map[string]string{EnvAccountSecretPrefix: "vbctoken/accounts/"},
			accounts: true,
			problems: []string{EnvCredentialsSecretID + " is not set (accounts mode"},
		},
		{
			name:     "a prefix that is no secret name, a plain-http queue",
			env:      map[string]string{EnvAccountSecretPrefix: "vbc token/*", EnvCredentialsSecretID: "c", EnvAccountQueueURL: "http://sqs.example/1/q"},
			accounts: true,
			problems: []string{EnvAccountSecretPrefix + " must be", EnvAccountQueueURL + " must use https"},
		},
		{
			name:     "accounts variables without the switch",
			env:      map[string]string{EnvTableName: "t", EnvAccountQueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q", EnvAccountKMSKeyID: "k"},
			problems: []string{EnvTableName + " is set, but accounts mode is off (" + EnvAccountSecretPrefix, EnvAccountQueueURL + " is set", EnvAccountKMSKeyID + " is set"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := FromEnv(env(tc.env), tc.need)
			if s.AccountsMode() != tc.accounts {
				t.Errorf("AccountsMode = %v, want %v", s.AccountsMode(), tc.accounts)
			}
			if tc.accounts && !s.UsesSecretsManager() {
				t.Error("accounts mode does not use AWS")
			}
			if len(tc.problems) == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if s.AccountSecretPrefix != tc.env[EnvAccountSecretPrefix] || s.TableName != tc.env[EnvTableName] ||
					s.AccountQueueURL != tc.env[EnvAccountQueueURL] || s.AccountKMSKeyID != tc.env[EnvAccountKMSKeyID] ||
					s.SelfHealSecretID != tc.env[EnvSelfHealSecretID] {
					t.Errorf("settings: %+v", s)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) != len(tc.problems) {
				t.Fatalf("err = %v, want %d problems", err, len(tc.problems))
			}
			for _, want := range tc.problems {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q: %v", want, err)
				}
			}
		})
	}
}
