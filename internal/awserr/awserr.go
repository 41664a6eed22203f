// Package awserr classifies the AWS SDK's errors the same way for every store: the error
// code, whether the caller gave up, and whether a later try may succeed.
package awserr

import (
	"context"
	"errors"

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
