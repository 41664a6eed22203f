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
	AnsweredMs   int64           `json:"answeredMs"`
}

var echoCount int

func handleEcho(ctx context.Context, event json.RawMessage) (reply, error) {
	echoCount++
	var opts struct {
		Sleep string `json:"sleep"`
	}
	if json.Unmarshal(event, &opts) == nil && opts.Sleep != "" {
		d, err := time.ParseDuration(opts.Sleep)
		if err != nil {
			return reply{}, err
		}
		time.Sleep(d)
	}
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
		AnsweredMs:   time.Now().UnixMilli(),
	}, nil
}

// startEcho answers with its event and what Lambda told it about the invocation, after
// sleeping for the event's "sleep" duration if it has one. ECHO_SIGTERM asks for SIGTERM
// at shutdown: "exit" logs it and exits, "stay" logs it and keeps running, as a function
// whose shutdown work outlasts the grace would.
func startEcho() {
	var opts []lambda.Option
	switch os.Getenv("ECHO_SIGTERM") {
	case "exit":
		opts = append(opts, lambda.WithEnableSIGTERM(func() {
			fmt.Println("echo: SIGTERM received")
			os.Exit(0)
		}))
	case "stay":
		opts = append(opts, lambda.WithEnableSIGTERM(func() {
			fmt.Println("echo: SIGTERM received")
		}))
	}
	lambda.StartWithOptions(handleEcho, opts...)
}
