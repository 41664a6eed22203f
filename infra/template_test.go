package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// samTemplate is the SAM template at the module root, which must describe the
// same system as the CDK stack.
const samTemplate = "../template.yaml"

const installHint = "install: pip install 'moto[server]' cfn-lint"

// requireIntegration skips the test when a tool is missing, unless
// VBC_REQUIRE_INTEGRATION=1 (CI), where a missing tool fails it.
func requireIntegration(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("VBC_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s unavailable (%v) and VBC_REQUIRE_INTEGRATION=1; %s", what, err, installHint)
	}
	t.Skipf("%s unavailable (%v); %s", what, err, installHint)
}

// cfnLint runs cfn-lint on files and returns its exit code (bits: 1 crash,
// 2 error, 4 warning, 8 informational) and output.
func cfnLint(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		requireIntegration(t, "cfn-lint", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		t.Fatalf("run cfn-lint: %v", err)
		return 0, ""
	}
}

func TestTemplateYAML_PassesCfnLint(t *testing.T) {
	t.Parallel()
	// GIVEN template.yaml

	// WHEN cfn-lint (with the SAM translator) checks it, informational rules included
	code, out := cfnLint(t, "--include-checks", "I", "--", samTemplate)

	// THEN it finds no error and no warning; informational findings are logged
	if code&(1|2|4) != 0 {
		t.Errorf("cfn-lint %s: exit %d\n%s", samTemplate, code, out)
	} else if code != 0 {
		t.Logf("cfn-lint informational findings:\n%s", out)
	}
}

func TestCDKTemplate_PassesCfnLint(t *testing.T) {
	t.Parallel()
	// GIVEN every synthesized CDK template
	dir := t.TempDir()
	var files []string
	for _, fx := range fixtures() {
		f := filepath.Join(dir, fx.name+".template.json")
		if err := os.WriteFile(f, fx.f.json, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	sort.Strings(files)

	// WHEN cfn-lint checks them
	code, out := cfnLint(t, append([]string{"--"}, files...)...)

	// THEN it finds no error. Warnings are logged, not failed: CDK itself
	// writes some (W3005: DependsOn next to a GetAtt of the same resource).
	if code&(1|2) != 0 {
		t.Errorf("cfn-lint on the CDK templates: exit %d\n%s", code, out)
	} else if code != 0 {
		t.Logf("cfn-lint findings on the CDK templates (not errors):\n%s", out)
	}
}

// samToJSON expands template.yaml through the SAM translator (the code
// cfn-lint and `sam deploy` use) into the CloudFormation JSON that would be
// deployed. A local CodeUri becomes a placeholder S3 location first, as
// `sam package` would do. Go has no YAML parser in this module's
// dependencies, so Python does the parsing.
const samToJSON = `
import json, sys
from samtranslator.yaml_helper import yaml_parse
from samtranslator.translator.transform import transform

class NoManagedPolicies:
    def load(self):
        return {}

def packaged(code_uri):
    if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
        return {"Bucket": "bucket", "Key": "key"}
    return code_uri

with open(sys.argv[1]) as f:
    tpl = yaml_parse(f.read())
fn_globals = tpl.get("Globals", {}).get("Function", {})
if "CodeUri" in fn_globals:
    fn_globals["CodeUri"] = packaged(fn_globals["CodeUri"])
for res in tpl.get("Resources", {}).values():
    if res.get("Type") == "AWS::Serverless::Function" and "CodeUri" in res.get("Properties", {}):
        res["Properties"]["CodeUri"] = packaged(res["Properties"]["CodeUri"])
json.dump(transform(tpl, {}, NoManagedPolicies()), sys.stdout)
`

// errNoSAMTranslator: no Python here has the SAM translator.
var errNoSAMTranslator = errors.New("no python with the samtranslator module (it comes with cfn-lint)")

// samPython finds a Python that has the SAM translator: python3, else the
// interpreter of the cfn-lint script (pipx installs it in its own venv).
func samPython() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	if p, err := exec.LookPath("cfn-lint"); err == nil {
		if f, err := os.ReadFile(p); err == nil && bytes.HasPrefix(f, []byte("#!")) {
			line, _, _ := strings.Cut(string(f[2:]), "\n")
			if fields := strings.Fields(line); len(fields) == 1 && strings.Contains(filepath.Base(fields[0]), "python") {
				candidates = append(candidates, fields[0])
			}
		}
	}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import samtranslator").Run() == nil {
			return py, nil
		}
	}
	return "", errNoSAMTranslator
}

// sam holds template.yaml expanded by the SAM translator, once for the package.
var sam struct {
	once sync.Once
	raw  []byte
	err  error
}

// samWith returns template.yaml as deployed with params (the others at their defaults):
// the conditions evaluated, each Fn::If replaced by its branch, AWS::NoValue removed, the
// resources and outputs of false conditions dropped, and each parameter's Default set to
// its value; references to parameters, also inside Fn::Sub, are replaced by their values.
func samWith(t *testing.T, params map[string]string) cfnTemplate {
	t.Helper()
	sam.once.Do(func() {
		py, err := samPython()
		if err != nil {
			sam.err = err
			return
		}
		cmd := exec.Command(py, "-c", samToJSON, samTemplate)
		// The translator resolves pseudo parameters and needs some region.
		cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION=us-east-1", "AWS_REGION=us-east-1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if sam.raw, err = cmd.Output(); err != nil {
			sam.err = fmt.Errorf("translate %s: %v\n%s", samTemplate, err, stderr.String())
		}
	})
	if sam.err != nil {
		if errors.Is(sam.err, errNoSAMTranslator) {
			requireIntegration(t, "SAM translator", sam.err)
		}
		t.Fatal(sam.err)
	}
	var tpl map[string]any
	if err := json.Unmarshal(sam.raw, &tpl); err != nil {
		t.Fatalf("translated %s: %v", samTemplate, err)
	}
	evaluated, err := evaluateConditions(tpl, params)
	if err != nil {
		t.Fatalf("%s with %v: %v", samTemplate, params, err)
	}
	raw, _ := json.Marshal(evaluated)
	var c cfnTemplate
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("translated %s: %v", samTemplate, err)
	}
	return c
}

// noValue marks a value that AWS::NoValue removed.
type noValue struct{}

// evaluateConditions does what CloudFormation does with a template's conditions for the
// given parameter values: it supports the Fn::Equals, Fn::Not, Fn::And, Fn::Or and
// Condition forms and Refs to parameters, which is what template.yaml uses.
func evaluateConditions(tpl map[string]any, params map[string]string) (map[string]any, error) {
	paramDefs, _ := tpl["Parameters"].(map[string]any)
	values := map[string]string{}
	for name, def := range paramDefs {
		d, _ := def.(map[string]any)
		if v, ok := d["Default"]; ok {
			values[name] = fmt.Sprint(v)
		}
	}
	for name, v := range params {
		def, ok := paramDefs[name].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no parameter %s", name)
		}
		values[name], def["Default"] = v, v
	}
	conditions, _ := tpl["Conditions"].(map[string]any)
	memo := map[string]bool{}
	var named func(string) (bool, error)
	var scalar func(any) (string, error)
	var cond func(any) (bool, error)
	scalar = func(v any) (string, error) {
		if m, ok := v.(map[string]any); ok {
			name, _ := m["Ref"].(string)
			if val, ok := values[name]; ok {
				return val, nil
			}
			return "", fmt.Errorf("cannot evaluate %v", v)
		}
		return fmt.Sprint(v), nil
	}
	cond = func(v any) (bool, error) {
		m, _ := v.(map[string]any)
		for op, arg := range m {
			list, _ := arg.([]any)
			switch op {
			case "Condition":
				name, _ := arg.(string)
				return named(name)
			case "Fn::Equals":
				if len(list) != 2 {
					break
				}
				a, err := scalar(list[0])
				if err != nil {
					return false, err
				}
				b, err := scalar(list[1])
				return a == b, err
			case "Fn::Not":
				if len(list) != 1 {
					break
				}
				b, err := cond(list[0])
				return !b, err
			case "Fn::And", "Fn::Or":
				all := op == "Fn::And"
				for _, e := range list {
					b, err := cond(e)
					if err != nil {
						return false, err
					}
					if b != all {
						return b, nil
					}
				}
				return all, nil
			}
		}
		return false, fmt.Errorf("cannot evaluate condition %v", v)
	}
	named = func(name string) (bool, error) {
		if b, ok := memo[name]; ok {
			return b, nil
		}
		def, ok := conditions[name]
		if !ok {
			return false, fmt.Errorf("no condition %s", name)
		}
		b, err := cond(def)
		memo[name] = b
		return b, err
	}
	var walk func(any) (any, error)
	walk = func(v any) (any, error) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 1 {
				if x["Ref"] == "AWS::NoValue" {
					return noValue{}, nil
				}
				if name, ok := x["Ref"].(string); ok {
					if val, ok := values[name]; ok {
						return val, nil
					}
				}
				if text, ok := x["Fn::Sub"].(string); ok {
					text = subVar.ReplaceAllStringFunc(text, func(m string) string {
						if val, ok := values[m[2:len(m)-1]]; ok {
							return val
						}
						return m
					})
					if !strings.Contains(text, "${") {
						return text, nil
					}
					return map[string]any{"Fn::Sub": text}, nil
				}
				if args, ok := x["Fn::If"].([]any); ok && len(args) == 3 {
					name, _ := args[0].(string)
					b, err := named(name)
					if err != nil {
						return nil, err
					}
					if b {
						return walk(args[1])
					}
					return walk(args[2])
				}
			}
			out := map[string]any{}
			for k, e := range x {
				w, err := walk(e)
				if err != nil {
					return nil, err
				}
				if _, gone := w.(noValue); !gone {
					out[k] = w
				}
			}
			return out, nil
		case []any:
			out := []any{}
			for _, e := range x {
				w, err := walk(e)
				if err != nil {
					return nil, err
				}
				if _, gone := w.(noValue); !gone {
					out = append(out, w)
				}
			}
			return out, nil
		}
		return v, nil
	}
	for _, section := range []string{"Resources", "Outputs"} {
		items, _ := tpl[section].(map[string]any)
		for id, item := range items {
			m, _ := item.(map[string]any)
			if name, ok := m["Condition"].(string); ok {
				b, err := named(name)
				if err != nil {
					return nil, err
				}
				if !b {
					delete(items, id)
					continue
				}
			}
			w, err := walk(m)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", section, id, err)
			}
			items[id] = w
		}
	}
	return tpl, nil
}

// functionView is what the parity test compares of one function.
type functionView struct {
	Runtime, Handler, LogFormat, AppLogLevel, SysLogLevel string
	Architectures                                         []any
	MemorySize, Timeout, ReservedConcurrency              any
	Env                                                   map[string]string // flattened with outputNames
	HasDeadLetterQueue                                    bool
	Grants                                                []string
}

func viewFunction(t *testing.T, c cfnTemplate, fn string) functionView {
	t.Helper()
	p := c.Resources[fn].Properties
	logging, _ := p["LoggingConfig"].(map[string]any)
	str := func(v any) string { s, _ := v.(string); return s }
	arch, _ := p["Architectures"].([]any)
	v := functionView{
		Runtime: str(p["Runtime"]), Handler: str(p["Handler"]), Architectures: arch,
		LogFormat: str(logging["LogFormat"]), AppLogLevel: str(logging["ApplicationLogLevel"]),
		SysLogLevel: str(logging["SystemLogLevel"]),
		MemorySize:  p["MemorySize"], Timeout: p["Timeout"], ReservedConcurrency: p["ReservedConcurrentExecutions"],
		Env:                map[string]string{},
		HasDeadLetterQueue: p["DeadLetterConfig"] != nil,
		Grants:             c.grantsOf(t, fn, true),
	}
	names := c.outputNames()
	for name, val := range c.env(fn) {
		v.Env[name] = flatten(c.resolve(val), names)
	}
	// The redirect URL is built from the API's endpoint differently (CDK: its
	// ApiEndpoint attribute; SAM: the execute-api host name); a custom domain's is text.
	if r := c.env(fn)["VBC_REDIRECT_URL"]; r != nil && len(refs(r)) > 0 {
		v.Env["VBC_REDIRECT_URL"] = "(the API's endpoint)/callback"
	}
	return v
}

// alarmView is what the parity test compares of one alarm.
type alarmView struct {
	Name, Description                                       string // Name without the stack-name prefix
	Namespace, MetricName, Statistic, Comparison, Missing   string
	Period, Threshold, EvaluationPeriods, DatapointsToAlarm any
	Dimensions                                              []string
}

func viewAlarms(c cfnTemplate) []alarmView {
	var out []alarmView
	for _, id := range c.ofType("AWS::CloudWatch::Alarm") {
		p := c.Resources[id].Properties
		s := func(k string) string { v, _ := p[k].(string); return v }
		out = append(out, alarmView{
			Name: alarmSuffix(p["AlarmName"]), Description: s("AlarmDescription"),
			Namespace: s("Namespace"), MetricName: s("MetricName"), Statistic: s("Statistic"),
			Comparison: s("ComparisonOperator"), Missing: s("TreatMissingData"),
			Period: p["Period"], Threshold: p["Threshold"], EvaluationPeriods: p["EvaluationPeriods"],
			DatapointsToAlarm: p["DatapointsToAlarm"], Dimensions: dimensionNames(p["Dimensions"]),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// alarmSuffix is an alarm's name after the stack-name prefix: CDK writes the stack's
// name as text ("Default-callback-5xx"), SAM as {"Fn::Sub": "${AWS::StackName}-callback-5xx"}.
// The test stacks' names hold no dash.
func alarmSuffix(name any) string {
	if m, ok := name.(map[string]any); ok {
		sub, _ := m["Fn::Sub"].(string)
		if rest, ok := strings.CutPrefix(sub, "${AWS::StackName}-"); ok {
			return rest
		}
		return ""
	}
	s, _ := name.(string)
	_, rest, _ := strings.Cut(s, "-")
	return rest
}

func dimensionNames(v any) []string {
	var names []string
	for _, d := range listOf(v) {
		m, _ := d.(map[string]any)
		name, _ := m["Name"].(string)
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestTemplateYAML_RefusesSelfHealInAccountsMode(t *testing.T) {
	t.Parallel()
	// GIVEN template.yaml as translated
	samWith(t, nil)
	var tpl struct {
		Rules map[string]struct {
			RuleCondition any
			Assertions    []struct{ Assert any }
		}
	}
	if err := json.Unmarshal(sam.raw, &tpl); err != nil {
		t.Fatal(err)
	}
	// THEN a rule stops a deployment with SelfHeal=true unless AccountsBackend=none, as
	// the construct refuses SelfHeal with Accounts
	rule, ok := tpl.Rules["SelfHealNeedsOneAccount"]
	cond, _ := json.Marshal(rule.RuleCondition)
	var asserts []byte
	if len(rule.Assertions) == 1 {
		asserts, _ = json.Marshal(rule.Assertions[0].Assert)
	}
	if !ok || string(cond) != `{"Fn::Equals":[{"Ref":"SelfHeal"},"true"]}` ||
		string(asserts) != `{"Fn::Equals":[{"Ref":"AccountsBackend"},"none"]}` {
		t.Errorf("rule SelfHealNeedsOneAccount: condition %s, assertion %s", cond, asserts)
	}
}

// parityModes pairs each CDK fixture with the template.yaml parameters that deploy the
// same system.
func parityModes() []struct {
	name   string
	cdk    fixture
	params map[string]string
} {
	return []struct {
		name   string
		cdk    fixture
		params map[string]string
	}{
		{"default", defaultStack, nil},
		{"custom", customStack, map[string]string{
			"TokenUrl": customTokenURL, "Scope": customScope, "Pkce": "true",
			"RefreshMargin": customMargin, "RefreshMaxAge": customMaxAge, "AlarmEmail": customEmail,
			"CustomDomainName": customDomain, "CustomDomainCertificateArn": customCertificate, "SelfHeal": "true",
		}},
		{"accounts on Secrets Manager", accountsStack, map[string]string{"AccountsBackend": "secretsmanager"}},
		{"accounts on DynamoDB", dynamoStack, map[string]string{"AccountsBackend": "dynamodb"}},
	}
}

func TestParity_SAMTemplateMatchesCDKStack(t *testing.T) {
	t.Parallel()
	for _, mode := range parityModes() {
		t.Run(mode.name, func(t *testing.T) {
			// GIVEN template.yaml expanded by the SAM translator with the mode's
			// parameters, and the CDK stack of the same mode
			sam, cdk := samWith(t, mode.params), mode.cdk.cfn
			checkParity(t, sam, cdk)
		})
	}
}

func checkParity(t *testing.T, sam, cdk cfnTemplate) {
	t.Helper()
	// WHEN each side's functions are found by what triggers them
	samCallback, samRefresher := sam.keeperFunctions(t)
	cdkCallback, cdkRefresher := cdk.keeperFunctions(t)

	// THEN the callback (HTTP route) and the refresher (schedule) agree on
	// runtime, architecture, handler, logging, sizing, environment,
	// dead-letter queue and grants with their conditions
	for _, pair := range []struct{ role, sam, cdk string }{
		{"callback", samCallback, cdkCallback},
		{"refresher", samRefresher, cdkRefresher},
	} {
		s, c := viewFunction(t, sam, pair.sam), viewFunction(t, cdk, pair.cdk)
		if !reflect.DeepEqual(s, c) {
			sj, _ := json.MarshalIndent(s, "", " ")
			cj, _ := json.MarshalIndent(c, "", " ")
			t.Errorf("%s differs:\n SAM %s: %s\n CDK %s: %s", pair.role, pair.sam, sj, pair.cdk, cj)
		}
	}

	// AND the routes agree: GET /callback only
	routeKeys := func(c cfnTemplate) []any {
		var keys []any
		for _, id := range c.ofType("AWS::ApiGatewayV2::Route") {
			keys = append(keys, c.Resources[id].Properties["RouteKey"])
		}
		return keys
	}
	if s, c := routeKeys(sam), routeKeys(cdk); !reflect.DeepEqual(s, c) || !reflect.DeepEqual(c, []any{"GET /callback"}) {
		t.Errorf("routes: SAM %v, CDK %v; want [GET /callback] on both", s, c)
	}

	// AND the schedules agree, with their retry policy, dead-letter queue and
	// input (none: the refresher's own account, or the sweep)
	schedule := func(c cfnTemplate) string {
		r := c.Resources[c.ofType("AWS::Events::Rule")[0]].Properties
		target, _ := listOf(r["Targets"])[0].(map[string]any)
		return fmt.Sprintf("%v retry=%v dlq=%v input=%v", c.resolve(r["ScheduleExpression"]), target["RetryPolicy"],
			target["DeadLetterConfig"] != nil, target["Input"])
	}
	if s, c := schedule(sam), schedule(cdk); s != c {
		t.Errorf("schedule: SAM %s; CDK %s", s, c)
	}

	// AND the alarms agree
	if s, c := viewAlarms(sam), viewAlarms(cdk); !reflect.DeepEqual(s, c) {
		t.Errorf("alarms differ:\n SAM %+v\n CDK %+v", s, c)
	}

	// AND the stateful resources agree: secrets (initial value, deletion
	// policy, key), keys, queues, the table and the event source mapping
	if s, c := viewStorage(sam), viewStorage(cdk); !reflect.DeepEqual(s, c) {
		sj, _ := json.MarshalIndent(s, "", " ")
		cj, _ := json.MarshalIndent(c, "", " ")
		t.Errorf("storage differs:\n SAM %s\n CDK %s", sj, cj)
	}

	// AND SAM's IAM passes the same wildcard check
	for _, v := range wildcardViolations(sam.iamStatements()) {
		t.Errorf("template.yaml: %s", v)
	}
	for _, id := range sam.ofType("AWS::IAM::Role") {
		if mp, ok := sam.Resources[id].Properties["ManagedPolicyArns"]; ok {
			t.Errorf("template.yaml role %s has managed policies %v", id, mp)
		}
	}

	// AND both have the same outputs but the dashboard's (CDK's only)
	want := sortedKeys(cdk.Outputs)
	want = slices.DeleteFunc(want, func(s string) bool { return s == "DashboardUrl" })
	if got := sortedKeys(sam.Outputs); !reflect.DeepEqual(got, want) {
		t.Errorf("outputs: SAM %v, CDK %v (without DashboardUrl)", got, want)
	}
}

// viewStorage renders the stateful resources of a template, named by outputNames, with
// the properties both templates set.
func viewStorage(c cfnTemplate) map[string]string {
	names := c.outputNames()
	out := map[string]string{}
	pick := func(id string, keys ...string) string {
		r := c.Resources[id]
		var parts []string
		for _, k := range keys {
			if v, ok := r.Properties[k]; ok {
				parts = append(parts, k+"="+flatten(v, names))
			}
		}
		return r.DeletionPolicy + " " + strings.Join(parts, " ")
	}
	for _, id := range c.ofType("AWS::SecretsManager::Secret") {
		out[flatten(map[string]any{"Ref": id}, names)] = pick(id, "SecretString", "KmsKeyId")
	}
	for _, id := range c.ofType("AWS::KMS::Key") {
		out[flatten(map[string]any{"Ref": id}, names)] = pick(id, "EnableKeyRotation")
	}
	for _, id := range c.ofType("AWS::SQS::Queue") {
		out[flatten(map[string]any{"Ref": id}, names)] = pick(id, "SqsManagedSseEnabled", "KmsMasterKeyId",
			"MessageRetentionPeriod", "VisibilityTimeout", "RedrivePolicy")
	}
	for _, id := range c.ofType("AWS::DynamoDB::Table") {
		out[flatten(map[string]any{"Ref": id}, names)] = pick(id, "AttributeDefinitions", "KeySchema", "BillingMode",
			"SSESpecification", "PointInTimeRecoverySpecification", "DeletionProtectionEnabled")
	}
	for _, id := range c.ofType("AWS::Lambda::EventSourceMapping") {
		out["mapping of "+flatten(c.Resources[id].Properties["EventSourceArn"], names)] = pick(id, "FunctionName",
			"BatchSize", "FunctionResponseTypes", "ScalingConfig", "Enabled")
	}
	// Queue policies: which queues must be reached over TLS.
	for _, id := range c.ofType("AWS::SQS::QueuePolicy") {
		p := c.Resources[id].Properties
		doc, _ := p["PolicyDocument"].(map[string]any)
		for _, st := range listOf(doc["Statement"]) {
			m, _ := st.(map[string]any)
			if m["Effect"] == "Deny" {
				out["TLS only on "+flatten(p["Queues"], names)] = conditionText(m["Condition"], names)
			}
		}
	}
	return out
}
