package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// refresher is the part of vbctoken.Keeper the function calls.
type refresher interface {
	Refresh(ctx context.Context, force bool) (vbctoken.Result, error)
}

// handler runs one refresh per scheduled event and returns a small summary.
type handler struct {
	keeper  refresher
	metrics io.Writer // CloudWatch Embedded Metric Format lines (stdout in Lambda)
	now     func() time.Time
	getenv  func(string) string
}

// Summary is the function's JSON result: what happened, never a token.
type Summary struct {
	vbctoken.Result
	RefreshTokenSecondsLeft int64 `json:"refresh_token_seconds_left,omitempty"`
}

// Handle is the Lambda entry point. A failure is returned as an error so that Lambda's
// Errors metric and asynchronous retries see it; re-consent needed is such a failure (the
// keeper has already logged it at ERROR with the next step).
func (h *handler) Handle(ctx context.Context, ev events.EventBridgeEvent) (Summary, error) {
	force := false
	if len(ev.Detail) > 0 {
		var d struct {
			Force bool `json:"force"`
		}
		// A scheduled event's detail is {}; an operator may send {"force":true}.
		if err := json.Unmarshal(ev.Detail, &d); err == nil {
			force = d.Force
		}
	}
	res, err := h.keeper.Refresh(ctx, force)
	sum := Summary{Result: res}
	if !res.RefreshExpiresAt.IsZero() {
		sum.RefreshTokenSecondsLeft = max(0, int64(res.RefreshExpiresAt.Sub(h.now()).Seconds()))
	}
	// With no live chain the seconds left are 0, so the alarm fires at once.
	secondsKnown := !res.RefreshExpiresAt.IsZero() || errors.Is(err, vbctoken.ErrReconsentRequired)
	h.emitMetrics(outcomeOf(res, err), sum.RefreshTokenSecondsLeft, secondsKnown)
	return sum, err
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
// without any API call (internal/contract documents both).
func (h *handler) emitMetrics(outcome string, secondsLeft int64, secondsKnown bool) {
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
