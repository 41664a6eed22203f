// Command lambdabuild compiles one Lambda function the way vbctoken ships it (see package
// lambdabuild for the flags): `go run ./internal/lambdabuild/cmd/lambdabuild -o DIR PKG`
// writes DIR/bootstrap for linux/arm64. The Makefile and SAM's makefile build targets
// call it, so the flags live in one place.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/vbctoken/vbctoken/internal/lambdabuild"
)

func main() {
	out := flag.String("o", "", "directory to write the bootstrap binary into (required)")
	goos := flag.String("goos", lambdabuild.GOOS, "target operating system")
	goarch := flag.String("goarch", lambdabuild.GOARCH, "target architecture")
	goBin := flag.String("go", "go", "the go command")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: lambdabuild -o DIR [-goos linux] [-goarch arm64] [-go go] PACKAGE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "lambdabuild:", err)
		os.Exit(1)
	}
	cmd := lambdabuild.Command(context.Background(), *goBin, ".", flag.Arg(0), *out, *goos, *goarch)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "lambdabuild: build %s for %s/%s: %v\n", flag.Arg(0), *goos, *goarch, err)
		os.Exit(1)
	}
}
