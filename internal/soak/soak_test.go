package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/motoserver"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

var (
	flagDays     = flag.Int("soak.days", 30, "days to simulate against memstore and the file store")
	flagMotoDays = flag.Int("soak.motodays", 3, "days to simulate against Secrets Manager on moto_server")
	flagSeed     = flag.Uint64("soak.seed", 1, "seed of the simulation")
	flagStore    = flag.String("soak.store", "all", "stores to soak: mem, file, moto or all (comma-separated)")
	flagVBC      = flag.String("soak.vbc", "lenient", "sandbox behaviour where VBC's is unknown: lenient, strict or both")
	flagReport   = flag.String("soak.report", "", "write the JSON report to this file")
	flagTrace    = flag.String("soak.trace", "", "write every log line of the simulated processes to this file")
)

func TestMain(m *testing.M) { os.Exit(motoserver.Main(m)) }

// TestSoak runs the chaos soak on every store asked for and fails on any violation.
// `go test ./internal/soak` is the short soak; `make soak` runs a year.
func TestSoak(t *testing.T) {
	stores := strings.Split(*flagStore, ",")
	if *flagStore == "all" {
		stores = []string{"mem", "file", "moto"}
	}
	var modes []bool
	switch *flagVBC {
	case "lenient":
		modes = []bool{false}
	case "strict":
		modes = []bool{true}
	case "both":
		modes = []bool{false, true}
	default:
		t.Fatalf("-soak.vbc=%q: want lenient, strict or both", *flagVBC)
	}
	var (
		mu      sync.Mutex
		reports []*Report
	)
	for _, store := range stores {
		for _, strict := range modes {
			name := store
			if strict {
				name += "-strict"
			}
			t.Run(name, func(t *testing.T) {
				days := *flagDays
				if store == "moto" {
					days = *flagMotoDays
				}
				rep := soak(t, store, days, *flagSeed, strict)
				mu.Lock()
				reports = append(reports, rep)
				mu.Unlock()
			})
		}
	}
	if len(reports) == 0 {
		return
	}
	var table bytes.Buffer
	WriteTable(&table, reports)
	t.Logf("chaos soak\n%s", table.String())
	if *flagReport != "" {
		data, err := json.MarshalIndent(map[string]any{"generated_by": "go test ./internal/soak -run TestSoak", "runs": reports}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*flagReport, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("report written to %s", *flagReport)
	}
}

// soak runs one simulation and checks its report.
func soak(t *testing.T, store string, days int, seed uint64, strict bool) *Report {
	t.Helper()
	cfg := Config{Days: days, Seed: seed, StrictVBC: strict, Backend: backend(t, store)}
	if *flagTrace != "" {
		f, err := os.Create(*flagTrace + "." + store)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		cfg.Trace = w
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	return rep
}

// checkReport fails the test on violations and on a simulation that did not do its job.
func checkReport(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Violations != 0 {
		t.Errorf("%s, seed %d, %d days: %d violations:\n  %s\nreplay: go test ./internal/soak -run 'TestSoak/%s' -soak.store=%s -soak.seed=%d -soak.days=%d -v",
			rep.Store, rep.Seed, rep.Days, rep.Violations, strings.Join(rep.ViolationDetails, "\n  "), rep.Store, rep.Store, rep.Seed, rep.Days)
	}
	// The sandbox counts the faults it produced; they must match the plan's draws.
	for kind, n := range rep.SandboxFaults {
		want := rep.TokenFaults[kind]
		if kind == "Delay" {
			want = rep.TokenFaults[TokenDelaySlow]
		}
		if n != want {
			t.Errorf("sandbox produced %d %s faults, the soak drew %d", n, kind, want)
		}
	}
	if rep.Refreshes < rep.Days-1 {
		t.Errorf("only %d refreshes in %d days: the pair is refreshed about daily", rep.Refreshes, rep.Days)
	}
	if rep.Days >= 365 && rep.FaultsTotal < 10000 {
		t.Errorf("%d faults injected in %d days, want at least 10,000", rep.FaultsTotal, rep.Days)
	}
	if rep.LogLines == 0 {
		t.Error("no log line was checked for secrets")
	}
}

func backend(t *testing.T, store string) Backend {
	t.Helper()
	switch store {
	case "mem":
		return MemBackend()
	case "file":
		b, err := FileBackend(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	case "moto":
		srv := motoserver.Start(t)
		ids := srv.CreateStoreSecrets(t, true)
		return SecretsManagerBackend(srv.Client(), smstore.SecretIDs(ids))
	}
	t.Fatalf("-soak.store: unknown store %q (mem, file, moto or all)", store)
	return Backend{}
}

// regression is one line of testdata/regressions/seeds.txt.
type regression struct {
	store  string
	seed   uint64
	days   int
	strict bool
	note   string
}

func readRegressions(t *testing.T) []regression {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "regressions", "seeds.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []regression
	for i, line := range strings.Split(string(data), "\n") {
		line, note, _ := strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			t.Fatalf("seeds.txt:%d: want `store seed days lenient|strict  # note`", i+1)
		}
		seed, err1 := strconv.ParseUint(f[1], 10, 64)
		days, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || (f[3] != "lenient" && f[3] != "strict") {
			t.Fatalf("seeds.txt:%d: bad line", i+1)
		}
		out = append(out, regression{f[0], seed, days, f[3] == "strict", strings.TrimSpace(note)})
	}
	return out
}

// TestSoakRegressions replays every seed that ever failed.
func TestSoakRegressions(t *testing.T) {
	for _, r := range readRegressions(t) {
		t.Run(fmt.Sprintf("%s/seed%d", r.store, r.seed), func(t *testing.T) {
			t.Logf("%s", r.note)
			soak(t, r.store, r.days, r.seed, r.strict)
		})
	}
}

func TestClockRunsSleepersInOrder(t *testing.T) {
	c := NewClock(simStart)
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, fmt.Sprintf("%s@%s", s, c.Now().Sub(simStart)))
	}
	c.Run(
		func() { _ = c.Sleep(context.Background(), 3*time.Second); note("a") },
		func() {
			_ = c.Sleep(context.Background(), time.Second)
			note("b")
			_ = c.Sleep(context.Background(), 5*time.Second)
			note("b")
		},
	)
	want := "b@1s a@3s b@6s"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestOpContextExpiresInVirtualTime(t *testing.T) {
	c := NewClock(simStart)
	expired := false
	ctx := newOpContext(c, 10*time.Second, func() { expired = true })
	defer ctx.release()
	// Deadline maps the virtual time left onto the real clock: real now plus what is left.
	// Bracketing the call with real readings checks that without any bound on how long
	// the call takes on a loaded machine.
	checkLeft := func(left time.Duration) {
		t.Helper()
		before := time.Now()
		d, ok := ctx.Deadline()
		after := time.Now()
		if !ok || d.Before(before.Add(left)) || d.After(after.Add(left)) {
			t.Errorf("deadline %v, want %v after a moment in [%v, %v]", d, left, before, after)
		}
	}
	checkLeft(10 * time.Second)
	c.Run(func() {
		if err := c.Sleep(ctx, 4*time.Second); err != nil {
			t.Errorf("sleep: %v", err)
		}
		checkLeft(6 * time.Second)
	})
	c.AdvanceTo(simStart.Add(11 * time.Second))
	if !expired || ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("expired %v, err %v", expired, ctx.Err())
	}
}

// Store faults at the Secrets Manager API must reach the keeper as ErrTransient, like the
// SDK's own throttling and 5xx errors once its retries gave up.
func TestInjectedAPIErrorsAreTransient(t *testing.T) {
	s := &sim{}
	p := &process{sim: s}
	s.rep = &Report{}
	for _, kind := range []string{StoreThrottling, Store5xx, StoreTimeout} {
		api := &faultAPI{p: p}
		st := smstore.New(errAPI{api.apiError("GetSecretValue", kind, false)}, smstore.SecretIDs{Pair: "pair"})
		_, err := st.LoadPair(context.Background())
		if !errors.Is(err, vbctoken.ErrTransient) {
			t.Errorf("%s: %v does not match ErrTransient", kind, err)
		}
	}
}

// errAPI fails GetSecretValue with err.
type errAPI struct{ err error }

func (e errAPI) GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	return nil, e.err
}

func (e errAPI) PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	return nil, e.err
}

func (e errAPI) UpdateSecretVersionStage(context.Context, *secretsmanager.UpdateSecretVersionStageInput, ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	return nil, e.err
}
