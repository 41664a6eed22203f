package dynamostore

import (
	"fmt"
	"strings"

	"github.com/vbctoken/vbctoken/internal/awserr"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Error is a failed DynamoDB call. It matches vbctoken.ErrTransient, vbctoken.ErrConflict
// or vbctoken.ErrNotFound through Is, as Kind says; Kind nil means a permanent failure
// (AccessDeniedException, a missing table, a validation error, …) that retrying will not
// fix. Its message names the operation, table, item key and AWS error code, never an
// item's content.
type Error struct {
	Op    string // "GetItem", "PutItem", "Scan"
	Table string
	Key   string // the item's partition key, "" for a Scan
	Code  string // AWS error code, "" when no response arrived
	Kind  error  // vbctoken.ErrTransient, vbctoken.ErrConflict, vbctoken.ErrNotFound or nil
	Err   error  // the SDK's error, nil when the store decided by itself
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dynamodb %s %s", e.Op, e.Table)
	if e.Key != "" {
		fmt.Fprintf(&b, " %s", e.Key)
	}
	switch {
	case e.Kind != nil:
		fmt.Fprintf(&b, ": %v", e.Kind)
	case e.Code == "AccessDeniedException":
		b.WriteString(": access denied (check the IAM policy, its dynamodb:LeadingKeys condition and the table's KMS key policy)")
	case e.Code == "ResourceNotFoundException":
		b.WriteString(": the table does not exist (check the table name and the region)")
	default:
		b.WriteString(": permanent failure")
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Err != nil {
		// The SDK's message: operation, attempts, HTTP status, request id and AWS's own
		// message. None of them echoes an item; a condition failure's item is dropped
		// before the error is built.
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap exposes the SDK's error.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the error's Kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// transientCodes are DynamoDB's throttling and server-side codes, transient even when the
// retryer's list (which has most of them) would not say so.
var transientCodes = []string{
	"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
	"InternalServerError", "ServiceUnavailable", "ReplicatedWriteConflictException",
}

// classify wraps an SDK error as an *Error of the right Kind.
func classify(op, table, key string, err error) *Error {
	c := awserr.Classify(err, transientCodes...)
	e := &Error{Op: op, Table: table, Key: key, Code: c.Code, Err: err}
	switch {
	case c.Canceled:
	case c.Code == "ConditionalCheckFailedException":
		e.Kind = vbctoken.ErrConflict
	case c.Transient:
		e.Kind = vbctoken.ErrTransient
	}
	return e
}
