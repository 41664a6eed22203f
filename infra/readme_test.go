package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vbctoken/vbctoken/infra/keeper"
)

// The README is what an admin and an operator follow: these tests hold it to the stack.
const (
	rootReadme  = "../README.md"
	infraReadme = "README.md"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text of the "## title" section of a Markdown document, up to the
// next second-level heading.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// runbookAlarms returns the alarm names of the runbook's "### Alarm `name`" headings.
func runbookAlarms(t *testing.T) []string {
	t.Helper()
	runbook := section(t, readFile(t, rootReadme), "Operations runbook")
	var names []string
	for _, m := range regexp.MustCompile("(?m)^### Alarm `([^`]+)`").FindAllStringSubmatch(runbook, -1) {
		names = append(names, m[1])
	}
	sort.Strings(names)
	return names
}

func alarmNames(c cfnTemplate) []string {
	var names []string
	for _, id := range c.ofType("AWS::CloudWatch::Alarm") {
		names = append(names, alarmSuffix(c.Resources[id].Properties["AlarmName"]))
	}
	sort.Strings(names)
	return names
}

func TestRunbook_HasAnEntryForEveryAlarm(t *testing.T) {
	// GIVEN the runbook's alarm headings
	headings := runbookAlarms(t)

	// THEN they are exactly the alarms of the CDK stacks in every mode, by name
	var got []string
	for _, fx := range fixtures() {
		for _, name := range alarmNames(fx.f.cfn) {
			if !contains(got, name) {
				got = append(got, name)
			}
		}
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, headings) {
		t.Errorf("CDK stack alarms %v, runbook headings %v: every alarm needs a `### Alarm `name`` entry, and no entry an alarm that is gone", got, headings)
	}
	// AND every alarm name the keeper exports is among them
	for _, name := range []string{keeper.AlarmRefreshTokenExpiring, keeper.AlarmRefresherNotReporting,
		keeper.AlarmRefresherErrors, keeper.AlarmCallback5xx, keeper.AlarmDeadLetters,
		keeper.AlarmAccountDeadLetters, keeper.AlarmAccountQueueBehind} {
		if !contains(headings, name) {
			t.Errorf("runbook lacks `### Alarm `%s``", name)
		}
	}
}

func TestRunbook_HasAnEntryForEverySAMAlarm(t *testing.T) {
	t.Parallel()
	// template.yaml as translated, every alarm whatever its condition
	if got, want := alarmNames(samWith(t, map[string]string{"AccountsBackend": "secretsmanager"})), runbookAlarms(t); !reflect.DeepEqual(got, want) {
		t.Errorf("template.yaml alarms %v, runbook headings %v", got, want)
	}
}

func TestRunbook_CoversWhatAnOperatorNeeds(t *testing.T) {
	// GIVEN the runbook
	runbook := section(t, readFile(t, rootReadme), "Operations runbook")

	// THEN it says where the logs are, what IAM an operator needs, and how to go back
	// to the previous pair
	for what, want := range map[string]string{
		"log group outputs":      "RefresherLogGroupName",
		"callback log group":     "CallbackLogGroupName",
		"API access log group":   "ApiAccessLogGroupName",
		"dashboard":              "DashboardUrl",
		"operator IAM":           "### What an operator needs (IAM)",
		"rollback command":       "aws secretsmanager update-secret-version-stage",
		"previous version label": "AWSPREVIOUS",
		"version listing":        "aws secretsmanager list-secret-version-ids",
		"alarm until consent":    "until the first consent",
	} {
		if !strings.Contains(runbook, want) {
			t.Errorf("runbook lacks %s (%q)", what, want)
		}
	}
}

// outputMention finds output names as the READMEs write them: "`Name` output" or
// "output `Name`" (also "outputs").
var outputMention = regexp.MustCompile("`([A-Z][A-Za-z]+)` outputs?\\b|outputs? `([A-Z][A-Za-z]+)`")

func TestReadmes_NameOnlyOutputsTheStackHas(t *testing.T) {
	for _, path := range []string{rootReadme, infraReadme} {
		t.Run(path, func(t *testing.T) {
			// GIVEN every output a README names
			doc := readFile(t, path)
			var named []string
			for _, m := range outputMention.FindAllStringSubmatch(doc, -1) {
				named = append(named, m[1]+m[2])
			}
			if len(named) == 0 {
				t.Fatal("no output named: the pattern is broken")
			}
			// THEN a stack in some mode has each
			outputs := map[string]bool{}
			for _, fx := range fixtures() {
				for name := range fx.f.cfn.Outputs {
					outputs[name] = true
				}
			}
			for _, name := range named {
				if !outputs[name] {
					t.Errorf("%s names output %s, which no stack has (outputs: %v)", path, name, sortedKeys(outputs))
				}
			}
		})
	}
}

func TestReadme_DeployStepsWorkInOrder(t *testing.T) {
	// GIVEN the README's Deploy section
	doc := readFile(t, rootReadme)
	deploy := section(t, doc, "Deploy")

	// THEN it links the infra README, installs vbctoken before the step that runs it,
	// and tells apps which output, import path and KMS grant they need
	if !strings.Contains(doc, "(infra/README.md)") {
		t.Error("README does not link infra/README.md")
	}
	install := strings.Index(deploy, "go install ./cmd/vbctoken")
	consent := strings.Index(deploy, "`ConsentUrlCommand` output")
	if install < 0 || consent < 0 || install > consent {
		t.Errorf("Deploy must install vbctoken (at %d) before running the ConsentUrlCommand output (at %d)", install, consent)
	}
	for what, want := range map[string]string{
		"the access secret output":          "`AccessSecretArn` output",
		"the import path":                   `"github.com/vbctoken/vbctoken/pkg/vbctoken"`,
		"kms:Decrypt for roles outside CDK": "kms:Decrypt",
		"the key output":                    "`KeyArn` output",
	} {
		if !strings.Contains(deploy, want) {
			t.Errorf("Deploy lacks %s (%q)", what, want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestCDKApp_WithoutGoSaysWhatToInstall(t *testing.T) {
	// GIVEN cdk.json's app command, which the CDK CLI runs through /bin/sh
	var cfg struct {
		App string `json:"app"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "cdk.json")), &cfg); err != nil {
		t.Fatal(err)
	}

	// WHEN it runs where no go command is in PATH
	cmd := exec.Command("/bin/sh", "-c", cfg.App)
	cmd.Env = []string{"PATH=" + t.TempDir()}
	out, err := cmd.CombinedOutput()

	// THEN it fails, saying what to install
	if err == nil || !strings.Contains(string(out), "https://go.dev/dl/") {
		t.Errorf("app without go: err %v, output %q; want a failure naming https://go.dev/dl/", err, out)
	}
}
