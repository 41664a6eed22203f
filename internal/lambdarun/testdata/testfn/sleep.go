package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type sleepEvent struct {
	Sleep string `json:"sleep"`
}

// startSleep sleeps for the event's "sleep" duration, ignoring its deadline. It prints
// "sleep: started" first, so a test can act once the invocation is under way.
func startSleep() {
	lambda.Start(func(_ context.Context, e sleepEvent) (int, error) {
		d, err := time.ParseDuration(e.Sleep)
		if err != nil {
			return 0, err
		}
		fmt.Println("sleep: started")
		time.Sleep(d)
		return os.Getpid(), nil
	})
}
