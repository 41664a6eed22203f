package main

import (
	"context"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type sleepEvent struct {
	Sleep string `json:"sleep"`
}

// startSleep sleeps for the event's "sleep" duration, ignoring its deadline.
func startSleep() {
	lambda.Start(func(_ context.Context, e sleepEvent) (int, error) {
		d, err := time.ParseDuration(e.Sleep)
		if err != nil {
			return 0, err
		}
		time.Sleep(d)
		return os.Getpid(), nil
	})
}
