package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	// customStack sets every optional prop (custom domain, alarm email,
	// PKCE, schedule, margins).
	customStack fixture
)

const appRoleName = "vbctoken-test-app"

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
		Schedule:      customSchedule,
		RefreshMargin: customMargin,
		RefreshMaxAge: customMaxAge,
		AlarmEmail:    customEmail,
		CustomDomain:  &keeper.CustomDomain{DomainName: customDomain, CertificateArn: customCertificate},
	}})

	addNagChecks(app, false)

	if defaultStack, err = newFixture(def.Stack); err != nil {
		return err
	}
	customStack, err = newFixture(custom.Stack)
	return err
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
				ID     string `json:"id"`
				Reason string `json:"reason"`
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
// action, any "*" action, anything on a literal resource containing "*", or
// use NotAction/NotResource (which are wildcards by exclusion).
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
			if rs, ok := r.(string); ok && strings.Contains(rs, "*") {
				bad = append(bad, fmt.Sprintf("%s grants %v on resource %q", s.where, s.body["Action"], rs))
			}
		}
	}
	return bad
}

// grantsOf returns the Secrets Manager and KMS grants of the role that runs
// function fn, as "action on OUTPUT" strings where OUTPUT names the secret or
// key by the stack output that refers to it (so CDK and SAM compare equal).
func (c cfnTemplate) grantsOf(t *testing.T, fn string) []string {
	t.Helper()
	role := ""
	for _, r := range refs(c.Resources[fn].Properties["Role"]) {
		role = r
	}
	if role == "" {
		t.Fatalf("function %s has no role reference", fn)
	}
	names := map[string]string{}
	for _, out := range []string{"CredentialsSecretArn", "TokenSecretArn", "AccessSecretArn"} {
		names[c.outputRef(t, out)] = out
	}
	for _, id := range c.ofType("AWS::KMS::Key") {
		names[id] = "Key"
	}
	var grants []string
	for _, s := range c.iamStatements() {
		if !strings.HasPrefix(s.where, role+" ") && !c.policyAttachedTo(strings.Fields(s.where)[0], role) {
			continue
		}
		for _, a := range listOf(s.body["Action"]) {
			as, _ := a.(string)
			if !strings.HasPrefix(as, "secretsmanager:") && !strings.HasPrefix(as, "kms:") {
				continue
			}
			for _, r := range listOf(s.body["Resource"]) {
				for _, id := range refs(r) {
					grants = append(grants, as+" on "+names[id])
				}
			}
		}
	}
	sort.Strings(grants)
	return grants
}

// policyAttachedTo reports whether AWS::IAM::Policy id is attached to role.
func (c cfnTemplate) policyAttachedTo(id, role string) bool {
	r, ok := c.Resources[id]
	return ok && r.Type == "AWS::IAM::Policy" && refersTo(r.Properties["Roles"], role)
}
