// Package motoserver starts moto's Secrets Manager emulator for tests.
//
// moto (pip install 'moto[server]') speaks the real AWS JSON protocol, including
// ClientRequestToken idempotency, staging labels and UpdateSecretVersionStage's
// compare-and-swap, so the store code is tested against the same calls it makes in AWS.
// The same port serves DynamoDB (conditional writes) and SQS; CreateTable and CreateQueue
// make a table and a queue there.
//
// One server is shared by every test of a test binary; tests isolate themselves with fresh
// secret names (UniqueName, CreateStoreSecrets) rather than restarting or resetting it.
// Call Stop from TestMain after m.Run to end it promptly; on Linux it also dies with the
// test binary.
package motoserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// RequireEnv names the variable that turns a missing moto_server into a test failure
// instead of a skip (CI sets it, so CI can never pass by skipping).
const RequireEnv = "VBC_REQUIRE_INTEGRATION"

// InstallHint tells a developer how to get moto_server.
const InstallHint = "install: pip install 'moto[server]' cfn-lint"

// Region is the region of the test configuration.
const Region = "us-east-1"

// startTimeout bounds how long moto_server may take to answer (≈ 1.5 s is usual).
const startTimeout = 30 * time.Second

// Server is a running moto_server.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:43121; use it as the
	// Secrets Manager endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER or aws.Config.BaseEndpoint).
	URL string

	cmd    *exec.Cmd
	exited chan struct{}
	log    *tailBuffer

	clientOnce sync.Once
	client     *secretsmanager.Client
	createMu   sync.Mutex
	putItemMu  sync.Mutex
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
	sharedMu   sync.Mutex
	names      atomic.Int64
)

// errNotInstalled marks a machine without moto_server.
var errNotInstalled = errors.New("moto_server not found")

// Start returns the test binary's shared moto_server, starting it on first use. Without
// moto_server on PATH the test is skipped with an install hint, or fails when
// VBC_REQUIRE_INTEGRATION=1.
func Start(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		sharedMu.Lock()
		defer sharedMu.Unlock()
		shared, sharedErr = launch()
	})
	if sharedErr != nil {
		if errors.Is(sharedErr, errNotInstalled) && os.Getenv(RequireEnv) != "1" {
			t.Skipf("moto_server not found; %s", InstallHint)
		}
		t.Fatalf("moto_server: %v (%s)", sharedErr, InstallHint)
	}
	return shared
}

// Stop ends the shared server if one was started. Call it from TestMain after m.Run.
func Stop() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.kill()
	}
}

// Main runs the tests and stops the shared server afterwards; use it as
// `func TestMain(m *testing.M) { os.Exit(motoserver.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

func launch() (*Server, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("%w on PATH", errNotInstalled)
	}
	var lastErr error
	for range 3 { // a freshly freed port can be taken by someone else: try again
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := launchOn(bin, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func launchOn(bin string, port int) (*Server, error) {
	s := &Server{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		exited: make(chan struct{}),
		log:    &tailBuffer{max: 16 << 10},
	}
	s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	setDeathSignal(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("moto_server exited during start-up: %s", s.log.String())
		default:
		}
		if s.warm(client) == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("moto_server not ready after %s: %s", startTimeout, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warm calls ListSecrets, which also makes moto load its Secrets Manager backend (≈ 2 s on
// first use) here rather than in the first test.
func (s *Server) warm(client *http.Client) error {
	req, err := http.NewRequest(http.MethodPost, s.URL+"/", strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.ListSecrets")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/"+Region+"/secretsmanager/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ListSecrets: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (s *Server) kill() {
	if s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Reset wipes every resource in the server (POST /moto-api/reset). It affects every test
// sharing the server: prefer fresh names, and never call it from parallel tests.
func (s *Server) Reset() error {
	resp, err := http.Post(s.URL+"/moto-api/reset", "application/json", nil)
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset moto: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Log returns the tail of the server's output, for failure messages.
func (s *Server) Log() string { return s.log.String() }

// Config returns an aws.Config for the server: fake static credentials, region us-east-1,
// BaseEndpoint set to URL, and the SDK's standard retryer with short backoffs so that
// retry tests stay fast. It does not read the environment or ~/.aws.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  FakeCredentials(),
		BaseEndpoint: aws.String(s.URL),
		Retryer:      FastRetryer,
	}
}

// Client returns the server's shared Secrets Manager client (see Config).
func (s *Server) Client() *secretsmanager.Client {
	s.clientOnce.Do(func() { s.client = secretsmanager.NewFromConfig(s.Config()) })
	return s.client
}

// SerialClient is the server's client with atomic CreateSecret calls: they reach moto one
// at a time. moto 5.2 checks that a name is free and adds the secret in two steps without a
// lock, so two concurrent CreateSecret calls for one name can both succeed, the second
// silently making its value current; AWS answers the second with ResourceExistsException.
// Tests that race CreateSecret on one name use it.
type SerialClient struct {
	*secretsmanager.Client
	mu *sync.Mutex
}

// CreateSecret calls the client's CreateSecret while no other call of the server's
// SerialClients is under way.
func (c SerialClient) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Client.CreateSecret(ctx, in, optFns...)
}

// SerialClient returns the server's client with atomic CreateSecret calls.
func (s *Server) SerialClient() SerialClient {
	return SerialClient{Client: s.Client(), mu: &s.createMu}
}

// SerialDynamoDB is a DynamoDB client whose PutItem calls reach moto one at a time. moto 5.2
// evaluates a ConditionExpression and writes the item in two steps without a lock, so two
// concurrent conditional writes can both succeed; DynamoDB makes them one atomic step (the
// conformance suite's racing writers found it on a loaded machine). Stores under test that
// race conditional writes use it.
type SerialDynamoDB struct {
	*dynamodb.Client
	mu *sync.Mutex
}

// PutItem calls the client's PutItem while no other PutItem of the server's SerialDynamoDB
// clients is under way.
func (c SerialDynamoDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Client.PutItem(ctx, in, optFns...)
}

// SerialDynamoDB returns a DynamoDB client of the server with atomic PutItem calls.
func (s *Server) SerialDynamoDB() SerialDynamoDB {
	return SerialDynamoDB{Client: dynamodb.NewFromConfig(s.Config()), mu: &s.putItemMu}
}

// FakeCredentials are the static test credentials moto accepts (AWS_ACCESS_KEY_ID=test).
func FakeCredentials() aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", Source: "motoserver"}, nil
	})
}

// FastRetryer is the SDK's standard retryer (same attempts, same retryable errors) with a
// 5 ms backoff instead of up to seconds, for tests.
func FastRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) {
			return 5 * time.Millisecond, nil
		})
	})
}

// UniqueName returns a secret name no other test of this binary uses.
func UniqueName(t testing.TB, prefix string) string {
	clean := strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(t.Name())
	if len(clean) > 120 {
		clean = clean[len(clean)-120:]
	}
	return fmt.Sprintf("%s/%s/%d-%d", prefix, clean, os.Getpid(), names.Add(1))
}

// CreateSecret creates a secret like the CDK stack would; value nil creates a secret with
// no version at all.
func (s *Server) CreateSecret(t testing.TB, name string, value *string) {
	t.Helper()
	_, err := s.Client().CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretString: value,
	})
	if err != nil {
		t.Fatalf("create secret %s: %v", name, err)
	}
}

// PutSecret stores value as the new AWSCURRENT version of name, as an admin would.
//
// It puts the version under a seed label and moves AWSCURRENT with
// UpdateSecretVersionStage rather than letting PutSecretValue move it: moto 5.2 remembers
// the "default version" apart from the labels and UpdateSecretVersionStage does not update
// it, so a plain put after a stage move leaves AWSCURRENT on two versions (AWS does not).
func (s *Server) PutSecret(t testing.TB, name, value string) {
	t.Helper()
	ctx := context.Background()
	c := s.Client()
	cur, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(name), VersionStage: aws.String("AWSCURRENT"),
	})
	var apiErr interface{ ErrorCode() string }
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode() == "ResourceNotFoundException") {
		t.Fatalf("put secret %s: read current version: %v", name, err)
	}
	out, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:      aws.String(name),
		SecretString:  aws.String(value),
		VersionStages: []string{"MOTOSERVER_SEED"},
	})
	if err != nil {
		t.Fatalf("put secret %s: %v", name, err)
	}
	if cur == nil {
		return // the secret's first version: AWSCURRENT is attached to it automatically
	}
	_, err = c.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:            aws.String(name),
		VersionStage:        aws.String("AWSCURRENT"),
		MoveToVersionId:     out.VersionId,
		RemoveFromVersionId: cur.VersionId,
	})
	if err != nil {
		t.Fatalf("put secret %s: move AWSCURRENT: %v", name, err)
	}
}

// SetSecret stores value as the current version of name like PutSecret, creating the
// secret with it when it does not exist yet (a fleet's secrets exist only after their first
// write).
func (s *Server) SetSecret(t testing.TB, name, value string) {
	t.Helper()
	_, err := s.Client().CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name:         aws.String(name),
		SecretString: aws.String(value),
	})
	var apiErr interface{ ErrorCode() string }
	switch {
	case err == nil:
		return
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "ResourceExistsException":
		s.PutSecret(t, name, value)
	default:
		t.Fatalf("set secret %s: %v", name, err)
	}
}

// VersionCount returns how many versions name has, deprecated ones included; 0 when name
// does not exist.
func (s *Server) VersionCount(t testing.TB, name string) int {
	t.Helper()
	// moto 5.2 answers ListSecretVersionIds on a missing secret with an HTTP 500.
	_, err := s.Client().DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	var apiErr interface{ ErrorCode() string }
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ResourceNotFoundException" {
		return 0
	}
	n := 0
	p := secretsmanager.NewListSecretVersionIdsPaginator(s.Client(), &secretsmanager.ListSecretVersionIdsInput{
		SecretId:          aws.String(name),
		IncludeDeprecated: aws.Bool(true),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			var nf interface{ ErrorCode() string }
			if errors.As(err, &nf) && nf.ErrorCode() == "ResourceNotFoundException" {
				return 0
			}
			t.Fatalf("list versions of %s: %v", name, err)
		}
		n += len(out.Versions)
	}
	return n
}

// Secrets names the secrets of the design. Its fields match smstore.SecretIDs, so
// smstore.SecretIDs(s) converts it. Login (the self-heal secret) is not created.
type Secrets struct {
	Credentials, Pair, Access string
	Login                     string
}

// Placeholders are the values the CDK stack creates the secrets with.
var (
	PairPlaceholder        = `{"version":1}`
	AccessPlaceholder      = `{"version":1}`
	CredentialsPlaceholder = `{"client_id":"","client_secret":""}`
)

// CreateStoreSecrets creates the three secrets under fresh names. With placeholders they
// hold what the CDK stack writes at deploy time; without, they exist with no value.
func (s *Server) CreateStoreSecrets(t testing.TB, placeholders bool) Secrets {
	t.Helper()
	ids := Secrets{
		Credentials: UniqueName(t, "vbc/credentials"),
		Pair:        UniqueName(t, "vbc/pair"),
		Access:      UniqueName(t, "vbc/access"),
	}
	var cred, pair, access *string
	if placeholders {
		cred, pair, access = &CredentialsPlaceholder, &PairPlaceholder, &AccessPlaceholder
	}
	s.CreateSecret(t, ids.Credentials, cred)
	s.CreateSecret(t, ids.Pair, pair)
	s.CreateSecret(t, ids.Access, access)
	return ids
}

// CreateTable creates an on-demand DynamoDB table under a fresh name, with the string
// partition key partitionKey and no sort key, and returns the name. Each call pays moto's
// DynamoDB start-up on first use (≈ 1 s).
func (s *Server) CreateTable(t testing.TB, partitionKey string) string {
	t.Helper()
	name := strings.Map(func(r rune) rune { // table names are [a-zA-Z0-9_.-]{3,255}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '.'
	}, UniqueName(t, "vbc"))
	_, err := dynamodb.NewFromConfig(s.Config()).CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(partitionKey), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(partitionKey), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table %s: %v", name, err)
	}
	return name
}

// Queue is an SQS queue on the server, with its dead-letter queue when it has one.
type Queue struct {
	// URL is the queue URL (QueueUrl of the SQS API).
	URL string
	// DeadLetterURL is the URL of the dead-letter queue; "" without one.
	DeadLetterURL string
}

// CreateQueue creates a standard SQS queue under a fresh name and returns its URL. With
// maxReceiveCount > 0 it also creates a dead-letter queue and a redrive policy that moves a
// message there once it has been received maxReceiveCount times (moto moves it on the
// receive after that, as SQS does).
//
// moto 5.2 honours DelaySeconds on the wall clock and offers no way to advance it:
// tests that must not wait play delays themselves.
func (s *Server) CreateQueue(t testing.TB, maxReceiveCount int) Queue {
	t.Helper()
	ctx := context.Background()
	c := sqs.NewFromConfig(s.Config())
	name := queueName(UniqueName(t, "vbc"))
	var q Queue
	attrs := map[string]string{}
	if maxReceiveCount > 0 {
		dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(queueName(name + "-dlq"))})
		if err != nil {
			t.Fatalf("create dead-letter queue: %v", err)
		}
		q.DeadLetterURL = aws.ToString(dlq.QueueUrl)
		got, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
		})
		if err != nil {
			t.Fatalf("dead-letter queue ARN: %v", err)
		}
		attrs[string(sqstypes.QueueAttributeNameRedrivePolicy)] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`,
			got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], maxReceiveCount)
	}
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	q.URL = aws.ToString(out.QueueUrl)
	return q
}

// queueName makes name a valid queue name ([a-zA-Z0-9_-]{1,80}), keeping its unique end.
func queueName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, name)
	if len(name) > 80 {
		name = name[len(name)-80:]
	}
	return name
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// IsolateSDKEnv sets the environment the AWS SDK's default configuration reads so that it
// reaches url through the service-specific variable endpointVar (for example
// AWS_ENDPOINT_URL_SECRETS_MANAGER) only, with test credentials and Region, and never the
// machine's own AWS configuration. Not for parallel tests: it sets the process environment.
func IsolateSDKEnv(t testing.TB, endpointVar, url string) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		endpointVar:                           url,
		"AWS_ENDPOINT_URL":                    "",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "",
		"AWS_ACCESS_KEY_ID":                   "test",
		"AWS_SECRET_ACCESS_KEY":               "test",
		"AWS_SESSION_TOKEN":                   "",
		"AWS_REGION":                          Region,
		"AWS_PROFILE":                         "",
		"AWS_CONFIG_FILE":                     dir + "/config",
		"AWS_SHARED_CREDENTIALS_FILE":         dir + "/credentials",
	} {
		t.Setenv(k, v)
	}
}
