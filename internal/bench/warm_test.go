package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/vbctoken/vbctoken/internal/lambdalog"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Warm handler benchmarks: one invoke of an execution environment that has served one
// before (credentials cached, connections open), through lambda.NewHandler so that decoding
// the event and encoding the response count, as they do in the runtime. The adapters below
// mirror functions/*/handler.go (package main, which cannot be imported): a few field copies
// around web.Callback.Serve and Keeper.Refresh, where the work is. The refresher's single
// EMF metric line is left out.
//
// ns/op is wall time, round trips to VBC and the store on 127.0.0.1 included. cpu-ns/op is
// this process's CPU time (user+system) per op: the handler, its HTTP clients, the Go
// runtime's scheduler and GC, and nothing of VBC or Secrets Manager, which run in a child
// process (upstream_test.go), as they run elsewhere on AWS. Each benchmark runs over
// memstore (the keeper's own work; the store costs nothing) and over the SDK's Secrets
// Manager client talking to FakeSecretsManager (what ships: SigV4, the SDK's middleware,
// JSON, HTTP). BenchmarkLoopbackRoundTrip is the floor of one upstream call.

// stores are the stores a warm benchmark runs over.
var stores = []string{"memstore", "secretsmanager"}

type warmFixture struct {
	up    *remote
	admin *vbctoken.Keeper // mints consents on the same store
	fn    *vbctoken.Keeper // the function's keeper
	store vbctoken.Store
	log   *slog.Logger
	// setPair replaces the stored pair JSON, bypassing the counters.
	setPair func(b *testing.B, pair []byte)
}

// newWarmFixture returns a connected deployment over store whose function keeper has
// already served a consent and a refresh.
func newWarmFixture(b *testing.B, store string) *warmFixture {
	b.Helper()
	up := startUpstream(b)
	f := &warmFixture{up: up, log: lambdalog.New(io.Discard, func(k string) string {
		if k == "AWS_LAMBDA_FUNCTION_NAME" {
			return "bench"
		}
		return ""
	})}
	client := ClientConfig(up.VBC)
	switch store {
	case "memstore":
		mem := memstore.New(vbctoken.Credentials{ClientID: ClientID, ClientSecret: ClientSecret})
		f.store = mem
		f.setPair = func(_ *testing.B, pair []byte) { mem.SetRawPair(pair) }
	default:
		f.store = NewStore(NewSMClient(up.SecretsManager))
		f.setPair = func(b *testing.B, pair []byte) {
			if err := up.setSecret(PairSecret, pair); err != nil {
				b.Fatal(err)
			}
		}
	}
	var err error
	if f.admin, err = vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: f.store, Client: client}); err != nil {
		b.Fatal(err)
	}
	if f.fn, err = vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: f.store, Client: client, Logger: f.log}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	state, code, err := Approve(ctx, f.admin, up)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.fn.CompleteConsent(ctx, state, vbctoken.Secret(code)); err != nil {
		b.Fatal(err)
	}
	if _, err := f.fn.Refresh(ctx, true); err != nil {
		b.Fatal(err)
	}
	return f
}

// callbackHandler is functions/callback's handler over keeper.
func callbackHandler(keeper *vbctoken.Keeper, log *slog.Logger) lambda.Handler {
	cb := &web.Callback{Keeper: keeper, Log: log}
	return lambda.NewHandler(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		resp := cb.Serve(ctx, web.Request{Method: ev.RequestContext.HTTP.Method, Path: ev.RawPath,
			RawQuery: ev.RawQueryString, RequestID: ev.RequestContext.RequestID})
		return events.APIGatewayV2HTTPResponse{StatusCode: resp.Status, Headers: resp.Headers, Body: resp.Body}, nil
	})
}

// refresherHandler is functions/refresher's handler over keeper.
func refresherHandler(keeper *vbctoken.Keeper) lambda.Handler {
	type summary struct {
		vbctoken.Result
		RefreshTokenSecondsLeft int64 `json:"refresh_token_seconds_left,omitempty"`
	}
	return lambda.NewHandler(func(ctx context.Context, ev events.EventBridgeEvent) (summary, error) {
		var d struct {
			Force bool `json:"force"`
		}
		_ = json.Unmarshal(ev.Detail, &d)
		res, err := keeper.Refresh(ctx, d.Force)
		return summary{Result: res, RefreshTokenSecondsLeft: int64(time.Until(res.RefreshExpiresAt).Seconds())}, err
	})
}

func readEvent(b *testing.B, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", name))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCallbackWarm is a consent completed by a warm callback function: verify state,
// record its nonce (CAS), exchange the code at VBC, store the pair (CAS) and the access
// token, render the page. Each op starts from the same connected pair; minting and
// approving the consent link is not timed.
func BenchmarkCallbackWarm(b *testing.B) {
	for _, store := range stores {
		b.Run("store="+store, func(b *testing.B) {
			f := newWarmFixture(b, store)
			ctx := context.Background()
			h := callbackHandler(f.fn, f.log)
			tmpl := readEvent(b, "callback-success.json")
			base, err := f.fn.Refresh(ctx, true) // a fresh pair every op starts from
			if err != nil || base.Outcome != vbctoken.OutcomeRefreshed {
				b.Fatal(base, err)
			}
			baseline := f.snapshot(b)
			var cpu time.Duration
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				f.setPair(b, baseline)
				state, code, err := Approve(ctx, f.admin, f.up)
				if err != nil {
					b.Fatal(err)
				}
				ev := bytes.ReplaceAll(bytes.ReplaceAll(tmpl, []byte("STATE_PLACEHOLDER"), []byte(state)), []byte("CODE_PLACEHOLDER"), []byte(code))
				b.StartTimer()
				c0 := cpuTime()
				out, err := h.Invoke(ctx, ev)
				cpu += cpuTime() - c0
				if err != nil || !bytes.Contains(out, []byte(`"statusCode":200`)) {
					b.Fatalf("callback: %v %.200s", err, out)
				}
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// snapshot returns the stored pair's JSON.
func (f *warmFixture) snapshot(b *testing.B) []byte {
	b.Helper()
	v, err := f.store.LoadPair(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	raw, err := vbctoken.EncodePair(v.Pair)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkRefresherSkip is the hourly check that finds the pair fresh: one read.
func BenchmarkRefresherSkip(b *testing.B) {
	benchRefresher(b, "scheduled.json", vbctoken.OutcomeSkipped)
}

// BenchmarkRefresherRefresh is a refresh: read, refresh at VBC, store the pair (CAS) and the
// access token. It uses events/scheduled-force.json; a due refresh differs only in the
// policy's reason.
func BenchmarkRefresherRefresh(b *testing.B) {
	benchRefresher(b, "scheduled-force.json", vbctoken.OutcomeRefreshed)
}

func benchRefresher(b *testing.B, event string, want vbctoken.Outcome) {
	for _, store := range stores {
		b.Run("store="+store, func(b *testing.B) {
			f := newWarmFixture(b, store)
			ctx := context.Background()
			h := refresherHandler(f.fn)
			ev := readEvent(b, event)
			wantOut := []byte(`"outcome":"` + string(want) + `"`)
			b.ReportAllocs()
			c0 := cpuTime()
			for b.Loop() {
				out, err := h.Invoke(ctx, ev)
				if err != nil || !bytes.Contains(out, wantOut) {
					b.Fatalf("refresher: %v %.200s", err, out)
				}
			}
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkLoopbackRoundTrip is the floor under every upstream call above: one small POST
// to the upstream process on 127.0.0.1 with net/http and a reused connection.
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	up := startUpstream(b)
	hc := &http.Client{}
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		resp, err := hc.Post(up.Control+"/ping", "text/plain", strings.NewReader("ping"))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
