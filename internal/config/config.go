// Package config reads vbctoken's settings from the environment (docs/design.md
// "Configuration"): names and URLs only, never secret values. Every problem is reported at
// once, so an operator fixes a deployment in one round.
package config

import (
	"fmt"
	"math"
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
	EnvSelfHealSecretID    = contract.EnvSelfHealSecretID
	EnvAccountSecretPrefix = contract.EnvAccountSecretPrefix
	EnvAccountKMSKeyID     = contract.EnvAccountKMSKeyID
	EnvTableName           = contract.EnvTableName
	EnvAccountQueueURL     = contract.EnvAccountQueueURL
	EnvAccountWriteRate    = contract.EnvAccountWriteRate
)

// maxSecretPrefix bounds VBC_ACCOUNT_SECRET_PREFIX: a Secrets Manager name has at most 512
// characters, and the account id and "/access" must fit after the prefix.
const maxSecretPrefix = 256

// Settings is the parsed configuration.
type Settings struct {
	// Secret ids or ARNs; all empty (and no accounts mode) means "use the local file store".
	// In accounts mode only CredentialsSecretID is used.
	CredentialsSecretID, TokenSecretID, AccessSecretID string
	// SelfHealSecretID names the opt-in self-heal login secret; "" means self-heal is off.
	SelfHealSecretID string

	// Accounts mode (docs/design.md "Accounts mode") is on when AccountSecretPrefix is set:
	// each account's secrets are named <AccountSecretPrefix><account>/pair and /access,
	// created with AccountKMSKeyID; TableName, when set, keeps the accounts' pairs in that
	// DynamoDB table instead; AccountQueueURL is the SQS queue of the hourly sweep.
	AccountSecretPrefix, AccountKMSKeyID, TableName, AccountQueueURL string
	// AccountWriteRate bounds one refresher environment's Secrets Manager writes per
	// second (VBC_ACCOUNT_WRITE_RATE); 0 means unpaced.
	AccountWriteRate float64

	AuthorizeURL, TokenURL, RedirectURL, Scope string
	PKCE                                       bool
	Policy                                     vbctoken.Policy
}

// Need says which optional settings a program requires.
type Need struct {
	// Secrets: the three *_SECRET_ID variables (the Lambdas); in accounts mode only
	// VBC_CREDENTIALS_SECRET_ID.
	Secrets     bool
	RedirectURL bool // VBC_REDIRECT_URL (callback, consent-url)
}

// UsesSecretsManager reports whether the secrets live in AWS: a secret id is set, or accounts
// mode is on (its credentials are a Secrets Manager secret whatever keeps the pairs). Else
// the local file store is used.
func (s Settings) UsesSecretsManager() bool {
	return s.CredentialsSecretID != "" || s.TokenSecretID != "" || s.AccessSecretID != "" || s.AccountsMode()
}

// AccountsMode reports whether the deployment keeps many accounts (VBC_ACCOUNT_SECRET_PREFIX
// is set).
func (s Settings) AccountsMode() bool { return s.AccountSecretPrefix != "" }

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
		SelfHealSecretID:    get(EnvSelfHealSecretID, ""),
		AccountSecretPrefix: get(EnvAccountSecretPrefix, ""),
		AccountKMSKeyID:     get(EnvAccountKMSKeyID, ""),
		TableName:           get(EnvTableName, ""),
		AccountQueueURL:     get(EnvAccountQueueURL, ""),
		AuthorizeURL:        get(EnvAuthorizeURL, contract.DefaultAuthorizeURL),
		TokenURL:            get(EnvTokenURL, contract.DefaultTokenURL),
		RedirectURL:         get(EnvRedirectURL, ""),
		Scope:               get(EnvScope, contract.DefaultScope),
		Policy:              vbctoken.DefaultPolicy(),
	}
	ids := map[string]string{EnvCredentialsSecretID: s.CredentialsSecretID, EnvTokenSecretID: s.TokenSecretID, EnvAccessSecretID: s.AccessSecretID}
	switch {
	case s.AccountsMode():
		// Each account's secrets are named by the prefix; only the shared credentials
		// secret is named here.
		if s.CredentialsSecretID == "" {
			problems = append(problems, EnvCredentialsSecretID+" is not set (accounts mode: the client credentials all accounts share)")
		}
		problems = append(problems, checkAccountsSettings(s)...)
	case need.Secrets || s.UsesSecretsManager():
		for _, name := range []string{EnvCredentialsSecretID, EnvTokenSecretID, EnvAccessSecretID} {
			if ids[name] == "" {
				problems = append(problems, name+" is not set")
			}
		}
	}
	if v := get(EnvAccountWriteRate, ""); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			r = -1
		}
		s.AccountWriteRate = r
	}
	if !s.AccountsMode() {
		for _, v := range []struct{ name, value string }{{EnvAccountKMSKeyID, s.AccountKMSKeyID}, {EnvTableName, s.TableName}, {EnvAccountQueueURL, s.AccountQueueURL}, {EnvAccountWriteRate, get(EnvAccountWriteRate, "")}} {
			if v.value != "" {
				problems = append(problems, v.name+" is set, but accounts mode is off ("+EnvAccountSecretPrefix+" is not set)")
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

// checkAccountsSettings checks the accounts-mode variables.
func checkAccountsSettings(s Settings) []string {
	var problems []string
	if len(s.AccountSecretPrefix) > maxSecretPrefix || strings.IndexFunc(s.AccountSecretPrefix, notSecretNameRune) >= 0 {
		problems = append(problems, fmt.Sprintf("%s must be at most %d characters of a Secrets Manager name (letters, digits and /_+=.@-), for example vbctoken/accounts/",
			EnvAccountSecretPrefix, maxSecretPrefix))
	}
	if s.AccountQueueURL != "" {
		if err := checkURL(s.AccountQueueURL); err != nil {
			problems = append(problems, fmt.Sprintf("%s %v", EnvAccountQueueURL, err))
		}
	}
	if s.AccountWriteRate < 0 || math.IsNaN(s.AccountWriteRate) || math.IsInf(s.AccountWriteRate, 0) {
		problems = append(problems, EnvAccountWriteRate+" must be a positive number of writes per second")
	}
	return problems
}

// notSecretNameRune reports a character a Secrets Manager name cannot hold.
func notSecretNameRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_+=.@-", r))
}

// checkURL accepts https URLs, and http only for loopback hosts (contract.CheckURL).
func checkURL(raw string) error { return contract.CheckURL(raw) }
