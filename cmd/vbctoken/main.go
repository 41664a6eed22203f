// Command vbctoken is the admin command line of vbctoken: consent-url, status, refresh,
// login, reset, accounts and serve (the local run behind `make local`). Run
// `vbctoken --help`; docs/design.md "Admin CLI" is its contract.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vbctoken/vbctoken/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one stops the process at once.
		<-ctx.Done()
		stop()
	}()
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
