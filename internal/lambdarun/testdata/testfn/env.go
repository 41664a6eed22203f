package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
)

// startEnv prints the names of its environment variables, one per line, and
// returns them sorted.
func startEnv() {
	lambda.Start(func(context.Context) ([]string, error) {
		var names []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			names = append(names, name)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Println("env:", n)
		}
		return names, nil
	})
}
