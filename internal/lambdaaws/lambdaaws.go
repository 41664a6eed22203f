// Package lambdaaws builds the AWS SDK configuration of vbctoken's Lambda functions straight
// from the variables Lambda sets, without the SDK's config package.
//
// # Why not config.LoadDefaultConfig
//
// LoadDefaultConfig resolves profiles, SSO, web identity, IMDS, credential processes and
// shared files; a function on Lambda uses none of them: its region and its execution
// role's credentials are in the environment. Not calling it lets the linker drop the code it
// reaches (the sso, ssooidc, sts and signin clients and their resolvers). Measured by
// `go run ./cmd/vbcbench -baseline REV` (linux/arm64, stripped; zip as a ratio to hello world):
//
//	refresher: binary 9.18 → 7.67 MB, zip 1.48× → 1.26×, peak RSS 10.7 → 9.4 MiB
//	callback:  binary 12.26 → 10.16 MB, zip 1.88× → 1.61×, peak RSS 13.5 → 12.3 MiB
//
// Init barely moves (LoadDefaultConfig itself costs ≈ 0.5 ms in Lambda's environment,
// within the run-to-run noise of a cold start): the package inits of config and its
// dependencies still run, because pkg/vbctoken (NewSecretsManagerSource) and
// internal/config (OpenStore, for the CLI) imported it. Dropping those imports from the
// Lambdas' build was measured at a further 2.5–4 ms of init (refresher 1.41× → 1.18× hello
// world in one run), so now neither does: the CLI opens its store in internal/cli and apps
// pass their own aws.Config to smstore.NewSource.
//
// # What is kept and what is given up
//
// Kept: the SDK's own endpoint resolution (the endpoint URL below becomes BaseEndpoint, so
// the rules still apply), its standard retryer (retry.NewStandard) and its HTTP client.
// Honoured, as LoadDefaultConfig honours them: AWS_REGION (else AWS_DEFAULT_REGION),
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
// AWS_ENDPOINT_URL_SECRETS_MANAGER (else AWS_ENDPOINT_URL) unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true. Ignored, because Lambda does not set them for a
// function: shared config and credentials files, profiles, SSO, AWS_MAX_ATTEMPTS,
// AWS_RETRY_MODE, AWS_CA_BUNDLE, container and web-identity credentials. The CLI
// (`vbctoken`) keeps LoadDefaultConfig, where profiles and SSO matter.
package lambdaaws

import (
	"context"
	"errors"
	"strings"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"golang.org/x/time/rate"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Environment variables read by Config.
const (
	EnvRegion             = "AWS_REGION"
	EnvDefaultRegion      = "AWS_DEFAULT_REGION"
	EnvAccessKeyID        = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey    = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken       = "AWS_SESSION_TOKEN"
	EnvEndpointSecrets    = "AWS_ENDPOINT_URL_SECRETS_MANAGER"
	EnvEndpointDynamoDB   = "AWS_ENDPOINT_URL_DYNAMODB"
	EnvEndpointSQS        = "AWS_ENDPOINT_URL_SQS"
	EnvEndpoint           = "AWS_ENDPOINT_URL"
	EnvIgnoreEndpointURLs = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
)

// Config returns the SDK configuration of a Lambda function, read with getenv (os.Getenv
// in main). A missing region or credentials is an error that names every missing variable.
func Config(getenv func(string) string) (aws.Config, error) {
	region := getenv(EnvRegion)
	if region == "" {
		region = getenv(EnvDefaultRegion)
	}
	key, secret := getenv(EnvAccessKeyID), getenv(EnvSecretAccessKey)
	var problems []string
	if region == "" {
		problems = append(problems, EnvRegion+" is not set")
	}
	if key == "" {
		problems = append(problems, EnvAccessKeyID+" is not set")
	}
	if secret == "" {
		problems = append(problems, EnvSecretAccessKey+" is not set")
	}
	if len(problems) > 0 {
		return aws.Config{}, errors.New("AWS configuration: " + strings.Join(problems, "; ") + " (Lambda sets them for every function)")
	}
	cfg := aws.Config{
		Region: region,
		// Lambda's credentials last as long as the execution environment, like the SDK's
		// environment provider, which treats them as static too.
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, getenv(EnvSessionToken)),
		Retryer:     func() aws.Retryer { return retry.NewStandard() },
	}
	return cfg, nil
}

// ForService returns cfg with the endpoint URL of one service, as the SDK's configured
// endpoints do: serviceVar (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_DYNAMODB,
// AWS_ENDPOINT_URL_SQS), else AWS_ENDPOINT_URL, unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is
// true. The URL becomes BaseEndpoint, so the SDK's endpoint rules still apply.
func ForService(cfg aws.Config, getenv func(string) string, serviceVar string) aws.Config {
	cfg.BaseEndpoint = nil
	if strings.EqualFold(getenv(EnvIgnoreEndpointURLs), "true") {
		return cfg
	}
	for _, name := range []string{serviceVar, EnvEndpoint} {
		if v := getenv(name); v != "" {
			cfg.BaseEndpoint = aws.String(v)
			break
		}
	}
	return cfg
}

// OpenStore reads a function's settings (config.FromEnv with need) and its SDK
// configuration from getenv and returns the Secrets Manager store, reporting every problem
// of both at once.
func OpenStore(getenv func(string) string, need config.Need) (config.Settings, *smstore.Store, error) {
	settings, err := config.FromEnv(getenv, need)
	awsCfg, awsErr := Config(getenv)
	if err := errors.Join(err, awsErr); err != nil {
		return settings, nil, err
	}
	return settings, smstore.NewFromConfig(ForService(awsCfg, getenv, EnvEndpointSecrets), settings.SecretIDs()), nil
}

// OpenFleet is OpenStore for accounts mode (settings.AccountsMode()): the fleet of the
// configured backend, Secrets Manager or (with VBC_TABLE_NAME) DynamoDB, whose accounts share
// the credentials secret, and the SDK configuration for the function's other clients.
func OpenFleet(settings config.Settings, getenv func(string) string) (vbctoken.Fleet, aws.Config, error) {
	awsCfg, err := Config(getenv)
	if err != nil {
		return nil, aws.Config{}, err
	}
	sm := ForService(awsCfg, getenv, EnvEndpointSecrets)
	if settings.TableName != "" {
		creds := smstore.NewFromConfig(sm, smstore.SecretIDs{Credentials: settings.CredentialsSecretID})
		fleet, err := dynamostore.NewFleetFromConfig(ForService(awsCfg, getenv, EnvEndpointDynamoDB), settings.TableName, creds)
		return fleet, awsCfg, err
	}
	var api smstore.FleetAPI = secretsmanager.NewFromConfig(sm)
	if settings.AccountWriteRate > 0 {
		api = &pacedWrites{FleetAPI: api, limit: rate.NewLimiter(rate.Limit(settings.AccountWriteRate), 1)}
	}
	fleet, err := smstore.NewFleet(api, smstore.FleetConfig{
		Prefix: settings.AccountSecretPrefix, KMSKeyID: settings.AccountKMSKeyID, CredentialsSecretID: settings.CredentialsSecretID,
	})
	return fleet, awsCfg, err
}

// pacedWrites spaces a refresher environment's Secrets Manager writes (PutSecretValue,
// UpdateSecretVersionStage, CreateSecret share one 50/s quota per AWS account): with every
// environment paced at contract.SecretsManagerWriteBudget over the queue's maximum
// concurrency, the fleet stays inside the quota by construction (the fleet simulation found
// that the concurrency limit alone does not: docs/fleet.md). Reads are not paced.
type pacedWrites struct {
	smstore.FleetAPI
	limit *rate.Limiter
}

func (p *pacedWrites) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	if err := p.limit.Wait(ctx); err != nil {
		return nil, err
	}
	return p.FleetAPI.PutSecretValue(ctx, in, opts...)
}

func (p *pacedWrites) UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	if err := p.limit.Wait(ctx); err != nil {
		return nil, err
	}
	return p.FleetAPI.UpdateSecretVersionStage(ctx, in, opts...)
}

func (p *pacedWrites) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	if err := p.limit.Wait(ctx); err != nil {
		return nil, err
	}
	return p.FleetAPI.CreateSecret(ctx, in, opts...)
}
