package main

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/infra/keeper"
)

var (
	commonEnv = []string{
		"VBC_ACCESS_SECRET_ID", "VBC_AUTHORIZE_URL", "VBC_CREDENTIALS_SECRET_ID", "VBC_PKCE",
		"VBC_SCOPE", "VBC_TOKEN_SECRET_ID", "VBC_TOKEN_URL",
	}
	callbackEnv  = sortedCopy(append([]string{"VBC_REDIRECT_URL"}, commonEnv...))
	refresherEnv = sortedCopy(append([]string{"VBC_REFRESH_MARGIN", "VBC_REFRESH_MAX_AGE"}, commonEnv...))
)

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
	}{{"default", defaultStack}, {"custom", customStack}} {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN the stack's functions, found by what triggers them
			c := fx.f.cfn
			callback, refresher := c.keeperFunctions(t)

			// THEN each has exactly the variables its role needs
			if got := sortedKeys(c.env(callback)); !reflect.DeepEqual(got, callbackEnv) {
				t.Errorf("callback env = %v, want %v", got, callbackEnv)
			}
			if got := sortedKeys(c.env(refresher)); !reflect.DeepEqual(got, refresherEnv) {
				t.Errorf("refresher env = %v, want %v", got, refresherEnv)
			}
			// AND the secret variables name the three secrets of the outputs
			for _, fn := range []string{callback, refresher} {
				env := c.env(fn)
				for name, output := range map[string]string{
					"VBC_CREDENTIALS_SECRET_ID": "CredentialsSecretArn",
					"VBC_TOKEN_SECRET_ID":       "TokenSecretArn",
					"VBC_ACCESS_SECRET_ID":      "AccessSecretArn",
				} {
					if !refersTo(env[name], c.outputRef(t, output)) {
						t.Errorf("%s %s = %v, want the secret of output %s", fn, name, env[name], output)
					}
				}
			}
		})
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

	// AND the schedule is configurable
	check(t, "custom schedule", func() {
		customStack.tpl.HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{"ScheduleExpression": customSchedule})
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
	for _, fx := range []struct {
		name string
		f    fixture
	}{{"default", defaultStack}, {"custom", customStack}} {
		t.Run(fx.name, func(t *testing.T) {
			// GIVEN every identity-policy statement of the synthesized template
			stmts := fx.f.cfn.iamStatements()
			if len(stmts) == 0 {
				t.Fatal("no IAM statement found: the walker is broken")
			}
			// THEN none grants secretsmanager:*, "*", or anything on "*"
			for _, v := range wildcardViolations(stmts) {
				t.Error(v)
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
			{"Effect":"Allow","Action":"*","Resource":{"Ref":"S"}}}}]}}}}`), &c); err != nil {
		t.Fatal(err)
	}
	// WHEN the check walks them
	got := wildcardViolations(c.iamStatements())
	// THEN it reports each Allow, and not the Deny
	if len(got) != 5 {
		t.Errorf("violations = %d, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestIAM_FunctionsGetExactlyTheSecretActionsTheyUse(t *testing.T) {
	// GIVEN the default stack's functions
	c := defaultStack.cfn
	callback, refresher := c.keeperFunctions(t)
	want := []string{
		"kms:Decrypt on Key",
		"kms:GenerateDataKey on Key",
		"secretsmanager:GetSecretValue on CredentialsSecretArn",
		"secretsmanager:GetSecretValue on TokenSecretArn",
		"secretsmanager:PutSecretValue on AccessSecretArn",
		"secretsmanager:PutSecretValue on TokenSecretArn",
		"secretsmanager:UpdateSecretVersionStage on TokenSecretArn",
	}
	// THEN both roles hold exactly these grants
	for _, fn := range []string{callback, refresher} {
		if got := c.grantsOf(t, fn); !reflect.DeepEqual(got, want) {
			t.Errorf("%s grants:\n  %s\nwant:\n  %s", fn, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	// AND KMS use is limited to Secrets Manager and to the three secrets
	check(t, "kms conditions", func() {
		defaultStack.tpl.HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]any{
			"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
				assertions.Match_ObjectLike(&map[string]any{
					"Action": []string{"kms:Decrypt", "kms:GenerateDataKey"},
					"Condition": map[string]any{"StringEquals": map[string]any{
						"kms:ViaService": assertions.Match_AnyValue(),
						"kms:EncryptionContext:SecretARN": []any{
							map[string]any{"Ref": c.outputRef(t, "CredentialsSecretArn")},
							map[string]any{"Ref": c.outputRef(t, "TokenSecretArn")},
							map[string]any{"Ref": c.outputRef(t, "AccessSecretArn")},
						},
					}},
				}),
			})},
		})
	})
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
		})
	}()

	// THEN it refuses, naming every problem
	for _, want := range []string{"CallbackCodeDir", "make build", "RefreshMargin"} {
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
