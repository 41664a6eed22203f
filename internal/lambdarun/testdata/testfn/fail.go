package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

type notFoundError struct{ what string }

func (e *notFoundError) Error() string { return e.what + " not found" }

// startFail returns a typed error from its handler.
func startFail() {
	lambda.Start(func(context.Context) (string, error) {
		return "", &notFoundError{what: "pair"}
	})
}
