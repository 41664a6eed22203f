package main

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/web"
)

// handler translates API Gateway HTTP API (payload 2.0) events to the shared callback
// logic in internal/web and its answers back. It never logs the event: its query string
// carries the code and state.
type handler struct {
	callback *web.Callback
}

// Handle is the Lambda entry point.
func (h *handler) Handle(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	resp := h.callback.Serve(ctx, web.Request{
		Method:    ev.RequestContext.HTTP.Method,
		Path:      ev.RawPath,
		RawQuery:  ev.RawQueryString,
		RequestID: ev.RequestContext.RequestID,
	})
	return events.APIGatewayV2HTTPResponse{StatusCode: resp.Status, Headers: resp.Headers, Body: resp.Body}, nil
}
