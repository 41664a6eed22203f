package keeper

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// Reasons for the cdk-nag findings (AwsSolutions and Serverless packs) that the design
// accepts. Each is recorded on the resources concerned, so an app that runs cdk-nag over
// its own stacks sees the same reasons; everything else the packs check is met.
const (
	reasonCredentialsRotation = "The VBC client id and secret are issued in the VBC developer portal, which has no API " +
		"a rotation function could call. Rotate them in the portal and write them here " +
		"(README.md, Operations runbook, Rotating the client secret)."
	reasonPairRotation = "The token pair rotates itself: the refresher replaces it with a new refresh token about " +
		"daily (VBC rotates refresh tokens on every use). A Secrets Manager rotation function would be a second " +
		"writer of the pair and break the refresh chain."
	reasonAccessRotation = "Derived from the token pair and rewritten by the refresher at every refresh (access " +
		"tokens live 24 hours); a rotation function would be a second writer."
	reasonSelfHealRotation = "The password of a VBC user, managed in VBC's admin portal, which has no API a rotation " +
		"function could call. Rotate it there and write it here (README.md, Self-heal)."
	reasonCallbackNoAuth = "GET /callback is the OAuth redirect target VBC sends the admin's browser to; the browser " +
		"carries no AWS credentials or token. Requests are authorized by the state parameter: HMAC-SHA256 signed, " +
		"single use, 15-minute expiry (README.md, Security notes). The stage is throttled."
	reasonCallbackNoDLQ = "API Gateway invokes the callback synchronously; dead-letter queues apply to asynchronous " +
		"invocations only. A failure reaches the admin as an error page and raises the callback-5xx alarm."
	reasonRefresherFailureDestination = "Failed asynchronous invocations of the refresher already go to the " +
		"dead-letter queue (DeadLetterConfig) that the refresher-dead-letters alarm watches; an on-failure " +
		"destination to the same queue would record each failure twice."
	reasonDLQNoRedrive = "This queue is the dead-letter queue of the refresher and of its schedule rule: " +
		"the end of the line, read by an operator (README.md, Operations runbook, Alarm refresher-dead-letters)."
	reasonEmailNoRedrive = "An alarm e-mail subscription: a failed delivery leaves the alarm in ALARM on the " +
		"dashboard and in the console; a dead-letter queue of undelivered alarm mails would itself go unread."
	reasonAccountDLQNoRedrive = "This queue is the dead-letter queue of the account queue: account refreshes that " +
		"failed on every delivery end here for an operator (README.md, Operations runbook, Alarm account-dead-letters)."
	reasonMappingNoDestination = "Lambda supports on-failure destinations of event source mappings for streams and " +
		"Kafka only, not for SQS: records that fail on every delivery move to the account queue's dead-letter queue " +
		"(its redrive policy), which the account-dead-letters alarm watches."
	reasonAccountSecretsWildcard = "per-account secrets are created at runtime under the prefix: their names " +
		"(<prefix><account>/pair, /access and the index <prefix>_index/NN) are not known at deployment, and the " +
		"pattern ends at the prefix, which ends with \"/\" (docs/design.md, Accounts mode)."
	reasonNoTracing = "X-Ray needs xray:PutTraceSegments and xray:PutTelemetryRecords on resource \"*\", and this " +
		"stack grants nothing on \"*\" (a test holds that). Each run makes a handful of AWS and VBC calls, which " +
		"its JSON logs and the dashboard cover."
)

// suppressNagFindings records why each accepted cdk-nag finding is accepted, on exactly
// the resources concerned (never stack-wide, never on a whole subtree).
func (k *TokenKeeper) suppressNagFindings() {
	suppress := func(scope constructs.IConstruct, id, reason string) {
		cdknag.NagSuppressions_AddResourceSuppressions(scope, &[]*cdknag.NagPackSuppression{
			{Id: jsii.String(id), Reason: jsii.String(reason)},
		}, jsii.Bool(false))
	}
	suppress(k.CredentialsSecret, "AwsSolutions-SMG4", reasonCredentialsRotation)
	if k.PairSecret != nil {
		suppress(k.PairSecret, "AwsSolutions-SMG4", reasonPairRotation)
		suppress(k.AccessSecret, "AwsSolutions-SMG4", reasonAccessRotation)
	}
	if k.SelfHealSecret != nil {
		suppress(k.SelfHealSecret, "AwsSolutions-SMG4", reasonSelfHealRotation)
	}
	for _, route := range *k.callbackRoutes {
		suppress(route, "AwsSolutions-APIG4", reasonCallbackNoAuth)
	}
	suppress(k.Callback, "Serverless-LambdaDLQ", reasonCallbackNoDLQ)
	if cfg := k.Refresher.Node().TryFindChild(jsii.String("EventInvokeConfig")); cfg != nil {
		suppress(cfg, "Serverless-LambdaAsyncFailureDestination", reasonRefresherFailureDestination)
	}
	suppress(k.DeadLetterQueue, "Serverless-SQSRedrivePolicy", reasonDLQNoRedrive)
	if k.emailSubscription != nil {
		suppress(k.emailSubscription, "Serverless-SNSRedrivePolicy", reasonEmailNoRedrive)
	}
	suppress(k.Callback, "Serverless-LambdaTracing", reasonNoTracing)
	suppress(k.Refresher, "Serverless-LambdaTracing", reasonNoTracing)
	if k.accounts() {
		k.suppressAccountFindings(suppress)
	}
}

// suppressAccountFindings records the accepted findings of accounts mode. The wildcard
// finding is suppressed for exactly the prefix pattern (appliesTo), so any other wildcard
// in the functions' policies is still a finding.
func (k *TokenKeeper) suppressAccountFindings(suppress func(constructs.IConstruct, string, string)) {
	suppress(k.AccountDeadLetterQueue, "Serverless-SQSRedrivePolicy", reasonAccountDLQNoRedrive)
	suppress(k.AccountQueueMapping, "Serverless-LambdaEventSourceMappingDestination", reasonMappingNoDestination)
	if k.props.Accounts.Backend != BackendSecretsManager {
		return
	}
	// cdk-nag names a resource by its ARN with pseudo parameters as <AWS::Name>.
	prefix := k.props.Accounts.Prefix
	if prefix == "" {
		prefix = "<AWS::StackName>/accounts/"
	}
	finding := "Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:" + prefix + "*"
	for _, fn := range []awslambda.Function{k.Callback, k.Refresher} {
		policy := fn.Role().Node().TryFindChild(jsii.String("DefaultPolicy"))
		if policy == nil {
			panic("keeper: the role of " + *fn.Node().Id() + " has no default policy")
		}
		cdknag.NagSuppressions_AddResourceSuppressions(policy, &[]*cdknag.NagPackSuppression{{
			Id: jsii.String("AwsSolutions-IAM5"), Reason: jsii.String(reasonAccountSecretsWildcard),
			AppliesTo: &[]interface{}{finding},
		}}, jsii.Bool(false))
	}
}
