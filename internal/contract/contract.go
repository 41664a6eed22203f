// Package contract holds the names that docs/design.md fixes and that several parts must
// agree on: the environment variables of the functions and the CLI, and the custom metric the
// refresher emits and the stack's alarm watches, VBC's default endpoints and the rule for
// endpoint URLs. It depends on the standard library only, so the CDK construct can use it
// without linking the keeper.
package contract

import (
	"errors"
	"net"
	"net/url"
	"time"
)

// Environment variables (docs/design.md "Configuration"): names, ARNs and URLs, never secrets.
const (
	EnvCredentialsSecretID = "VBC_CREDENTIALS_SECRET_ID"
	EnvTokenSecretID       = "VBC_TOKEN_SECRET_ID"
	EnvAccessSecretID      = "VBC_ACCESS_SECRET_ID"
	EnvAuthorizeURL        = "VBC_AUTHORIZE_URL"
	EnvTokenURL            = "VBC_TOKEN_URL"
	EnvRedirectURL         = "VBC_REDIRECT_URL"
	EnvScope               = "VBC_SCOPE"
	EnvPKCE                = "VBC_PKCE"
	EnvRefreshMargin       = "VBC_REFRESH_MARGIN"
	EnvRefreshMaxAge       = "VBC_REFRESH_MAX_AGE"
	// EnvSelfHealSecretID names the optional self-heal login secret {"username","password"};
	// set, the refresher restores a provably lost chain with the password grant.
	EnvSelfHealSecretID = "VBC_SELF_HEAL_SECRET_ID"
)

// Accounts mode (docs/design.md "Accounts mode"): on when EnvAccountSecretPrefix is set.
const (
	EnvAccountSecretPrefix = "VBC_ACCOUNT_SECRET_PREFIX"
	EnvAccountKMSKeyID     = "VBC_ACCOUNT_KMS_KEY_ID"
	EnvTableName           = "VBC_TABLE_NAME"
	EnvAccountQueueURL     = "VBC_ACCOUNT_QUEUE_URL"
	// EnvAccountWriteRate is how many Secrets Manager writes per second one refresher
	// environment may make: SecretsManagerWriteBudget over the queue's maximum concurrency,
	// so that all of them together stay inside the account's quota by construction.
	EnvAccountWriteRate = "VBC_ACCOUNT_WRITE_RATE"
)

// SecretsManagerWriteBudget is the part of Secrets Manager's 50 writes/s quota
// (PutSecretValue, UpdateSecretVersionStage and CreateSecret together) that an accounts-mode
// deployment's refreshers may use; the rest is left to consents and operators
// (docs/fleet.md).
const SecretsManagerWriteBudget = 40

// Names the accounts-mode storage and its IAM share (docs/design.md "Accounts mode"): the tag
// every per-account secret carries, the account index's directory under the secret prefix,
// and the DynamoDB table's key attribute and item key prefixes (apps of account X may read
// only AccessKeyPrefix+X, by dynamodb:LeadingKeys).
//
// AccountIDPattern is what an account id matches (anchored); AccountPairSecretSuffix and
// AccountAccessSecretSuffix end the names of an account's secrets after the prefix and the
// id, so that the stack can grant an app read on exactly one account's access secret.
const (
	AccountIDPattern          = "[a-z0-9][a-z0-9-]{0,62}"
	AccountTagKey             = "vbctoken:account"
	AccountIndexDir           = "_index/"
	AccountPairSecretSuffix   = "/pair"
	AccountAccessSecretSuffix = "/access"
	TablePartitionKey         = "pk"
	PairKeyPrefix             = "pair#"
	AccessKeyPrefix           = "access#"
)

// The refresh policy's defaults (docs/design.md "Refresh policy": VBC_REFRESH_MARGIN,
// VBC_REFRESH_MAX_AGE).
const (
	DefaultRefreshMargin = 2 * time.Hour
	DefaultRefreshMaxAge = 24 * time.Hour
)

// VBC's endpoints and the scope asked for when none is configured (docs/design.md
// "Configuration"; docs/vbc.md "What Vonage documents"), and the callback's route
// (docs/design.md "Routes").
const (
	DefaultAuthorizeURL = "https://api.vonage.com/authorize"
	DefaultTokenURL     = "https://api.vonage.com/token"
	DefaultScope        = "openid"
	CallbackPath        = "/callback"
)

// CheckURL accepts an https URL, and plain http only on a loopback host (local runs and
// tests): client secrets and tokens never cross a network in clear. Its errors name the
// problem, not the URL.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("is not an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("must use https (plain http is allowed only on a loopback host)")
	}
	return errors.New("must be an https URL")
}

// The refresher's CloudWatch Embedded Metric Format metrics, in namespace MetricNamespace
// (docs/design.md "Metrics").
//
// MetricRefreshTokenSecondsLeft: seconds until the stored refresh token expires (0 when
// re-consent is needed), with the single dimension FunctionName. The stack alarms when it
// drops below three days.
//
// MetricRefreshOutcome: 1 per run, reported under two dimension sets: {FunctionName}, whose
// absence raises the stack's "refresher did not report" alarm, and {FunctionName, Outcome},
// which the dashboard draws per day. Outcome is the run's vbctoken.Outcome as a string
// (skipped, refreshed, superseded, reconsent_required, and any value added later), or
// MetricOutcomeError when the run failed before it knew one; so its values are few.
const (
	MetricNamespace               = "VBCToken"
	MetricRefreshTokenSecondsLeft = "RefreshTokenSecondsLeft"
	MetricRefreshOutcome          = "RefreshOutcome"
	MetricDimensionFunctionName   = "FunctionName"
	MetricDimensionOutcome        = "Outcome"
	MetricOutcomeError            = "error"
	// MetricPropertyAccount is the property (not a dimension) that names the account of an
	// accounts-mode run's metric line: one metric serves any number of accounts.
	MetricPropertyAccount = "Account"
)
