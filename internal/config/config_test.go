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
