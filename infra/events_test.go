package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/contract"
)

// The accounts-mode sample events (for `sam local invoke -e` and `aws lambda invoke`) carry
// the refresher's request {"account","force"} of docs/design.md "Accounts mode".

// accountRequest decodes a request strictly, as the refresher reads a queue message.
func accountRequest(t *testing.T, data []byte) (account string, force bool) {
	t.Helper()
	var req struct {
		Account string `json:"account"`
		Force   bool   `json:"force"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("request %s: %v", data, err)
	}
	if !regexp.MustCompile(`^` + contract.AccountIDPattern + `$`).MatchString(req.Account) {
		t.Errorf("account %q is no account id", req.Account)
	}
	return req.Account, req.Force
}

// readEvent decodes events/name into v.
func readEvent(t *testing.T, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile("../events/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestEvents_AccountForceIsAnEventBridgeEventNamingAnAccount(t *testing.T) {
	// GIVEN events/account-force.json
	var ev events.EventBridgeEvent
	readEvent(t, "account-force.json", &ev)
	// THEN its detail forces a refresh of one account
	if ev.DetailType == "" {
		t.Error("no detail-type: the refresher would not read it as an EventBridge event")
	}
	if _, force := accountRequest(t, ev.Detail); !force {
		t.Error("force is false")
	}
}

func TestEvents_AccountQueueIsAnSQSBatchOfAccounts(t *testing.T) {
	// GIVEN events/account-queue.json
	var ev events.SQSEvent
	readEvent(t, "account-queue.json", &ev)
	// THEN it is a batch of the sweep's messages, one account each, with distinct ids
	if len(ev.Records) < 2 {
		t.Fatalf("records = %d, want a batch", len(ev.Records))
	}
	seen := map[string]bool{}
	for _, r := range ev.Records {
		if r.EventSource != "aws:sqs" || r.MessageId == "" || seen[r.MessageId] {
			t.Errorf("record %+v", r)
		}
		seen[r.MessageId] = true
		sum := md5.Sum([]byte(r.Body))
		if r.Md5OfBody != hex.EncodeToString(sum[:]) {
			t.Errorf("record %s: md5OfBody does not match its body", r.MessageId)
		}
		if _, force := accountRequest(t, []byte(r.Body)); force {
			t.Errorf("record %s forces a refresh; the sweep never does", r.MessageId)
		}
	}
}
