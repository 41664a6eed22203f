// Package keeper provides TokenKeeper, a CDK construct that deploys everything
// vbctoken needs to keep a Vonage Business Communications (VBC) OAuth token
// pair alive in AWS Secrets Manager.
//
// The token lifecycle it supports:
//
//  1. An admin writes the VBC client id and secret into the credentials secret
//     (created with empty placeholders) and opens the consent link printed by
//     `vbctoken consent-url` (the stack output ConsentUrlCommand is the exact
//     command line).
//  2. VBC redirects the admin's browser to the callback function behind an
//     HTTP API (`GET /callback`); it exchanges the code and stores the pair
//     secret (the source of truth) and the access secret (what apps read).
//  3. The refresher function runs on an EventBridge schedule (hourly by
//     default), with reserved concurrency 1 so it is the single writer. Most
//     runs read the pair and stop; about once a day it refreshes and rewrites
//     both secrets. Each run reports, as an Embedded Metric Format log line
//     (namespace VBCToken, names in internal/contract), the refresh token's
//     remaining lifetime (RefreshTokenSecondsLeft) and what it did
//     (RefreshOutcome, by FunctionName and by Outcome).
//  4. Five alarms, named NamePrefix-<name> with a runbook entry each in the
//     README (refresh-token-expiring, refresher-not-reporting,
//     refresher-errors, callback-5xx, refresher-dead-letters), notify one SNS
//     topic; a dashboard shows them with the metrics behind them.
//
// The functions are built from source during synth (CDK core's local bundling
// runs `go build` for linux/arm64 with the flags of internal/lambdabuild), or
// taken prebuilt from CallbackCodeDir/RefresherCodeDir. The resources meet
// cdk-nag's AwsSolutions and Serverless packs; the findings the design
// accepts carry their reasons as suppressions on the resources concerned.
//
// Apps never see the pair: TokenKeeper.GrantReadAccessToken gives them read
// access to the access secret alone.
//
// Accounts mode (TokenKeeperProps.Accounts, docs/design.md "Accounts mode")
// keeps the chains of many VBC accounts in one deployment: one shared
// credentials secret; per-account secrets under a name prefix, which the
// keeper creates at each account's first consent, or items in one DynamoDB
// table; a KMS key for the accounts' data; an SQS queue that the hourly
// sweep fills with one message per account and the refresher consumes
// through an event source mapping, with a dead-letter queue; two more alarms
// (account-dead-letters, account-queue-behind). TokenKeeper.GrantReadAccount
// gives an app read on one account's access token.
//
// Self-heal (TokenKeeperProps.SelfHeal, one account) adds a fourth secret,
// the login of a dedicated VBC user, which only the refresher may read.
//
// Every IAM statement names its resources; none grants `secretsmanager:*` or
// any action on `*` (accounts mode's only pattern is secret:<prefix>*). The functions' roles carry no managed policy (not even
// AWSLambdaBasicExecutionRole, which allows logs actions on `*`): each role
// may write only to its function's own log group.
package keeper
