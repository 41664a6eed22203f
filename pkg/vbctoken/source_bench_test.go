package vbctoken_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// benchSource is a Source with a warm cache, on now (nil: time.Now).
func benchSource(b *testing.B, now func() time.Time) *vbctoken.Source {
	b.Helper()
	src := vbctoken.NewSource(srcStore(b, srcAccess("bench", time.Now().Add(24*time.Hour))), vbctoken.WithClock(now))
	if _, err := src.Token(); err != nil {
		b.Fatal(err)
	}
	return src
}

// benchClocks are the clocks the hot path is measured with: time.Now, as in production,
// and a fixed time that isolates the Source's own cost from the platform's clock read.
var benchClocks = []struct {
	name string
	now  func() time.Time
}{
	{"clock=time.Now", nil},
	{"clock=fixed", func() time.Time { return srcT0 }},
}

// BenchmarkSourceTokenCached is the hot path: a valid cached token, one caller. The one
// allocation is the *oauth2.Token each caller gets to itself (see Source).
func BenchmarkSourceTokenCached(b *testing.B) {
	for _, c := range benchClocks {
		b.Run(c.name, func(b *testing.B) {
			src := benchSource(b, c.now)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.Token(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSourceTokenCachedParallel is the hot path under contention; run it with
// -cpu 1,2,… to see that cached callers do not serialise.
func BenchmarkSourceTokenCachedParallel(b *testing.B) {
	for _, c := range benchClocks {
		b.Run(c.name, func(b *testing.B) {
			src := benchSource(b, c.now)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := src.Token(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkTransportCached is one request through the Transport with a cached token,
// against an in-process handler: the Transport's own cost over calling the handler.
func BenchmarkTransportCached(b *testing.B) {
	src := benchSource(b, nil)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"direct", handlerTransport{ok}},
		{"transport", &vbctoken.Transport{Source: src, Base: handlerTransport{ok}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, "http://vbc.invalid/api/whoami", nil)
			b.ReportAllocs()
			for b.Loop() {
				res, err := c.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				res.Body.Close()
			}
		})
	}
}

// BenchmarkSourceReadsPerDay runs the day simulation (simulateReader) for each scenario
// and reports, per app process and simulated day, the reads of the access secret
// (reads/day), the longest time Token kept returning a token VBC had revoked
// (revoked-max-s), and the 401s the app saw (401s/day: with app=source, the calls that got
// a revoked token; with app=transport, the responses the Transport returned as 401). The
// ns/op are the simulation's, not the Source's.
func BenchmarkSourceReadsPerDay(b *testing.B) {
	for _, sc := range readerScenarios {
		b.Run(sc.name, func(b *testing.B) {
			var sim readerSim
			for b.Loop() {
				step := simStep
				if sc.app == appTransport {
					step = simTransportStep
				}
				sim = simulateReader(b, sc, simDays, step)
				if sim.failures != 0 {
					b.Fatalf("%d calls without a valid stored token", sim.failures)
				}
			}
			d := float64(sim.days * simApps)
			b.ReportMetric(float64(sim.reads)/d, "reads/day")
			b.ReportMetric(sim.longestRevoked.Seconds(), "revoked-max-s")
			b.ReportMetric(float64(sim.unauthorized)/d, "401s/day")
		})
	}
}

// The simulation's size: simApps app processes, started at spread phases of the keeper's
// hourly schedule, each calling the API every simStep for simDays days (one scheduled
// refresh a day). Calls through the Transport cost ~20 times more to simulate; they are
// spaced wider (the 401s an app sees through it do not depend on how often it calls).
const (
	simDays          = 7
	simApps          = 6
	simStep          = 10 * time.Second
	simTransportStep = time.Minute
)

// hintMode is what the keeper writes into refresh_at in a simulation.
type hintMode int

const (
	// hintKeeper: the time of the hourly run that will refresh (what the keeper writes).
	hintKeeper hintMode = iota
	// hintNone: nothing (a keeper that predates refresh_at).
	hintNone
)

// appMode is how the simulated app uses the token.
type appMode int

const (
	// appSource calls Token and never reports a 401: the Source's rule alone.
	appSource appMode = iota
	// appTransport sends each call through the Transport (401 → re-read, retry once).
	appTransport
)

// readerScenario is one way the keeper and the app behave.
type readerScenario struct {
	name   string
	hint   hintMode
	forced bool // an operator forces a refresh once a day, at a random time
	app    appMode
	opts   []vbctoken.SourceOption
}

// readerScenarios are what BenchmarkSourceReadsPerDay reports and TestSourceReaderRule
// checks.
var readerScenarios = []readerScenario{
	{name: "keeper=hint/app=source", hint: hintKeeper, app: appSource},
	{name: "keeper=hint/app=transport", hint: hintKeeper, app: appTransport},
	{name: "keeper=hint+forced/app=source", hint: hintKeeper, forced: true, app: appSource},
	{name: "keeper=hint+forced/app=transport", hint: hintKeeper, forced: true, app: appTransport},
	{name: "keeper=nohint/app=source", hint: hintNone, app: appSource},
	{name: "keeper=nohint/app=transport", hint: hintNone, app: appTransport},
	// The reader before issue 11: no hint, cached until 5 minutes before expiry.
	{name: "keeper=nohint/app=source/maxage=24h", hint: hintNone, app: appSource,
		opts: []vbctoken.SourceOption{vbctoken.WithMaxCacheAge(24 * time.Hour)}},
}

// readerSim is what the simulated app processes saw, in all.
type readerSim struct {
	days  int // per process
	calls int
	reads int64 // reads of the access secret by the Sources
	// unauthorized: appSource, calls whose token VBC refused; appTransport, responses
	// the Transport returned as 401.
	unauthorized int
	// longestRevoked is the longest span from a call that got a refused token to the
	// next call that got a valid one.
	longestRevoked time.Duration
	failures       int // calls that got no token, or a 401 while a valid token was stored
}

// hintStore keeps the keeper's refresh_at hint, or drops it (hintNone: a keeper that
// writes none).
type hintStore struct {
	*memstore.Store
	mode  hintMode
	now   func() time.Time
	phase time.Time // a time of a scheduled run
}

func (h *hintStore) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	if h.mode == hintNone {
		a.RefreshAt = time.Time{}
	}
	return h.Store.PutAccess(ctx, a)
}

// handlerTransport sends requests to an in-process handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	if r.Body != nil {
		r.Body.Close()
	}
	return rec.Result(), nil
}

// simulateReader runs a real keeper (hourly Refresh on the policy of docs/design.md "Refresh policy") against the
// VBC sandbox in its WSO2 behaviour (a refresh kills the previous access token at once)
// and one app process that calls the API every step, for days simulated days on a fake
// clock. The keeper's refresh_at comes from hintStore.
func simulateReader(tb testing.TB, sc readerScenario, days int, step time.Duration) readerSim {
	tb.Helper()
	clock := newSrcClock()
	sb := vbcsandbox.New(vbcsandbox.Options{
		Clients:              []vbcsandbox.Client{{ID: "key", Secret: "secret", RedirectURLs: []string{"https://app.example/callback"}}},
		Users:                map[string]string{"app": "pw"},
		Now:                  clock.Now,
		SigningKey:           testutil.SigningKey(),
		RefreshRevokesAccess: true,
	})
	store := &hintStore{Store: memstore.New(vbctoken.Credentials{ClientID: "key", ClientSecret: "secret"}), mode: sc.hint, now: clock.Now, phase: srcT0}
	keeper, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store: store,
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{TokenURL: "http://127.0.0.1/token"},
			RedirectURL: "https://app.example/callback",
			HTTPClient:  &http.Client{Transport: handlerTransport{sb}},
		},
		Now: clock.Now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if _, err := keeper.Login(ctx, "app", "pw", false); err != nil {
		tb.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(uint64(len(sc.name)), 11))
	forcedAt := map[int]bool{}
	if sc.forced {
		for d := range days {
			forcedAt[d*86400+rng.IntN(86400)] = true
		}
	}
	// The API: what /api/whoami answers, without the JSON body (the simulation's cost is
	// in the requests).
	api := handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || !sb.IsValidAccessToken(tok) {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})}
	// The app processes start at spread phases of the keeper's hour.
	type app struct {
		start        int // second of the simulation the process starts at
		loader       *srcLoader
		src          *vbctoken.Source
		client       *http.Client
		revokedSince time.Time
	}
	apps := make([]*app, simApps)
	for i := range apps {
		a := &app{start: i*3600/simApps + rng.IntN(3600/simApps), loader: &srcLoader{load: store.LoadAccess}}
		a.src = vbctoken.NewSource(a.loader, append([]vbctoken.SourceOption{vbctoken.WithClock(clock.Now)}, sc.opts...)...)
		a.client = &http.Client{Transport: &vbctoken.Transport{Source: a.src, Base: api}}
		apps[i] = a
	}

	sim := readerSim{days: days}
	stepS := int(step / time.Second)
	end := 3600 + days*86400
	for s := 1; s <= end; s++ {
		clock.Advance(time.Second)
		if s%3600 == 0 { // the hourly refresher
			if _, err := keeper.Refresh(ctx, false); err != nil {
				tb.Fatalf("refresh at %s: %v", clock.Now(), err)
			}
		}
		if forcedAt[s] {
			if _, err := keeper.Refresh(ctx, true); err != nil {
				tb.Fatalf("forced refresh at %s: %v", clock.Now(), err)
			}
		}
		for _, a := range apps {
			if s < a.start || s >= a.start+days*86400 || (s-a.start)%stepS != 0 {
				continue
			}
			sim.calls++
			var refused bool
			switch sc.app {
			case appSource:
				tok, err := a.src.Token()
				if err != nil {
					sim.failures++
					continue
				}
				refused = !sb.IsValidAccessToken(tok.AccessToken)
			case appTransport:
				req, _ := http.NewRequest(http.MethodGet, "http://vbc.invalid"+vbcsandbox.WhoAmIPath, nil)
				res, err := a.client.Do(req)
				if err != nil {
					sim.failures++
					continue
				}
				res.Body.Close()
				refused = res.StatusCode == http.StatusUnauthorized
				if refused {
					sim.failures++ // the keeper always stores a valid token here
				}
			}
			now := clock.Now()
			switch {
			case refused:
				sim.unauthorized++
				if a.revokedSince.IsZero() {
					a.revokedSince = now
				}
			case !a.revokedSince.IsZero():
				sim.longestRevoked = max(sim.longestRevoked, now.Sub(a.revokedSince))
				a.revokedSince = time.Time{}
			}
		}
	}
	for _, a := range apps {
		sim.reads += a.loader.reads.Load()
	}
	return sim
}

// String is one line of the simulation's figures.
func (s readerSim) String() string {
	d := float64(s.days * simApps)
	return fmt.Sprintf("per process: %.1f reads/day, %.1f 401s/day; longest revoked %s; %d failures (%d calls, %d processes × %d days)",
		float64(s.reads)/d, float64(s.unauthorized)/d, s.longestRevoked, s.failures, s.calls, simApps, s.days)
}
