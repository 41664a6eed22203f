package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

const (
	clientID     = "client-1"
	clientSecret = "cs-SECRET-refresher-test"
	redirect     = "https://abc123.execute-api.eu-west-1.amazonaws.com/callback"
)

func loadEvent(t *testing.T, name string) events.EventBridgeEvent {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

type fixture struct {
	vbc     *vbcsandbox.Sandbox
	store   *memstore.Store
	h       *handler
	metrics *bytes.Buffer
	logs    *bytes.Buffer
	now     time.Time
}

// newFixture connects a pair through the sandbox; now is when the refresher runs.
func newFixture(t *testing.T, connect bool, runAfter time.Duration) *fixture {
	t.Helper()
	start := time.Now()
	f := &fixture{now: start.Add(runAfter), metrics: &bytes.Buffer{}, logs: &bytes.Buffer{}}
	clock := func() time.Time { return f.now }
	f.vbc = vbcsandbox.New(vbcsandbox.Options{Clients: []vbcsandbox.Client{{ID: clientID, Secret: clientSecret, RedirectURLs: []string{redirect}}}, Now: clock})
	srv := httptest.NewServer(f.vbc)
	t.Cleanup(srv.Close)
	settings, err := config.FromEnv(func(k string) string {
		return map[string]string{
			config.EnvCredentialsSecretID: "creds", config.EnvTokenSecretID: "pair", config.EnvAccessSecretID: "access",
			config.EnvAuthorizeURL: srv.URL + "/authorize", config.EnvTokenURL: srv.URL + "/token", config.EnvRedirectURL: redirect,
		}[k]
	}, config.Need{Secrets: true})
	if err != nil {
		t.Fatal(err)
	}
	f.store = memstore.New(vbctoken.Credentials{ClientID: clientID, ClientSecret: clientSecret})
	if connect {
		f.now = start
		k, _ := vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: f.store, Client: settings.ClientConfig(), Now: clock})
		authURL, err := k.ConsentURL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := f.vbc.Approve(authURL)
		u, _ := url.Parse(cb)
		if _, err := k.CompleteConsent(context.Background(), u.Query().Get("state"), vbctoken.Secret(u.Query().Get("code"))); err != nil {
			t.Fatal(err)
		}
		f.now = start.Add(runAfter)
	}
	keeper, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: f.store, Client: settings.ClientConfig(), Now: clock,
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.h = &handler{keeper: keeper, metrics: f.metrics, now: clock, getenv: func(k string) string {
		if k == "AWS_LAMBDA_FUNCTION_NAME" {
			return "vbctoken-refresher"
		}
		return ""
	}}
	t.Cleanup(func() {
		for _, p := range f.vbc.Issued() {
			if strings.Contains(f.logs.String()+f.metrics.String(), p.RefreshToken) {
				t.Error("a token appears in the output")
			}
		}
	})
	return f
}

func TestRefresherScheduledEvent(t *testing.T) {
	cases := []struct {
		name     string
		event    string
		connect  bool
		runAfter time.Duration
		want     vbctoken.Outcome
		wantErr  error
	}{
		{"fresh pair: skipped", "scheduled.json", true, time.Hour, vbctoken.OutcomeSkipped, nil},
		{"inside the margin: refreshed", "scheduled.json", true, 23 * time.Hour, vbctoken.OutcomeRefreshed, nil},
		{"operator forces", "scheduled-force.json", true, time.Hour, vbctoken.OutcomeRefreshed, nil},
		{"never connected: re-consent", "scheduled.json", false, 0, vbctoken.OutcomeReconsent, vbctoken.ErrReconsentRequired},
		{"window passed: re-consent", "scheduled.json", true, 8 * 24 * time.Hour, vbctoken.OutcomeReconsent, vbctoken.ErrReconsentRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.connect, tc.runAfter)
			sum, err := f.h.Handle(context.Background(), loadEvent(t, tc.event))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if sum.Outcome != tc.want {
				t.Fatalf("outcome %q, want %q", sum.Outcome, tc.want)
			}
			out, _ := json.Marshal(sum)
			if strings.Contains(string(out), "token\":\"") {
				t.Errorf("summary holds a token: %s", out)
			}
			if tc.wantErr != nil && !strings.Contains(f.logs.String(), `"level":"ERROR"`) {
				t.Error("re-consent not logged at ERROR")
			}
			assertMetric(t, f.metrics.String(), tc.wantErr != nil)
		})
	}
}

// assertMetric checks the Embedded Metric Format line the stack's alarm depends on.
func assertMetric(t *testing.T, out string, wantZero bool) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one EMF line, got %q", out)
	}
	var emf struct {
		AWS struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		FunctionName string
		Seconds      *int64 `json:"RefreshTokenSecondsLeft"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &emf); err != nil {
		t.Fatal(err)
	}
	m := emf.AWS.CloudWatchMetrics
	if len(m) != 1 || m[0].Namespace != "VBCToken" || m[0].Metrics[0].Name != "RefreshTokenSecondsLeft" || m[0].Metrics[0].Unit != "Seconds" ||
		m[0].Dimensions[0][0] != "FunctionName" || emf.FunctionName != "vbctoken-refresher" || emf.Seconds == nil {
		t.Fatalf("EMF line: %s", lines[0])
	}
	if wantZero != (*emf.Seconds == 0) {
		t.Errorf("seconds left %d (want zero: %v)", *emf.Seconds, wantZero)
	}
}
