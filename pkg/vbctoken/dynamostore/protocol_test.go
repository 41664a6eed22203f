package dynamostore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

// ddbServer speaks DynamoDB's JSON protocol (awsJson1_0, X-Amz-Target
// DynamoDB_20120810.<Op>). Requests for target get answer for their first fail
// attempts; with upstream set, every request is forwarded there first (an answer lost
// after the write landed), and requests past fail get upstream's answer.
type ddbServer struct {
	target   string
	fail     int32
	answer   func(w http.ResponseWriter, r *http.Request)
	upstream string
	seen     atomic.Int32
}

func (d *ddbServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	interfere := op == d.target && d.seen.Add(1) <= d.fail
	if d.upstream == "" {
		if !interfere {
			http.Error(w, "unexpected request "+op, http.StatusTeapot)
			return
		}
		d.answer(w, r)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, d.upstream+r.URL.Path, bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if interfere {
		d.answer(w, r)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// awsError answers an AWS JSON error; extra is appended to the body's object.
func awsError(status int, code, extra string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-RequestId", "req-1")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"injected by the test server"%s}`, code, extra)
	}
}

func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// hang answers nothing until the client gives up.
func hang(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// sdkConfig is the production client setup (the SDK's standard retryer: 3 attempts)
// with short backoffs, against url.
func sdkConfig(url string) aws.Config {
	return aws.Config{
		Region:       motoserver.Region,
		Credentials:  motoserver.FakeCredentials(),
		BaseEndpoint: aws.String(url),
		Retryer:      motoserver.FastRetryer,
		HTTPClient:   awshttp.NewBuildableClient().WithTimeout(2 * time.Second),
	}
}

// leakyItem is a stored pair item as a failed condition returns it, with tokens.
const leakyItem = `,"Item":{"pk":{"S":"pair#acme"},"version":{"N":"7"},` +
	`"json":{"S":"{\"version\":1,\"access_token\":\"at-s3cr3t\",\"refresh_token\":\"rt-s3cr3t\"}"}}`

// TestDynamoDBErrorClassification: what each DynamoDB answer means to callers, once the
// SDK's standard retryer has done its part, and that no error text carries a token.
func TestDynamoDBErrorClassification(t *testing.T) {
	t.Parallel()
	loadPair := func(s *dynamostore.Store, _ *dynamostore.Fleet) error {
		_, err := s.LoadPair(context.Background())
		return err
	}
	commit := func(s *dynamostore.Store, _ *dynamostore.Fleet) error {
		_, err := s.CommitPair(context.Background(), storetest.NewPair(), "6")
		return err
	}
	putAccess := func(s *dynamostore.Store, _ *dynamostore.Fleet) error {
		return s.PutAccess(context.Background(), storetest.NewPair().Access())
	}
	list := func(_ *dynamostore.Store, f *dynamostore.Fleet) error {
		_, err := f.Accounts(context.Background())
		return err
	}
	cases := []struct {
		name     string
		target   string
		answer   func(http.ResponseWriter, *http.Request)
		op       func(*dynamostore.Store, *dynamostore.Fleet) error
		kind     error // nil: permanent
		attempts int32
		text     string // the message says so
	}{
		{"on-demand throttled", "GetItem", awsError(400, "ThrottlingException", ""), loadPair, vbctoken.ErrTransient, 3, "ThrottlingException"},
		{"provisioned throughput exceeded", "PutItem", awsError(400, "ProvisionedThroughputExceededException", ""), commit, vbctoken.ErrTransient, 3, ""},
		{"account request limit", "PutItem", awsError(400, "RequestLimitExceeded", ""), putAccess, vbctoken.ErrTransient, 3, ""},
		{"internal server error", "GetItem", awsError(500, "InternalServerError", ""), loadPair, vbctoken.ErrTransient, 3, ""},
		{"service unavailable", "GetItem", awsError(503, "ServiceUnavailable", ""), loadPair, vbctoken.ErrTransient, 3, ""},
		{"scan throttled", "Scan", awsError(400, "ThrottlingException", ""), list, vbctoken.ErrTransient, 3, ""},
		{"connection dropped", "GetItem", hangUp, loadPair, vbctoken.ErrTransient, 3, ""},
		{"no answer before the client's timeout", "PutItem", hang, putAccess, vbctoken.ErrTransient, 3, ""},
		{"condition failed", "PutItem", awsError(400, "ConditionalCheckFailedException", leakyItem), commit, vbctoken.ErrConflict, 1, "stored version changed"},
		{"access denied", "GetItem", awsError(400, "AccessDeniedException", ""), loadPair, nil, 1, "access denied"},
		{"no such table", "Scan", awsError(400, "ResourceNotFoundException", ""), list, nil, 1, "table does not exist"},
		{"validation", "PutItem", awsError(400, "ValidationException", ""), putAccess, nil, 1, "permanent failure"},
		{"bad signature", "GetItem", awsError(400, "UnrecognizedClientException", ""), loadPair, nil, 1, "permanent failure"},
		{"KMS key disabled", "GetItem", awsError(400, "KMSDisabledException", ""), loadPair, nil, 1, "permanent failure"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fake := &ddbServer{target: c.target, fail: 1 << 20, answer: c.answer}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			cfg := sdkConfig(srv.URL)
			if c.name == "no answer before the client's timeout" {
				cfg.HTTPClient = awshttp.NewBuildableClient().WithTimeout(50 * time.Millisecond)
			}
			f, err := dynamostore.NewFleetFromConfig(cfg, "vbctoken", smstore.New(nil, smstore.SecretIDs{}))
			if err != nil {
				t.Fatal(err)
			}
			s, err := f.Open("acme")
			if err != nil {
				t.Fatal(err)
			}
			err = c.op(s.(*dynamostore.Store), f)
			var de *dynamostore.Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *dynamostore.Error", err)
			}
			for _, kind := range []error{vbctoken.ErrTransient, vbctoken.ErrConflict, vbctoken.ErrNotFound} {
				if errors.Is(err, kind) != (kind == c.kind) {
					t.Errorf("errors.Is(err, %v) = %v; err = %v", kind, !(kind == c.kind), err)
				}
			}
			if got := fake.seen.Load(); got != c.attempts {
				t.Errorf("the SDK sent %s %d times, want %d", c.target, got, c.attempts)
			}
			if !strings.Contains(err.Error(), c.text) || !strings.Contains(err.Error(), "vbctoken") {
				t.Errorf("error %q does not name the table and say %q", err, c.text)
			}
			for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), fmt.Sprintf("%#v", de), fmt.Sprintf("%+v", *de)} {
				if strings.Contains(text, "s3cr3t") {
					t.Errorf("error text carries a token: %s", text)
				}
			}
			t.Logf("as callers see it: %v", err)
		})
	}
}

func TestDynamoDBCallerCancels(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	fake := &ddbServer{target: "GetItem", fail: 1 << 20, answer: func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		hang(w, r)
	}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s, err := dynamostore.New(dynamodb.NewFromConfig(sdkConfig(srv.URL)), "vbctoken", "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err = s.LoadPair(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, vbctoken.ErrTransient) {
		t.Fatalf("err = %v, want context.Canceled and not transient", err)
	}
	if got := fake.seen.Load(); got != 1 {
		t.Errorf("the SDK sent GetItem %d times after the caller cancelled, want 1", got)
	}
}

// TestDynamoDBSDKRetries: the SDK's standard retryer retries throttling and 5xx by
// itself, and a PutItem that landed before its 5xx is retried into a failed condition,
// which the commit token turns into the success it was.
func TestDynamoDBSDKRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name    string
		fake    *ddbServer
		prior   bool // a pair is stored before
		wantErr error
		seen    int32
	}{
		{"GetItem throttled twice, then served", &ddbServer{target: "GetItem", fail: 2, answer: awsError(400, "ThrottlingException", "")}, true, nil, 3},
		{"first PutItem landed, 500 answered", &ddbServer{target: "PutItem", fail: 1, answer: awsError(500, "InternalServerError", "")}, false, nil, 2},
		{"PutItem landed, 500 answered", &ddbServer{target: "PutItem", fail: 1, answer: awsError(500, "InternalServerError", "")}, true, nil, 2},
		{"PutItem landed, connection dropped", &ddbServer{target: "PutItem", fail: 1, answer: hangUp}, true, nil, 2},
		{"PutItem throttled throughout", &ddbServer{target: "PutItem", fail: 99, answer: awsError(400, "ProvisionedThroughputExceededException", "")}, true, vbctoken.ErrTransient, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tb := newTable(t)
			acct := newAccount("retry")
			prev := ""
			if c.prior {
				v, err := tb.store(t, nil, acct).CommitPair(ctx, storetest.NewPair(), "")
				if err != nil {
					t.Fatal(err)
				}
				prev = v
			}
			c.fake.upstream = tb.srv.URL
			srv := httptest.NewServer(c.fake)
			defer srv.Close()
			f, err := dynamostore.NewFleetFromConfig(sdkConfig(srv.URL), tb.name, tb.creds())
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Open(acct)
			s := st.(*dynamostore.Store)
			p := storetest.NewPair()
			var v string
			if c.fake.target == "GetItem" {
				_, err = s.LoadPair(ctx)
			} else {
				v, err = s.CommitPair(ctx, p, prev)
			}
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if got := c.fake.seen.Load(); got != c.seen {
				t.Errorf("the SDK sent %s %d times, want %d", c.fake.target, got, c.seen)
			}
			if c.fake.target == "PutItem" && c.wantErr == nil {
				want := 1
				if c.prior {
					want = 2
				}
				if got := tb.version(t, dynamostore.PairKeyPrefix+acct); got != want || v != fmt.Sprint(want) {
					t.Errorf("version = %d (returned %s), want %d: one write", got, v, want)
				}
				if got, err := s.LoadPair(ctx); err != nil || !got.Pair.SameTokens(p) {
					t.Errorf("stored %v (%v), want the committed pair", got.Pair, err)
				}
			}
		})
	}
}

func TestNewFleetFromConfigHonoursEndpointEnv(t *testing.T) {
	// Not parallel: it sets the environment LoadDefaultConfig reads.
	tb := newTable(t)
	motoserver.IsolateSDKEnv(t, "AWS_ENDPOINT_URL_DYNAMODB", tb.srv.URL)
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BaseEndpoint != nil {
		t.Fatalf("config set BaseEndpoint %q itself; the test must prove the service-specific variable", *cfg.BaseEndpoint)
	}
	f, err := dynamostore.NewFleetFromConfig(cfg, tb.name, tb.creds())
	if err != nil {
		t.Fatal(err)
	}
	acct := newAccount("env")
	s, _ := f.Open(acct)
	if _, err := s.CommitPair(context.Background(), storetest.NewPair(), ""); err != nil {
		t.Fatalf("CommitPair through AWS_ENDPOINT_URL_DYNAMODB: %v", err)
	}
	if got := tb.version(t, dynamostore.PairKeyPrefix+acct); got != 1 {
		t.Errorf("moto holds version %d, want 1", got)
	}

	// An app's Source, built the same way.
	p := storetest.NewPair()
	p.ExpiresAt = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := s.PutAccess(context.Background(), p.Access()); err != nil {
		t.Fatal(err)
	}
	src, err := dynamostore.NewSource(cfg, tb.name, acct)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.TokenContext(context.Background())
	if err != nil || tok.AccessToken != p.AccessToken.Reveal() {
		t.Errorf("Source.Token = %v; want the stored access token", err)
	}
	if _, err := dynamostore.NewSource(cfg, tb.name, "Not An Account"); !errors.Is(err, vbctoken.ErrBadInput) {
		t.Errorf("NewSource with a bad account: err = %v, want ErrBadInput", err)
	}
}
