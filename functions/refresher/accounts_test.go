package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// fakeQueue records SendMessageBatch calls; refuse makes SQS refuse entries once.
type fakeQueue struct {
	mu      sync.Mutex
	batches [][]sqstypes.SendMessageBatchRequestEntry
	refuse  map[string]bool
}

func (q *fakeQueue) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.batches = append(q.batches, in.Entries)
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if q.refuse[aws.ToString(e.Id)] {
			delete(q.refuse, aws.ToString(e.Id))
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError")})
			continue
		}
		out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

// syncBuffer is a bytes.Buffer safe for the concurrent records of a batch.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type accountsFixture struct {
	vbc     *vbcsandbox.Sandbox
	fleet   *memstore.Fleet
	h       *handler
	queue   *fakeQueue
	metrics *syncBuffer
	logs    *syncBuffer
	now     time.Time
}

// newAccountsFixture connects each account (its own VBC user) at now, then moves the clock
// by runAfter.
func newAccountsFixture(t *testing.T, accounts []string, runAfter time.Duration) *accountsFixture {
	t.Helper()
	f := &accountsFixture{now: time.Date(2027, 2, 1, 9, 0, 0, 0, time.UTC), metrics: &syncBuffer{}, logs: &syncBuffer{}, queue: &fakeQueue{refuse: map[string]bool{}}}
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return f.now }
	f.vbc = vbcsandbox.New(vbcsandbox.Options{Mode: vbcsandbox.ModeWSO2,
		Clients: []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirect}}}, Now: clock})
	srv := httptest.NewServer(f.vbc)
	t.Cleanup(srv.Close)
	f.fleet = memstore.NewFleet(vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret})
	accts, err := vbctoken.NewAccounts(f.fleet, vbctoken.KeeperConfig{
		Client: vbctoken.ClientConfig{Endpoints: vbctoken.Endpoints{AuthorizeURL: srv.URL + "/authorize", TokenURL: srv.URL + "/token"},
			RedirectURL: redirect, Retry: vbctoken.RetryPolicy{MaxAttempts: 1}},
		Now: clock, Logger: slog.New(slog.NewJSONHandler(f.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range accounts {
		k, _ := accts.Keeper(id)
		link, err := k.ConsentURL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cb, err := f.vbc.ApproveAs(link, "admin-"+id)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := url.Parse(cb)
		if _, _, err := accts.CompleteConsent(context.Background(), q.Query().Get("state"), vbctoken.Secret(q.Query().Get("code"))); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	f.now = f.now.Add(runAfter)
	mu.Unlock()
	f.h = &handler{accounts: accts, queue: f.queue, queueURL: "https://sqs.eu-west-1.amazonaws.com/1/vbc", metrics: f.metrics,
		log: slog.New(slog.NewJSONHandler(f.logs, nil)), now: clock,
		getenv: func(k string) string { return map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "vbctoken-refresher"}[k] }}
	t.Cleanup(func() {
		out := f.logs.String() + f.metrics.String()
		for _, p := range f.vbc.Issued() {
			if strings.Contains(out, p.RefreshToken) || strings.Contains(out, p.AccessToken) {
				t.Error("a token appears in the output")
			}
		}
	})
	return f
}

func accountIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("acct-%02d", i)
	}
	return ids
}

// The scheduled event in accounts mode sweeps: one message per account, ten per call,
// spread over the first quarter hour.
func TestSweepEnqueuesEveryAccount(t *testing.T) {
	f := newAccountsFixture(t, accountIDs(25), time.Hour)
	f.queue.refuse["7"] = true // SQS refuses one entry once: it is sent again
	out, err := f.h.Handle(context.Background(), loadEvent(t, "scheduled.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := out.(SweepSummary)
	if sum.Accounts != 25 || sum.Enqueued != 25 {
		t.Fatalf("summary %+v", sum)
	}
	seen := map[string]int32{}
	for _, b := range f.queue.batches {
		if len(b) > 10 {
			t.Errorf("a batch of %d entries", len(b))
		}
		for _, e := range b {
			var req request
			if err := json.Unmarshal([]byte(aws.ToString(e.MessageBody)), &req); err != nil || req.Force {
				t.Fatalf("body %s: %v", aws.ToString(e.MessageBody), err)
			}
			if e.DelaySeconds < 0 || e.DelaySeconds > 900 {
				t.Errorf("delay %d", e.DelaySeconds)
			}
			seen[req.Account] = e.DelaySeconds
		}
	}
	if len(seen) != 25 || seen["acct-00"] != 0 || seen["acct-24"] <= seen["acct-12"] {
		t.Errorf("accounts and delays: %v", seen)
	}
	if n := f.vbc.Stats().Requests["refresh_token"]; n != 0 {
		t.Errorf("the sweep refreshed %d accounts itself", n)
	}
	if !strings.Contains(f.metrics.String(), `"Outcome":"swept"`) {
		t.Errorf("the sweep did not report: %s", f.metrics.String())
	}
}

// A batch of SQS records: each account refreshed on its own; the records that a later
// delivery may fix, and malformed ones, are reported as failures; an account needing
// re-consent is not retried, and no account's trouble touches another's.
func TestQueueBatchReportsOnlyItsFailures(t *testing.T) {
	f := newAccountsFixture(t, accountIDs(6), 23*time.Hour)
	store, _ := f.fleet.Open("acct-01")
	v, _ := store.LoadPair(context.Background())
	f.vbc.Revoke(v.Pair.RefreshToken.Reveal()) // acct-01 needs re-consent
	f.vbc.SetFaults(func(r *http.Request, grant string) vbcsandbox.Fault {
		// acct-02's refresh gets a 503 (the request names its refresh token).
		if grant == "refresh_token" && r.PostFormValue("refresh_token") == f.refreshTokenOf(t, "acct-02") {
			return vbcsandbox.Fault{Kind: vbcsandbox.Status503}
		}
		return vbcsandbox.Fault{}
	})
	ev := events.SQSEvent{}
	for i, body := range []string{
		`{"account":"acct-00","force":false}`, `{"account":"acct-01","force":false}`, `{"account":"acct-02","force":false}`,
		`{"account":"acct-03","force":false}`, `not json`, `{"account":"Bad Id"}`, `{"force":true}`,
		`{"account":"acct-04","force":false}`, `{"account":"acct-05","force":true}`,
	} {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprintf("m%d", i), Body: body, EventSource: "aws:sqs"})
	}
	raw, _ := json.Marshal(ev)
	out, err := f.h.Handle(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, b := range out.(events.SQSEventResponse).BatchItemFailures {
		failed = append(failed, b.ItemIdentifier)
	}
	sort.Strings(failed)
	if want := []string{"m2", "m4", "m5", "m6"}; !equal(failed, want) {
		t.Fatalf("failed records %v, want %v", failed, want)
	}
	for _, id := range []string{"acct-00", "acct-03", "acct-04", "acct-05"} {
		s, _ := f.fleet.Open(id)
		v, _ := s.LoadPair(context.Background())
		if v.Pair.Grant != vbctoken.GrantRefreshToken || !f.vbc.IsLiveRefreshToken(v.Pair.RefreshToken.Reveal()) {
			t.Errorf("%s was not refreshed: %v", id, v.Pair)
		}
	}
	// Every account's line names it as a property, never as a dimension.
	for _, line := range strings.Split(strings.TrimSpace(f.metrics.String()), "\n") {
		if !strings.Contains(line, `"Account":"acct-`) {
			t.Errorf("metric line without the account: %s", line)
		}
		if strings.Contains(line, `"Account"]`) || strings.Contains(line, `["Account"`) || strings.Contains(line, `,"Account",`) {
			t.Errorf("the account is a dimension: %s", line)
		}
	}
}

func (f *accountsFixture) refreshTokenOf(t *testing.T, account string) string {
	s, _ := f.fleet.Open(account)
	v, err := s.LoadPair(context.Background())
	if err != nil {
		t.Error(err)
	}
	return v.Pair.RefreshToken.Reveal()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The refresher's other inputs: plain JSON (EventBridge Scheduler's target input) and an
// EventBridge event whose detail names the account; bad input is refused clearly.
func TestRefresherInputs(t *testing.T) {
	f := newAccountsFixture(t, accountIDs(2), time.Hour)
	out, err := f.h.Handle(context.Background(), json.RawMessage(`{"account":"acct-01","force":true}`))
	if sum, ok := out.(Summary); err != nil || !ok || sum.Account != "acct-01" || sum.Outcome != vbctoken.OutcomeRefreshed {
		t.Fatalf("plain JSON: %+v %v", out, err)
	}
	ev := loadEvent(t, "scheduled.json")
	var m map[string]any
	_ = json.Unmarshal(ev, &m)
	m["detail"] = map[string]any{"account": "acct-00", "force": false}
	ev, _ = json.Marshal(m)
	out, err = f.h.Handle(context.Background(), ev)
	if sum, ok := out.(Summary); err != nil || !ok || sum.Account != "acct-00" || sum.Outcome != vbctoken.OutcomeSkipped {
		t.Fatalf("EventBridge detail: %+v %v", out, err)
	}
	for _, bad := range []string{`not json`, `[]`, `{"acount":"acct-00"}`, `{"account":"ACME"}`, `{"account":"acct-00","force":"yes"}`} {
		if _, err := f.h.Handle(context.Background(), json.RawMessage(bad)); !errors.Is(err, vbctoken.ErrBadInput) {
			t.Errorf("%s: %v, want ErrBadInput", bad, err)
		}
	}
	single := &handler{keeper: fakeKeeper{}, log: slog.New(slog.DiscardHandler), now: time.Now, getenv: func(string) string { return "" }}
	if _, err := single.Handle(context.Background(), json.RawMessage(`{"account":"acct-00"}`)); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("an account in single-account mode: %v, want ErrBadInput", err)
	}
}

// A chain VBC rejected reports 0 seconds left, whatever its stored expiry: the 3-day alarm
// fires at once (found by the accounts end-to-end test).
func TestRevokedAccountReportsZeroSecondsLeft(t *testing.T) {
	f := newAccountsFixture(t, accountIDs(2), 23*time.Hour)
	f.vbc.Revoke(f.refreshTokenOf(t, "acct-00"))
	out, err := f.h.Handle(context.Background(), json.RawMessage(`{"account":"acct-00"}`))
	sum, _ := out.(Summary)
	if !errors.Is(err, vbctoken.ErrReconsentRequired) || sum.RefreshTokenSecondsLeft != 0 {
		t.Fatalf("%+v %v", sum, err)
	}
	if !strings.Contains(f.metrics.String(), `"RefreshTokenSecondsLeft":0`) {
		t.Errorf("metrics: %s", f.metrics.String())
	}
}

// Found by the fleet simulation: an account whose stored pair cannot be read is not sent to
// the dead-letter queue every hour (no delivery can fix it); its metric raises the alarm.
func TestDamagedAccountIsHandledNotRetried(t *testing.T) {
	f := newAccountsFixture(t, accountIDs(2), time.Hour)
	f.fleet.Store("acct-01").SetRawPair([]byte(`{"version":1,"refresh_token":`))
	ev := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m0", Body: `{"account":"acct-00"}`, EventSource: "aws:sqs"},
		{MessageId: "m1", Body: `{"account":"acct-01"}`, EventSource: "aws:sqs"},
	}}
	raw, _ := json.Marshal(ev)
	out, err := f.h.Handle(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if failed := out.(events.SQSEventResponse).BatchItemFailures; len(failed) != 0 {
		t.Fatalf("failures %v, want none", failed)
	}
	if !strings.Contains(f.metrics.String(), `"Account":"acct-01"`) || !strings.Contains(f.metrics.String(), `"RefreshTokenSecondsLeft":0`) {
		t.Errorf("metrics: %s", f.metrics.String())
	}
}
