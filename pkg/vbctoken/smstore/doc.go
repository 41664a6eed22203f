// Package smstore keeps vbctoken's secrets in AWS Secrets Manager.
//
// Store is a vbctoken.Store over the three secrets of a single-account deployment
// (docs/design.md "Secrets"), which the CDK stack creates; NewSource is the app-facing
// reader of the access secret. The pair is written with Secrets Manager versioning as
// compare-and-swap: PutSecretValue under a private staging label with a ClientRequestToken
// derived from the version it replaces and its content, then UpdateSecretVersionStage
// moving AWSCURRENT away from that version, which fails when another writer moved it first.
//
// Fleet is a vbctoken.Fleet for accounts mode (docs/design.md "Accounts mode"): the stores
// of many accounts under one name prefix, each created on its account's first write with
// CreateSecret, and a sharded account index under the same prefix, so that the IAM policy
// stays scoped to secret:<prefix>* and no one needs ListSecrets. An account is always in
// the index before any secret of it exists.
//
// Neither ever puts a secret value into an error or a log.
package smstore
