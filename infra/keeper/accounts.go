package keeper

import (
	"fmt"
	"regexp"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/internal/contract"
)

// AccountsBackend is where accounts mode keeps the accounts' token pairs
// (docs/design.md "Accounts mode").
type AccountsBackend string

// The two backends of accounts mode.
const (
	// BackendSecretsManager keeps two secrets per account, <prefix><account>/pair and
	// <prefix><account>/access, which the keeper creates at the account's first consent.
	BackendSecretsManager AccountsBackend = "secretsmanager"
	// BackendDynamoDB keeps two items per account in one table the stack creates, for
	// fleets where two secrets per account cost too much.
	BackendDynamoDB AccountsBackend = "dynamodb"
)

// Defaults of AccountsProps. The fleet simulation (internal/fleetsim) measures the
// fan-out with these numbers; a deployment may change them through the props.
const (
	// DefaultAccountsBatchSize is the number of queue messages (accounts) one refresher
	// invocation takes; each is refreshed on its own goroutine.
	DefaultAccountsBatchSize = 5
	// DefaultAccountsMaxConcurrency is the event source mapping's maximum concurrency:
	// refresher invocations working the queue at once. With the batch size it bounds the
	// refreshes in flight, and so the writes per second to Secrets Manager, by
	// construction (Lambda's minimum is 2).
	DefaultAccountsMaxConcurrency = 2
	// DefaultAccountsMaxReceiveCount is how often a message is delivered before it moves
	// to the account dead-letter queue.
	DefaultAccountsMaxReceiveCount = 3
)

// AccountQueueAgeAlarmThreshold is the age of the account queue's oldest message above
// which the fan-out is falling behind: the sweep spreads an hour's messages over 15
// minutes and a message that fails is delivered again after the visibility timeout
// (6 minutes) at most DefaultAccountsMaxReceiveCount times, so a healthy queue holds no
// message this old, and the next hourly sweep is due.
const AccountQueueAgeAlarmThreshold = 45 * time.Minute

// accountQueueRetention: a message older than this is superseded by the next sweeps' (each
// sweep enqueues every account again), so after an outage the backlog holds at most two
// sweeps instead of days of duplicates.
const accountQueueRetention = 2 * time.Hour

// visibilityTimeoutFactor: AWS advises a source queue's visibility timeout of at least six
// times the function's timeout, so that a batch that Lambda retries after throttling is
// not delivered a second time while the first is still running.
const visibilityTimeoutFactor = 6

// AccountsProps turns accounts mode on: one deployment keeps the chains of many VBC accounts
// (docs/design.md "Accounts mode"). Zero values take the defaults.
type AccountsProps struct {
	// Prefix starts the name of every per-account secret and of the account index
	// (VBC_ACCOUNT_SECRET_PREFIX); the functions' IAM is scoped to secret:<Prefix>*. It
	// must end with "/", so that the pattern matches no other secret, and may hold only
	// letters, digits and /_+=.@-. Default: "<stack name>/accounts/".
	Prefix string
	// Backend is BackendSecretsManager (the default) or BackendDynamoDB.
	Backend AccountsBackend
	// BatchSize, MaxConcurrency and MaxReceiveCount shape the refresher's consumption of
	// the account queue. Defaults: DefaultAccountsBatchSize (1-10),
	// DefaultAccountsMaxConcurrency (2-1000), DefaultAccountsMaxReceiveCount (1-1000).
	BatchSize       int
	MaxConcurrency  int
	MaxReceiveCount int
}

// accountIDPattern is contract.AccountIDPattern, anchored.
var accountIDPattern = regexp.MustCompile(`^` + contract.AccountIDPattern + `$`)

// prefixPattern: the characters Secrets Manager allows in a name (which keeps IAM
// wildcards out), ending with "/", short enough for <prefix><63-character id>/access.
var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{0,441}/$`)

func (a *AccountsProps) withDefaults() {
	if a.Backend == "" {
		a.Backend = BackendSecretsManager
	}
	if a.BatchSize == 0 {
		a.BatchSize = DefaultAccountsBatchSize
	}
	if a.MaxConcurrency == 0 {
		a.MaxConcurrency = DefaultAccountsMaxConcurrency
	}
	if a.MaxReceiveCount == 0 {
		a.MaxReceiveCount = DefaultAccountsMaxReceiveCount
	}
}

func (a *AccountsProps) problems() []string {
	var out []string
	if a.Backend != BackendSecretsManager && a.Backend != BackendDynamoDB {
		out = append(out, fmt.Sprintf("Accounts.Backend %q must be %q or %q", a.Backend, BackendSecretsManager, BackendDynamoDB))
	}
	if a.Prefix != "" && !prefixPattern.MatchString(a.Prefix) {
		out = append(out, fmt.Sprintf("Accounts.Prefix %q must end with \"/\" and hold only letters, digits and /_+=.@- (at most 442 characters)", a.Prefix))
	}
	if a.BatchSize < 1 || a.BatchSize > 10 {
		out = append(out, fmt.Sprintf("Accounts.BatchSize %d must be 1-10", a.BatchSize))
	}
	if a.MaxConcurrency < 2 || a.MaxConcurrency > 1000 {
		out = append(out, fmt.Sprintf("Accounts.MaxConcurrency %d must be 2-1000 (Lambda's limits for SQS)", a.MaxConcurrency))
	}
	if a.MaxReceiveCount < 1 || a.MaxReceiveCount > 1000 {
		out = append(out, fmt.Sprintf("Accounts.MaxReceiveCount %d must be 1-1000", a.MaxReceiveCount))
	}
	return out
}

// accounts reports whether the keeper is in accounts mode.
func (k *TokenKeeper) accounts() bool { return k.props.Accounts != nil }

// createAccountStorage creates what accounts mode keeps outside the functions: the account
// key, the table (DynamoDB backend) and the account queue with its dead-letter queue.
func (k *TokenKeeper) createAccountStorage(c constructs.Construct) {
	a := k.props.Accounts
	if a.Prefix != "" {
		k.AccountSecretPrefix = jsii.String(a.Prefix)
	} else {
		// The stack's name as CloudFormation knows it at deployment, as template.yaml does.
		k.AccountSecretPrefix = awscdk.Fn_Join(jsii.String(""), &[]*string{awscdk.Aws_STACK_NAME(), jsii.String("/accounts/")})
	}

	// A key of its own, not the stack key: apps need kms:Decrypt on the key of their
	// account's secret or item, and that key must not be the one that guards the client
	// credentials; and a key that encrypts nothing but account data needs no encryption
	// context condition to keep a grant on it away from other data. RETAIN: the retained
	// secrets and table are unreadable without it.
	k.AccountKey = awskms.NewKey(c, jsii.String("AccountKey"), &awskms.KeyProps{
		Description:       jsii.String("vbctoken: encrypts the accounts' token pairs and access tokens (accounts mode)"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})

	if a.Backend == BackendDynamoDB {
		// RETAIN and deletion protection: the table holds the source of truth of every
		// account's chain.
		k.AccountTable = awsdynamodb.NewTable(c, jsii.String("AccountTable"), &awsdynamodb.TableProps{
			PartitionKey:  &awsdynamodb.Attribute{Name: jsii.String(contract.TablePartitionKey), Type: awsdynamodb.AttributeType_STRING},
			BillingMode:   awsdynamodb.BillingMode_PAY_PER_REQUEST,
			Encryption:    awsdynamodb.TableEncryption_CUSTOMER_MANAGED,
			EncryptionKey: k.AccountKey,
			PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
				PointInTimeRecoveryEnabled: jsii.Bool(true),
			},
			DeletionProtection: jsii.Bool(true),
			RemovalPolicy:      awscdk.RemovalPolicy_RETAIN,
		})
	}

	// SSE-SQS on both queues: a message is {"account","force"}, no secret.
	k.AccountDeadLetterQueue = awssqs.NewQueue(c, jsii.String("AccountDeadLetters"), &awssqs.QueueProps{
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})
	k.AccountQueue = awssqs.NewQueue(c, jsii.String("AccountQueue"), &awssqs.QueueProps{
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		RetentionPeriod:   awscdk.Duration_Seconds(jsii.Number(accountQueueRetention.Seconds())),
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(visibilityTimeoutFactor * refresherTimeout.Seconds())),
		DeadLetterQueue: &awssqs.DeadLetterQueue{
			Queue:           k.AccountDeadLetterQueue,
			MaxReceiveCount: jsii.Number(float64(a.MaxReceiveCount)),
		},
	})
}

// accountEnv adds the accounts-mode variables both functions read.
func (k *TokenKeeper) accountEnv(env map[string]*string) {
	env[contract.EnvAccountSecretPrefix] = k.AccountSecretPrefix
	switch k.props.Accounts.Backend {
	case BackendSecretsManager:
		env[contract.EnvAccountKMSKeyID] = k.AccountKey.KeyArn()
	case BackendDynamoDB:
		env[contract.EnvTableName] = k.AccountTable.TableName()
	}
}

// accountSecretsArn is the ARN pattern of every secret under the prefix, name part
// <prefix> + suffix.
func (k *TokenKeeper) accountSecretsArn(suffix string) *string {
	return awscdk.Stack_Of(k.Construct).FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("secretsmanager"),
		Resource:     jsii.String("secret"),
		ResourceName: awscdk.Fn_Join(jsii.String(""), &[]*string{k.AccountSecretPrefix, jsii.String(suffix)}),
		ArnFormat:    awscdk.ArnFormat_COLON_RESOURCE_NAME,
	})
}

// dynamoDBService is the kms:ViaService value of DynamoDB in this stack's region.
func dynamoDBService(stack awscdk.Stack) *string {
	return awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("dynamodb."), stack.Region(), jsii.String("."), stack.UrlSuffix(),
	})
}

// accountStatements are the accounts-mode statements of a function's role beyond the
// shared credentials: the backend's, exactly as the stores call it (pkg/vbctoken/smstore,
// pkg/vbctoken/dynamostore), and nothing on "*".
func (k *TokenKeeper) accountStatements(stack awscdk.Stack, refresher bool) []*awsiam.PolicyStatementProps {
	switch k.props.Accounts.Backend {
	case BackendDynamoDB:
		actions := []string{"dynamodb:GetItem", "dynamodb:PutItem"}
		if refresher {
			// Only the sweep lists the accounts (a paginated Scan of the pair items).
			actions = append(actions, "dynamodb:Scan")
		}
		return []*awsiam.PolicyStatementProps{
			{
				Sid:       jsii.String("ReadAndSwapAccountItems"),
				Actions:   jsii.Strings(actions...),
				Resources: &[]*string{k.AccountTable.TableArn()},
			},
			{
				// What Table.grantReadWriteData gives on a customer-managed key, less
				// kms:ReEncrypt* (DynamoDB re-encrypts the table key itself when the key
				// changes) and with exact action names; only through DynamoDB.
				Sid:       jsii.String("UseAccountKeyForTable"),
				Actions:   jsii.Strings("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"),
				Resources: &[]*string{k.AccountKey.KeyArn()},
				Conditions: &map[string]interface{}{
					"StringEquals": map[string]interface{}{"kms:ViaService": dynamoDBService(stack)},
				},
			},
		}
	default:
		secrets := k.accountSecretsArn("*")
		return []*awsiam.PolicyStatementProps{
			{
				// The pairs, the access secrets and the index shards, all under the prefix.
				Sid: jsii.String("ReadAndSwapAccountSecrets"),
				Actions: jsii.Strings("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
					"secretsmanager:UpdateSecretVersionStage"),
				Resources: &[]*string{secrets},
			},
			{
				// An account's secrets are created at its first consent, tagged with its id;
				// index shards untagged. No other tag may be set.
				Sid:       jsii.String("CreateAccountSecrets"),
				Actions:   jsii.Strings("secretsmanager:CreateSecret", "secretsmanager:TagResource"),
				Resources: &[]*string{secrets},
				Conditions: &map[string]interface{}{
					"ForAllValues:StringEquals": map[string]interface{}{"aws:TagKeys": []string{contract.AccountTagKey}},
				},
			},
			{
				Sid:       jsii.String("UseAccountKeyForAccountSecrets"),
				Actions:   jsii.Strings("kms:Decrypt", "kms:GenerateDataKey"),
				Resources: &[]*string{k.AccountKey.KeyArn()},
				Conditions: &map[string]interface{}{
					"StringEquals": map[string]interface{}{"kms:ViaService": secretsManagerService(stack)},
					"StringLike":   map[string]interface{}{"kms:EncryptionContext:SecretARN": secrets},
				},
			},
		}
	}
}

// consumeAccountQueue lets the refresher send the sweep's messages and consume the queue.
func (k *TokenKeeper) consumeAccountQueue(c constructs.Construct) {
	a := k.props.Accounts
	k.Refresher.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("SweepIntoAccountQueue"),
		Actions:   jsii.Strings("sqs:SendMessage"),
		Resources: &[]*string{k.AccountQueue.QueueArn()},
	}))
	// The mapping polls with the refresher's role: receive, delete, change visibility
	// and read the attributes of this queue alone. The function depends on its role's
	// policy, and the mapping on the function, so the grant is in place before Lambda
	// checks it at the mapping's creation.
	k.AccountQueue.GrantConsumeMessages(k.Refresher)
	k.AccountQueueMapping = awslambda.NewEventSourceMapping(c, jsii.String("AccountQueueMapping"), &awslambda.EventSourceMappingProps{
		Target:                  k.Refresher,
		EventSourceArn:          k.AccountQueue.QueueArn(),
		BatchSize:               jsii.Number(float64(a.BatchSize)),
		MaxConcurrency:          jsii.Number(float64(a.MaxConcurrency)),
		ReportBatchItemFailures: jsii.Bool(true),
	})
}

// Alarm names of accounts mode (see the other Alarm* constants).
const (
	AlarmAccountDeadLetters = "account-dead-letters"
	AlarmAccountQueueBehind = "account-queue-behind"
)

// accountAlarms watches the fan-out: accounts whose refresh kept failing, and a queue that
// is not drained before the next sweep.
func (k *TokenKeeper) accountAlarms(alarm alarmFunc) {
	five := awscdk.Duration_Minutes(jsii.Number(5))
	alarm("AccountDeadLettersAlarm", AlarmAccountDeadLetters,
		"account refreshes failed on every delivery and sit in the account dead-letter queue; "+
			"see the refresher's log group (WARN `account refresh failed`).",
		k.AccountDeadLetterQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: five, Statistic: jsii.String("Maximum")}),
		awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD, 1, awscloudwatch.TreatMissingData_NOT_BREACHING, 1)
	alarm("AccountQueueBehindAlarm", AlarmAccountQueueBehind,
		"the account queue holds a message older than 45 minutes: the fan-out is falling behind the hourly sweep.",
		k.AccountQueue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Period: five, Statistic: jsii.String("Maximum")}),
		awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD, AccountQueueAgeAlarmThreshold.Seconds(),
		awscloudwatch.TreatMissingData_NOT_BREACHING, alarmPeriods)
}

// accountWidgets draws the account queue: depth, messages in flight, the oldest message's
// age against the alarm's threshold, and the dead letters.
func (k *TokenKeeper) accountWidgets() []awscloudwatch.IWidget {
	five := awscdk.Duration_Minutes(jsii.Number(5))
	opts := func(label string) *awscloudwatch.MetricOptions {
		return &awscloudwatch.MetricOptions{Period: five, Statistic: jsii.String("Maximum"), Label: jsii.String(label)}
	}
	return []awscloudwatch.IWidget{
		awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title: jsii.String("Account queue depth"),
			Left: &[]awscloudwatch.IMetric{
				k.AccountQueue.MetricApproximateNumberOfMessagesVisible(opts("waiting")),
				k.AccountQueue.MetricApproximateNumberOfMessagesNotVisible(opts("in flight")),
				k.AccountQueue.MetricApproximateNumberOfMessagesDelayed(opts("delayed (spread by the sweep)")),
			},
			Width: jsii.Number(8), Height: jsii.Number(6),
		}),
		thresholdGraph("Account queue: age of the oldest message (seconds)",
			k.AccountQueue.MetricApproximateAgeOfOldestMessage(opts("oldest message")),
			AccountQueueAgeAlarmThreshold.Seconds(), "alarm: falling behind", 8),
		awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title: jsii.String("Account dead letters (refreshes that failed on every delivery)"),
			Left:  &[]awscloudwatch.IMetric{k.AccountDeadLetterQueue.MetricApproximateNumberOfMessagesVisible(opts("messages"))},
			Width: jsii.Number(8), Height: jsii.Number(6),
		}),
	}
}

// GrantReadAccount lets grantee (an app's role) read the access token of one account and
// nothing else (accounts mode only; it panics otherwise, or on an invalid account id).
//
// On the Secrets Manager backend: secretsmanager:GetSecretValue on the account's access
// secret, <prefix><account>/access-?????? (the six characters Secrets Manager appends; a
// pattern <prefix><account>* would also match account <account>-eu), and kms:Decrypt on the
// account key only through Secrets Manager and only for that secret. On the DynamoDB
// backend: dynamodb:GetItem on the table with dynamodb:LeadingKeys = access#<account>, and
// kms:Decrypt on the account key only through DynamoDB.
//
// A multi-tenant service that serves many accounts instead uses a tag-based policy
// (infra/README.md, "Accounts mode").
func (k *TokenKeeper) GrantReadAccount(grantee awsiam.IGrantable, account string) awsiam.Grant {
	if !k.accounts() {
		panic("keeper.GrantReadAccount: accounts mode is off; use GrantReadAccessToken")
	}
	if !accountIDPattern.MatchString(account) {
		panic(fmt.Sprintf("keeper.GrantReadAccount: account id %q must match %s", account, contract.AccountIDPattern))
	}
	stack := awscdk.Stack_Of(k.Construct)
	if k.props.Accounts.Backend == BackendDynamoDB {
		read := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
			Grantee:      grantee,
			Actions:      jsii.Strings("dynamodb:GetItem"),
			ResourceArns: &[]*string{k.AccountTable.TableArn()},
			Conditions: &map[string]*map[string]interface{}{
				"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": []string{contract.AccessKeyPrefix + account}},
			},
		})
		decrypt := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
			Grantee:      grantee,
			Actions:      jsii.Strings("kms:Decrypt"),
			ResourceArns: &[]*string{k.AccountKey.KeyArn()},
			Conditions: &map[string]*map[string]interface{}{
				"StringEquals": {"kms:ViaService": dynamoDBService(stack)},
			},
		})
		return read.Combine(decrypt)
	}
	secret := k.accountSecretsArn(account + contract.AccountAccessSecretSuffix + "-??????")
	read := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("secretsmanager:GetSecretValue"),
		ResourceArns: &[]*string{secret},
	})
	decrypt := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("kms:Decrypt"),
		ResourceArns: &[]*string{k.AccountKey.KeyArn()},
		Conditions: &map[string]*map[string]interface{}{
			"StringEquals": {"kms:ViaService": secretsManagerService(stack)},
			"StringLike":   {"kms:EncryptionContext:SecretARN": secret},
		},
	})
	return read.Combine(decrypt)
}
