package dynamostore

import (
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

// hints says what to check for the permanent failures an operator can fix.
var hints = map[string]string{
	"AccessDeniedException":     "access denied (check the IAM policy, its dynamodb:LeadingKeys condition and the table's KMS key policy)",
	"ResourceNotFoundException": "the table does not exist (check the table name and the region)",
}

func (e *Error) Error() string {
	call := "dynamodb " + e.Op + " " + e.Table
	if e.Key != "" {
		call += " " + e.Key
	}
	return awserr.Message(call, e.Kind, e.Code, hints, e.Err)
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
