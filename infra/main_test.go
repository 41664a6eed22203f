package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/infra/keeper"
)

// The stacks under test are synthesized once for the whole package: each
// synth costs seconds, and jsii's node process is started once and closed in
// TestMain.
var (
	// defaultStack uses default props, plus one app role granted through
	// GrantReadAccessToken (named appRoleName so tests find it).
	defaultStack fixture
	// customStack sets every optional prop of one account (custom domain,
	// alarm email, PKCE, schedule, margins, self-heal).
	customStack fixture
	// accountsStack is accounts mode on Secrets Manager with the defaults, and
	// dynamoStack on DynamoDB; both grant an app role read on account appAccount
	// with GrantReadAccount.
	accountsStack, dynamoStack fixture
	// tunedStack is accounts mode on Secrets Manager with every accounts prop set.
	tunedStack fixture
)

const appRoleName = "vbctoken-test-app"

// testCodeDirs holds the dummy bootstrap binaries of the fixtures, by function
// ("callback", "refresher"), for tests that build a keeper of their own.
var testCodeDirs map[string]string

// The app's account in the accounts fixtures, and tunedStack's props.
const (
	appAccount           = "acme"
	tunedPrefix          = "tenants/vbc/"
	tunedBatchSize       = 10
	tunedMaxConcurrency  = 8
	tunedMaxReceiveCount = 5
)

// fixtures are every synthesized stack, for the checks that hold in each mode.
func fixtures() []struct {
	name string
	f    fixture
} {
	return []struct {
		name string
		f    fixture
	}{{"default", defaultStack}, {"custom", customStack}, {"accounts", accountsStack}, {"dynamo", dynamoStack}, {"tuned", tunedStack}}
}

// Values of customStack's props.
const (
	customDomain      = "vbc-callback.example.com"
	customCertificate = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
	customEmail       = "ops@example.com"
	customSchedule    = "rate(30 minutes)"
	customMargin      = "3h"
	customMaxAge      = "12h"
	customTokenURL    = "https://api.example-tenant.com/token"
	customScope       = "openid offline"
)

// fixture is one synthesized stack: the assertions handle and its JSON.
type fixture struct {
	stack awscdk.Stack
	tpl   assertions.Template
	cfn   cfnTemplate
	json  []byte // the template as synthesized
}

func TestMain(m *testing.M) {
	// Node 20's end-of-life banner would bury the test output.
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	// CDK's built-in synth-time validation (a WASM rule engine) costs about
	// 30 s per synth here; TestCDKTemplate_PassesCfnLint checks the template
	// instead. `CDK_VALIDATION=true go test` brings it back.
	if _, set := os.LookupEnv("CDK_VALIDATION"); !set {
		os.Setenv("CDK_VALIDATION", "false")
	}
	// The CDK packages' init() prepared the jsii kernel process with the
	// environment of that moment (it starts on first use); drop it so the one
	// used below sees the variables above. Type registrations survive.
	jsii.Close()

	code := func() int {
		defer jsii.Close()
		tmp, err := os.MkdirTemp("", "vbctoken-infra-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if err := synthFixtures(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "synthesize test stacks:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// synthFixtures builds both stacks in one app with dummy bootstrap binaries,
// so the tests need no `make build`.
func synthFixtures(dir string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	codeDirs := map[string]string{}
	testCodeDirs = codeDirs
	for _, name := range []string{"callback", "refresher"} {
		d := filepath.Join(dir, "dist", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "bootstrap"), []byte("dummy "+name), 0o755); err != nil {
			return err
		}
		codeDirs[name] = d
	}

	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(filepath.Join(dir, "cdk.out"))})
	def := NewVbctokenStack(app, "Default", &VbctokenStackProps{Keeper: keeper.TokenKeeperProps{
		CallbackCodeDir: codeDirs["callback"], RefresherCodeDir: codeDirs["refresher"],
	}})
	appRole := awsiam.NewRole(def.Stack, jsii.String("AppRole"), &awsiam.RoleProps{
		RoleName:  jsii.String(appRoleName),
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
	})
	def.Keeper.GrantReadAccessToken(appRole)

	custom := NewVbctokenStack(app, "Custom", &VbctokenStackProps{Keeper: keeper.TokenKeeperProps{
		CallbackCodeDir: codeDirs["callback"], RefresherCodeDir: codeDirs["refresher"],
		TokenURL:      customTokenURL,
		Scope:         customScope,
		PKCE:          true,
		RefreshMargin: customMargin,
		RefreshMaxAge: customMaxAge,
		AlarmEmail:    customEmail,
		CustomDomain:  &keeper.CustomDomain{DomainName: customDomain, CertificateArn: customCertificate},
		SelfHeal:      true,
	}})

	schedules := map[string]string{"Tuned": customSchedule}
	fleet := func(id string, accounts keeper.AccountsProps, app2 bool) *VbctokenStack {
		s := NewVbctokenStack(app, id, &VbctokenStackProps{Keeper: keeper.TokenKeeperProps{
			CallbackCodeDir: codeDirs["callback"], RefresherCodeDir: codeDirs["refresher"],
			Accounts: &accounts,
			Schedule: schedules[id],
		}})
		if app2 {
			role := awsiam.NewRole(s.Stack, jsii.String("AppRole"), &awsiam.RoleProps{
				RoleName:  jsii.String(appRoleName),
				AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
			})
			s.Keeper.GrantReadAccount(role, appAccount)
		}
		return s
	}
	accounts := fleet("Accounts", keeper.AccountsProps{}, true)
	dynamo := fleet("Dynamo", keeper.AccountsProps{Backend: keeper.BackendDynamoDB}, true)
	tuned := fleet("Tuned", keeper.AccountsProps{
		Prefix: tunedPrefix, BatchSize: tunedBatchSize, MaxConcurrency: tunedMaxConcurrency, MaxReceiveCount: tunedMaxReceiveCount,
	}, false)

	addNagChecks(app, false)

	for _, f := range []struct {
		fx    *fixture
		stack awscdk.Stack
	}{{&defaultStack, def.Stack}, {&customStack, custom.Stack}, {&accountsStack, accounts.Stack},
		{&dynamoStack, dynamo.Stack}, {&tunedStack, tuned.Stack}} {
		if *f.fx, err = newFixture(f.stack); err != nil {
			return err
		}
	}
	return nil
}

func newFixture(stack awscdk.Stack) (fixture, error) {
	tpl := assertions.Template_FromStack(stack, nil)
	raw, err := json.Marshal(tpl.ToJSON())
	if err != nil {
		return fixture{}, err
	}
	var cfn cfnTemplate
	if err := json.Unmarshal(raw, &cfn); err != nil {
		return fixture{}, err
	}
	return fixture{stack: stack, tpl: tpl, cfn: cfn, json: raw}, nil
}

// check runs a CDK assertion, which panics (a jsii error) when it fails, and
// turns the panic into a test failure with the assertion's message.
func check(t *testing.T, what string, assertion func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	assertion()
}

// ---- plain-JSON view of a CloudFormation template --------------------------
// Used where assertions cannot express the check (every statement of every
// policy) and for the parity test, which reads the SAM template the same way.

type cfnTemplate struct {
	Parameters map[string]struct {
		Default any `json:"Default"`
	} `json:"Parameters"`
	Resources map[string]cfnResource `json:"Resources"`
	Outputs   map[string]struct {
		Value     any    `json:"Value"`
		Condition string `json:"Condition"`
	} `json:"Outputs"`
}

type cfnResource struct {
	Type           string         `json:"Type"`
	Properties     map[string]any `json:"Properties"`
	DeletionPolicy string         `json:"DeletionPolicy"`
	Condition      string         `json:"Condition"`
	Metadata       struct {
		CDKNag struct {
			RulesToSuppress []struct {
				ID        string `json:"id"`
				Reason    string `json:"reason"`
				AppliesTo []any  `json:"applies_to"`
			} `json:"rules_to_suppress"`
		} `json:"cdk_nag"`
	} `json:"Metadata"`
}

// ofType returns the logical ids of the resources of type typ, sorted.
func (c cfnTemplate) ofType(typ string) []string {
	var ids []string
	for id, r := range c.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// refs returns the logical ids v refers to: Ref, Fn::GetAtt, and ${Name} or
// ${Name.Attr} inside Fn::Sub strings (pseudo parameters excluded).
func refs(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				switch k {
				case "Ref":
					if s, ok := val.(string); ok && !strings.HasPrefix(s, "AWS::") {
						out = append(out, s)
					}
				case "Fn::GetAtt":
					if l, ok := val.([]any); ok && len(l) > 0 {
						if s, ok := l[0].(string); ok {
							out = append(out, s)
						}
					}
				case "Fn::Sub":
					s, _ := val.(string)
					if l, ok := val.([]any); ok && len(l) > 0 {
						s, _ = l[0].(string)
						walk(l[1:])
					}
					for _, part := range strings.Split(s, "${")[1:] {
						name, _, _ := strings.Cut(part, "}")
						name, _, _ = strings.Cut(name, ".")
						if !strings.HasPrefix(name, "AWS::") && !strings.HasPrefix(name, "!") {
							out = append(out, name)
						}
					}
				default:
					walk(val)
				}
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// refersTo reports whether v refers to logical id id.
func refersTo(v any, id string) bool {
	for _, r := range refs(v) {
		if r == id {
			return true
		}
	}
	return false
}

// outputRef returns the logical id the output named name refers to.
func (c cfnTemplate) outputRef(t *testing.T, name string) string {
	t.Helper()
	o, ok := c.Outputs[name]
	if !ok {
		t.Fatalf("output %s missing", name)
	}
	r := refs(o.Value)
	if len(r) != 1 {
		t.Fatalf("output %s refers to %v, want exactly one resource", name, r)
	}
	return r[0]
}

// resolve replaces {"Ref": Parameter} by the parameter's default.
func (c cfnTemplate) resolve(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		if name, ok := m["Ref"].(string); ok {
			if p, ok := c.Parameters[name]; ok && p.Default != nil {
				return p.Default
			}
		}
	}
	return v
}

// keeperFunctions finds the two functions by what they are wired to, not by
// name: the callback is the target of the GET /callback route's integration;
// the refresher is the target of the scheduled rule.
func (c cfnTemplate) keeperFunctions(t *testing.T) (callback, refresher string) {
	t.Helper()
	routes := c.ofType("AWS::ApiGatewayV2::Route")
	if len(routes) != 1 {
		t.Fatalf("want exactly one route, found %v", routes)
	}
	route := c.Resources[routes[0]]
	for _, integ := range refs(route.Properties["Target"]) {
		if c.Resources[integ].Type == "AWS::ApiGatewayV2::Integration" {
			for _, fn := range refs(c.Resources[integ].Properties["IntegrationUri"]) {
				if c.Resources[fn].Type == "AWS::Lambda::Function" {
					callback = fn
				}
			}
		}
	}
	rules := c.ofType("AWS::Events::Rule")
	if len(rules) != 1 {
		t.Fatalf("want exactly one EventBridge rule, found %v", rules)
	}
	for _, fn := range refs(c.Resources[rules[0]].Properties["Targets"]) {
		if c.Resources[fn].Type == "AWS::Lambda::Function" {
			refresher = fn
		}
	}
	if callback == "" || refresher == "" || callback == refresher {
		t.Fatalf("functions by role: callback %q, refresher %q; want two distinct functions", callback, refresher)
	}
	return callback, refresher
}

// env returns the environment variables of function fn.
func (c cfnTemplate) env(fn string) map[string]any {
	env, _ := c.Resources[fn].Properties["Environment"].(map[string]any)
	vars, _ := env["Variables"].(map[string]any)
	return vars
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---- IAM statements ----------------------------------------------------------

// statement is one IAM policy statement and where it was found.
type statement struct {
	where string
	body  map[string]any
}

// iamStatements returns every statement of every identity policy in the
// template: AWS::IAM::Policy, AWS::IAM::ManagedPolicy and roles' inline
// Policies. Resource policies (key, queue, topic) are not identity policies.
func (c cfnTemplate) iamStatements() []statement {
	var out []statement
	add := func(where string, doc any) {
		d, _ := doc.(map[string]any)
		switch s := d["Statement"].(type) {
		case []any:
			for i, st := range s {
				m, _ := st.(map[string]any)
				out = append(out, statement{where: fmt.Sprintf("%s statement %d", where, i), body: m})
			}
		case map[string]any:
			out = append(out, statement{where: where + " statement", body: s})
		}
	}
	for _, id := range sortedKeys(c.Resources) {
		r := c.Resources[id]
		switch r.Type {
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			add(id, r.Properties["PolicyDocument"])
		case "AWS::IAM::Role":
			pols, _ := r.Properties["Policies"].([]any)
			for i, p := range pols {
				pm, _ := p.(map[string]any)
				add(fmt.Sprintf("%s inline policy %d", id, i), pm["PolicyDocument"])
			}
		}
	}
	return out
}

// listOf returns a statement field that may be a single value or a list, as a list.
func listOf(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// wildcardViolations lists statements that grant a secretsmanager wildcard
// action, any "*" action, anything on Resource "*" or on a resource pattern
// other than the accounts-mode prefix pattern (secret:<prefix>* with a prefix
// that ends with "/"), or use NotAction/NotResource (wildcards by exclusion).
// Resources are read through Fn::Join and Fn::Sub, as CDK and SAM write them.
func wildcardViolations(stmts []statement) []string {
	var bad []string
	for _, s := range stmts {
		if s.body["Effect"] != "Allow" {
			continue
		}
		for _, k := range []string{"NotAction", "NotResource"} {
			if _, ok := s.body[k]; ok {
				bad = append(bad, fmt.Sprintf("%s uses %s", s.where, k))
			}
		}
		for _, a := range listOf(s.body["Action"]) {
			as, _ := a.(string)
			if as == "*" || strings.HasPrefix(strings.ToLower(as), "secretsmanager:") && strings.ContainsAny(as, "*?") {
				bad = append(bad, fmt.Sprintf("%s grants action %q", s.where, as))
			}
		}
		for _, r := range listOf(s.body["Resource"]) {
			rs := flatten(r, nil)
			switch {
			case rs == "*":
				bad = append(bad, fmt.Sprintf("%s grants %v on Resource \"*\"", s.where, s.body["Action"]))
			case strings.Contains(rs, "*") && !prefixPattern.MatchString(rs):
				bad = append(bad, fmt.Sprintf("%s grants %v on the pattern %q", s.where, s.body["Action"], rs))
			}
		}
	}
	return bad
}

// prefixPattern is the one wildcard resource allowed: every secret under the
// accounts-mode prefix, which ends with "/" and holds no wildcard itself.
var prefixPattern = regexp.MustCompile(`^arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:[^*?]+/\*$`)

// outputNames names resources by the stack output that refers to each alone (the first
// output by name when several do), so that CDK's and SAM's templates compare equal.
func (c cfnTemplate) outputNames() map[string]string {
	names := map[string]string{}
	for _, out := range sortedKeys(c.Outputs) {
		if r := refs(c.Outputs[out].Value); len(r) == 1 {
			if _, taken := names[r[0]]; !taken {
				names[r[0]] = out
			}
		}
	}
	return names
}

// flatten renders a template value as text: a reference to a resource alone as the
// resource's name in names (or "?id" when it has none, or the id when names is nil),
// and inside Fn::Join, Fn::Sub, lists and objects as ${name}; pseudo parameters as
// ${AWS::X}; objects with sorted keys; other values as JSON. CDK's Fn::Join and SAM's Fn::Sub of the same ARN give the same text.
func flatten(v any, names map[string]string) string {
	name := func(id string) string {
		if strings.HasPrefix(id, "AWS::") || names == nil {
			return id
		}
		if n, ok := names[id]; ok {
			return n
		}
		return "?" + id
	}
	var inner func(v any) string
	inner = func(v any) string {
		switch x := v.(type) {
		case string:
			return x
		case map[string]any:
			if len(x) != 1 || !isIntrinsic(x) {
				var parts []string
				for _, k := range sortedKeys(x) {
					parts = append(parts, k+":"+inner(x[k]))
				}
				return "{" + strings.Join(parts, ",") + "}"
			}
			if id, ok := x["Ref"].(string); ok {
				return "${" + name(id) + "}"
			}
			if l, ok := x["Fn::GetAtt"].([]any); ok && len(l) > 0 {
				id, _ := l[0].(string)
				return "${" + name(id) + "}"
			}
			if l, ok := x["Fn::Join"].([]any); ok && len(l) == 2 {
				sep, _ := l[0].(string)
				var parts []string
				for _, p := range listOf(l[1]) {
					parts = append(parts, inner(p))
				}
				return strings.Join(parts, sep)
			}
			if sub, ok := x["Fn::Sub"]; ok {
				text, _ := sub.(string)
				if l, ok := sub.([]any); ok && len(l) > 0 {
					text, _ = l[0].(string) // variables maps are not used in these templates
				}
				return subVar.ReplaceAllStringFunc(text, func(m string) string {
					id, _, _ := strings.Cut(m[2:len(m)-1], ".")
					return "${" + name(id) + "}"
				})
			}
		case []any:
			var parts []string
			for _, e := range x {
				parts = append(parts, inner(e))
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		if id, ok := m["Ref"].(string); ok && !strings.HasPrefix(id, "AWS::") {
			return name(id)
		}
		if l, ok := m["Fn::GetAtt"].([]any); ok && len(l) > 0 {
			id, _ := l[0].(string)
			return name(id)
		}
	}
	return inner(v)
}

// isIntrinsic reports whether m is a Ref or an Fn:: function.
func isIntrinsic(m map[string]any) bool {
	for k := range m {
		if k == "Ref" || strings.HasPrefix(k, "Fn::") {
			return true
		}
	}
	return false
}

// subVar matches a ${Name} or ${Name.Attr} variable of an Fn::Sub string (not ${!Literal}).
var subVar = regexp.MustCompile(`\$\{[A-Za-z0-9:]+(\.[A-Za-z0-9.]+)?\}`)

// grantsOf returns the grants of the role that runs function fn beyond its log group, as
// "action on RESOURCE" strings where RESOURCE is flattened with outputNames (a secret
// named by the output that refers to it, a pattern as its ARN text), so CDK and SAM
// compare equal. withConditions appends each statement's conditions.
func (c cfnTemplate) grantsOf(t *testing.T, fn string, withConditions bool) []string {
	t.Helper()
	role := ""
	for _, r := range refs(c.Resources[fn].Properties["Role"]) {
		role = r
	}
	if role == "" {
		t.Fatalf("function %s has no role reference", fn)
	}
	names := c.outputNames()
	var grants []string
	for _, s := range c.iamStatements() {
		if !strings.HasPrefix(s.where, role+" ") && !c.policyAttachedTo(strings.Fields(s.where)[0], role) {
			continue
		}
		cond := ""
		if withConditions && s.body["Condition"] != nil {
			cond = " if " + conditionText(s.body["Condition"], names)
		}
		for _, a := range listOf(s.body["Action"]) {
			as, _ := a.(string)
			if strings.HasPrefix(as, "logs:") {
				continue
			}
			for _, r := range listOf(s.body["Resource"]) {
				grants = append(grants, as+" on "+flatten(r, names)+cond)
			}
		}
	}
	sort.Strings(grants)
	return grants
}

// conditionText renders a statement's Condition block in a stable order.
func conditionText(cond any, names map[string]string) string {
	ops, _ := cond.(map[string]any)
	var parts []string
	for _, op := range sortedKeys(ops) {
		keys, _ := ops[op].(map[string]any)
		for _, k := range sortedKeys(keys) {
			parts = append(parts, op+" "+k+"="+flatten(keys[k], names))
		}
	}
	return strings.Join(parts, "; ")
}

// policyAttachedTo reports whether AWS::IAM::Policy id is attached to role.
func (c cfnTemplate) policyAttachedTo(id, role string) bool {
	r, ok := c.Resources[id]
	return ok && r.Type == "AWS::IAM::Policy" && refersTo(r.Properties["Roles"], role)
}

// roleNamed returns the logical id of the role with RoleName name.
func (c cfnTemplate) roleNamed(t *testing.T, name string) string {
	t.Helper()
	for _, id := range c.ofType("AWS::IAM::Role") {
		if c.Resources[id].Properties["RoleName"] == name {
			return id
		}
	}
	t.Fatalf("role %s not found", name)
	return ""
}

// statementsOf returns the identity-policy statements of role.
func (c cfnTemplate) statementsOf(role string) []map[string]any {
	var out []map[string]any
	for _, s := range c.iamStatements() {
		if c.policyAttachedTo(strings.Fields(s.where)[0], role) || strings.HasPrefix(s.where, role+" ") {
			out = append(out, s.body)
		}
	}
	return out
}
