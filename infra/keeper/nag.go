package keeper

import (
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
	suppress(k.PairSecret, "AwsSolutions-SMG4", reasonPairRotation)
	suppress(k.AccessSecret, "AwsSolutions-SMG4", reasonAccessRotation)
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
}
