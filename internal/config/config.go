// Package config reads vbctoken's settings from the environment (docs/design.md
// "Configuration"): names and URLs only, never secret values. Every problem is reported at
// once, so an operator fixes a deployment in one round.
package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Environment variable names (docs/design.md "Configuration"), from internal/contract.
const (
	EnvCredentialsSecretID = contract.EnvCredentialsSecretID
	EnvTokenSecretID       = contract.EnvTokenSecretID
	EnvAccessSecretID      = contract.EnvAccessSecretID
	EnvAuthorizeURL        = contract.EnvAuthorizeURL
	EnvTokenURL            = contract.EnvTokenURL
	EnvRedirectURL         = contract.EnvRedirectURL
	EnvScope               = contract.EnvScope
	EnvPKCE                = contract.EnvPKCE
	EnvRefreshMargin       = contract.EnvRefreshMargin
	EnvRefreshMaxAge       = contract.EnvRefreshMaxAge
)

// Settings is the parsed configuration.
type Settings struct {
	// Secret ids or ARNs; all empty means "use the local file store".
	CredentialsSecretID, TokenSecretID, AccessSecretID string

	AuthorizeURL, TokenURL, RedirectURL, Scope string
	PKCE                                       bool
	Policy                                     vbctoken.Policy
}

// Need says which optional settings a program requires.
type Need struct {
	Secrets     bool // the three *_SECRET_ID variables (the Lambdas)
	RedirectURL bool // VBC_REDIRECT_URL (callback, consent-url)
}

// UsesSecretsManager reports whether the secret ids are set (else the file store is used).
func (s Settings) UsesSecretsManager() bool {
	return s.CredentialsSecretID != "" || s.TokenSecretID != "" || s.AccessSecretID != ""
}

// ClientConfig returns the OAuth client settings.
func (s Settings) ClientConfig() vbctoken.ClientConfig {
	return vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: s.AuthorizeURL, TokenURL: s.TokenURL},
		RedirectURL: s.RedirectURL,
		Scope:       s.Scope,
		PKCE:        s.PKCE,
	}
}

// Error lists every problem found in the environment.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "configuration: " + strings.Join(e.Problems, "; ")
}

// Is matches vbctoken.ErrBadInput.
func (e *Error) Is(target error) bool { return target == vbctoken.ErrBadInput }

// FromEnv parses the settings with getenv (os.Getenv in main, a map in tests).
func FromEnv(getenv func(string) string, need Need) (Settings, error) {
	var problems []string
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	s := Settings{
		CredentialsSecretID: get(EnvCredentialsSecretID, ""),
		TokenSecretID:       get(EnvTokenSecretID, ""),
		AccessSecretID:      get(EnvAccessSecretID, ""),
		AuthorizeURL:        get(EnvAuthorizeURL, contract.DefaultAuthorizeURL),
		TokenURL:            get(EnvTokenURL, contract.DefaultTokenURL),
		RedirectURL:         get(EnvRedirectURL, ""),
		Scope:               get(EnvScope, contract.DefaultScope),
		Policy:              vbctoken.DefaultPolicy(),
	}
	ids := map[string]string{EnvCredentialsSecretID: s.CredentialsSecretID, EnvTokenSecretID: s.TokenSecretID, EnvAccessSecretID: s.AccessSecretID}
	if need.Secrets || s.UsesSecretsManager() {
		for _, name := range []string{EnvCredentialsSecretID, EnvTokenSecretID, EnvAccessSecretID} {
			if ids[name] == "" {
				problems = append(problems, name+" is not set")
			}
		}
	}
	for _, u := range []struct{ name, value string }{{EnvAuthorizeURL, s.AuthorizeURL}, {EnvTokenURL, s.TokenURL}} {
		if err := checkURL(u.value); err != nil {
			problems = append(problems, fmt.Sprintf("%s %v", u.name, err))
		}
	}
	if s.RedirectURL == "" {
		if need.RedirectURL {
			problems = append(problems, EnvRedirectURL+" is not set (the callback URL registered in the VBC developer portal)")
		}
	} else if err := checkURL(s.RedirectURL); err != nil {
		problems = append(problems, fmt.Sprintf("%s %v", EnvRedirectURL, err))
	}
	if v := get(EnvPKCE, "false"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, EnvPKCE+" must be true or false")
		}
		s.PKCE = b
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvRefreshMargin, &s.Policy.Margin}, {EnvRefreshMaxAge, &s.Policy.MaxAge}} {
		if v := get(d.name, ""); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil {
				problems = append(problems, d.name+" must be a Go duration such as 2h or 90m")
				continue
			}
			*d.dst = parsed
		}
	}
	if err := s.Policy.Validate(); err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), vbctoken.ErrBadInput.Error()+": "))
	}
	if len(problems) > 0 {
		return s, &Error{Problems: problems}
	}
	return s, nil
}

// checkURL accepts https URLs, and http only for loopback hosts (contract.CheckURL).
func checkURL(raw string) error { return contract.CheckURL(raw) }
