package config

import (
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// DefaultStoreDir is the local file store of `vbctoken` when no secret ids are set.
const DefaultStoreDir = ".vbctoken"

// SecretIDs returns the Secrets Manager ids of the settings.
func (s Settings) SecretIDs() smstore.SecretIDs {
	return smstore.SecretIDs{Credentials: s.CredentialsSecretID, Pair: s.TokenSecretID, Access: s.AccessSecretID, Login: s.SelfHealSecretID}
}

// KeeperConfig returns the keeper settings for store: the OAuth client and the policy.
func (s Settings) KeeperConfig(store vbctoken.Store) vbctoken.KeeperConfig {
	return vbctoken.KeeperConfig{Store: store, Client: s.ClientConfig(), Policy: s.Policy}
}
