package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// awsCredentialsTimeout bounds the search for AWS credentials (the SDK's chain ends with
// the EC2 instance metadata service, which a laptop does not answer).
const awsCredentialsTimeout = 15 * time.Second

// openStore returns the Secrets Manager store when the secret ids are set, else the file
// store in dir. Only serve passes create: every other command opens an existing store and
// creates nothing, so a forgotten AWS_REGION or a mistyped --store is reported as
// *noStoreError instead of an empty store that says "not connected".
//
// The SDK configuration comes from the standard chain (environment, profile, SSO) and
// honours AWS_ENDPOINT_URL_SECRETS_MANAGER; credentials are fetched here, so that a missing
// or expired login is reported as such (*awsSetupError) before any secret is read. Only the
// CLI links the SDK's config package: the Lambda functions build their configuration with
// internal/lambdaaws (a smaller binary and a shorter init).
func openStore(ctx context.Context, s config.Settings, dir string, create bool) (vbctoken.Store, error) {
	if !s.UsesSecretsManager() {
		if dir == "" {
			dir = config.DefaultStoreDir
		}
		if !create {
			if err := storeExists(dir); err != nil {
				return nil, err
			}
		}
		return filestore.New(dir)
	}
	cfg, err := loadAWS(ctx, s)
	if err != nil {
		return nil, err
	}
	return smstore.NewFromConfig(cfg, s.SecretIDs()), nil
}

// noStoreError means there is no store where the command looked (exit 5).
type noStoreError struct {
	Dir string
	// Why is the reason in a few words: "does not exist", "is not a directory", or the
	// sandbox store's missing serve.
	Why string
	// SandboxIdle means dir is the local sandbox's store and no serve runs on it: the
	// sandbox lives inside serve, so nothing can act on that store without it.
	SandboxIdle bool
}

func (e *noStoreError) Error() string {
	if e.SandboxIdle {
		return fmt.Sprintf("no store here: %s holds the local VBC sandbox's connection, and no `vbctoken serve` is running on it", e.Dir)
	}
	return fmt.Sprintf("no store here: no VBC_*_SECRET_ID variables are set and the local store %s %s", e.Dir, e.Why)
}

func storeExists(dir string) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &noStoreError{Dir: dir, Why: "does not exist"}
	case err != nil:
		return &noStoreError{Dir: dir, Why: "cannot be read (" + err.Error() + ")"}
	case !info.IsDir():
		return &noStoreError{Dir: dir, Why: "is not a directory"}
	}
	return nil
}

// awsSetupError is an AWS configuration or login problem found before any secret was read
// (exit 2): what is wrong and how to fix it, then the SDK's own words.
type awsSetupError struct {
	What string
	Fix  string
	Err  error
}

func (e *awsSetupError) Error() string {
	msg := e.What
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *awsSetupError) Unwrap() error { return e.Err }

// loadAWS loads the SDK configuration and checks that it names a region and finds
// credentials.
func loadAWS(ctx context.Context, s config.Settings) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		var noProfile awsconfig.SharedConfigProfileNotExistError
		if errors.As(err, &noProfile) {
			return aws.Config{}, &awsSetupError{
				What: fmt.Sprintf("AWS_PROFILE names the profile %q, which is not in your AWS config or credentials file", noProfile.Profile),
				Fix:  "List the profiles with `aws configure list-profiles`, then set AWS_PROFILE to one of them (or unset it to use the default chain).",
			}
		}
		return aws.Config{}, &awsSetupError{What: "cannot load the AWS configuration", Fix: awsCredentialsFix, Err: err}
	}
	if cfg.Region == "" {
		// A secret ARN names its region; a bare name does not.
		for _, id := range []string{s.TokenSecretID, s.CredentialsSecretID, s.AccessSecretID} {
			if a, err := arn.Parse(id); err == nil && a.Region != "" {
				cfg.Region = a.Region
				break
			}
		}
	}
	if cfg.Region == "" {
		return aws.Config{}, &awsSetupError{
			What: "no AWS region: the secret ids are names, not ARNs, and neither AWS_REGION nor the profile sets a region",
			Fix:  "Set AWS_REGION to the stack's region (for example AWS_REGION=eu-west-1), or give the secrets' ARNs.",
		}
	}
	cctx, cancel := context.WithTimeout(ctx, awsCredentialsTimeout)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
		return aws.Config{}, &awsSetupError{What: "no usable AWS credentials" + profileText(), Fix: awsCredentialsFix, Err: err}
	}
	return cfg, nil
}

const awsCredentialsFix = "Log in first: `aws sso login` for an SSO profile, or set AWS_PROFILE to a profile with access, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. `aws sts get-caller-identity` shows who you are."

func profileText() string {
	if p := os.Getenv("AWS_PROFILE"); p != "" {
		return " (profile " + p + ")"
	}
	return " (default credential chain: environment, ~/.aws, SSO, instance role)"
}

// awsRejected says what an AWS error code returned by Secrets Manager means for an admin,
// and whether it is a configuration problem (exit 2): credentials refused, access denied,
// a secret that does not exist.
func awsRejected(err error) (hint string, ok bool) {
	var (
		sm                  *smstore.Error
		ddb                 *dynamostore.Error
		code, denied, found string
	)
	switch {
	case errors.As(err, &ddb):
		code = ddb.Code
		denied = "Your AWS identity may not use the table " + ddb.Table + ": it needs dynamodb:GetItem, PutItem and Scan on it and kms:Decrypt on its key."
		found = "No table " + ddb.Table + " in this account and region: check VBC_TABLE_NAME (the stack's output) and AWS_REGION."
	case errors.As(err, &sm):
		code = sm.Code
		denied = "Your AWS identity may not use " + sm.SecretID + ": it needs secretsmanager:GetSecretValue (and PutSecretValue, UpdateSecretVersionStage to write) on the stack's secrets and kms:Decrypt on their key."
		found = "No secret " + sm.SecretID + " in this account and region: check the VBC_*_SECRET_ID values (the stack's outputs) and AWS_REGION."
	default:
		return "", false
	}
	switch code {
	case "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch":
		return "AWS rejected your credentials: they belong to no account, or the secret key is wrong. " + awsCredentialsFix, true
	case "ExpiredTokenException", "ExpiredToken":
		return "Your AWS session expired. " + awsCredentialsFix, true
	case "AccessDeniedException":
		return denied + " Check with `aws sts get-caller-identity` that you are who you think.", true
	case "ResourceNotFoundException":
		return found, true
	}
	return "", false
}
