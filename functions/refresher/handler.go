package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// refresher is the part of vbctoken.Keeper the function calls.
type refresher interface {
	Refresh(ctx context.Context, force bool) (vbctoken.Result, error)
}

// fleet is the part of vbctoken.Accounts the function calls (accounts mode).
type fleet interface {
	Keeper(account string) (*vbctoken.Keeper, error)
	List(ctx context.Context) ([]string, error)
}

// queue is the part of the SQS API the sweep calls; *sqs.Client implements it.
type queue interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// The sweep's pacing (docs/fleet.md has the numbers behind them).
const (
	// sweepSpread is the window over which one hour's messages are spread with
	// DelaySeconds (SQS allows at most 15 minutes), so that accounts that fall due together
	// do not all reach Secrets Manager at once.
	sweepSpread = 15 * time.Minute
	// sweepSenders bounds the SendMessageBatch calls in flight.
	sweepSenders = 8
	// batchEntries is SQS's limit of messages per SendMessageBatch.
	batchEntries = 10
	// outcomeSwept is the Outcome dimension of an accounts-mode sweep.
	outcomeSwept = "swept"
)

// handler runs the refresher: in a single-account deployment one refresh per invocation; in
// accounts mode the hourly sweep, one account's refresh, or a batch of SQS records.
type handler struct {
	keeper   refresher // single-account mode
	accounts fleet     // accounts mode (VBC_ACCOUNT_SECRET_PREFIX set)
	queue    queue     // accounts mode: where the sweep sends one message per account
	queueURL string
	metrics  io.Writer // CloudWatch Embedded Metric Format lines (stdout in Lambda)
	log      *slog.Logger
	now      func() time.Time
	getenv   func(string) string
}

// request is what the refresher is asked to do (docs/design.md "Accounts mode", refresher
// inputs): refresh account (or the one pair when empty), forced or on the policy.
type request struct {
	Account string `json:"account"`
	Force   bool   `json:"force"`
}

// Summary is the function's JSON result for one refresh: what happened, never a token.
type Summary struct {
	vbctoken.Result
	Account                 string `json:"account,omitempty"`
	RefreshTokenSecondsLeft int64  `json:"refresh_token_seconds_left,omitempty"`
}

// SweepSummary is the result of an accounts-mode sweep.
type SweepSummary struct {
	Accounts int `json:"accounts"`
	Enqueued int `json:"enqueued"`
}

// Handle is the Lambda entry point. It takes the three inputs of docs/design.md: an
// EventBridge event (the hourly schedule; its detail may carry {"account","force"}), the
// plain JSON {"account","force"} (EventBridge Scheduler's target input, or an operator's
// invoke), and an SQS event whose records carry that JSON, answered with the records that
// failed (partial batch responses).
//
// A failed refresh is returned as an error so that Lambda's Errors metric and asynchronous
// retries see it; re-consent needed is such a failure (the keeper has already logged it at
// ERROR with the next step). Input that is not one of the three is ErrBadInput.
func (h *handler) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType *string           `json:"detail-type"`
		Detail     json.RawMessage   `json:"detail"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("refresher: %w: the event is not a JSON object", vbctoken.ErrBadInput)
	}
	switch {
	case probe.Records != nil:
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("refresher: %w: not an SQS event", vbctoken.ErrBadInput)
		}
		return h.batch(ctx, ev), nil
	case probe.DetailType != nil:
		req, err := parseRequest(probe.Detail, true)
		if err != nil {
			return nil, err
		}
		return h.run(ctx, req)
	}
	req, err := parseRequest(raw, false)
	if err != nil {
		return nil, err
	}
	return h.run(ctx, req)
}

// parseRequest reads {"account","force"}; an EventBridge detail may also be empty or
// carry other fields (a scheduled event's is {}).
func parseRequest(data json.RawMessage, detail bool) (request, error) {
	var req request
	if detail && len(bytes.TrimSpace(data)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if !detail {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&req); err != nil {
		return request{}, fmt.Errorf("refresher: %w: want {\"account\":\"…\",\"force\":false}", vbctoken.ErrBadInput)
	}
	if req.Account != "" {
		if err := vbctoken.CheckAccount(req.Account); err != nil {
			return request{}, fmt.Errorf("refresher: %w", err)
		}
	}
	return req, nil
}

// run serves one request: the one pair, one account, or (accounts mode, no account) the
// sweep.
func (h *handler) run(ctx context.Context, req request) (any, error) {
	switch {
	case h.accounts == nil && req.Account != "":
		return nil, fmt.Errorf("refresher: %w: an account was named but accounts mode is off (%s is not set)",
			vbctoken.ErrBadInput, contract.EnvAccountSecretPrefix)
	case h.accounts == nil:
		return h.refresh(ctx, h.keeper, "", req.Force)
	case req.Account == "":
		return h.sweep(ctx)
	}
	k, err := h.accounts.Keeper(req.Account)
	if err != nil {
		return nil, fmt.Errorf("refresher: %w", err)
	}
	return h.refresh(ctx, k, req.Account, req.Force)
}

// refresh runs one keeper's refresh and reports its metrics.
func (h *handler) refresh(ctx context.Context, k refresher, account string, force bool) (Summary, error) {
	res, err := k.Refresh(ctx, force)
	sum := Summary{Result: res, Account: account}
	// A chain VBC rejected is gone whatever its stored expiry says: 0 seconds left.
	if !res.RefreshExpiresAt.IsZero() && !errors.Is(err, vbctoken.ErrReconsentRequired) {
		sum.RefreshTokenSecondsLeft = max(0, int64(res.RefreshExpiresAt.Sub(h.now()).Seconds()))
	}
	// With no live chain, or a pair nobody can read, the seconds left are 0, so the alarm
	// fires at once; an account of a fleet whose first consent has not completed is not
	// connected yet, not an alarm.
	notYet := account != "" && res.Reason == vbctoken.ReasonNotConnected
	secondsKnown := !res.RefreshExpiresAt.IsZero() || (errors.Is(err, vbctoken.ErrReconsentRequired) || unreadable(err)) && !notYet
	h.emitMetrics(account, outcomeOf(res, err), sum.RefreshTokenSecondsLeft, secondsKnown)
	return sum, err
}

// batch refreshes the accounts of an SQS batch, each record on its own goroutine (one
// account's slow or failing refresh never holds up another's), and names the records to
// deliver again: those whose refresh failed in a way a later try may fix, and malformed
// ones (so that they end in the dead-letter queue, where an operator sees them). An
// account that needs re-consent is not retried: no retry can fix it, and its ERROR and
// metric are out.
func (h *handler) batch(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	var (
		mu     sync.Mutex
		failed []events.SQSBatchItemFailure
		wg     sync.WaitGroup
	)
	for _, rec := range ev.Records {
		wg.Go(func() {
			if err := h.record(ctx, rec); err != nil {
				mu.Lock()
				failed = append(failed, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return events.SQSEventResponse{BatchItemFailures: failed}
}

// record serves one SQS record; a nil error means "do not deliver it again".
func (h *handler) record(ctx context.Context, rec events.SQSMessage) error {
	req, err := parseRequest(json.RawMessage(rec.Body), false)
	if err == nil && req.Account == "" {
		err = fmt.Errorf("refresher: %w: an SQS record must name an account", vbctoken.ErrBadInput)
	}
	if err == nil && h.accounts == nil {
		err = fmt.Errorf("refresher: %w: an SQS record arrived but accounts mode is off", vbctoken.ErrBadInput)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "refresher: malformed queue message; it goes to the dead-letter queue", "message_id", rec.MessageId, "error", err)
		return err
	}
	k, err := h.accounts.Keeper(req.Account)
	if err != nil {
		return err
	}
	_, err = h.refresh(ctx, k, req.Account, req.Force)
	switch {
	case errors.Is(err, vbctoken.ErrReconsentRequired):
		return nil
	case unreadable(err):
		// No delivery can fix a damaged pair or one a newer vbctoken wrote: an operator
		// must (runbook "Malformed pair"). The metric (0 seconds left) raises the alarm.
		h.log.ErrorContext(ctx, "refresher: the account's stored pair cannot be read; an operator must repair it", "account", req.Account, "error", err)
		return nil
	}
	if err != nil {
		h.log.WarnContext(ctx, "refresher: account refresh failed; SQS delivers it again", "account", req.Account, "error", err)
	}
	return err
}

// sweep lists the accounts and sends each a message on the queue, spread over
// sweepSpread with DelaySeconds. It fails when an account could not be enqueued (the next
// hour's sweep tries again; the pairs have hours of margin).
func (h *handler) sweep(ctx context.Context) (SweepSummary, error) {
	ids, err := h.accounts.List(ctx)
	if err != nil {
		return SweepSummary{}, fmt.Errorf("refresher: sweep: %w", err)
	}
	sum := SweepSummary{Accounts: len(ids)}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, sweepSenders)
	)
	for start := 0; start < len(ids); start += batchEntries {
		entries := make([]sqstypes.SendMessageBatchRequestEntry, 0, batchEntries)
		for i := start; i < min(start+batchEntries, len(ids)); i++ {
			body, _ := json.Marshal(request{Account: ids[i]})
			delay := int32(int64(sweepSpread/time.Second) * int64(i) / int64(len(ids)))
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(body)), DelaySeconds: delay,
			})
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			n, err := h.send(ctx, entries)
			mu.Lock()
			defer mu.Unlock()
			sum.Enqueued += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	h.log.InfoContext(ctx, "refresher: sweep", "accounts", sum.Accounts, "enqueued", sum.Enqueued)
	// The sweep reports too, so "refresher did not report" stays quiet for an empty fleet.
	outcome := outcomeSwept
	if firstErr != nil {
		outcome = contract.MetricOutcomeError
	}
	h.emitMetrics("", outcome, 0, false)
	if firstErr != nil {
		return sum, fmt.Errorf("refresher: sweep: enqueued %d of %d accounts: %w", sum.Enqueued, sum.Accounts, firstErr)
	}
	return sum, nil
}

// send sends one batch, once more for the entries SQS refused; it returns how many were
// enqueued. The SDK's retryer has already retried throttling and 5xx answers.
func (h *handler) send(ctx context.Context, entries []sqstypes.SendMessageBatchRequestEntry) (int, error) {
	sent := 0
	for try := 0; try < 2 && len(entries) > 0; try++ {
		out, err := h.queue.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(h.queueURL), Entries: entries})
		if err != nil {
			return sent, fmt.Errorf("send to the queue: %w", err)
		}
		sent += len(out.Successful)
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
		}
		retry := entries[:0:0]
		for _, e := range entries {
			if failed[aws.ToString(e.Id)] {
				retry = append(retry, e)
			}
		}
		entries = retry
	}
	if len(entries) > 0 {
		return sent, fmt.Errorf("send to the queue: %d messages refused twice", len(entries))
	}
	return sent, nil
}

// unreadable reports an error no later run can fix by itself: the stored pair is damaged or
// was written by a newer vbctoken.
func unreadable(err error) bool {
	return errors.Is(err, vbctoken.ErrMalformedSecret) || errors.Is(err, vbctoken.ErrNewerSchema)
}

// outcomeOf is the Outcome dimension of a run: the keeper's outcome as it names it (so a
// value added to vbctoken.Outcome later is reported without a change here), or
// contract.MetricOutcomeError when the run failed before it knew one.
func outcomeOf(res vbctoken.Result, err error) string {
	if res.Outcome != "" {
		return string(res.Outcome)
	}
	if err != nil {
		return contract.MetricOutcomeError
	}
	return "unknown"
}

// emitMetrics writes one CloudWatch Embedded Metric Format line: CloudWatch turns it into
// VBCToken/RefreshOutcome under {FunctionName} and {FunctionName, Outcome}, and, when the
// pair's refresh expiry is known, VBCToken/RefreshTokenSecondsLeft under {FunctionName},
// without any API call (internal/contract documents both). In accounts mode the account is
// a property of the line, not a dimension: one metric serves any number of accounts (its
// Minimum is the fleet's worst), and Logs Insights finds the account.
func (h *handler) emitMetrics(account, outcome string, secondsLeft int64, secondsKnown bool) {
	if h.metrics == nil {
		return
	}
	fn := contract.MetricDimensionFunctionName
	directives := []any{map[string]any{
		"Namespace":  contract.MetricNamespace,
		"Dimensions": [][]string{{fn}, {fn, contract.MetricDimensionOutcome}},
		"Metrics":    []any{map[string]string{"Name": contract.MetricRefreshOutcome, "Unit": "Count"}},
	}}
	doc := map[string]any{
		fn:                              functionName(h.getenv),
		contract.MetricDimensionOutcome: outcome,
		contract.MetricRefreshOutcome:   1,
	}
	if account != "" {
		doc[contract.MetricPropertyAccount] = account
	}
	if secondsKnown {
		directives = append(directives, map[string]any{
			"Namespace":  contract.MetricNamespace,
			"Dimensions": [][]string{{fn}},
			"Metrics":    []any{map[string]string{"Name": contract.MetricRefreshTokenSecondsLeft, "Unit": "Seconds"}},
		})
		doc[contract.MetricRefreshTokenSecondsLeft] = secondsLeft
	}
	doc["_aws"] = map[string]any{"Timestamp": h.now().UnixMilli(), "CloudWatchMetrics": directives}
	line, err := json.Marshal(doc)
	if err == nil {
		_, _ = h.metrics.Write(append(line, '\n'))
	}
}

func functionName(getenv func(string) string) string {
	if n := getenv("AWS_LAMBDA_FUNCTION_NAME"); n != "" {
		return n
	}
	return "vbctoken-refresher"
}
