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
	if !res.RefreshExpiresAt.IsZero() || errors.Is(err, vbctoken.ErrReconsentRequired) {
		// With no live chain the metric is 0, so the alarm fires at once.
		h.emitMetric(sum.RefreshTokenSecondsLeft)
	}
	return sum, err
}

// emitMetric writes one CloudWatch Embedded Metric Format line: CloudWatch turns it into
// the metric VBCToken/RefreshTokenSecondsLeft{FunctionName} without any API call.
func (h *handler) emitMetric(secondsLeft int64) {
	if h.metrics == nil {
		return
	}
	line, err := json.Marshal(map[string]any{
		"_aws": map[string]any{
			"Timestamp": h.now().UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  contract.MetricNamespace,
				"Dimensions": [][]string{{contract.MetricDimensionFunctionName}},
				"Metrics":    []any{map[string]string{"Name": contract.MetricRefreshTokenSecondsLeft, "Unit": "Seconds"}},
			}},
		},
		contract.MetricDimensionFunctionName:   functionName(h.getenv),
		contract.MetricRefreshTokenSecondsLeft: secondsLeft,
	})
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
