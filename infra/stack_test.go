package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/infra/keeper"
	"github.com/vbctoken/vbctoken/internal/contract"
)

// envNames returns the variables each function of a mode has: the common ones, the
// mode's, and each role's own.
func envNames(mode ...string) (callback, refresher []string) {
	common := []string{"VBC_AUTHORIZE_URL", "VBC_CREDENTIALS_SECRET_ID", "VBC_PKCE", "VBC_SCOPE", "VBC_TOKEN_URL"}
	var refresherOnly []string
	for _, m := range mode {
		switch m {
		case "one account":
			common = append(common, "VBC_ACCESS_SECRET_ID", "VBC_TOKEN_SECRET_ID")
		case "self-heal":
			refresherOnly = append(refresherOnly, "VBC_SELF_HEAL_SECRET_ID")
		case "secretsmanager", "dynamodb":
			common = append(common, "VBC_ACCOUNT_SECRET_PREFIX")
			refresherOnly = append(refresherOnly, "VBC_ACCOUNT_QUEUE_URL")
			if m == "secretsmanager" {
				common = append(common, "VBC_ACCOUNT_KMS_KEY_ID")
				// Paced writes: the quota is Secrets Manager's (DynamoDB on demand has none).
				refresherOnly = append(refresherOnly, "VBC_ACCOUNT_WRITE_RATE")
			} else {
				common = append(common, "VBC_TABLE_NAME")
			}
		}
	}
	callback = sortedCopy(append([]string{"VBC_REDIRECT_URL"}, common...))
	refresher = sortedCopy(append(append([]string{"VBC_REFRESH_MARGIN", "VBC_REFRESH_MAX_AGE"}, refresherOnly...), common...))
	return callback, refresher
}

func TestFunctions_RunGoBootstrapOnArm64WithJSONLogs(t *testing.T) {
	// GIVEN the default stack
	tpl := defaultStack.tpl

	// THEN there are exactly the two functions, both custom-runtime arm64
	// binaries logging JSON at INFO to a log group with 3 months' retention
	check(t, "function count", func() { tpl.ResourceCountIs(jsii.String("AWS::Lambda::Function"), jsii.Number(2)) })
	check(t, "function shape", func() {
		tpl.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
			"Runtime":       "provided.al2023",
			"Architectures": []string{"arm64"},
			"Handler":       "bootstrap",
			"LoggingConfig": map[string]any{
				"LogFormat":           "JSON",
				"ApplicationLogLevel": "INFO",
				"SystemLogLevel":      "INFO",
				"LogGroup":            assertions.Match_ObjectLike(&map[string]any{"Ref": assertions.Match_AnyValue()}),
			},
		})
	})
	check(t, "log retention", func() {
		tpl.AllResourcesProperties(jsii.String("AWS::Logs::LogGroup"), map[string]any{"RetentionInDays": 90})
	})
	// AND no custom resource (such as the logRetention one, whose role acts on "*")
	for id, r := range defaultStack.cfn.Resources {
		if strings.HasPrefix(r.Type, "Custom::") || r.Type == "AWS::CloudFormation::CustomResource" {
			t.Errorf("unexpected custom resource %s (%s)", id, r.Type)
		}
	}
}

func TestFunctions_EnvironmentNamesPerRole(t *testing.T) {
	for _, fx := range []struct {
		name string
		f    fixture
		mode []string
		// refs: variable → the output naming the resource it refers to
		callback, refresher map[string]string
	}{
		{"default", defaultStack, []string{"one account"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_TOKEN_SECRET_ID": "TokenSecretArn", "VBC_ACCESS_SECRET_ID": "AccessSecretArn"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_TOKEN_SECRET_ID": "TokenSecretArn", "VBC_ACCESS_SECRET_ID": "AccessSecretArn"}},
		// Self-heal: the refresher alone knows the login secret.
		{"custom", customStack, []string{"one account", "self-heal"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_TOKEN_SECRET_ID": "TokenSecretArn", "VBC_ACCESS_SECRET_ID": "AccessSecretArn"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_TOKEN_SECRET_ID": "TokenSecretArn", "VBC_ACCESS_SECRET_ID": "AccessSecretArn",
				"VBC_SELF_HEAL_SECRET_ID": "SelfHealSecretArn"}},
		// Accounts mode: no pair or access secret of the stack's own; the queue for the refresher.
		{"accounts", accountsStack, []string{"secretsmanager"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_ACCOUNT_KMS_KEY_ID": "AccountKeyArn"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_ACCOUNT_KMS_KEY_ID": "AccountKeyArn", "VBC_ACCOUNT_QUEUE_URL": "AccountQueueUrl"}},
		{"dynamo", dynamoStack, []string{"dynamodb"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_TABLE_NAME": "AccountTableName"},
			map[string]string{"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn", "VBC_TABLE_NAME": "AccountTableName", "VBC_ACCOUNT_QUEUE_URL": "AccountQueueUrl"}},
	} {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN the stack's functions, found by what triggers them
			c := fx.f.cfn
			callback, refresher := c.keeperFunctions(t)
			wantCallback, wantRefresher := envNames(fx.mode...)

			// THEN each has exactly the variables its role needs
			if got := sortedKeys(c.env(callback)); !reflect.DeepEqual(got, wantCallback) {
				t.Errorf("callback env = %v, want %v", got, wantCallback)
			}
			if got := sortedKeys(c.env(refresher)); !reflect.DeepEqual(got, wantRefresher) {
				t.Errorf("refresher env = %v, want %v", got, wantRefresher)
			}
			// AND the variables naming resources name those of the outputs
			for fn, want := range map[string]map[string]string{callback: fx.callback, refresher: fx.refresher} {
				env := c.env(fn)
				for name, output := range want {
					if !refersTo(env[name], c.outputRef(t, output)) {
						t.Errorf("%s %s = %v, want the resource of output %s", fn, name, env[name], output)
					}
				}
			}
		})
	}
}

func TestFunctions_AccountSecretPrefixDefaultsToTheStackName(t *testing.T) {
	// GIVEN the accounts stacks with the default prefix and with a prefix set
	_, dflt := accountsStack.cfn.keeperFunctions(t)
	_, tuned := tunedStack.cfn.keeperFunctions(t)

	// THEN the default is the stack's name at deployment + "/accounts/", and the
	// output says the same
	want := map[string]any{"Fn::Join": []any{"", []any{map[string]any{"Ref": "AWS::StackName"}, "/accounts/"}}}
	if got := accountsStack.cfn.env(dflt)["VBC_ACCOUNT_SECRET_PREFIX"]; !reflect.DeepEqual(got, want) {
		t.Errorf("default prefix = %v, want %v", got, want)
	}
	if got := accountsStack.cfn.Outputs["AccountSecretPrefix"].Value; !reflect.DeepEqual(got, want) {
		t.Errorf("AccountSecretPrefix output = %v, want %v", got, want)
	}
	if got := tunedStack.cfn.env(tuned)["VBC_ACCOUNT_SECRET_PREFIX"]; got != tunedPrefix {
		t.Errorf("prefix = %v, want %q", got, tunedPrefix)
	}
}

func TestFunctions_EnvironmentValuesFollowProps(t *testing.T) {
	// GIVEN the default stack and one with every prop set
	dc, cc := defaultStack.cfn, customStack.cfn
	dCallback, dRefresher := dc.keeperFunctions(t)
	cCallback, cRefresher := cc.keeperFunctions(t)

	// THEN the defaults are those of docs/design.md "Configuration"
	want := map[string]any{
		"VBC_AUTHORIZE_URL": "https://api.vonage.com/authorize", "VBC_TOKEN_URL": "https://api.vonage.com/token",
		"VBC_SCOPE": "openid", "VBC_PKCE": "false", "VBC_REFRESH_MARGIN": "2h", "VBC_REFRESH_MAX_AGE": "24h",
	}
	for name, v := range want {
		if got := dc.env(dRefresher)[name]; got != v {
			t.Errorf("default refresher %s = %v, want %v", name, got, v)
		}
		if _, shared := dc.env(dCallback)[name]; shared && dc.env(dCallback)[name] != v {
			t.Errorf("default callback %s = %v, want %v", name, dc.env(dCallback)[name], v)
		}
	}
	// AND the props reach the functions
	want = map[string]any{
		"VBC_TOKEN_URL": customTokenURL, "VBC_SCOPE": customScope, "VBC_PKCE": "true",
		"VBC_REFRESH_MARGIN": customMargin, "VBC_REFRESH_MAX_AGE": customMaxAge,
	}
	for name, v := range want {
		if got := cc.env(cRefresher)[name]; got != v {
			t.Errorf("custom %s = %v, want %v", name, got, v)
		}
	}
	// AND the redirect URL is the API's own endpoint (no dependency on the
	// function: no cycle), or the custom domain
	redirect, _ := json.Marshal(dc.env(dCallback)["VBC_REDIRECT_URL"])
	api := dc.ofType("AWS::ApiGatewayV2::Api")
	if len(api) != 1 || !strings.Contains(string(redirect), `"Fn::GetAtt":["`+api[0]+`","ApiEndpoint"]`) ||
		!strings.Contains(string(redirect), `"/callback"`) {
		t.Errorf("default VBC_REDIRECT_URL = %s, want the ApiEndpoint of %v + /callback", redirect, api)
	}
	if got := cc.env(cCallback)["VBC_REDIRECT_URL"]; got != "https://"+customDomain+"/callback" {
		t.Errorf("custom VBC_REDIRECT_URL = %v, want https://%s/callback", got, customDomain)
	}
}

func TestFunctions_MemoryTimeoutAndSingleWriter(t *testing.T) {
	// GIVEN the default stack's functions
	c := defaultStack.cfn
	callback, refresher := c.keeperFunctions(t)
	cb, rf := c.Resources[callback].Properties, c.Resources[refresher].Properties

	// THEN the refresher is the single writer and the callback answers
	// within API Gateway's 30 s integration limit
	if rf["ReservedConcurrentExecutions"] != 1.0 {
		t.Errorf("refresher ReservedConcurrentExecutions = %v, want 1", rf["ReservedConcurrentExecutions"])
	}
	// AND in accounts mode (a lease per account) it may run the sweep beside the
	// mapping's maximum concurrency
	for _, fx := range []struct {
		name string
		f    fixture
		want float64
	}{{"accounts", accountsStack, keeper.DefaultAccountsMaxConcurrency + 1}, {"tuned", tunedStack, tunedMaxConcurrency + 1}} {
		_, r := fx.f.cfn.keeperFunctions(t)
		if got := fx.f.cfn.Resources[r].Properties["ReservedConcurrentExecutions"]; got != fx.want {
			t.Errorf("%s refresher ReservedConcurrentExecutions = %v, want %v", fx.name, got, fx.want)
		}
	}
	if _, ok := cb["ReservedConcurrentExecutions"]; ok {
		t.Errorf("callback has reserved concurrency %v, want none", cb["ReservedConcurrentExecutions"])
	}
	if cb["Timeout"] != 15.0 || cb["MemorySize"] != 256.0 {
		t.Errorf("callback timeout/memory = %v/%v, want 15/256", cb["Timeout"], cb["MemorySize"])
	}
	if rf["Timeout"] != 60.0 || rf["MemorySize"] != 128.0 {
		t.Errorf("refresher timeout/memory = %v/%v, want 60/128", rf["Timeout"], rf["MemorySize"])
	}
}

func TestSchedule_RunsRefresherHourlyWithRetriesAndDeadLetters(t *testing.T) {
	// GIVEN the default stack
	tpl := defaultStack.tpl
	c := defaultStack.cfn
	_, refresher := c.keeperFunctions(t)
	queues := c.ofType("AWS::SQS::Queue")
	if len(queues) != 1 {
		t.Fatalf("queues = %v, want one dead-letter queue", queues)
	}
	dlq := queues[0]

	// THEN one rule runs the refresher hourly, retries twice within an hour
	// and sends what still fails to the encrypted dead-letter queue
	check(t, "rule", func() {
		tpl.HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{
			"ScheduleExpression": "rate(1 hour)",
			"State":              "ENABLED",
			"Targets": []any{map[string]any{
				"Arn":              map[string]any{"Fn::GetAtt": []string{refresher, "Arn"}},
				"RetryPolicy":      map[string]any{"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
				"DeadLetterConfig": map[string]any{"Arn": map[string]any{"Fn::GetAtt": []string{dlq, "Arn"}}},
				"Id":               assertions.Match_AnyValue(),
			}},
		})
	})
	check(t, "queue encrypted", func() {
		tpl.HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{"SqsManagedSseEnabled": true})
	})
	check(t, "EventBridge may send to the queue", func() {
		tpl.HasResourceProperties(jsii.String("AWS::SQS::QueuePolicy"), map[string]any{
			"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
				assertions.Match_ObjectLike(&map[string]any{
					"Action": "sqs:SendMessage", "Effect": "Allow",
					"Principal": map[string]any{"Service": "events.amazonaws.com"},
				}),
			})},
		})
	})
	// AND the function's own asynchronous failures go there too
	if got := c.Resources[refresher].Properties["DeadLetterConfig"]; !refersTo(got, dlq) {
		t.Errorf("refresher DeadLetterConfig = %v, want the queue %s", got, dlq)
	}
	check(t, "async retries", func() {
		tpl.HasResourceProperties(jsii.String("AWS::Lambda::EventInvokeConfig"), map[string]any{
			"FunctionName": map[string]any{"Ref": refresher}, "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600,
		})
	})

	// AND the schedule is configurable, and every 15 minutes by default with self-heal
	check(t, "custom schedule", func() {
		tunedStack.tpl.HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{"ScheduleExpression": customSchedule})
	})
	check(t, "self-heal schedule", func() {
		customStack.tpl.HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{"ScheduleExpression": keeper.SelfHealSchedule})
	})
}

func TestAPI_OnlyGetCallbackThrottled(t *testing.T) {
	// GIVEN the default stack
	tpl := defaultStack.tpl
	callback, _ := defaultStack.cfn.keeperFunctions(t)

	// THEN the HTTP API has one route, GET /callback, to the callback (payload 2.0)
	check(t, "one route", func() { tpl.ResourceCountIs(jsii.String("AWS::ApiGatewayV2::Route"), jsii.Number(1)) })
	check(t, "route key", func() {
		tpl.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Route"), map[string]any{"RouteKey": "GET /callback", "AuthorizationType": "NONE"})
	})
	check(t, "integration", func() {
		tpl.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Integration"), map[string]any{
			"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0",
			"IntegrationUri": map[string]any{"Fn::GetAtt": []string{callback, "Arn"}},
		})
	})
	// AND its only stage is throttled and logs access without query strings
	check(t, "stage", func() {
		tpl.ResourceCountIs(jsii.String("AWS::ApiGatewayV2::Stage"), jsii.Number(1))
		tpl.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Stage"), map[string]any{
			"StageName": "$default", "AutoDeploy": true,
			"DefaultRouteSettings": map[string]any{"ThrottlingBurstLimit": 10, "ThrottlingRateLimit": 5},
			"AccessLogSettings": map[string]any{
				"DestinationArn": assertions.Match_AnyValue(),
				"Format":         assertions.Match_StringLikeRegexp(jsii.String(`^\{.*"routeKey":"\$context\.routeKey".*\}$`)),
			},
		})
	})
	for _, id := range defaultStack.cfn.ofType("AWS::ApiGatewayV2::Stage") {
		format, _ := json.Marshal(defaultStack.cfn.Resources[id].Properties["AccessLogSettings"])
		if strings.Contains(string(format), "querystring") || strings.Contains(string(format), "requestOverride") {
			t.Errorf("access log format logs the query string (consent code and state): %s", format)
		}
	}

	// AND a custom domain maps to the stage
	check(t, "custom domain", func() {
		customStack.tpl.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::DomainName"), map[string]any{
			"DomainName":               customDomain,
			"DomainNameConfigurations": []any{assertions.Match_ObjectLike(&map[string]any{"CertificateArn": customCertificate})},
		})
		customStack.tpl.ResourceCountIs(jsii.String("AWS::ApiGatewayV2::ApiMapping"), jsii.Number(1))
	})
}

func TestSecrets_EncryptedWithRotatingRetainedKey(t *testing.T) {
	// GIVEN the default stack
	tpl := defaultStack.tpl
	c := defaultStack.cfn
	keys := c.ofType("AWS::KMS::Key")
	if len(keys) != 1 {
		t.Fatalf("keys = %v, want one", keys)
	}

	// THEN the one customer-managed key rotates and outlives the stack
	check(t, "key", func() {
		tpl.HasResource(jsii.String("AWS::KMS::Key"), map[string]any{
			"Properties":     assertions.Match_ObjectLike(&map[string]any{"EnableKeyRotation": true}),
			"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
		})
	})
	// AND every secret, exactly three, is encrypted with it
	check(t, "three secrets", func() { tpl.ResourceCountIs(jsii.String("AWS::SecretsManager::Secret"), jsii.Number(3)) })
	check(t, "KMS on every secret", func() {
		tpl.AllResourcesProperties(jsii.String("AWS::SecretsManager::Secret"), map[string]any{
			"KmsKeyId": map[string]any{"Fn::GetAtt": []string{keys[0], "Arn"}},
		})
	})
	// AND no secret value is generated: fixed placeholders, never changed
	check(t, "no generated value", func() {
		tpl.AllResourcesProperties(jsii.String("AWS::SecretsManager::Secret"), map[string]any{
			"GenerateSecretString": assertions.Match_Absent(),
		})
	})
	for output, want := range map[string]struct{ initial, deletion string }{
		"CredentialsSecretArn": {keeper.InitialCredentials, "Retain"},
		"TokenSecretArn":       {keeper.InitialPair, "Retain"},
		"AccessSecretArn":      {keeper.InitialAccess, "Delete"},
	} {
		r := c.Resources[c.outputRef(t, output)]
		if r.Properties["SecretString"] != want.initial || r.DeletionPolicy != want.deletion {
			t.Errorf("secret of %s: initial %v, DeletionPolicy %q; want %s, %q",
				output, r.Properties["SecretString"], r.DeletionPolicy, want.initial, want.deletion)
		}
	}
	// Changing an initial value would overwrite the live secret at the next deployment.
	if keeper.InitialPair != `{"version":1}` || keeper.InitialAccess != `{"version":1}` ||
		keeper.InitialCredentials != `{"client_id":"","client_secret":""}` {
		t.Error("an initial secret value changed: the next deployment would overwrite the live secret")
	}
}

func TestSecrets_SelfHealLoginOnlyWhenEnabled(t *testing.T) {
	// GIVEN the default stack (self-heal off) and the custom one (on)
	// THEN only the custom one has a fourth secret: the login placeholder,
	// encrypted with the stack key and deleted with the stack
	check(t, "off by default", func() {
		defaultStack.tpl.ResourceCountIs(jsii.String("AWS::SecretsManager::Secret"), jsii.Number(3))
	})
	if _, ok := defaultStack.cfn.Outputs["SelfHealSecretArn"]; ok {
		t.Error("default stack has a SelfHealSecretArn output")
	}
	c := customStack.cfn
	check(t, "four secrets", func() { customStack.tpl.ResourceCountIs(jsii.String("AWS::SecretsManager::Secret"), jsii.Number(4)) })
	login := c.Resources[c.outputRef(t, "SelfHealSecretArn")]
	if login.Properties["SecretString"] != keeper.InitialSelfHealLogin || login.DeletionPolicy != "Delete" ||
		!refersTo(login.Properties["KmsKeyId"], c.outputRef(t, "KeyArn")) {
		t.Errorf("self-heal secret: %v, DeletionPolicy %q", login.Properties, login.DeletionPolicy)
	}
	if keeper.InitialSelfHealLogin != `{"username":"","password":""}` {
		t.Error("the initial self-heal login changed: the next deployment would overwrite the stored login")
	}
	// AND the callback never sees it
	callback, _ := c.keeperFunctions(t)
	for _, g := range c.grantsOf(t, callback, false) {
		if strings.Contains(g, "SelfHealSecretArn") {
			t.Errorf("callback grant %q", g)
		}
	}
}

func TestSecrets_AccountsModeKeepsOnlyTheSharedCredentials(t *testing.T) {
	for _, fx := range []struct {
		name string
		f    fixture
	}{{"accounts", accountsStack}, {"dynamo", dynamoStack}} {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN an accounts-mode stack
			tpl, c := fx.f.tpl, fx.f.cfn
			// THEN its one secret is the shared credentials: the keeper creates each
			// account's pair and access secret (or items) itself
			check(t, "one secret", func() { tpl.ResourceCountIs(jsii.String("AWS::SecretsManager::Secret"), jsii.Number(1)) })
			c.outputRef(t, "CredentialsSecretArn")
			for _, gone := range []string{"TokenSecretArn", "AccessSecretArn"} {
				if _, ok := c.Outputs[gone]; ok {
					t.Errorf("output %s in accounts mode", gone)
				}
			}
			// AND a second key, for account data only, rotates and outlives the stack
			check(t, "two keys", func() { tpl.ResourceCountIs(jsii.String("AWS::KMS::Key"), jsii.Number(2)) })
			key := c.Resources[c.outputRef(t, "AccountKeyArn")]
			if key.Properties["EnableKeyRotation"] != true || key.DeletionPolicy != "Retain" {
				t.Errorf("account key: %v, DeletionPolicy %q", key.Properties, key.DeletionPolicy)
			}
			if c.outputRef(t, "AccountKeyArn") == c.outputRef(t, "KeyArn") {
				t.Error("the account key is the stack key")
			}
		})
	}
}

func TestAccounts_DynamoDBTableEncryptedRecoverableOnDemand(t *testing.T) {
	// GIVEN the DynamoDB backend
	tpl, c := dynamoStack.tpl, dynamoStack.cfn
	key := c.outputRef(t, "AccountKeyArn")

	// THEN one table: string partition key pk and no sort key, on demand, encrypted with
	// the account key, point-in-time recovery, kept and protected from deletion
	check(t, "one table", func() { tpl.ResourceCountIs(jsii.String("AWS::DynamoDB::Table"), jsii.Number(1)) })
	check(t, "table", func() {
		tpl.HasResource(jsii.String("AWS::DynamoDB::Table"), map[string]any{
			"Properties": map[string]any{
				"KeySchema":                        []any{map[string]any{"AttributeName": contract.TablePartitionKey, "KeyType": "HASH"}},
				"AttributeDefinitions":             []any{map[string]any{"AttributeName": contract.TablePartitionKey, "AttributeType": "S"}},
				"BillingMode":                      "PAY_PER_REQUEST",
				"SSESpecification":                 map[string]any{"SSEEnabled": true, "SSEType": "KMS", "KMSMasterKeyId": map[string]any{"Fn::GetAtt": []any{key, "Arn"}}},
				"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
				"DeletionProtectionEnabled":        true,
			},
			"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
		})
	})
	// AND the Secrets Manager backend has none
	check(t, "no table", func() { accountsStack.tpl.ResourceCountIs(jsii.String("AWS::DynamoDB::Table"), jsii.Number(0)) })
}

func TestAccounts_SweepFillsTheQueueTheRefresherConsumes(t *testing.T) {
	for _, fx := range []struct {
		name                                   string
		f                                      fixture
		batch, concurrency, receives, reserved float64
		schedule                               string
	}{
		{"defaults", accountsStack, keeper.DefaultAccountsBatchSize, keeper.DefaultAccountsMaxConcurrency, keeper.DefaultAccountsMaxReceiveCount,
			keeper.DefaultAccountsMaxConcurrency + 1, keeper.DefaultSchedule},
		{"tuned", tunedStack, tunedBatchSize, tunedMaxConcurrency, tunedMaxReceiveCount, tunedMaxConcurrency + 1, customSchedule},
	} {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN an accounts-mode stack
			tpl, c := fx.f.tpl, fx.f.cfn
			_, refresher := c.keeperFunctions(t)
			queue, dlq := c.outputRef(t, "AccountQueueUrl"), c.outputRef(t, "AccountDeadLetterQueueUrl")
			timeout := c.Resources[refresher].Properties["Timeout"].(float64)

			// THEN the scheduled rule still invokes the refresher, without input: no account
			// named, so it sweeps the accounts into the queue
			rule := c.Resources[c.ofType("AWS::Events::Rule")[0]].Properties
			target, _ := listOf(rule["Targets"])[0].(map[string]any)
			if rule["ScheduleExpression"] != fx.schedule || !refersTo(target["Arn"], refresher) || target["Input"] != nil {
				t.Errorf("rule %v, target %v: want the refresher on %s without input", rule["ScheduleExpression"], target, fx.schedule)
			}
			// AND the queue hides a message for 6 function timeouts (AWS's advice for a
			// Lambda source), keeps it 2 hours, moves it to its dead-letter queue after
			// MaxReceiveCount deliveries, and is encrypted; both queues take TLS only
			check(t, "queue", func() {
				tpl.HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{
					"VisibilityTimeout":      6 * timeout,
					"MessageRetentionPeriod": 7200,
					"SqsManagedSseEnabled":   true,
					"RedrivePolicy": map[string]any{
						"deadLetterTargetArn": map[string]any{"Fn::GetAtt": []any{dlq, "Arn"}}, "maxReceiveCount": fx.receives,
					},
				})
			})
			if got := c.Resources[queue].Properties["VisibilityTimeout"]; got != 6*timeout {
				t.Errorf("account queue VisibilityTimeout = %v, want 6 × %v", got, timeout)
			}
			if got := c.Resources[dlq].Properties; got["SqsManagedSseEnabled"] != true || got["MessageRetentionPeriod"] != 1209600.0 {
				t.Errorf("account dead-letter queue %v", got)
			}
			for _, q := range []string{queue, dlq} {
				check(t, "TLS only", func() {
					tpl.HasResourceProperties(jsii.String("AWS::SQS::QueuePolicy"), map[string]any{
						"Queues": []any{map[string]any{"Ref": q}},
						"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
							assertions.Match_ObjectLike(&map[string]any{
								"Effect": "Deny", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
							}),
						})},
					})
				})
			}
			// AND one event source mapping feeds it to the refresher in batches, reporting
			// failed records only, at the props' maximum concurrency
			check(t, "one mapping", func() { tpl.ResourceCountIs(jsii.String("AWS::Lambda::EventSourceMapping"), jsii.Number(1)) })
			check(t, "mapping", func() {
				tpl.HasResourceProperties(jsii.String("AWS::Lambda::EventSourceMapping"), map[string]any{
					"FunctionName":          map[string]any{"Ref": refresher},
					"EventSourceArn":        map[string]any{"Fn::GetAtt": []any{queue, "Arn"}},
					"BatchSize":             fx.batch,
					"FunctionResponseTypes": []string{"ReportBatchItemFailures"},
					"ScalingConfig":         map[string]any{"MaximumConcurrency": fx.concurrency},
				})
			})
			// AND the refresher may run the sweep beside every concurrent batch
			if got := c.Resources[refresher].Properties["ReservedConcurrentExecutions"]; got != fx.reserved {
				t.Errorf("ReservedConcurrentExecutions = %v, want %v", got, fx.reserved)
			}
		})
	}
}

func TestAlarms_WatchTokenLifetimeReportsErrorsDeadLettersAnd5xx(t *testing.T) {
	// GIVEN the default stack
	tpl := defaultStack.tpl
	c := defaultStack.cfn
	_, refresher := c.keeperFunctions(t)
	topics := c.ofType("AWS::SNS::Topic")
	if len(topics) != 1 {
		t.Fatalf("topics = %v, want one", topics)
	}
	toTopic := []any{map[string]any{"Ref": topics[0]}}
	byRefresher := []any{map[string]any{"Name": "FunctionName", "Value": map[string]any{"Ref": refresher}}}

	// THEN five alarms notify the one topic, on alarm and on recovery
	check(t, "alarm count", func() { tpl.ResourceCountIs(jsii.String("AWS::CloudWatch::Alarm"), jsii.Number(5)) })
	check(t, "alarm actions", func() {
		tpl.AllResourcesProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{"AlarmActions": toTopic, "OKActions": toTopic})
	})
	// AND each is named after the stack and points to its runbook entry
	for name, props := range map[string]map[string]any{
		// The refresher's EMF lifetime below 3 days for two hourly periods;
		// a missing report is the next alarm's business.
		keeper.AlarmRefreshTokenExpiring: {
			"Namespace": "VBCToken", "MetricName": "RefreshTokenSecondsLeft", "Dimensions": byRefresher,
			"Statistic": "Minimum", "Period": 3600, "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
			"Threshold": 259200, "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "missing",
		},
		// No run reported for two hourly periods.
		keeper.AlarmRefresherNotReporting: {
			"Namespace": "VBCToken", "MetricName": "RefreshOutcome", "Dimensions": byRefresher,
			"Statistic": "SampleCount", "Period": 3600, "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
			"Threshold": 1, "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
		},
		keeper.AlarmRefresherErrors: {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": byRefresher,
			"Statistic": "Sum", "Period": 3600},
		keeper.AlarmCallback5xx: {"Namespace": "AWS/ApiGateway", "MetricName": "5xx", "Statistic": "Sum", "Period": 300},
		keeper.AlarmDeadLetters: {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Statistic": "Maximum", "Period": 300},
	} {
		if _, ok := props["Threshold"]; !ok {
			for k, v := range map[string]any{"Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
				"TreatMissingData": "notBreaching", "EvaluationPeriods": 1} {
				props[k] = v
			}
		}
		props["AlarmName"] = "Default-" + name
		props["AlarmDescription"] = assertions.Match_StringLikeRegexp(jsii.String("Runbook: README.md, Operations runbook, Alarm `" + name + "`"))
		check(t, name, func() { tpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), props) })
	}
	// AND an alarm email subscribes only when given
	check(t, "no subscription by default", func() { tpl.ResourceCountIs(jsii.String("AWS::SNS::Subscription"), jsii.Number(0)) })
	check(t, "email subscription", func() {
		customStack.tpl.HasResourceProperties(jsii.String("AWS::SNS::Subscription"), map[string]any{"Protocol": "email", "Endpoint": customEmail})
	})
}

func TestAlarms_AccountsModeWatchesTheFanOut(t *testing.T) {
	// GIVEN an accounts-mode stack
	tpl, c := accountsStack.tpl, accountsStack.cfn
	queue, dlq := c.outputRef(t, "AccountQueueUrl"), c.outputRef(t, "AccountDeadLetterQueueUrl")
	_, refresher := c.keeperFunctions(t)
	byQueue := func(id string) []any {
		return []any{map[string]any{"Name": "QueueName", "Value": map[string]any{"Fn::GetAtt": []any{id, "QueueName"}}}}
	}

	// THEN two more alarms watch the fan-out, each with its runbook entry
	check(t, "alarm count", func() { tpl.ResourceCountIs(jsii.String("AWS::CloudWatch::Alarm"), jsii.Number(7)) })
	for name, props := range map[string]map[string]any{
		// Account refreshes that failed on every delivery.
		keeper.AlarmAccountDeadLetters: {
			"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Dimensions": byQueue(dlq),
			"Statistic": "Maximum", "Period": 300, "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
			"EvaluationPeriods": 1, "TreatMissingData": "notBreaching",
		},
		// The queue not drained before the next sweep.
		keeper.AlarmAccountQueueBehind: {
			"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage", "Dimensions": byQueue(queue),
			"Statistic": "Maximum", "Period": 300, "Threshold": keeper.AccountQueueAgeAlarmThreshold.Seconds(),
			"ComparisonOperator": "GreaterThanOrEqualToThreshold", "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
			"TreatMissingData": "notBreaching",
		},
	} {
		props["AlarmName"] = "Accounts-" + name
		props["AlarmDescription"] = assertions.Match_StringLikeRegexp(jsii.String("Runbook: README.md, Operations runbook, Alarm `" + name + "`"))
		check(t, name, func() { tpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), props) })
	}
	// AND "any account within 3 days of expiry" is the refresh-token alarm on the
	// minimum of the one metric every account's run reports (no account dimension)
	check(t, "any account", func() {
		tpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"MetricName": "RefreshTokenSecondsLeft", "Statistic": "Minimum", "Threshold": 259200,
			"Dimensions":       []any{map[string]any{"Name": "FunctionName", "Value": map[string]any{"Ref": refresher}}},
			"AlarmDescription": assertions.Match_StringLikeRegexp(jsii.String("`vbctoken accounts`")),
		})
	})
	// AND single-account stacks have neither
	for _, name := range alarmNames(defaultStack.cfn) {
		if name == keeper.AlarmAccountDeadLetters || name == keeper.AlarmAccountQueueBehind {
			t.Errorf("default stack has alarm %s", name)
		}
	}
}

func TestDashboard_AccountsModeShowsTheQueue(t *testing.T) {
	// GIVEN an accounts-mode stack's dashboard
	c := accountsStack.cfn
	d := c.Resources[c.ofType("AWS::CloudWatch::Dashboard")[0]].Properties
	body, _ := json.Marshal(d["DashboardBody"])

	// THEN it draws the queue's depth and age (with the alarm's threshold) and the dead letters
	for what, want := range map[string]string{
		"queue depth":          `\"AWS/SQS\",\"ApproximateNumberOfMessagesVisible\"`,
		"in flight":            `\"AWS/SQS\",\"ApproximateNumberOfMessagesNotVisible\"`,
		"delayed":              `\"AWS/SQS\",\"ApproximateNumberOfMessagesDelayed\"`,
		"oldest message":       `\"AWS/SQS\",\"ApproximateAgeOfOldestMessage\"`,
		"age threshold":        `\"value\":2700`,
		"account dead letters": `Account dead letters`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("dashboard lacks %s (%s)", what, want)
		}
	}
	for _, id := range []string{c.outputRef(t, "AccountQueueUrl"), c.outputRef(t, "AccountDeadLetterQueueUrl")} {
		if !refersTo(d["DashboardBody"], id) {
			t.Errorf("dashboard does not refer to queue %s", id)
		}
	}
	for _, alarm := range c.ofType("AWS::CloudWatch::Alarm") {
		if !refersTo(d["DashboardBody"], alarm) {
			t.Errorf("dashboard does not show alarm %s", alarm)
		}
	}
}

func TestDashboard_ShowsLifetimeOutcomesErrorsDeadLettersAnd5xx(t *testing.T) {
	// GIVEN the default stack
	c := defaultStack.cfn
	_, refresher := c.keeperFunctions(t)
	dashboards := c.ofType("AWS::CloudWatch::Dashboard")
	if len(dashboards) != 1 {
		t.Fatalf("dashboards = %v, want one", dashboards)
	}
	d := c.Resources[dashboards[0]].Properties

	// THEN it is named after the stack
	if d["DashboardName"] != "Default" {
		t.Errorf("DashboardName = %v, want the stack name", d["DashboardName"])
	}
	// AND its body (an Fn::Join of text and references) draws each of these
	body, _ := json.Marshal(d["DashboardBody"])
	for what, want := range map[string]string{
		"every alarm":            `\"type\":\"alarm\"`,
		"refresh token lifetime": `\"VBCToken\",\"RefreshTokenSecondsLeft\",\"FunctionName\"`,
		"alarm threshold":        `259200`,
		"outcomes per day, found by SEARCH (not a fixed list)": `SEARCH('{VBCToken,FunctionName,Outcome} MetricName=\\\"RefreshOutcome\\\" FunctionName=\\\"`,
		"outcome as each line's label":                         `\"label\":\"${PROP('Dim.Outcome')}\"`,
		"lambda errors":                                        `\"AWS/Lambda\",\"Errors\"`,
		"dead letters":                                         `\"AWS/SQS\",\"ApproximateNumberOfMessagesVisible\"`,
		"callback 5xx":                                         `\"AWS/ApiGateway\",\"5xx\"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("dashboard lacks %s (%s):\n%s", what, want, body)
		}
	}
	if !refersTo(d["DashboardBody"], refresher) {
		t.Error("dashboard does not refer to the refresher function")
	}
	for _, alarm := range c.ofType("AWS::CloudWatch::Alarm") {
		if !refersTo(d["DashboardBody"], alarm) {
			t.Errorf("dashboard does not show alarm %s", alarm)
		}
	}
}

func TestIAM_NoSecretsManagerWildcardAndNothingOnStar(t *testing.T) {
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN every identity-policy statement of the synthesized template
			stmts := fx.f.cfn.iamStatements()
			if len(stmts) == 0 {
				t.Fatal("no IAM statement found: the walker is broken")
			}
			// THEN none grants secretsmanager:*, "*", or anything on "*"; the
			// only pattern is secret:<prefix>* in accounts mode
			for _, v := range wildcardViolations(stmts) {
				t.Error(v)
			}
			for _, st := range stmts {
				for _, r := range listOf(st.body["Resource"]) {
					if r == "*" {
						t.Errorf("%s: Resource \"*\"", st.where)
					}
				}
			}
			// AND no role carries a managed policy (AWSLambdaBasicExecutionRole acts on "*")
			for _, id := range fx.f.cfn.ofType("AWS::IAM::Role") {
				if mp, ok := fx.f.cfn.Resources[id].Properties["ManagedPolicyArns"]; ok {
					t.Errorf("role %s has managed policies %v", id, mp)
				}
			}
		})
	}
}

func TestIAM_WildcardCheckCatchesViolations(t *testing.T) {
	// GIVEN statements a reviewer must reject
	var c cfnTemplate
	if err := json.Unmarshal([]byte(`{"Resources":{
		"P":{"Type":"AWS::IAM::Policy","Properties":{"PolicyDocument":{"Statement":[
			{"Effect":"Allow","Action":"secretsmanager:*","Resource":{"Ref":"S"}},
			{"Effect":"Allow","Action":["secretsmanager:Get*"],"Resource":{"Ref":"S"}},
			{"Effect":"Allow","Action":"logs:PutLogEvents","Resource":"*"},
			{"Effect":"Allow","NotAction":"iam:*","Resource":{"Ref":"S"}},
			{"Effect":"Deny","Action":"*","Resource":"*"}]}}},
		"R":{"Type":"AWS::IAM::Role","Properties":{"Policies":[{"PolicyDocument":{"Statement":
			{"Effect":"Allow","Action":"*","Resource":{"Ref":"S"}}}}]}},
		"Q":{"Type":"AWS::IAM::Policy","Properties":{"PolicyDocument":{"Statement":[
			{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":
				{"Fn::Sub":"arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"}},
			{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":
				{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":secretsmanager:",{"Ref":"AWS::Region"},":",{"Ref":"AWS::AccountId"},":secret:tenants*"]]}},
			{"Effect":"Allow","Action":"sqs:SendMessage","Resource":{"Fn::Join":["",["arn:aws:sqs:*:",{"Ref":"AWS::AccountId"},":*"]]}},
			{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":
				{"Fn::Sub":"arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/accounts/*"}},
			{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":
				{"Fn::Sub":"arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/accounts/acme/access-??????"}}
			]}}}}}`), &c); err != nil {
		t.Fatal(err)
	}
	// WHEN the check walks them
	got := wildcardViolations(c.iamStatements())
	// THEN it reports each Allow but the prefix pattern and the one account's
	// secret, and not the Deny: an ARN pattern without a prefix ending in "/"
	// is as wide as "*"
	if len(got) != 8 {
		t.Errorf("violations = %d, want 8:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// Texts of grantsOf: the Secrets Manager service of kms:ViaService, and the accounts'
// secret pattern with the default prefix.
const (
	viaSecretsManager = "kms:ViaService=secretsmanager.${AWS::Region}.${AWS::URLSuffix}"
	viaDynamoDB       = "kms:ViaService=dynamodb.${AWS::Region}.${AWS::URLSuffix}"
	accountSecrets    = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/accounts/*"
)

// refresherQueueGrants are the refresher's SQS grants in accounts mode: the sweep sends,
// the event source mapping receives (CDK's GrantConsumeMessages); and its dead letters.
var refresherQueueGrants = []string{
	"sqs:ChangeMessageVisibility on AccountQueueUrl",
	"sqs:DeleteMessage on AccountQueueUrl",
	"sqs:GetQueueAttributes on AccountQueueUrl",
	"sqs:GetQueueUrl on AccountQueueUrl",
	"sqs:ReceiveMessage on AccountQueueUrl",
	"sqs:SendMessage on AccountQueueUrl",
	"sqs:SendMessage on DeadLetterQueueUrl",
}

func TestIAM_FunctionsGetExactlyTheActionsTheyUse(t *testing.T) {
	oneAccountKey := func(secrets string) []string {
		cond := " if StringEquals kms:EncryptionContext:SecretARN=" + secrets + "; StringEquals " + viaSecretsManager
		return []string{"kms:Decrypt on KeyArn" + cond, "kms:GenerateDataKey on KeyArn" + cond}
	}
	oneAccount := []string{
		"secretsmanager:GetSecretValue on CredentialsSecretArn",
		"secretsmanager:GetSecretValue on TokenSecretArn",
		"secretsmanager:PutSecretValue on AccessSecretArn",
		"secretsmanager:PutSecretValue on TokenSecretArn",
		"secretsmanager:UpdateSecretVersionStage on TokenSecretArn",
	}
	three := "[${CredentialsSecretArn},${TokenSecretArn},${AccessSecretArn}]"
	credentialsKey := "kms:Decrypt on KeyArn if StringEquals kms:EncryptionContext:SecretARN=[${CredentialsSecretArn}]; StringEquals " + viaSecretsManager
	smAccountKey := " if StringEquals " + viaSecretsManager + "; StringLike kms:EncryptionContext:SecretARN=" + accountSecrets
	smAccounts := []string{
		credentialsKey,
		"kms:Decrypt on AccountKeyArn" + smAccountKey,
		"kms:GenerateDataKey on AccountKeyArn" + smAccountKey,
		"secretsmanager:CreateSecret on " + accountSecrets + " if ForAllValues:StringEquals aws:TagKeys=[vbctoken:account]",
		"secretsmanager:GetSecretValue on CredentialsSecretArn",
		"secretsmanager:GetSecretValue on " + accountSecrets,
		"secretsmanager:PutSecretValue on " + accountSecrets,
		"secretsmanager:TagResource on " + accountSecrets + " if ForAllValues:StringEquals aws:TagKeys=[vbctoken:account]",
		"secretsmanager:UpdateSecretVersionStage on " + accountSecrets,
	}
	ddbKey := " if StringEquals " + viaDynamoDB
	ddbAccounts := []string{
		credentialsKey,
		"dynamodb:GetItem on AccountTableName",
		"dynamodb:PutItem on AccountTableName",
		"kms:Decrypt on AccountKeyArn" + ddbKey,
		"kms:Encrypt on AccountKeyArn" + ddbKey,
		"kms:GenerateDataKey on AccountKeyArn" + ddbKey,
		"secretsmanager:GetSecretValue on CredentialsSecretArn",
	}
	for _, tc := range []struct {
		name                string
		f                   fixture
		callback, refresher []string
	}{
		// One account: the three secrets, KMS only through Secrets Manager for them.
		{"default", defaultStack,
			append(oneAccountKey(three), oneAccount...),
			append(append(oneAccountKey(three), oneAccount...), "sqs:SendMessage on DeadLetterQueueUrl")},
		// Self-heal: the refresher alone reads the login, and may decrypt it.
		{"custom (self-heal)", customStack,
			append(oneAccountKey(three), oneAccount...),
			append(append(oneAccountKey("[${CredentialsSecretArn},${TokenSecretArn},${AccessSecretArn},${SelfHealSecretArn}]"), oneAccount...),
				"secretsmanager:GetSecretValue on SelfHealSecretArn", "sqs:SendMessage on DeadLetterQueueUrl")},
		// Accounts on Secrets Manager: everything under the prefix, creation only with the
		// account tag, the account key only through Secrets Manager for secrets under the
		// prefix; the stack key only to read the credentials.
		{"accounts", accountsStack, smAccounts, append(slices.Clone(smAccounts), refresherQueueGrants...)},
		// Accounts on DynamoDB: the table's items, listing (Scan) for the sweep only.
		{"dynamo", dynamoStack, ddbAccounts, append(append(slices.Clone(ddbAccounts), refresherQueueGrants...), "dynamodb:Scan on AccountTableName")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// GIVEN the stack's functions
			c := tc.f.cfn
			callback, refresher := c.keeperFunctions(t)
			// THEN each role holds exactly these grants beyond its own log group
			for fn, want := range map[string][]string{callback: tc.callback, refresher: tc.refresher} {
				want = sortedCopy(want)
				if got := c.grantsOf(t, fn, true); !reflect.DeepEqual(got, want) {
					t.Errorf("%s grants:\n  %s\nwant:\n  %s", fn, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			}
		})
	}
}

func TestIAM_AppGrantReadsTheAccessSecretOnly(t *testing.T) {
	// GIVEN an app role granted with GrantReadAccessToken
	c := defaultStack.cfn
	role := ""
	for _, id := range c.ofType("AWS::IAM::Role") {
		if c.Resources[id].Properties["RoleName"] == appRoleName {
			role = id
		}
	}
	if role == "" {
		t.Fatal("app role not found")
	}
	access, pair, creds := c.outputRef(t, "AccessSecretArn"), c.outputRef(t, "TokenSecretArn"), c.outputRef(t, "CredentialsSecretArn")

	// WHEN its statements are collected
	var stmts []map[string]any
	for _, s := range c.iamStatements() {
		if c.policyAttachedTo(strings.Fields(s.where)[0], role) || strings.HasPrefix(s.where, role+" ") {
			stmts = append(stmts, s.body)
		}
	}

	// THEN it may read the access secret and decrypt it through Secrets
	// Manager, and nothing else
	key := c.ofType("AWS::KMS::Key")[0]
	want := []map[string]any{
		{"Effect": "Allow", "Action": []any{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
			"Resource": map[string]any{"Ref": access}},
		{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": map[string]any{"Fn::GetAtt": []any{key, "Arn"}},
			"Condition": map[string]any{"StringEquals": map[string]any{
				"kms:ViaService":                  stmtsCondition(stmts, "kms:ViaService"),
				"kms:EncryptionContext:SecretARN": map[string]any{"Ref": access},
			}}},
	}
	if !reflect.DeepEqual(stmts, want) {
		got, _ := json.MarshalIndent(stmts, "", " ")
		t.Errorf("app role statements:\n%s", got)
	}
	raw, _ := json.Marshal(stmts)
	for _, other := range []string{pair, creds} {
		if strings.Contains(string(raw), `"`+other+`"`) {
			t.Errorf("app role refers to %s", other)
		}
	}
	if via, _ := json.Marshal(stmtsCondition(stmts, "kms:ViaService")); !strings.Contains(string(via), "secretsmanager.") {
		t.Errorf("kms:ViaService = %s, want secretsmanager.<region>", via)
	}
}

func TestIAM_GrantReadAccountReadsOneAccountsAccessTokenOnly(t *testing.T) {
	// The app's access secret, and not acme-eu's ("acme*" would match it).
	secret := "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/accounts/" +
		appAccount + "/access-??????"
	for _, tc := range []struct {
		name string
		f    fixture
		want []string
	}{
		// Secrets Manager: GetSecretValue on that one secret, and kms:Decrypt through Secrets
		// Manager only for it.
		{"accounts", accountsStack, []string{
			"kms:Decrypt on AccountKeyArn if StringEquals " + viaSecretsManager + "; StringLike kms:EncryptionContext:SecretARN=" + secret,
			"secretsmanager:GetSecretValue on " + secret,
		}},
		// DynamoDB: GetItem of the access#acme item alone, kms:Decrypt through DynamoDB.
		{"dynamo", dynamoStack, []string{
			"dynamodb:GetItem on AccountTableName if ForAllValues:StringEquals dynamodb:LeadingKeys=[access#" + appAccount + "]",
			"kms:Decrypt on AccountKeyArn if StringEquals " + viaDynamoDB,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// GIVEN an app role granted with GrantReadAccount(role, "acme")
			c := tc.f.cfn
			role := c.roleNamed(t, appRoleName)

			// WHEN its statements are rendered
			var got []string
			names := c.outputNames()
			for _, st := range c.statementsOf(role) {
				cond := ""
				if st["Condition"] != nil {
					cond = " if " + conditionText(st["Condition"], names)
				}
				for _, a := range listOf(st["Action"]) {
					for _, r := range listOf(st["Resource"]) {
						got = append(got, fmt.Sprint(a)+" on "+flatten(r, names)+cond)
					}
				}
			}
			sort.Strings(got)

			// THEN they are exactly these
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("app role grants:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
	// AND the DynamoDB grant is also asserted as CloudFormation sees it
	check(t, "LeadingKeys", func() {
		dynamoStack.tpl.HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]any{
			"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
				assertions.Match_ObjectLike(&map[string]any{
					"Action":    "dynamodb:GetItem",
					"Condition": map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:LeadingKeys": []string{"access#acme"}}},
				}),
			})},
		})
	})
}

func TestIAM_GrantsRefuseTheWrongMode(t *testing.T) {
	// fresh builds a keeper and an app role in a stack of its own (never synthesized).
	fresh := func(accounts *keeper.AccountsProps) (*keeper.TokenKeeper, awsiam.IRole) {
		stack := awscdk.NewStack(awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())}), jsii.String("Misuse"), nil)
		k := keeper.NewTokenKeeper(stack, "K", &keeper.TokenKeeperProps{
			CallbackCodeDir: testCodeDirs["callback"], RefresherCodeDir: testCodeDirs["refresher"], Accounts: accounts,
		})
		return k, awsiam.NewRole(stack, jsii.String("App"), &awsiam.RoleProps{
			AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		})
	}
	for _, tc := range []struct {
		name     string
		accounts *keeper.AccountsProps
		grant    func(*keeper.TokenKeeper, awsiam.IRole)
		want     string
	}{
		{"GrantReadAccount in single-account mode", nil,
			func(k *keeper.TokenKeeper, r awsiam.IRole) { k.GrantReadAccount(r, "acme") }, "accounts mode is off"},
		{"GrantReadAccessToken in accounts mode", &keeper.AccountsProps{},
			func(k *keeper.TokenKeeper, r awsiam.IRole) { k.GrantReadAccessToken(r) }, "use GrantReadAccount"},
		{"an account id that is a pattern", &keeper.AccountsProps{},
			func(k *keeper.TokenKeeper, r awsiam.IRole) { k.GrantReadAccount(r, "acme*") }, "must match"},
		{"an account id with a capital", &keeper.AccountsProps{Backend: keeper.BackendDynamoDB},
			func(k *keeper.TokenKeeper, r awsiam.IRole) { k.GrantReadAccount(r, "Acme") }, "must match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// GIVEN a keeper of the other mode
			k, role := fresh(tc.accounts)
			// WHEN the grant is asked for
			var msg string
			func() {
				defer func() { msg, _ = recover().(string) }()
				tc.grant(k, role)
			}()
			// THEN it refuses, saying what to do
			if !strings.Contains(msg, tc.want) {
				t.Errorf("panic %q, want one containing %q", msg, tc.want)
			}
		})
	}
}

// stmtsCondition returns the StringEquals value of key in the first statement having it.
func stmtsCondition(stmts []map[string]any, key string) any {
	for _, s := range stmts {
		cond, _ := s["Condition"].(map[string]any)
		eq, _ := cond["StringEquals"].(map[string]any)
		if v, ok := eq[key]; ok {
			return v
		}
	}
	return nil
}

func TestOutputs_TellTheAdminWhatToDo(t *testing.T) {
	// GIVEN the default stack
	tpl := defaultStack.tpl

	// THEN the callback URL, the secrets and the consent command are outputs
	for _, name := range []string{"CallbackUrl", "CredentialsSecretArn", "TokenSecretArn", "AccessSecretArn", "ConsentUrlCommand", "AlarmTopicArn"} {
		check(t, name, func() { tpl.HasOutput(jsii.String(name), map[string]any{"Value": assertions.Match_AnyValue()}) })
	}
	// AND the consent command sets every variable `vbctoken consent-url` reads
	cmd, _ := json.Marshal(defaultStack.cfn.Outputs["ConsentUrlCommand"].Value)
	for _, want := range []string{"AWS_REGION=", "VBC_CREDENTIALS_SECRET_ID=", "VBC_TOKEN_SECRET_ID=", "VBC_ACCESS_SECRET_ID=",
		"VBC_REDIRECT_URL=", "VBC_AUTHORIZE_URL=https://api.vonage.com/authorize", "VBC_PKCE=false", "vbctoken consent-url"} {
		if !strings.Contains(string(cmd), want) {
			t.Errorf("ConsentUrlCommand lacks %q: %s", want, cmd)
		}
	}
	// AND with a custom domain, the URL uses it and the DNS target is given
	check(t, "custom CallbackUrl", func() {
		customStack.tpl.HasOutput(jsii.String("CallbackUrl"), map[string]any{"Value": "https://" + customDomain + "/callback"})
		customStack.tpl.HasOutput(jsii.String("CustomDomainTarget"), map[string]any{"Value": assertions.Match_AnyValue()})
	})
	customCmd, _ := json.Marshal(customStack.cfn.Outputs["ConsentUrlCommand"].Value)
	if !strings.Contains(string(customCmd), "VBC_SCOPE='openid offline'") || !strings.Contains(string(customCmd), "VBC_PKCE=true") {
		t.Errorf("custom ConsentUrlCommand does not carry scope and PKCE: %s", customCmd)
	}
}

func TestOutputs_AccountsModeConsentCommandTakesTheAccount(t *testing.T) {
	for _, fx := range []struct {
		name    string
		f       fixture
		backend string
		outputs []string
	}{
		{"accounts", accountsStack, "VBC_ACCOUNT_KMS_KEY_ID=", []string{"AccountSecretPrefix", "AccountKeyArn", "AccountQueueUrl", "AccountDeadLetterQueueUrl"}},
		{"dynamo", dynamoStack, "VBC_TABLE_NAME=", []string{"AccountSecretPrefix", "AccountKeyArn", "AccountTableName", "AccountQueueUrl", "AccountDeadLetterQueueUrl"}},
	} {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN an accounts-mode stack's consent command
			cmd, _ := json.Marshal(fx.f.cfn.Outputs["ConsentUrlCommand"].Value)
			// THEN it sets the fleet's variables, not the single account's, and takes
			// the account from $ACCOUNT
			for _, want := range []string{"VBC_CREDENTIALS_SECRET_ID=", "VBC_ACCOUNT_SECRET_PREFIX=", fx.backend,
				"VBC_REDIRECT_URL=", `vbctoken consent-url --account \"$ACCOUNT\"`} {
				if !strings.Contains(string(cmd), want) {
					t.Errorf("ConsentUrlCommand lacks %q: %s", want, cmd)
				}
			}
			for _, unwanted := range []string{"VBC_TOKEN_SECRET_ID", "VBC_ACCESS_SECRET_ID"} {
				if strings.Contains(string(cmd), unwanted) {
					t.Errorf("ConsentUrlCommand sets %s: %s", unwanted, cmd)
				}
			}
			// AND the fleet's resources are outputs
			for _, name := range fx.outputs {
				check(t, name, func() { fx.f.tpl.HasOutput(jsii.String(name), map[string]any{"Value": assertions.Match_AnyValue()}) })
			}
		})
	}
}

func TestTokenKeeper_RejectsInvalidProps(t *testing.T) {
	// GIVEN a code directory without a bootstrap binary, and a bad duration
	empty := t.TempDir()
	ok := t.TempDir()
	if err := os.WriteFile(ok+"/bootstrap", []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	stack := awscdk.NewStack(awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())}), jsii.String("Invalid"), nil)

	// WHEN the keeper is created
	var msg string
	func() {
		defer func() { msg, _ = recover().(string) }()
		keeper.NewTokenKeeper(stack, "K", &keeper.TokenKeeperProps{
			CallbackCodeDir: empty, RefresherCodeDir: ok, RefreshMargin: "two hours",
			SelfHeal: true,
			Accounts: &keeper.AccountsProps{Prefix: "tenants", Backend: "s3", BatchSize: 11, MaxConcurrency: 1, MaxReceiveCount: -1},
		})
	}()

	// THEN it refuses, naming every problem
	for _, want := range []string{"CallbackCodeDir", "make build", "RefreshMargin", `Accounts.Prefix "tenants" must end with "/"`,
		`Accounts.Backend "s3"`, "Accounts.BatchSize 11", "Accounts.MaxConcurrency 1", "Accounts.MaxReceiveCount -1",
		"SelfHeal keeps one VBC user's login"} {
		if !strings.Contains(msg, want) {
			t.Errorf("panic message %q lacks %q", msg, want)
		}
	}
}

func TestTokenKeeper_WithoutGoSaysWhatToDo(t *testing.T) {
	// GIVEN a machine without the go command, and no prebuilt binaries
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOROOT", "")
	stack := awscdk.NewStack(awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())}), jsii.String("NoGo"), nil)

	// WHEN the keeper is created
	var msg string
	func() {
		defer func() { msg, _ = recover().(string) }()
		keeper.NewTokenKeeper(stack, "K", nil)
	}()

	// THEN it refuses before synth, saying what is missing and both ways out
	for _, want := range []string{"Go toolchain", "https://go.dev/dl/", "make build", "callbackCodeDir"} {
		if !strings.Contains(msg, want) {
			t.Errorf("panic message %q lacks %q", msg, want)
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
