// Package awserr classifies the AWS SDK's errors the same way for every store: the error
// code, whether the caller gave up, and whether a later try may succeed.
package awserr

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// retryables is the SDK standard retryer's own classification: what it would have retried
// is transient for our callers too once it gave up.
var retryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// Class is what a store needs to know about an SDK error.
type Class struct {
	Code      string // the AWS error code, "" when no response arrived
	Canceled  bool   // the caller gave up: neither transient nor the service's fault
	Transient bool   // throttling, 5xx, timeouts, the retryer's quota: worth a later try
}

// Classify classifies err. transientCodes are the service's own throttling and server-side
// codes, transient even where the retryer's list would not say so.
func Classify(err error, transientCodes ...string) Class {
	var c Class
	var api smithy.APIError
	if errors.As(err, &api) {
		c.Code = api.ErrorCode()
	}
	var quota ratelimit.QuotaExceededError
	switch {
	case errors.Is(err, context.Canceled):
		c.Canceled = true
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &quota),
		retryables.IsErrorRetryable(err) == aws.TrueTernary:
		c.Transient = true
	default:
		for _, code := range transientCodes {
			if c.Code == code {
				c.Transient = true
			}
		}
	}
	return c
}

// IsCode reports whether err carries the AWS error code.
func IsCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}

// Message builds a store error's text: what was called on what, then why it failed (kind
// when the store classified it, the hint for the code when there is one, "permanent
// failure" otherwise), the AWS error code and the SDK's own message. hints maps an error
// code to what the operator should check. Callers pass names and codes only: nothing here
// may carry a secret value or an item's content.
func Message(call string, kind error, code string, hints map[string]string, err error) string {
	var b strings.Builder
	b.WriteString(call)
	switch {
	case kind != nil:
		fmt.Fprintf(&b, ": %v", kind)
	case hints[code] != "":
		fmt.Fprintf(&b, ": %s", hints[code])
	default:
		b.WriteString(": permanent failure")
	}
	if code != "" {
		fmt.Fprintf(&b, " (%s)", code)
	}
	if err != nil {
		// The SDK's message: operation, attempts, HTTP status, request id and AWS's own
		// message. None of them echoes request parameters (SecretString, an item); a
		// condition failure's item is dropped before the error is built.
		fmt.Fprintf(&b, ": %v", err)
	}
	return b.String()
}
