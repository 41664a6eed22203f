package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/infra/keeper"
)

// VbctokenStackProps configures the vbctoken stack: the usual stack props and
// the keeper's (see keeper.TokenKeeperProps for the defaults).
type VbctokenStackProps struct {
	awscdk.StackProps
	Keeper keeper.TokenKeeperProps
}

// VbctokenStack is the deployable stack: one TokenKeeper and its outputs.
type VbctokenStack struct {
	awscdk.Stack
	Keeper *keeper.TokenKeeper
}

// NewVbctokenStack creates the stack. Leave props.Env unset for an
// environment-agnostic stack (synth needs no account; deploy takes the
// account and region of the CLI's credentials).
func NewVbctokenStack(scope constructs.Construct, id string, props *VbctokenStackProps) *VbctokenStack {
	var sprops awscdk.StackProps
	var kprops keeper.TokenKeeperProps
	if props != nil {
		sprops, kprops = props.StackProps, props.Keeper
	}
	if sprops.Description == nil {
		sprops.Description = jsii.String("vbctoken: keeps a Vonage Business Communications OAuth token pair alive in Secrets Manager")
	}
	stack := awscdk.NewStack(scope, &id, &sprops)
	k := keeper.NewTokenKeeper(stack, "TokenKeeper", &kprops)

	output := func(id, description string, value *string) {
		awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{
			Description: jsii.String(description),
			Value:       value,
		})
	}
	output("CallbackUrl", "Redirect URL to register in the VBC developer portal", k.CallbackURL)
	output("CredentialsSecretArn", `Secret the admin fills once with {"client_id","client_secret"}`, k.CredentialsSecret.SecretArn())
	if k.PairSecret != nil {
		output("TokenSecretArn", "Token pair secret (source of truth; never give apps access)", k.PairSecret.SecretArn())
		output("AccessSecretArn", "Access-token secret apps read (grant with GrantReadAccessToken)", k.AccessSecret.SecretArn())
		output("KeyArn", "KMS key of the secrets: a role outside this stack that reads AccessSecretArn needs kms:Decrypt on it", k.Key.KeyArn())
		output("ConsentUrlCommand", "Run as an admin to print the VBC consent link", k.ConsentCommand())
	} else {
		output("KeyArn", "KMS key of the credentials secret (and of the self-heal login)", k.Key.KeyArn())
		output("ConsentUrlCommand", "Run as an admin with ACCOUNT set to the account id (ACCOUNT=acme) to print that account's VBC consent link",
			k.ConsentCommand())
		output("AccountSecretPrefix", "Accounts mode: VBC_ACCOUNT_SECRET_PREFIX, the name prefix of the per-account secrets", k.AccountSecretPrefix)
		output("AccountKeyArn", "Accounts mode: KMS key of the accounts' secrets or table; an app's role outside this stack needs kms:Decrypt on it",
			k.AccountKey.KeyArn())
		if k.AccountTable != nil {
			output("AccountTableName", "Accounts mode: the DynamoDB table of the accounts' pairs (VBC_TABLE_NAME)", k.AccountTable.TableName())
		}
		output("AccountQueueUrl", "Accounts mode: the queue the hourly sweep fills with one message per account", k.AccountQueue.QueueUrl())
		output("AccountDeadLetterQueueUrl", "Accounts mode: account refreshes that failed on every delivery", k.AccountDeadLetterQueue.QueueUrl())
	}
	if k.SelfHealSecret != nil {
		output("SelfHealSecretArn", `Self-heal login the admin fills with {"username","password"} of a dedicated VBC user`,
			k.SelfHealSecret.SecretArn())
	}
	output("AlarmTopicArn", "SNS topic of the keeper's alarms", k.AlarmTopic.TopicArn())
	output("RefresherFunctionName", "The refresher function (invoke it with events/scheduled-force.json to refresh now)", k.Refresher.FunctionName())
	output("DeadLetterQueueUrl", "Queue of refresher events that failed after retries", k.DeadLetterQueue.QueueUrl())
	output("RefresherLogGroupName", "Log group of the refresher function", k.RefresherLogs.LogGroupName())
	output("CallbackLogGroupName", "Log group of the callback function", k.CallbackLogs.LogGroupName())
	output("ApiAccessLogGroupName", "Access log group of the callback's HTTP API (no query strings)", k.ApiAccessLogs.LogGroupName())
	output("DashboardUrl", "CloudWatch dashboard of the keeper", awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("https://console.aws.amazon.com/cloudwatch/home?region="), stack.Region(),
		jsii.String("#dashboards:name="), k.Dashboard.DashboardName(),
	}))
	if k.CustomDomainName != nil {
		output("CustomDomainTarget", "Point the custom domain's CNAME/alias at this name",
			k.CustomDomainName.RegionalDomainName())
	}
	return &VbctokenStack{Stack: stack, Keeper: k}
}
