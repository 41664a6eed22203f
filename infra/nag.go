package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// addNagChecks runs cdk-nag's AwsSolutions and Serverless rule packs over scope at synth:
// every finding that the keeper does not suppress with a reason is an error or warning
// annotation, and `cdk synth`/`deploy` stop on errors. reports writes each pack's CSV
// report next to the templates in the cloud assembly.
func addNagChecks(scope constructs.IConstruct, reports bool) {
	props := &cdknag.NagPackProps{Verbose: jsii.Bool(true), Reports: jsii.Bool(reports)}
	aspects := awscdk.Aspects_Of(scope)
	aspects.Add(cdknag.NewAwsSolutionsChecks(props), nil)
	aspects.Add(cdknag.NewServerlessChecks(props), nil)
}
