package awserr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/vbctoken/vbctoken/internal/awserr"
)

func TestClassify(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	cases := []struct {
		name string
		err  error
		want awserr.Class
	}{
		{"caller gave up", fmt.Errorf("op: %w", context.Canceled), awserr.Class{Canceled: true}},
		{"deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), awserr.Class{Transient: true}},
		{"throttled", api("ThrottlingException"), awserr.Class{Code: "ThrottlingException", Transient: true}},
		{"service's own code", api("RequestLimitExceeded"), awserr.Class{Code: "RequestLimitExceeded", Transient: true}},
		{"not found", api("ResourceNotFoundException"), awserr.Class{Code: "ResourceNotFoundException"}},
		{"denied", api("AccessDeniedException"), awserr.Class{Code: "AccessDeniedException"}},
		{"plain error", errors.New("x"), awserr.Class{}},
	}
	for _, tc := range cases {
		if got := awserr.Classify(tc.err, "RequestLimitExceeded"); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if !awserr.IsCode(fmt.Errorf("wrapped: %w", api("X")), "X") || awserr.IsCode(errors.New("X"), "X") {
		t.Error("IsCode")
	}
}

func TestMessage(t *testing.T) {
	sdk := errors.New("operation error X: https response error StatusCode: 400")
	hints := map[string]string{"AccessDeniedException": "access denied (check the policy)"}
	for _, tc := range []struct {
		name string
		kind error
		code string
		err  error
		want string
	}{
		{"classified", context.DeadlineExceeded, "", nil, "svc Op id: context deadline exceeded"},
		{"hinted", nil, "AccessDeniedException", sdk, "svc Op id: access denied (check the policy) (AccessDeniedException): " + sdk.Error()},
		{"permanent", nil, "ValidationException", sdk, "svc Op id: permanent failure (ValidationException): " + sdk.Error()},
		{"no response", nil, "", nil, "svc Op id: permanent failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := awserr.Message("svc Op id", tc.kind, tc.code, hints, tc.err); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
