package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
)

// startInitfail fails its init phase unless REQUIRED_SETTING is set, or when the file
// named by FAIL_IF_EXISTS exists. With REPORT_INIT_ERROR=1 it first posts the failure
// to /runtime/init/error, as a custom runtime may; otherwise it just exits, as a Go
// function's log.Fatal does. Its handler answers "ok", or exits for {"exit":true}.
func startInitfail() {
	_, err := os.Stat(os.Getenv("FAIL_IF_EXISTS"))
	if os.Getenv("REQUIRED_SETTING") == "" || os.Getenv("FAIL_IF_EXISTS") != "" && err == nil {
		fmt.Fprintln(os.Stderr, "initfail: configuration missing")
		if os.Getenv("REPORT_INIT_ERROR") == "1" {
			url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
			body := `{"errorMessage":"configuration missing","errorType":"Config.Missing"}`
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		os.Exit(1)
	}
	lambda.Start(func(_ context.Context, e struct{ Exit bool }) (string, error) {
		if e.Exit {
			os.Exit(4)
		}
		return "ok", nil
	})
}
