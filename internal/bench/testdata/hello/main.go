// Command hello is the floor vbctoken's functions are measured against: the smallest
// aws-lambda-go function (it answers every event with a constant), built and run exactly
// like them.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(ctx context.Context, ev map[string]any) (string, error) { return "hello", nil })
}
