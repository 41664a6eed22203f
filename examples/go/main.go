// The Go example: a small app that calls a VBC API with the access token vbctoken keeps in
// Secrets Manager, through the Source's client: the client attaches the token and, on a
// 401, re-reads the access secret and retries once (README "Apps").
//
// Environment: VBC_ACCESS_SECRET_ID (the access secret's name or ARN), VBC_API_URL (the API
// to call), and the usual AWS settings (region, credentials, AWS_ENDPOINT_URL_SECRETS_MANAGER).
//
// Run by vbctoken's tests (examples/examples_test.go), which drive it over stdin, one line
// per command and one line of answer each:
//
//	call        GET VBC_API_URL once; prints "<status> <sub>"
//	advance N   move the reader's clock N seconds forward; prints "ok" (the reader's clock
//	            is a fake one for the tests: it stands still between advances)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// The test's fake clock: the start time, moved only by "advance".
	start, offset := time.Now(), atomic.Int64{}
	clock := func() time.Time { return start.Add(time.Duration(offset.Load())) }

	// --- readme:begin ---
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	src, err := smstore.NewSource(cfg, os.Getenv("VBC_ACCESS_SECRET_ID"),
		vbctoken.WithClock(clock)) // (the test's clock; leave it out)
	if err != nil {
		return err
	}
	client := src.Client() // the token on every request; a 401 re-reads the secret and retries once
	client.Timeout = 30 * time.Second
	// --- readme:end ---

	url := os.Getenv("VBC_API_URL")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		switch {
		case len(cmd) == 2 && cmd[0] == "advance":
			n, err := strconv.ParseFloat(cmd[1], 64)
			if err != nil {
				return fmt.Errorf("advance: %w", err)
			}
			offset.Add(int64(n * float64(time.Second)))
			fmt.Println("ok")
		case len(cmd) == 1 && cmd[0] == "call":
			fmt.Println(call(ctx, client, url))
		default:
			fmt.Println("error unknown command")
		}
	}
	return in.Err()
}

// call sends one GET and describes the answer: "<status> <sub>", or "error <kind>".
func call(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "error request"
	}
	res, err := client.Do(req)
	if err != nil {
		if errors.Is(err, vbctoken.ErrNoValidToken) {
			return "error NoValidToken"
		}
		return "error " + err.Error() // vbctoken's errors never carry a token
	}
	defer res.Body.Close()
	var who struct {
		Sub string `json:"sub"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&who) != nil {
		return strconv.Itoa(res.StatusCode) + " -"
	}
	return strconv.Itoa(res.StatusCode) + " " + who.Sub
}
