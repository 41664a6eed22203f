package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
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
	// GIVEN both synthesized CDK templates
	dir := t.TempDir()
	var files []string
	for name, fx := range map[string]fixture{"default": defaultStack, "custom": customStack} {
		f := filepath.Join(dir, name+".template.json")
		if err := os.WriteFile(f, fx.json, 0o600); err != nil {
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
	return "", errors.New("no python with the samtranslator module (it comes with cfn-lint)")
}

func loadSAM(t *testing.T) cfnTemplate {
	t.Helper()
	py, err := samPython()
	if err != nil {
		requireIntegration(t, "SAM translator", err)
	}
	cmd := exec.Command(py, "-c", samToJSON, samTemplate)
	// The translator resolves pseudo parameters and needs some region.
	cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION=us-east-1", "AWS_REGION=us-east-1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("translate %s: %v\n%s", samTemplate, err, stderr.String())
	}
	var c cfnTemplate
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("translated %s: %v", samTemplate, err)
	}
	return c
}

// functionView is what the parity test compares of one function.
type functionView struct {
	Runtime, Handler, LogFormat, AppLogLevel, SysLogLevel string
	Architectures                                         []any
	MemorySize, Timeout, ReservedConcurrency              any
	EnvNames                                              []string
	PlainEnv                                              map[string]any // values that are not references
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
		EnvNames:           sortedKeys(c.env(fn)),
		PlainEnv:           map[string]any{},
		HasDeadLetterQueue: p["DeadLetterConfig"] != nil,
		Grants:             c.grantsOf(t, fn),
	}
	for name, val := range c.env(fn) {
		if r := c.resolve(val); len(refs(r)) == 0 && !isIntrinsic(r) {
			v.PlainEnv[name] = r
		}
	}
	return v
}

func isIntrinsic(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for k := range m {
		if k == "Ref" || strings.HasPrefix(k, "Fn::") {
			return true
		}
	}
	return false
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

func TestParity_SAMTemplateMatchesCDKStack(t *testing.T) {
	t.Parallel()
	// GIVEN template.yaml expanded by the SAM translator, and the default CDK stack
	sam, cdk := loadSAM(t), defaultStack.cfn

	// WHEN each side's functions are found by what triggers them
	samCallback, samRefresher := sam.keeperFunctions(t)
	cdkCallback, cdkRefresher := cdk.keeperFunctions(t)

	// THEN the callback (HTTP route) and the refresher (schedule) agree on
	// runtime, architecture, handler, logging, sizing, environment variable
	// names and literal values, dead-letter queue and Secrets Manager/KMS grants
	for _, pair := range []struct{ role, sam, cdk string }{
		{"callback", samCallback, cdkCallback},
		{"refresher", samRefresher, cdkRefresher},
	} {
		s, c := viewFunction(t, sam, pair.sam), viewFunction(t, cdk, pair.cdk)
		if !reflect.DeepEqual(s, c) {
			t.Errorf("%s differs:\n SAM %s: %+v\n CDK %s: %+v", pair.role, pair.sam, s, pair.cdk, c)
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

	// AND the schedules agree, with their retry policy and dead-letter queue
	schedule := func(c cfnTemplate) (any, any, bool) {
		r := c.Resources[c.ofType("AWS::Events::Rule")[0]].Properties
		target, _ := listOf(r["Targets"])[0].(map[string]any)
		return c.resolve(r["ScheduleExpression"]), target["RetryPolicy"], target["DeadLetterConfig"] != nil
	}
	sExpr, sRetry, sDLQ := schedule(sam)
	cExpr, cRetry, cDLQ := schedule(cdk)
	if sExpr != cExpr || !reflect.DeepEqual(sRetry, cRetry) || sDLQ != cDLQ || cExpr != "rate(1 hour)" {
		t.Errorf("schedule: SAM %v %v dlq=%v; CDK %v %v dlq=%v", sExpr, sRetry, sDLQ, cExpr, cRetry, cDLQ)
	}

	// AND the alarms agree
	if s, c := viewAlarms(sam), viewAlarms(cdk); !reflect.DeepEqual(s, c) {
		t.Errorf("alarms differ:\n SAM %+v\n CDK %+v", s, c)
	}

	// AND the secrets agree on initial value and deletion policy, and SAM's
	// IAM passes the same wildcard check
	for _, out := range []string{"CredentialsSecretArn", "TokenSecretArn", "AccessSecretArn"} {
		s, c := sam.Resources[sam.outputRef(t, out)], cdk.Resources[cdk.outputRef(t, out)]
		if s.Properties["SecretString"] != c.Properties["SecretString"] || s.DeletionPolicy != c.DeletionPolicy {
			t.Errorf("secret %s: SAM %v/%s, CDK %v/%s", out, s.Properties["SecretString"], s.DeletionPolicy,
				c.Properties["SecretString"], c.DeletionPolicy)
		}
	}
	for _, v := range wildcardViolations(sam.iamStatements()) {
		t.Errorf("template.yaml: %s", v)
	}
	for _, id := range sam.ofType("AWS::IAM::Role") {
		if mp, ok := sam.Resources[id].Properties["ManagedPolicyArns"]; ok {
			t.Errorf("template.yaml role %s has managed policies %v", id, mp)
		}
	}

	// AND SAM has every output of the default CDK stack but the dashboard's
	// (the dashboard is CDK's only)
	for name := range cdk.Outputs {
		if _, ok := sam.Outputs[name]; !ok && name != "DashboardUrl" {
			t.Errorf("template.yaml lacks output %s", name)
		}
	}
}
