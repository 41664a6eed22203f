package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

// startCrash exits with status 3 in its handler without reporting anything.
func startCrash() {
	lambda.Start(func(context.Context) error {
		os.Exit(3)
		return nil
	})
}
