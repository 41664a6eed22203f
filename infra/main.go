// Command infra is the CDK app that deploys vbctoken: `npx aws-cdk@2.1148.1
// synth|deploy` from this directory (cdk.json runs `go run .`), or
// `CDK_OUTDIR=../cdk.out go run .` to synthesize without the CLI.
//
// Configuration comes from CDK context (`-c key=value` or cdk.json):
// authorizeUrl, tokenUrl, scope, pkce, schedule, refreshMargin, refreshMaxAge,
// alarmEmail, customDomainName with customDomainCertificateArn,
// callbackCodeDir and refresherCodeDir (directories holding prebuilt bootstrap
// binaries, such as ../dist/callback and ../dist/refresher from `make build`;
// by default synth builds both functions from source with the local Go
// toolchain), stackName (default VbcToken), nag (default true: cdk-nag's
// AwsSolutions and Serverless packs check the stack at every synth; "false"
// skips them), selfHeal ("true" creates the self-heal login secret), and
// accounts mode: accounts (the backend, "secretsmanager" or "dynamodb"; unset:
// one account) with accountSecretPrefix, accountsBatchSize,
// accountsMaxConcurrency and accountsMaxReceiveCount.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/infra/keeper"
)

func main() {
	if err := synth(); err != nil {
		fmt.Fprintln(os.Stderr, "infra:", err)
		os.Exit(1)
	}
}

// synth builds the app from its context and writes the cloud assembly.
// Invalid props (such as a missing bootstrap binary) come back as an error.
func synth() (err error) {
	defer jsii.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()

	app := awscdk.NewApp(nil)
	ctx := func(key, def string) string {
		if v, ok := app.Node().TryGetContext(jsii.String(key)).(string); ok && v != "" {
			return v
		}
		return def
	}
	props := keeper.TokenKeeperProps{
		CallbackCodeDir:  ctx("callbackCodeDir", ""),
		RefresherCodeDir: ctx("refresherCodeDir", ""),
		AuthorizeURL:     ctx("authorizeUrl", ""),
		TokenURL:         ctx("tokenUrl", ""),
		Scope:            ctx("scope", ""),
		PKCE:             ctx("pkce", "false") == "true",
		Schedule:         ctx("schedule", ""),
		RefreshMargin:    ctx("refreshMargin", ""),
		RefreshMaxAge:    ctx("refreshMaxAge", ""),
		AlarmEmail:       ctx("alarmEmail", ""),
		SelfHeal:         ctx("selfHeal", "false") == "true",
	}
	if backend := ctx("accounts", ""); backend != "" {
		a := &keeper.AccountsProps{Backend: keeper.AccountsBackend(backend), Prefix: ctx("accountSecretPrefix", "")}
		for key, dst := range map[string]*int{
			"accountsBatchSize": &a.BatchSize, "accountsMaxConcurrency": &a.MaxConcurrency, "accountsMaxReceiveCount": &a.MaxReceiveCount,
		} {
			if v := ctx(key, ""); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return fmt.Errorf("context %s=%q is not a whole number", key, v)
				}
				*dst = n
			}
		}
		props.Accounts = a
	}
	if name := ctx("customDomainName", ""); name != "" {
		props.CustomDomain = &keeper.CustomDomain{DomainName: name, CertificateArn: ctx("customDomainCertificateArn", "")}
	}
	NewVbctokenStack(app, ctx("stackName", "VbcToken"), &VbctokenStackProps{Keeper: props})
	if ctx("nag", "true") != "false" {
		addNagChecks(app, true)
	}
	app.Synth(nil)
	return nil
}
