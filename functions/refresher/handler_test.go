package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
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

func loadEvent(t *testing.T, name string) json.RawMessage {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return raw
}

// refreshOnce runs the handler on raw and returns its single-refresh summary.
func refreshOnce(t *testing.T, h *handler, raw json.RawMessage) (Summary, error) {
	t.Helper()
	out, err := h.Handle(context.Background(), raw)
	sum, _ := out.(Summary)
	return sum, err
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
	f.h = &handler{keeper: keeper, metrics: f.metrics, now: clock, log: slog.New(slog.NewJSONHandler(f.logs, nil)), getenv: func(k string) string {
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
			sum, err := refreshOnce(t, f.h, loadEvent(t, tc.event))
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
			emf := parseEMF(t, f.metrics.String())
			emf.assertOutcome(t, string(tc.want))
			emf.assertSecondsLeft(t, tc.wantErr != nil)
		})
	}
}

// fakeKeeper answers Refresh with a fixed result.
type fakeKeeper struct {
	res vbctoken.Result
	err error
}

func (k fakeKeeper) Refresh(context.Context, bool) (vbctoken.Result, error) { return k.res, k.err }

func TestRefresherOutcomeMetric(t *testing.T) {
	expires := time.Date(2030, 1, 8, 0, 0, 0, 0, time.UTC)
	now := expires.Add(-5 * 24 * time.Hour)
	cases := []struct {
		name        string
		keeper      fakeKeeper
		wantOutcome string
		wantSeconds bool
	}{
		{"failed before an outcome, pair unknown: error, no lifetime",
			fakeKeeper{err: fmt.Errorf("refresh: load pair: %w", vbctoken.ErrTransient)}, "error", false},
		{"failed with the pair known: error, lifetime reported",
			fakeKeeper{res: vbctoken.Result{RefreshExpiresAt: expires}, err: vbctoken.ErrTransient}, "error", true},
		{"skipped with a failed access repair: skipped",
			fakeKeeper{res: vbctoken.Result{Outcome: vbctoken.OutcomeSkipped, RefreshExpiresAt: expires}, err: vbctoken.ErrTransient}, "skipped", true},
		{"superseded", fakeKeeper{res: vbctoken.Result{Outcome: vbctoken.OutcomeSuperseded, RefreshExpiresAt: expires}}, "superseded", true},
		{"an outcome added later is reported as named",
			fakeKeeper{res: vbctoken.Result{Outcome: vbctoken.Outcome("in_doubt"), RefreshExpiresAt: expires}}, "in_doubt", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var metrics bytes.Buffer
			h := &handler{keeper: tc.keeper, metrics: &metrics, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler),
				getenv: func(k string) string { return map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "vbctoken-refresher"}[k] }}
			_, _ = refreshOnce(t, h, loadEvent(t, "scheduled.json"))
			emf := parseEMF(t, metrics.String())
			emf.assertOutcome(t, tc.wantOutcome)
			if got := emf.Seconds != nil; got != tc.wantSeconds {
				t.Fatalf("RefreshTokenSecondsLeft reported: %v, want %v", got, tc.wantSeconds)
			}
			if tc.wantSeconds {
				emf.assertSecondsLeft(t, false)
				if *emf.Seconds != int64(5*24*time.Hour/time.Second) {
					t.Errorf("seconds left %d, want 5 days", *emf.Seconds)
				}
			}
		})
	}
}

// emfLine is the refresher's Embedded Metric Format line, as CloudWatch reads it.
type emfLine struct {
	AWS struct {
		Timestamp         int64
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name, Unit string }
		}
	} `json:"_aws"`
	FunctionName string
	Outcome      string
	Runs         *int64 `json:"RefreshOutcome"`
	Seconds      *int64 `json:"RefreshTokenSecondsLeft"`
	raw          string
}

// parseEMF reads the one EMF line a run writes and checks that every metric a directive
// names, and every dimension, is present in it (CloudWatch drops the line otherwise).
func parseEMF(t *testing.T, out string) emfLine {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one EMF line, got %q", out)
	}
	var emf emfLine
	if err := json.Unmarshal([]byte(lines[0]), &emf); err != nil {
		t.Fatal(err)
	}
	emf.raw = lines[0]
	var fields map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &fields)
	if emf.AWS.Timestamp == 0 || len(emf.AWS.CloudWatchMetrics) == 0 {
		t.Fatalf("EMF line without timestamp or directives: %s", lines[0])
	}
	for _, d := range emf.AWS.CloudWatchMetrics {
		if d.Namespace != "VBCToken" {
			t.Errorf("namespace %q: %s", d.Namespace, lines[0])
		}
		for _, set := range d.Dimensions {
			for _, name := range set {
				if v, ok := fields[name].(string); !ok || v == "" {
					t.Errorf("dimension %s has no string value: %s", name, lines[0])
				}
			}
		}
		for _, m := range d.Metrics {
			if _, ok := fields[m.Name].(float64); !ok {
				t.Errorf("metric %s has no numeric value: %s", m.Name, lines[0])
			}
		}
	}
	if emf.FunctionName != "vbctoken-refresher" {
		t.Errorf("FunctionName %q", emf.FunctionName)
	}
	return emf
}

// directive returns the dimension sets and unit under which metric is reported.
func (e emfLine) directive(metric string) (dims [][]string, unit string, ok bool) {
	for _, d := range e.AWS.CloudWatchMetrics {
		for _, m := range d.Metrics {
			if m.Name == metric {
				return d.Dimensions, m.Unit, true
			}
		}
	}
	return nil, "", false
}

// assertOutcome checks RefreshOutcome: 1 run, by function and by function and outcome
// (the stack's not-reporting alarm and its dashboard read these two).
func (e emfLine) assertOutcome(t *testing.T, want string) {
	t.Helper()
	dims, unit, ok := e.directive("RefreshOutcome")
	wantDims := [][]string{{"FunctionName"}, {"FunctionName", "Outcome"}}
	if !ok || unit != "Count" || !reflect.DeepEqual(dims, wantDims) || e.Runs == nil || *e.Runs != 1 {
		t.Fatalf("RefreshOutcome directive %v %q, value %v; want %v Count 1: %s", dims, unit, e.Runs, wantDims, e.raw)
	}
	if e.Outcome != want {
		t.Errorf("Outcome %q, want %q", e.Outcome, want)
	}
}

// assertSecondsLeft checks RefreshTokenSecondsLeft, the metric the refresh-token alarm watches.
func (e emfLine) assertSecondsLeft(t *testing.T, wantZero bool) {
	t.Helper()
	dims, unit, ok := e.directive("RefreshTokenSecondsLeft")
	if !ok || unit != "Seconds" || !reflect.DeepEqual(dims, [][]string{{"FunctionName"}}) || e.Seconds == nil {
		t.Fatalf("RefreshTokenSecondsLeft directive %v %q, value %v: %s", dims, unit, e.Seconds, e.raw)
	}
	if wantZero != (*e.Seconds == 0) {
		t.Errorf("seconds left %d (want zero: %v)", *e.Seconds, wantZero)
	}
}
