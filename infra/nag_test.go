package main

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/aws/constructs-go/constructs/v10"
)

// nagFindings returns the unsuppressed cdk-nag findings (errors and warnings) on a
// synthesized stack: the annotations cdk-nag left as metadata on its constructs.
func nagFindings(f fixture) []string {
	var out []string
	for _, node := range *f.stack.Node().FindAll(constructs.ConstructOrder_PREORDER) {
		for _, m := range *node.Node().Metadata() {
			level, ok := map[string]string{"aws:cdk:error": "error", "aws:cdk:warning": "warning"}[*m.Type]
			text, _ := m.Data.(string)
			if !ok || !nagRule.MatchString(text) {
				continue
			}
			text, _, _ = strings.Cut(text, "\n")
			out = append(out, fmt.Sprintf("%s %s: %s", level, *node.Node().Path(), text))
		}
	}
	sort.Strings(out)
	return out
}

// nagRule matches the rule ids of the two packs at the start of a finding.
var nagRule = regexp.MustCompile(`^\[?(AwsSolutions|Serverless)-`)

func TestNag_AwsSolutionsAndServerlessPacksFindNothingUnsuppressed(t *testing.T) {
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			for _, f := range nagFindings(fx.f) {
				t.Error(f)
			}
		})
	}
}

// suppressionsOf returns the cdk-nag suppressions recorded in a template: rule → the
// resource types it is suppressed on (with the appliesTo findings, if any), checking that
// each carries a reason a reviewer can check.
func suppressionsOf(t *testing.T, c cfnTemplate) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, id := range sortedKeys(c.Resources) {
		r := c.Resources[id]
		for _, s := range r.Metadata.CDKNag.RulesToSuppress {
			on := r.Type
			if len(s.AppliesTo) > 0 {
				on += fmt.Sprintf(" %v", s.AppliesTo)
			}
			got[s.ID] = append(got[s.ID], on)
			if len(s.Reason) < 60 {
				t.Errorf("%s suppresses %s with a thin reason %q", id, s.ID, s.Reason)
			}
		}
	}
	for rule := range got {
		sort.Strings(got[rule])
	}
	return got
}

func TestNag_EverySuppressionIsReviewedAndCarriesItsReason(t *testing.T) {
	// The suppressions of a single-account stack with every optional resource.
	oneAccount := map[string][]string{
		"AwsSolutions-SMG4": {"AWS::SecretsManager::Secret", "AWS::SecretsManager::Secret", "AWS::SecretsManager::Secret",
			"AWS::SecretsManager::Secret"},
		"AwsSolutions-APIG4":                       {"AWS::ApiGatewayV2::Route"},
		"Serverless-LambdaDLQ":                     {"AWS::Lambda::Function"},
		"Serverless-LambdaAsyncFailureDestination": {"AWS::Lambda::EventInvokeConfig"},
		"Serverless-SQSRedrivePolicy":              {"AWS::SQS::Queue"},
		"Serverless-SNSRedrivePolicy":              {"AWS::SNS::Subscription"},
		"Serverless-LambdaTracing":                 {"AWS::Lambda::Function", "AWS::Lambda::Function"},
	}
	// Accounts mode: the credentials secret alone, both dead-letter queues, the
	// mapping, and (Secrets Manager) the prefix pattern on each function's policy.
	accounts := func(wildcard ...string) map[string][]string {
		m := map[string][]string{
			"AwsSolutions-SMG4":                              {"AWS::SecretsManager::Secret"},
			"AwsSolutions-APIG4":                             {"AWS::ApiGatewayV2::Route"},
			"Serverless-LambdaDLQ":                           {"AWS::Lambda::Function"},
			"Serverless-LambdaAsyncFailureDestination":       {"AWS::Lambda::EventInvokeConfig"},
			"Serverless-SQSRedrivePolicy":                    {"AWS::SQS::Queue", "AWS::SQS::Queue"},
			"Serverless-LambdaTracing":                       {"AWS::Lambda::Function", "AWS::Lambda::Function"},
			"Serverless-LambdaEventSourceMappingDestination": {"AWS::Lambda::EventSourceMapping"},
		}
		for _, w := range wildcard {
			on := "AWS::IAM::Policy [Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:" + w + "*]"
			m["AwsSolutions-IAM5"] = []string{on, on}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		f    fixture
		want map[string][]string
	}{
		{"custom", customStack, oneAccount},
		{"accounts", accountsStack, accounts("<AWS::StackName>/accounts/")},
		{"tuned", tunedStack, accounts(tunedPrefix)},
		{"dynamo", dynamoStack, accounts()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// GIVEN the suppressions recorded in the stack, each with its reason
			got := suppressionsOf(t, tc.f.cfn)

			// THEN they are exactly the reviewed ones (infra/README.md lists them): a new
			// suppression is a design decision, not a way to make this test pass
			for rule, types := range tc.want {
				if !reflect.DeepEqual(got[rule], types) {
					t.Errorf("%s suppressed on %v, want %v", rule, got[rule], types)
				}
			}
			for rule, types := range got {
				if _, ok := tc.want[rule]; !ok {
					t.Errorf("unreviewed suppression of %s on %v", rule, types)
				}
			}
		})
	}
}
