package cli

import (
	"context"
	"fmt"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// openStore returns the Secrets Manager store when the secret ids are set, else the file
// store in dir (default config.DefaultStoreDir). The SDK configuration comes from the
// standard chain (environment, profile, SSO) and honours AWS_ENDPOINT_URL_SECRETS_MANAGER.
// Only the CLI links the SDK's config package: the Lambda functions build their
// configuration with internal/lambdaaws (a smaller binary and a shorter init).
func openStore(ctx context.Context, s config.Settings, dir string) (vbctoken.Store, error) {
	if !s.UsesSecretsManager() {
		if dir == "" {
			dir = config.DefaultStoreDir
		}
		st, err := filestore.New(dir)
		if err != nil {
			return nil, fmt.Errorf("open file store: %w", err)
		}
		return st, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return smstore.NewFromConfig(cfg, s.SecretIDs()), nil
}
