package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type reply struct {
	Event        json.RawMessage `json:"event"`
	RequestID    string          `json:"requestId"`
	FunctionArn  string          `json:"functionArn"`
	FunctionName string          `json:"functionName"`
	MemoryMB     int             `json:"memoryMB"`
	DeadlineMs   int64           `json:"deadlineMs"`
	TraceID      string          `json:"traceId"`
	PID          int             `json:"pid"`
	Count        int             `json:"count"`
}

var echoCount int

func handleEcho(ctx context.Context, event json.RawMessage) (reply, error) {
	echoCount++
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	trace, _ := ctx.Value("x-amzn-trace-id").(string)
	fmt.Printf("{\"msg\":\"echo\",\"count\":%d}\n", echoCount)
	return reply{
		Event:        event,
		RequestID:    lc.AwsRequestID,
		FunctionArn:  lc.InvokedFunctionArn,
		FunctionName: lambdacontext.FunctionName,
		MemoryMB:     lambdacontext.MemoryLimitInMB,
		DeadlineMs:   deadline.UnixMilli(),
		TraceID:      trace,
		PID:          os.Getpid(),
		Count:        echoCount,
	}, nil
}

// startEcho answers with its event and what Lambda told it about the invocation.
// With ECHO_SIGTERM=1 it asks for SIGTERM at shutdown and logs when it gets it.
func startEcho() {
	var opts []lambda.Option
	if os.Getenv("ECHO_SIGTERM") == "1" {
		opts = append(opts, lambda.WithEnableSIGTERM(func() {
			fmt.Println("echo: SIGTERM received")
			time.Sleep(10 * time.Millisecond) // stay a moment: Lambda SIGKILLs after the grace
		}))
	}
	lambda.StartWithOptions(handleEcho, opts...)
}
