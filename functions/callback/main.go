// Command callback is the Lambda behind the registered VBC callback URL (API Gateway HTTP
// API, GET /callback): it verifies the consent state, exchanges the code and stores the new
// pair. Build it with -tags lambda.norpc for provided.al2023.
package main

import (
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/lambdaaws"
	"github.com/vbctoken/vbctoken/internal/lambdalog"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

func main() {
	log := lambdalog.New(os.Stdout, os.Getenv)
	h, err := newHandler(os.Getenv, log)
	if err != nil {
		// Lambda reports an init failure; the message lists every missing setting.
		log.Error("callback: cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// newHandler reads the environment once and builds the SDK client and keeper once per
// execution environment. The SDK configuration comes from Lambda's variables through
// lambdaaws, not config.LoadDefaultConfig: a smaller binary and a shorter init (see the
// lambdaaws package documentation for the numbers and what is given up).
func newHandler(getenv func(string) string, log *slog.Logger) (*handler, error) {
	need := config.Need{Secrets: true, RedirectURL: true}
	settings, err := config.FromEnv(getenv, need)
	if err != nil {
		return nil, err
	}
	if settings.AccountsMode() {
		// The account comes from the signed state; each account's store is opened then.
		fleet, _, err := lambdaaws.OpenFleet(settings, getenv)
		if err != nil {
			return nil, err
		}
		kc := settings.KeeperConfig(nil)
		kc.Logger, kc.Holder = log, "callback"
		accounts, err := vbctoken.NewAccounts(fleet, kc)
		if err != nil {
			return nil, err
		}
		return &handler{callback: &web.Callback{Accounts: accounts, Log: log}}, nil
	}
	settings, store, err := lambdaaws.OpenStore(getenv, need)
	if err != nil {
		return nil, err
	}
	return buildHandler(store, settings, log)
}

// buildHandler wires a handler over any store (tests pass a fake).
func buildHandler(store vbctoken.Store, settings config.Settings, log *slog.Logger) (*handler, error) {
	kc := settings.KeeperConfig(store)
	kc.Logger, kc.Holder = log, "callback"
	keeper, err := vbctoken.NewKeeper(kc)
	if err != nil {
		return nil, err
	}
	return &handler{callback: &web.Callback{Keeper: keeper, Log: log}}, nil
}
