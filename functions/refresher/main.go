// Command refresher is the Lambda on the EventBridge schedule: it refreshes the VBC token
// pair when the policy says so (well inside the 7-day window) and stores the new pair.
// Build it with -tags lambda.norpc for provided.al2023.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/lambdaaws"
	"github.com/vbctoken/vbctoken/internal/lambdalog"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

func main() {
	log := lambdalog.New(os.Stdout, os.Getenv)
	h, err := newHandler(os.Getenv, log)
	if err != nil {
		log.Error("refresher: cannot start", "error", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// newHandler reads the environment once and builds the SDK client and keeper once per
// execution environment. The SDK configuration comes from Lambda's variables through
// lambdaaws, not config.LoadDefaultConfig: a smaller binary and a shorter init (see the
// lambdaaws package documentation for the numbers and what is given up).
func newHandler(getenv func(string) string, log *slog.Logger) (*handler, error) {
	settings, err := config.FromEnv(getenv, config.Need{Secrets: true})
	if err != nil {
		return nil, err
	}
	if settings.AccountsMode() {
		return newAccountsHandler(settings, getenv, log)
	}
	settings, store, err := lambdaaws.OpenStore(getenv, config.Need{Secrets: true})
	if err != nil {
		return nil, err
	}
	return buildHandler(store, settings, log, getenv)
}

// newAccountsHandler builds the accounts-mode refresher: the fleet of the configured
// backend, a keeper per account, and the queue the sweep fills.
func newAccountsHandler(settings config.Settings, getenv func(string) string, log *slog.Logger) (*handler, error) {
	if settings.AccountQueueURL == "" {
		return nil, fmt.Errorf("configuration: %s is not set (the queue of the hourly sweep; accounts mode needs it)", config.EnvAccountQueueURL)
	}
	fleet, awsCfg, err := lambdaaws.OpenFleet(settings, getenv)
	if err != nil {
		return nil, err
	}
	kc := settings.KeeperConfig(nil)
	kc.Logger, kc.Holder = log, functionName(getenv)
	accounts, err := vbctoken.NewAccounts(fleet, kc)
	if err != nil {
		return nil, err
	}
	queue := sqs.NewFromConfig(lambdaaws.ForService(awsCfg, getenv, lambdaaws.EnvEndpointSQS))
	return &handler{accounts: accounts, queue: queue, queueURL: settings.AccountQueueURL,
		metrics: &lineWriter{w: os.Stdout}, log: log, now: time.Now, getenv: getenv}, nil
}

// buildHandler wires a single-account handler over any store (tests pass a fake). With a
// self-heal secret configured, the keeper may restore a lost chain with its login.
func buildHandler(store vbctoken.Store, settings config.Settings, log *slog.Logger, getenv func(string) string) (*handler, error) {
	kc := settings.KeeperConfig(store)
	kc.Logger, kc.Holder = log, functionName(getenv)
	if settings.SelfHealSecretID != "" {
		login, ok := store.(vbctoken.LoginSource)
		if !ok {
			return nil, fmt.Errorf("configuration: %s is set but the store cannot read it", config.EnvSelfHealSecretID)
		}
		kc.SelfHeal = login
	}
	keeper, err := vbctoken.NewKeeper(kc)
	if err != nil {
		return nil, err
	}
	return &handler{keeper: keeper, metrics: &lineWriter{w: os.Stdout}, log: log, now: time.Now, getenv: getenv}, nil
}

// lineWriter serialises whole-line writes from the records of one batch, which run
// concurrently.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
