package config

import (
	"context"
	"fmt"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// DefaultStoreDir is the local file store of `vbctoken` when no secret ids are set.
const DefaultStoreDir = ".vbctoken"

// SecretIDs returns the Secrets Manager ids of the settings.
func (s Settings) SecretIDs() vbctoken.SecretIDs {
	return vbctoken.SecretIDs{Credentials: s.CredentialsSecretID, Pair: s.TokenSecretID, Access: s.AccessSecretID}
}

// OpenStore returns the Secrets Manager store when the secret ids are set, else the file
// store in dir. The SDK configuration comes from the standard chain (environment, profile,
// SSO) and honours AWS_ENDPOINT_URL_SECRETS_MANAGER. It is the CLI's; the Lambda functions
// build theirs with internal/lambdaaws, so that their binaries do not link this chain.
func OpenStore(ctx context.Context, s Settings, dir string) (vbctoken.Store, error) {
	if !s.UsesSecretsManager() {
		if dir == "" {
			dir = DefaultStoreDir
		}
		st, err := vbctoken.NewFileStore(dir)
		if err != nil {
			return nil, fmt.Errorf("open file store: %w", err)
		}
		return st, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return vbctoken.NewSecretsManagerStoreFromConfig(cfg, s.SecretIDs()), nil
}
