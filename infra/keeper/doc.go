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
//     both secrets. Each run reports the refresh token's remaining lifetime as
//     an Embedded Metric Format log line (namespace VBCToken, metric
//     RefreshTokenSecondsLeft, dimension FunctionName).
//  4. Alarms (refresh token below 3 days or not reported, refresher errors,
//     callback 5xx, dead letters) notify one SNS topic.
//
// Apps never see the pair: TokenKeeper.GrantReadAccessToken gives them read
// access to the access secret alone.
//
// Every IAM statement names its resources; none grants `secretsmanager:*` or
// any action on `*`. The functions' roles carry no managed policy (not even
// AWSLambdaBasicExecutionRole, which allows logs actions on `*`): each role
// may write only to its function's own log group.
package keeper
