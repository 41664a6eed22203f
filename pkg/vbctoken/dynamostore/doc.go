// Package dynamostore is the DynamoDB backend of accounts mode (docs/design.md "Accounts
// mode"), for fleets where two secrets per account cost too much. One table, with the
// string partition key "pk" and no sort key, holds two items per account: "pair#<account>",
// the keeper's, with the pair secret's JSON in "json" and a number "version"; and
// "access#<account>", with the access secret's JSON in "json", which the account's apps
// read under an IAM policy whose dynamodb:LeadingKeys condition names that one key. Every
// write of the pair is one PutItem conditioned on the version read (attribute_not_exists
// for an account's first), so the compare-and-swap is atomic and a store never reports a
// pending write; a retried commit whose write had landed finds its own content at the next
// version in the item the failed condition returns, and succeeds. The client credentials
// stay in the shared Secrets Manager secret. Measured with the real keeper over the VBC
// sandbox and priced by DynamoDB's rules (strongly consistent reads; a pair item is about
// 1 KB, an access item 0.2 KB): an hourly check that skips is 2 GetItem = 2 RRU; a refresh
// is 2 GetItem and 3 PutItem (lease, pair, access) = 2 RRU + 5 WRU; an account-month of
// hourly checks with a daily refresh is 1,440 RRU + 150 WRU, about $0.0003 on demand,
// against $0.80 for two secrets. Listing 10,000 accounts for the hourly sweep is one
// paginated Scan of about 4 MB, about 550 RRU.
//
// The keeper needs dynamodb:GetItem, dynamodb:PutItem and dynamodb:Scan on the table (and
// the table's KMS key when it is customer managed); an app of account X needs only
// dynamodb:GetItem with dynamodb:LeadingKeys = access#X.
package dynamostore
