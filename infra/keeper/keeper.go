package keeper

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2integrations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/aws-cdk-go/awscdk/v2/interfaces/interfacesawscloudwatch"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/vbctoken/vbctoken/internal/contract"
)

// Defaults from docs/design.md "Configuration" and the operating contract of the refresher.
const (
	DefaultAuthorizeURL = contract.DefaultAuthorizeURL
	DefaultTokenURL     = contract.DefaultTokenURL
	DefaultScope        = contract.DefaultScope
	DefaultSchedule     = "rate(1 hour)"
	// SelfHealSchedule is the default schedule with SelfHeal: a chain an operator's run
	// lost is healed within a quarter of an hour (docs/soak.md "With self-heal").
	SelfHealSchedule     = "rate(15 minutes)"
	DefaultRefreshMargin = "2h"
	DefaultRefreshMaxAge = "24h"
)

// RefreshTokenAlarmThreshold is the remaining refresh-token lifetime below
// which the keeper alarms: refresh tokens live 7 days and are renewed about
// daily, so under 3 days means refreshes have been failing for days.
const RefreshTokenAlarmThreshold = 3 * 24 * time.Hour

// CallbackPath is the only route of the HTTP API.
const CallbackPath = contract.CallbackPath

// Initial secret values. CloudFormation writes a secret's value only when the
// template's value changes, so the admin's credentials and the live token pair
// survive every later deployment — as long as these strings never change.
// Changing one would make the next deployment overwrite the live secret.
const (
	InitialCredentials = `{"client_id":"","client_secret":""}`
	InitialPair        = `{"version":1}`
	InitialAccess      = `{"version":1}`
	// InitialSelfHealLogin reads as "no login" (vbctoken.ErrNoCredentials): self-heal
	// stays idle until an admin writes the login.
	InitialSelfHealLogin = `{"username":"","password":""}`
)

// Stage throttling: the callback is public and only ever used by an admin's
// browser a few times a year; this is plenty for that and caps abuse.
const (
	throttleBurst = 10
	throttleRate  = 5
)

// CustomDomain serves the callback at https://DomainName/callback instead of
// the execute-api URL. DNS is left to the operator: point a CNAME (or alias)
// at the CustomDomainTarget output.
type CustomDomain struct {
	// DomainName is the host name, e.g. "vbc-callback.example.com".
	DomainName string
	// CertificateArn is an ACM certificate for DomainName in the stack's region.
	CertificateArn string
}

// TokenKeeperProps configures a TokenKeeper. Zero values take the defaults of
// docs/design.md "Configuration"; none is required.
type TokenKeeperProps struct {
	// CallbackCodeDir and RefresherCodeDir, when set, are directories holding
	// a prebuilt `bootstrap` binary of each function (`make build` writes
	// dist/callback and dist/refresher). When empty (the default), the
	// function is built from source during synth with the local Go toolchain
	// (`go build` of CallbackPackage/RefresherPackage for linux/arm64 with the
	// flags of internal/lambdabuild).
	CallbackCodeDir  string
	RefresherCodeDir string
	// BuildDir is where `go build` runs when a function is built from source:
	// any directory inside a Go module that has github.com/vbctoken/vbctoken
	// (this repository, or an app's module that requires it).
	// Default: the current directory.
	BuildDir string

	// NamePrefix starts the names operators see: the alarms
	// (NamePrefix-refresh-token-expiring, ...) and the dashboard (NamePrefix).
	// Default: the stack's name. Two keepers in one stack need different prefixes.
	NamePrefix string

	// AuthorizeURL and TokenURL are VBC's OAuth endpoints (white-label
	// tenants differ). Defaults: DefaultAuthorizeURL, DefaultTokenURL.
	AuthorizeURL string
	TokenURL     string
	// Scope asked for at consent. Default: DefaultScope.
	Scope string
	// PKCE sends an S256 code challenge at consent and the verifier at exchange.
	PKCE bool

	// Schedule is the refresher's EventBridge schedule expression.
	// Default: DefaultSchedule, or SelfHealSchedule with SelfHeal.
	Schedule string
	// RefreshMargin and RefreshMaxAge are Go durations (docs/design.md "Configuration"):
	// defaults DefaultRefreshMargin and DefaultRefreshMaxAge.
	RefreshMargin string
	RefreshMaxAge string
	// SecondsLeftAlarmPeriod is the period of the refresher's alarms: the
	// refresh-token alarm takes the minimum RefreshTokenSecondsLeft over it,
	// and the refresher must report at least once in it (two periods without a
	// report raise AlarmRefresherNotReporting). Default: 1 hour; set it to at
	// least the schedule's interval when the schedule is slower.
	SecondsLeftAlarmPeriod time.Duration

	// AlarmEmail, when set, subscribes this address to the alarm topic.
	AlarmEmail string
	// CustomDomain, when set, serves the callback on this domain.
	CustomDomain *CustomDomain
	// LogRetention of the functions' and the API's log groups.
	// Default: three months.
	LogRetention awslogs.RetentionDays

	// Accounts, when set, deploys accounts mode (docs/design.md "Accounts mode"): many VBC
	// accounts in one deployment, one shared credentials secret, per-account secrets (or
	// DynamoDB items) created at each account's first consent, and an hourly sweep that
	// fans the accounts out through an SQS queue to the refresher. Nil: one account.
	Accounts *AccountsProps

	// SelfHeal creates the self-heal login secret {"username","password"} (a VBC user's
	// password, README.md "Self-heal") and lets the refresher read it: the refresher then
	// restores a provably lost chain with the password grant (docs/chain-safety.md). Off by
	// default; one account only.
	SelfHeal bool
}

// TokenKeeper is the construct: key, secrets, functions, API, schedule,
// dead-letter queue, alarms. Its fields give access to the resources for
// further wiring (for example extra alarms or dashboards).
type TokenKeeper struct {
	// Construct is the scope under which every resource is created.
	Construct constructs.Construct

	Key               awskms.Key
	CredentialsSecret awssecretsmanager.Secret
	PairSecret        awssecretsmanager.Secret // nil in accounts mode
	AccessSecret      awssecretsmanager.Secret // nil in accounts mode
	SelfHealSecret    awssecretsmanager.Secret // nil without SelfHeal

	// Accounts mode (nil otherwise): the prefix of the per-account secret names (a token
	// when it defaults to the stack's name), the key of the accounts' secrets or table
	// items, the table (DynamoDB backend), the queue the sweep fills and the refresher
	// consumes, its dead-letter queue, and the event source mapping.
	AccountSecretPrefix    *string
	AccountKey             awskms.Key
	AccountTable           awsdynamodb.Table
	AccountQueue           awssqs.Queue
	AccountDeadLetterQueue awssqs.Queue
	AccountQueueMapping    awslambda.EventSourceMapping

	Callback         awslambda.Function
	Refresher        awslambda.Function
	Api              awsapigatewayv2.HttpApi
	Rule             awsevents.Rule
	DeadLetterQueue  awssqs.Queue
	AlarmTopic       awssns.Topic
	CustomDomainName awsapigatewayv2.DomainName // nil without CustomDomain

	// Log groups of the functions and of the API's access log.
	CallbackLogs, RefresherLogs, ApiAccessLogs awslogs.LogGroup
	// Alarms by name suffix (AlarmRefreshTokenExpiring, ...); every one has a
	// runbook entry in README.md under "Operations runbook".
	Alarms map[string]awscloudwatch.Alarm
	// Dashboard shows the refresh token's lifetime, refresh outcomes per day,
	// errors, dead letters and the callback's 5xx.
	Dashboard awscloudwatch.Dashboard

	// CallbackURL is the redirect URL to register in the VBC developer portal.
	CallbackURL *string

	props             TokenKeeperProps
	callbackRoutes    *[]awsapigatewayv2.HttpRoute
	emailSubscription awssns.Subscription // nil without AlarmEmail
}

// NewTokenKeeper creates the keeper under scope. It panics, as CDK
// constructors do, when props are invalid (for example a code directory
// without a bootstrap binary, or an unparsable duration).
func NewTokenKeeper(scope constructs.Construct, id string, props *TokenKeeperProps) *TokenKeeper {
	p := withDefaults(props)
	if err := p.validate(); err != nil {
		panic(fmt.Sprintf("keeper.NewTokenKeeper(%q): %v", id, err))
	}

	c := constructs.NewConstruct(scope, jsii.String(id))
	k := &TokenKeeper{Construct: c, props: p}
	stack := awscdk.Stack_Of(c)
	if k.props.NamePrefix == "" {
		k.props.NamePrefix = *stack.StackName()
	}

	k.createSecrets(c)
	if k.accounts() {
		k.createAccountStorage(c)
	}
	k.createAPI(c)
	k.createFunctions(c, stack)
	if k.accounts() {
		k.consumeAccountQueue(c)
	}
	k.routeCallback()
	k.scheduleRefresher(c)
	k.createAlarms(c)
	k.createDashboard(c)
	k.suppressNagFindings()
	return k
}

func withDefaults(props *TokenKeeperProps) TokenKeeperProps {
	var p TokenKeeperProps
	if props != nil {
		p = *props
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&p.AuthorizeURL, DefaultAuthorizeURL)
	def(&p.TokenURL, DefaultTokenURL)
	def(&p.Scope, DefaultScope)
	if p.SelfHeal {
		def(&p.Schedule, SelfHealSchedule)
	}
	def(&p.Schedule, DefaultSchedule)
	def(&p.RefreshMargin, DefaultRefreshMargin)
	def(&p.RefreshMaxAge, DefaultRefreshMaxAge)
	if p.SecondsLeftAlarmPeriod == 0 {
		p.SecondsLeftAlarmPeriod = time.Hour
	}
	if p.LogRetention == "" {
		p.LogRetention = awslogs.RetentionDays_THREE_MONTHS
	}
	if p.Accounts != nil {
		a := *p.Accounts // a copy: the caller's props stay as given
		a.withDefaults()
		p.Accounts = &a
	}
	return p
}

func (p TokenKeeperProps) validate() error {
	var problems []string
	type field struct{ name, value string }
	for _, f := range []field{{"CallbackCodeDir", p.CallbackCodeDir}, {"RefresherCodeDir", p.RefresherCodeDir}} {
		name, dir := f.name, f.value
		if dir == "" {
			continue // built from source
		}
		if fi, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil || fi.IsDir() {
			problems = append(problems, fmt.Sprintf("%s %q holds no bootstrap binary "+
				"(run `make build` first, or leave it empty to build from source)", name, dir))
		}
	}
	if p.CallbackCodeDir == "" || p.RefresherCodeDir == "" {
		if _, err := lookGo(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if p.NamePrefix != "" && !namePrefixPattern.MatchString(p.NamePrefix) {
		problems = append(problems, fmt.Sprintf("NamePrefix %q must be 1-200 letters, digits, - or _", p.NamePrefix))
	}
	for _, f := range []field{{"AuthorizeURL", p.AuthorizeURL}, {"TokenURL", p.TokenURL}} {
		if !strings.HasPrefix(f.value, "https://") {
			problems = append(problems, fmt.Sprintf("%s %q must be an https URL", f.name, f.value))
		}
	}
	for _, f := range []field{{"RefreshMargin", p.RefreshMargin}, {"RefreshMaxAge", p.RefreshMaxAge}} {
		if v, err := time.ParseDuration(f.value); err != nil || v <= 0 {
			problems = append(problems, fmt.Sprintf("%s %q must be a positive Go duration such as 2h", f.name, f.value))
		}
	}
	if !strings.HasPrefix(p.Schedule, "rate(") && !strings.HasPrefix(p.Schedule, "cron(") {
		problems = append(problems, fmt.Sprintf("Schedule %q must be rate(...) or cron(...)", p.Schedule))
	}
	if p.SecondsLeftAlarmPeriod < time.Minute || p.SecondsLeftAlarmPeriod%time.Minute != 0 {
		problems = append(problems, "SecondsLeftAlarmPeriod must be a whole number of minutes")
	}
	if d := p.CustomDomain; d != nil && (d.DomainName == "" || d.CertificateArn == "") {
		problems = append(problems, "CustomDomain needs both DomainName and CertificateArn")
	}
	if p.Accounts != nil {
		problems = append(problems, p.Accounts.problems()...)
		if p.SelfHeal {
			problems = append(problems, "SelfHeal keeps one VBC user's login and works for one account only: "+
				"it cannot be combined with Accounts")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid props: %s", strings.Join(problems, "; "))
	}
	return nil
}

func (k *TokenKeeper) createSecrets(c constructs.Construct) {
	// One customer-managed key for the stack's secrets. RETAIN: the retained
	// secrets below would be unreadable without it.
	k.Key = awskms.NewKey(c, jsii.String("Key"), &awskms.KeyProps{
		Description:       jsii.String("vbctoken: encrypts the VBC client credentials and token secrets"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})
	secret := func(id, description, initial string, removal awscdk.RemovalPolicy) awssecretsmanager.Secret {
		return awssecretsmanager.NewSecret(c, jsii.String(id), &awssecretsmanager.SecretProps{
			Description:   jsii.String(description),
			EncryptionKey: k.Key,
			// A fixed, non-secret placeholder (never a generated value): the
			// admin or the functions overwrite it with PutSecretValue.
			SecretStringValue: awscdk.SecretValue_UnsafePlainText(jsii.String(initial)),
			RemovalPolicy:     removal,
		})
	}
	// Credentials: RETAIN, re-entering them means a trip to the VBC portal.
	k.CredentialsSecret = secret("Credentials",
		`vbctoken: VBC OAuth client credentials {"client_id","client_secret"}; written once by an admin`,
		InitialCredentials, awscdk.RemovalPolicy_RETAIN)
	if k.props.SelfHeal {
		// DESTROY: a VBC user's password should not outlive the deployment that needs it
		// (Secrets Manager still keeps a deleted secret recoverable for its recovery window).
		k.SelfHealSecret = secret("SelfHealLogin",
			`vbctoken: self-heal login {"username","password"} of a dedicated VBC user; read only by the refresher`,
			InitialSelfHealLogin, awscdk.RemovalPolicy_DESTROY)
	}
	if k.accounts() {
		// Accounts mode: the keeper creates each account's secrets (or items) itself.
		return
	}
	// Pair: RETAIN, losing it breaks the refresh chain (re-consent in a browser).
	k.PairSecret = secret("TokenPair",
		"vbctoken: VBC token pair (source of truth); written only by the callback, the refresher and the admin CLI",
		InitialPair, awscdk.RemovalPolicy_RETAIN)
	// Access: DESTROY, it is derived from the pair and rewritten at the next refresh.
	k.AccessSecret = secret("AccessToken",
		"vbctoken: VBC access token for apps (read-only for them); derived from the token pair",
		InitialAccess, awscdk.RemovalPolicy_DESTROY)
}

func (k *TokenKeeper) createAPI(c constructs.Construct) {
	k.Api = awsapigatewayv2.NewHttpApi(c, jsii.String("Api"), &awsapigatewayv2.HttpApiProps{
		ApiName:     awscdk.Fn_Join(jsii.String(""), &[]*string{awscdk.Stack_Of(c).StackName(), jsii.String("-callback")}),
		Description: jsii.String("vbctoken: OAuth redirect target (GET /callback only)"),
		// The $default stage is added below, with throttling and access logs.
		CreateDefaultStage: jsii.Bool(false),
	})

	var mapping *awsapigatewayv2.DomainMappingOptions
	if d := k.props.CustomDomain; d != nil {
		k.CustomDomainName = awsapigatewayv2.NewDomainName(c, jsii.String("Domain"), &awsapigatewayv2.DomainNameProps{
			DomainName:  jsii.String(d.DomainName),
			Certificate: awscertificatemanager.Certificate_FromCertificateArn(c, jsii.String("Certificate"), jsii.String(d.CertificateArn)),
		})
		mapping = &awsapigatewayv2.DomainMappingOptions{DomainName: k.CustomDomainName}
		k.CallbackURL = jsii.String("https://" + d.DomainName + CallbackPath)
	} else {
		// From the Api resource's own attribute: the Api does not depend on the
		// function, so the function's environment may depend on it (no cycle).
		k.CallbackURL = awscdk.Fn_Join(jsii.String(""), &[]*string{k.Api.ApiEndpoint(), jsii.String(CallbackPath)})
	}

	stage := k.Api.AddStage(jsii.String("DefaultStage"), &awsapigatewayv2.HttpStageOptions{
		StageName:     jsii.String("$default"),
		AutoDeploy:    jsii.Bool(true),
		Throttle:      &awsapigatewayv2.ThrottleSettings{BurstLimit: jsii.Number(throttleBurst), RateLimit: jsii.Number(throttleRate)},
		DomainMapping: mapping,
	})

	// Access logs without the query string: it carries the consent code and state.
	accessLogs := awslogs.NewLogGroup(c, jsii.String("ApiAccessLogs"), &awslogs.LogGroupProps{
		Retention: k.props.LogRetention,
	})
	k.ApiAccessLogs = accessLogs
	cfnStage := stage.Node().DefaultChild().(awsapigatewayv2.CfnStage)
	cfnStage.SetAccessLogSettings(&awsapigatewayv2.CfnStage_AccessLogSettingsProperty{
		DestinationArn: accessLogs.LogGroupArn(),
		Format: jsii.String(`{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",` +
			`"requestTime":"$context.requestTime","method":"$context.httpMethod","path":"$context.path",` +
			`"routeKey":"$context.routeKey","status":"$context.status","responseLength":"$context.responseLength",` +
			`"integrationStatus":"$context.integrationStatus","integrationError":"$context.integrationErrorMessage",` +
			`"latency":"$context.responseLatency"}`),
	})
}

// Memory and timeout. Go binaries idle at 20–30 MiB, so 128 MB would fit both;
// memory also buys CPU, which shortens TLS handshakes and cold starts.
//   - callback: 256 MB, because an admin waits on it (cold start, a TLS call
//     to VBC and three Secrets Manager calls); 15 s timeout, well under API
//     Gateway's 30 s integration limit so the admin gets our error page, not
//     a gateway timeout.
//   - refresher: 128 MB, a background job where a few hundred milliseconds do
//     not matter; 60 s timeout leaves room for the token call's retries with
//     backoff.
//
// Both run a handful of times a day, so either size costs well under a cent a month.
const (
	callbackMemoryMB  = 256
	callbackTimeout   = 15 * time.Second
	refresherMemoryMB = 128
	refresherTimeout  = 60 * time.Second
)

func (k *TokenKeeper) createFunctions(c constructs.Construct, stack awscdk.Stack) {
	common := map[string]*string{
		contract.EnvCredentialsSecretID: k.CredentialsSecret.SecretArn(),
		contract.EnvAuthorizeURL:        jsii.String(k.props.AuthorizeURL),
		contract.EnvTokenURL:            jsii.String(k.props.TokenURL),
		contract.EnvScope:               jsii.String(k.props.Scope),
		contract.EnvPKCE:                jsii.String(strconv.FormatBool(k.props.PKCE)),
	}
	// Single writer of one pair: two refreshers at once would rotate the refresh token
	// twice and the loser would present a dead token.
	reserved := 1
	if k.accounts() {
		k.accountEnv(common)
		// Each account's chain is guarded by its own lease (docs/chain-safety.md); the
		// refresher runs the hourly sweep beside the mapping's concurrent batches.
		reserved = k.props.Accounts.MaxConcurrency + 1
	} else {
		common[contract.EnvTokenSecretID] = k.PairSecret.SecretArn()
		common[contract.EnvAccessSecretID] = k.AccessSecret.SecretArn()
	}
	callbackEnv := clone(common)
	callbackEnv[contract.EnvRedirectURL] = k.CallbackURL
	refresherEnv := clone(common)
	refresherEnv[contract.EnvRefreshMargin] = jsii.String(k.props.RefreshMargin)
	refresherEnv[contract.EnvRefreshMaxAge] = jsii.String(k.props.RefreshMaxAge)
	if k.SelfHealSecret != nil {
		// The refresher alone: a consent through the callback never needs a password.
		refresherEnv[contract.EnvSelfHealSecretID] = k.SelfHealSecret.SecretArn()
	}
	if k.accounts() {
		refresherEnv[contract.EnvAccountQueueURL] = k.AccountQueue.QueueUrl()
		if a := k.props.Accounts; a.Backend != BackendDynamoDB {
			// Every refresher environment paces its Secrets Manager writes so that all of them
			// together stay inside the quota (docs/fleet.md).
			refresherEnv[contract.EnvAccountWriteRate] = jsii.String(strconv.FormatFloat(
				float64(contract.SecretsManagerWriteBudget)/float64(a.MaxConcurrency), 'g', -1, 64))
		}
	}

	k.DeadLetterQueue = awssqs.NewQueue(c, jsii.String("RefresherDeadLetters"), &awssqs.QueueProps{
		// SSE-SQS: the messages are schedule events (no secret), and
		// EventBridge can deliver to it without a KMS key policy grant.
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
	})

	src := k.goSource()
	k.Callback, k.CallbackLogs = k.newFunction(c, stack, "Callback", functionSpec{
		description: "vbctoken: OAuth callback (GET /callback), exchanges the consent code and stores the token pair",
		code:        functionCode(k.props.CallbackCodeDir, CallbackPackage, src),
		memoryMB:    callbackMemoryMB,
		timeout:     callbackTimeout,
		env:         callbackEnv,
	})
	k.Refresher, k.RefresherLogs = k.newFunction(c, stack, "Refresher", functionSpec{
		description:         "vbctoken: scheduled refresher, the single writer that keeps the VBC token pair alive",
		code:                functionCode(k.props.RefresherCodeDir, RefresherPackage, src),
		memoryMB:            refresherMemoryMB,
		timeout:             refresherTimeout,
		env:                 refresherEnv,
		refresher:           true,
		reservedConcurrency: float64(reserved),
		// Asynchronous invocations (the schedule) that still fail after
		// Lambda's retries land in the dead-letter queue.
		deadLetterQueue: k.DeadLetterQueue,
	})
}

// goSource locates the Go toolchain and the build directory, when a function is built
// from source (validate has checked that go exists).
func (k *TokenKeeper) goSource() *goSource {
	if k.props.CallbackCodeDir != "" && k.props.RefresherCodeDir != "" {
		return nil
	}
	goBin, err := lookGo()
	if err != nil {
		panic(fmt.Sprintf("keeper: %v", err))
	}
	dir := k.props.BuildDir
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		panic(fmt.Sprintf("keeper: BuildDir %q: %v", dir, err))
	}
	return &goSource{goBin: goBin, dir: abs}
}

type functionSpec struct {
	description         string
	code                awslambda.Code
	memoryMB            float64
	timeout             time.Duration
	env                 map[string]*string
	refresher           bool
	reservedConcurrency float64
	deadLetterQueue     awssqs.IQueue
}

func (k *TokenKeeper) newFunction(c constructs.Construct, stack awscdk.Stack, id string, spec functionSpec) (awslambda.Function, awslogs.LogGroup) {
	logs := awslogs.NewLogGroup(c, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		Retention: k.props.LogRetention,
	})
	// An explicit role with no managed policy: AWSLambdaBasicExecutionRole
	// would allow logs actions on every log group ("*").
	role := awsiam.NewRole(c, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("vbctoken " + strings.ToLower(id) + ": its log group and the token secrets, nothing else"),
	})
	logs.GrantWrite(role)
	k.grantFunctionSecrets(role, stack, spec.refresher)

	props := &awslambda.FunctionProps{
		Description:           jsii.String(spec.description),
		Runtime:               awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:          awslambda.Architecture_ARM_64(),
		Handler:               jsii.String("bootstrap"),
		Code:                  spec.code,
		MemorySize:            jsii.Number(spec.memoryMB),
		Timeout:               awscdk.Duration_Seconds(jsii.Number(spec.timeout.Seconds())),
		Environment:           &spec.env,
		Role:                  role,
		LogGroup:              logs,
		LoggingFormat:         awslambda.LoggingFormat_JSON,
		ApplicationLogLevelV2: awslambda.ApplicationLogLevel_INFO,
		SystemLogLevelV2:      awslambda.SystemLogLevel_INFO,
	}
	if spec.reservedConcurrency > 0 {
		props.ReservedConcurrentExecutions = jsii.Number(spec.reservedConcurrency)
	}
	if spec.deadLetterQueue != nil {
		props.DeadLetterQueue = spec.deadLetterQueue
		props.RetryAttempts = jsii.Number(2)
		props.MaxEventAge = awscdk.Duration_Hours(jsii.Number(1))
	}
	return awslambda.NewFunction(c, jsii.String(id), props), logs
}

// grantFunctionSecrets gives a function role exactly the Secrets Manager
// actions the functions use, each on exactly its secret, and the KMS actions
// Secrets Manager needs on their behalf (GetSecretValue: kms:Decrypt;
// PutSecretValue: kms:GenerateDataKey and kms:Decrypt), only through Secrets
// Manager and only for the stack's secrets. In accounts mode the functions
// read the shared credentials and use the backend's statements
// (accountStatements); the refresher alone reads the self-heal login.
func (k *TokenKeeper) grantFunctionSecrets(role awsiam.IRole, stack awscdk.Stack, refresher bool) {
	statements := []*awsiam.PolicyStatementProps{{
		Sid:       jsii.String("ReadClientCredentials"),
		Actions:   jsii.Strings("secretsmanager:GetSecretValue"),
		Resources: &[]*string{k.CredentialsSecret.SecretArn()},
	}}
	selfHeal := refresher && k.SelfHealSecret != nil
	if selfHeal {
		statements = append(statements, &awsiam.PolicyStatementProps{
			Sid:       jsii.String("ReadSelfHealLogin"),
			Actions:   jsii.Strings("secretsmanager:GetSecretValue"),
			Resources: &[]*string{k.SelfHealSecret.SecretArn()},
		})
	}
	if k.accounts() {
		statements = append(statements, &awsiam.PolicyStatementProps{
			// Only read: the stack key guards nothing else the functions use.
			Sid:       jsii.String("UseKeyForClientCredentials"),
			Actions:   jsii.Strings("kms:Decrypt"),
			Resources: &[]*string{k.Key.KeyArn()},
			Conditions: &map[string]interface{}{
				"StringEquals": map[string]interface{}{
					"kms:ViaService":                  secretsManagerService(stack),
					"kms:EncryptionContext:SecretARN": []*string{k.CredentialsSecret.SecretArn()},
				},
			},
		})
		statements = append(statements, k.accountStatements(stack, refresher)...)
		for _, s := range statements {
			role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(s))
		}
		return
	}
	keySecrets := []*string{k.CredentialsSecret.SecretArn(), k.PairSecret.SecretArn(), k.AccessSecret.SecretArn()}
	if selfHeal {
		keySecrets = append(keySecrets, k.SelfHealSecret.SecretArn())
	}
	statements = append(statements, []*awsiam.PolicyStatementProps{
		{
			Sid: jsii.String("ReadAndSwapTokenPair"),
			Actions: jsii.Strings("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
				"secretsmanager:UpdateSecretVersionStage"),
			Resources: &[]*string{k.PairSecret.SecretArn()},
		},
		{
			Sid:       jsii.String("WriteAccessToken"),
			Actions:   jsii.Strings("secretsmanager:PutSecretValue"),
			Resources: &[]*string{k.AccessSecret.SecretArn()},
		},
		{
			Sid:       jsii.String("UseKeyForTokenSecrets"),
			Actions:   jsii.Strings("kms:Decrypt", "kms:GenerateDataKey"),
			Resources: &[]*string{k.Key.KeyArn()},
			Conditions: &map[string]interface{}{
				"StringEquals": map[string]interface{}{
					"kms:ViaService":                  secretsManagerService(stack),
					"kms:EncryptionContext:SecretARN": keySecrets,
				},
			},
		},
	}...)
	for _, s := range statements {
		role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(s))
	}
}

// secretsManagerService is the kms:ViaService value of this stack's region.
func secretsManagerService(stack awscdk.Stack) *string {
	return awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("secretsmanager."), stack.Region(), jsii.String("."), stack.UrlSuffix(),
	})
}

func (k *TokenKeeper) routeCallback() {
	integration := awsapigatewayv2integrations.NewHttpLambdaIntegration(jsii.String("CallbackIntegration"), k.Callback,
		&awsapigatewayv2integrations.HttpLambdaIntegrationProps{
			PayloadFormatVersion: awsapigatewayv2.PayloadFormatVersion_VERSION_2_0(),
		})
	k.callbackRoutes = k.Api.AddRoutes(&awsapigatewayv2.AddRoutesOptions{
		Path:        jsii.String(CallbackPath),
		Methods:     &[]awsapigatewayv2.HttpMethod{awsapigatewayv2.HttpMethod_GET},
		Integration: integration,
	})
}

func (k *TokenKeeper) scheduleRefresher(c constructs.Construct) {
	k.Rule = awsevents.NewRule(c, jsii.String("RefreshSchedule"), &awsevents.RuleProps{
		Description: jsii.String("vbctoken: runs the refresher; most runs only read the pair"),
		Schedule:    awsevents.Schedule_Expression(jsii.String(k.props.Schedule)),
	})
	k.Rule.AddTarget(awseventstargets.NewLambdaFunction(k.Refresher, &awseventstargets.LambdaFunctionProps{
		// Retries of the delivery to Lambda; failures land in the DLQ.
		RetryAttempts:   jsii.Number(2),
		MaxEventAge:     awscdk.Duration_Hours(jsii.Number(1)),
		DeadLetterQueue: k.DeadLetterQueue,
	}))
}

// Alarm names, after NamePrefix and a dash (VbcToken-refresh-token-expiring).
// README.md's "Operations runbook" has a heading "Alarm `<name>`" for each, which
// the alarm's description points to; a test holds the two together.
const (
	AlarmRefreshTokenExpiring  = "refresh-token-expiring"
	AlarmRefresherNotReporting = "refresher-not-reporting"
	AlarmRefresherErrors       = "refresher-errors"
	AlarmCallback5xx           = "callback-5xx"
	AlarmDeadLetters           = "refresher-dead-letters"
)

// alarmPeriods: the refresher's alarms fire after this many periods in a row,
// so one run that slips across a period boundary (a retry, EventBridge
// jitter) is not an alarm; the 3-day threshold leaves ample time anyway.
const alarmPeriods = 2

func (k *TokenKeeper) createAlarms(c constructs.Construct) {
	// Not KMS-encrypted: alarm messages hold no secret, and a CloudWatch →
	// encrypted-topic path would need the secrets' key policy to trust
	// cloudwatch.amazonaws.com. Publishing requires TLS.
	k.AlarmTopic = awssns.NewTopic(c, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("vbctoken alarms"),
		EnforceSSL:  jsii.Bool(true),
	})
	if k.props.AlarmEmail != "" {
		k.emailSubscription = k.AlarmTopic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(k.props.AlarmEmail), nil))
	}
	action := awscloudwatchactions.NewSnsAction(k.AlarmTopic)
	k.Alarms = map[string]awscloudwatch.Alarm{}
	alarm := func(id, name, description string, metric awscloudwatch.IMetric, op awscloudwatch.ComparisonOperator,
		threshold float64, missing awscloudwatch.TreatMissingData, periods float64) {
		a := awscloudwatch.NewAlarm(c, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmName: jsii.String(k.props.NamePrefix + "-" + name),
			AlarmDescription: jsii.String("vbctoken: " + description +
				" Runbook: README.md, Operations runbook, Alarm `" + name + "`."),
			Metric:             metric,
			ComparisonOperator: op,
			Threshold:          jsii.Number(threshold),
			EvaluationPeriods:  jsii.Number(periods),
			DatapointsToAlarm:  jsii.Number(periods),
			TreatMissingData:   missing,
		})
		a.AddAlarmAction(action)
		a.AddOkAction(action)
		k.Alarms[name] = a
	}
	period := awscdk.Duration_Minutes(jsii.Number(k.props.SecondsLeftAlarmPeriod.Minutes()))

	// Missing data is "missing": a refresher that stopped reporting is the
	// not-reporting alarm's business; this one only judges what was reported.
	// Until the first consent the refresher reports 0, so it is in ALARM from
	// the first run after deployment until an admin consents.
	// In accounts mode every account's run reports the metric (the account is a property,
	// not a dimension), so its Minimum is the worst account's.
	alarm("RefreshTokenExpiringAlarm", AlarmRefreshTokenExpiring,
		"a refresh token expires in under 3 days (0 = not connected or the chain is gone; accounts mode: the worst account). "+
			"Run `vbctoken status` (accounts mode: `vbctoken accounts`); if it exits 3, open a new consent link (ConsentUrlCommand output).",
		k.metricSecondsLeft(period), awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
		RefreshTokenAlarmThreshold.Seconds(), awscloudwatch.TreatMissingData_MISSING, alarmPeriods)

	// Every run reports one RefreshOutcome; none for two periods means the
	// refresher does not run (schedule disabled, throttled, crashing at start,
	// timing out) and nothing keeps the chain alive. Right after deployment it
	// is in ALARM until the schedule's first run (within the period).
	alarm("RefresherNotReportingAlarm", AlarmRefresherNotReporting,
		"the refresher reported no run for 2 periods: nothing is refreshing the token pair.",
		k.metricRuns(period), awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
		1, awscloudwatch.TreatMissingData_BREACHING, alarmPeriods)

	alarm("RefresherErrorsAlarm", AlarmRefresherErrors,
		"the refresher failed; see its log group (re-consent needed is logged at ERROR).",
		k.Refresher.MetricErrors(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Hours(jsii.Number(1)), Statistic: jsii.String("Sum")}),
		awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD, 1, awscloudwatch.TreatMissingData_NOT_BREACHING, 1)

	alarm("CallbackServerErrorsAlarm", AlarmCallback5xx,
		"the callback answered 5xx (VBC or Secrets Manager failed, or the function crashed); see its log group.",
		k.metricCallback5xx(awscdk.Duration_Minutes(jsii.Number(5))),
		awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD, 1, awscloudwatch.TreatMissingData_NOT_BREACHING, 1)

	alarm("DeadLettersAlarm", AlarmDeadLetters,
		"scheduled refresher events failed after retries and sit in the dead-letter queue.",
		k.DeadLetterQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Maximum")}),
		awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD, 1, awscloudwatch.TreatMissingData_NOT_BREACHING, 1)

	if k.accounts() {
		k.accountAlarms(alarm)
	}
}

// alarmFunc creates alarm NamePrefix-name on metric, firing when `periods` consecutive
// periods breach, with the runbook pointer in its description.
type alarmFunc func(id, name, description string, metric awscloudwatch.IMetric, op awscloudwatch.ComparisonOperator,
	threshold float64, missing awscloudwatch.TreatMissingData, periods float64)

// metricSecondsLeft is the refresher's VBCToken/RefreshTokenSecondsLeft, minimum per period.
func (k *TokenKeeper) metricSecondsLeft(period awscdk.Duration) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(contract.MetricNamespace),
		MetricName:    jsii.String(contract.MetricRefreshTokenSecondsLeft),
		DimensionsMap: &map[string]*string{contract.MetricDimensionFunctionName: k.Refresher.FunctionName()},
		Statistic:     jsii.String("Minimum"),
		Period:        period,
	})
}

// metricRuns counts the refresher's reported runs (RefreshOutcome without the Outcome dimension).
func (k *TokenKeeper) metricRuns(period awscdk.Duration) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(contract.MetricNamespace),
		MetricName:    jsii.String(contract.MetricRefreshOutcome),
		DimensionsMap: &map[string]*string{contract.MetricDimensionFunctionName: k.Refresher.FunctionName()},
		Statistic:     jsii.String("SampleCount"),
		Period:        period,
	})
}

// metricCallback5xx is the HTTP API's 5xx count.
func (k *TokenKeeper) metricCallback5xx(period awscdk.Duration) awscloudwatch.Metric {
	return k.Api.MetricServerError(&awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("Sum")})
}

// namePrefixPattern is what alarm and dashboard names accept, with room for the suffixes.
var namePrefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// createDashboard draws what an operator looks at first: the alarms, the refresh token's
// lifetime, what each refresher run did per day, errors, dead letters, callback 5xx.
func (k *TokenKeeper) createDashboard(c constructs.Construct) {
	hour, day := awscdk.Duration_Hours(jsii.Number(1)), awscdk.Duration_Days(jsii.Number(1))
	alarms := make([]interfacesawscloudwatch.IAlarmRef, 0, len(k.Alarms))
	names := []string{AlarmRefreshTokenExpiring, AlarmRefresherNotReporting, AlarmRefresherErrors,
		AlarmDeadLetters, AlarmCallback5xx}
	if k.accounts() {
		names = append(names, AlarmAccountQueueBehind, AlarmAccountDeadLetters)
	}
	for _, name := range names {
		alarms = append(alarms, k.Alarms[name])
	}
	labelled := func(m awscloudwatch.Metric, label string) awscloudwatch.IMetric {
		return m.With(&awscloudwatch.MetricOptions{Label: jsii.String(label)})
	}
	// Outcomes are found by SEARCH, not listed: whatever values the refresher reports
	// (vbctoken.Outcome, including ones added later) each get a line.
	outcomes := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String(fmt.Sprintf(`SEARCH('{%s,%s,%s} MetricName="%s" %s="%s"', 'Sum', 86400)`,
			contract.MetricNamespace, contract.MetricDimensionFunctionName, contract.MetricDimensionOutcome,
			contract.MetricRefreshOutcome, contract.MetricDimensionFunctionName, *k.Refresher.FunctionName())),
		// A dynamic label: each line is named by its outcome.
		Label:  jsii.String("${PROP('Dim." + contract.MetricDimensionOutcome + "')}"),
		Period: day,
	})
	lambdaErrors := func(fn awslambda.Function, label string) awscloudwatch.IMetric {
		return fn.MetricErrors(&awscloudwatch.MetricOptions{Period: hour, Statistic: jsii.String("Sum"), Label: jsii.String(label)})
	}
	rows := [][]awscloudwatch.IWidget{
		{awscloudwatch.NewAlarmStatusWidget(&awscloudwatch.AlarmStatusWidgetProps{
			Title: jsii.String("Alarms (runbook: README.md, Operations runbook)"), Alarms: &alarms, Width: jsii.Number(24), Height: jsii.Number(3),
		})},
		{
			thresholdGraph("Refresh token: seconds left (minimum per hour)", labelled(k.metricSecondsLeft(hour), "seconds left"),
				RefreshTokenAlarmThreshold.Seconds(), "alarm below 3 days", 12),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title:   jsii.String("Refresher runs per day by outcome"),
				Left:    &[]awscloudwatch.IMetric{outcomes},
				Stacked: jsii.Bool(true),
				Period:  day,
				Width:   jsii.Number(12), Height: jsii.Number(6),
			}),
		},
		{
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String("Errors per hour"),
				Left: &[]awscloudwatch.IMetric{
					lambdaErrors(k.Refresher, "refresher errors"),
					lambdaErrors(k.Callback, "callback errors"),
					k.Refresher.MetricThrottles(&awscloudwatch.MetricOptions{Period: hour, Statistic: jsii.String("Sum"), Label: jsii.String("refresher throttles")}),
				},
				Width: jsii.Number(8), Height: jsii.Number(6),
			}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String("Dead letters (refresher events that failed after retries)"),
				Left: &[]awscloudwatch.IMetric{k.DeadLetterQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{
					Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Maximum"), Label: jsii.String("messages in the queue"),
				})},
				Width: jsii.Number(8), Height: jsii.Number(6),
			}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String("Callback responses"),
				Left: &[]awscloudwatch.IMetric{
					labelled(k.metricCallback5xx(awscdk.Duration_Minutes(jsii.Number(5))), "5xx"),
					k.Api.MetricClientError(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum"), Label: jsii.String("4xx (bad or reused links)")}),
				},
				Width: jsii.Number(8), Height: jsii.Number(6),
			}),
		},
		{awscloudwatch.NewTextWidget(&awscloudwatch.TextWidgetProps{
			Markdown: awscdk.Fn_Join(jsii.String(""), &[]*string{
				jsii.String("**Log groups** refresher `"), k.RefresherLogs.LogGroupName(),
				jsii.String("`, callback `"), k.CallbackLogs.LogGroupName(),
				jsii.String("`, API access `"), k.ApiAccessLogs.LogGroupName(),
				jsii.String("`. Every alarm has a runbook entry in README.md (Operations runbook, Alarm `<name>`)."),
			}),
			Width: jsii.Number(24), Height: jsii.Number(2),
		})},
	}
	if k.accounts() {
		// Before the text row: the fan-out is what an operator of a fleet looks at next.
		text := rows[len(rows)-1]
		rows = append(rows[:len(rows)-1], k.accountWidgets(), text)
	}
	widgets := make([]*[]awscloudwatch.IWidget, len(rows))
	for i := range rows {
		widgets[i] = &rows[i]
	}
	k.Dashboard = awscloudwatch.NewDashboard(c, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName:   jsii.String(k.props.NamePrefix),
		DefaultInterval: awscdk.Duration_Days(jsii.Number(14)),
		Widgets:         &widgets,
	})
}

// thresholdGraph draws one metric from 0 with its alarm's threshold as a line.
func thresholdGraph(title string, metric awscloudwatch.IMetric, threshold float64, label string, width float64) awscloudwatch.GraphWidget {
	return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
		Title:           jsii.String(title),
		Left:            &[]awscloudwatch.IMetric{metric},
		LeftAnnotations: &[]*awscloudwatch.HorizontalAnnotation{{Value: jsii.Number(threshold), Label: jsii.String(label)}},
		LeftYAxis:       &awscloudwatch.YAxisProps{Min: jsii.Number(0), ShowUnits: jsii.Bool(false)},
		Width:           jsii.Number(width), Height: jsii.Number(6),
	})
}

// GrantReadAccessToken lets grantee (an app's role) read the access-token
// secret: secretsmanager:GetSecretValue and DescribeSecret on that secret
// alone, and kms:Decrypt on the key only through Secrets Manager and only for
// that secret. Nothing on the token pair or the client credentials. In accounts
// mode there is no such secret: it panics (use GrantReadAccount).
func (k *TokenKeeper) GrantReadAccessToken(grantee awsiam.IGrantable) awsiam.Grant {
	if k.accounts() {
		panic("keeper.GrantReadAccessToken: accounts mode has no single access secret; use GrantReadAccount")
	}
	read := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"),
		ResourceArns: &[]*string{k.AccessSecret.SecretArn()},
	})
	decrypt := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("kms:Decrypt"),
		ResourceArns: &[]*string{k.Key.KeyArn()},
		Conditions: &map[string]*map[string]interface{}{
			"StringEquals": {
				"kms:ViaService":                  secretsManagerService(awscdk.Stack_Of(k.Construct)),
				"kms:EncryptionContext:SecretARN": k.AccessSecret.SecretArn(),
			},
		},
	})
	return read.Combine(decrypt)
}

// ConsentCommand is the command line an admin runs (with AWS credentials that
// may read the credentials and pair secrets) to print the consent link. In
// accounts mode it names the fleet's storage instead of the two secrets and
// ends with `vbctoken consent-url --account "$ACCOUNT"`: set ACCOUNT first.
func (k *TokenKeeper) ConsentCommand() *string {
	stack := awscdk.Stack_Of(k.Construct)
	parts := []*string{
		jsii.String("AWS_REGION="), stack.Region(),
		jsii.String(" " + contract.EnvCredentialsSecretID + "="), k.CredentialsSecret.SecretArn(),
	}
	command := "vbctoken consent-url"
	if k.accounts() {
		parts = append(parts, jsii.String(" "+contract.EnvAccountSecretPrefix+"="), k.AccountSecretPrefix)
		switch k.props.Accounts.Backend {
		case BackendSecretsManager:
			parts = append(parts, jsii.String(" "+contract.EnvAccountKMSKeyID+"="), k.AccountKey.KeyArn())
		case BackendDynamoDB:
			parts = append(parts, jsii.String(" "+contract.EnvTableName+"="), k.AccountTable.TableName())
		}
		command += ` --account "$ACCOUNT"`
	} else {
		parts = append(parts,
			jsii.String(" "+contract.EnvTokenSecretID+"="), k.PairSecret.SecretArn(),
			jsii.String(" "+contract.EnvAccessSecretID+"="), k.AccessSecret.SecretArn())
	}
	parts = append(parts,
		jsii.String(" "+contract.EnvRedirectURL+"="), k.CallbackURL,
		jsii.String(fmt.Sprintf(" %s=%s %s=%s %s=%t %s",
			contract.EnvAuthorizeURL, shellQuote(k.props.AuthorizeURL), contract.EnvScope, shellQuote(k.props.Scope),
			contract.EnvPKCE, k.props.PKCE, command)))
	return awscdk.Fn_Join(jsii.String(""), &parts)
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func clone(m map[string]*string) map[string]*string {
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
