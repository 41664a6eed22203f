package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

// startPanic panics in its handler; aws-lambda-go reports the panic, then exits.
func startPanic() {
	lambda.Start(func(context.Context) error {
		panic("boom")
	})
}
