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
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

var (
	flagDays     = flag.Int("soak.days", 30, "days to simulate against memstore and the file store")
	flagMotoDays = flag.Int("soak.motodays", 3, "days to simulate against Secrets Manager on moto_server")
	flagSeed     = flag.Uint64("soak.seed", 1, "seed of the simulation")
	flagStore    = flag.String("soak.store", "all", "stores to soak: mem, file, moto or all (comma-separated)")
	flagVBC      = flag.String("soak.vbc", "lenient,wso2", "VBC sandbox modes to soak: lenient, strict, wso2 or all (comma-separated)")
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
	modes, err := parseModes(*flagVBC)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		reports []*Report
	)
	for _, store := range stores {
		for _, mode := range modes {
			t.Run(store+"-"+mode.String(), func(t *testing.T) {
				days := *flagDays
				if store == "moto" {
					days = *flagMotoDays
				}
				rep := soak(t, store, days, *flagSeed, mode)
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

// parseModes reads -soak.vbc: sandbox modes, comma-separated, or all.
func parseModes(list string) ([]vbcsandbox.Mode, error) {
	if list == "all" {
		return []vbcsandbox.Mode{vbcsandbox.ModeLenient, vbcsandbox.ModeStrict, vbcsandbox.ModeWSO2}, nil
	}
	var modes []vbcsandbox.Mode
	for _, name := range strings.Split(list, ",") {
		if name == "both" { // before wso2 existed: lenient and strict
			modes = append(modes, vbcsandbox.ModeLenient, vbcsandbox.ModeStrict)
			continue
		}
		m, err := vbcsandbox.ParseMode(strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("-soak.vbc=%q: %w", list, err)
		}
		modes = append(modes, m)
	}
	return modes, nil
}

// soak runs one simulation and checks its report.
func soak(t *testing.T, store string, days int, seed uint64, mode vbcsandbox.Mode) *Report {
	t.Helper()
	cfg := Config{Days: days, Seed: seed, VBC: mode, Backend: backend(t, store)}
	if *flagTrace != "" {
		f, err := os.Create(*flagTrace + "." + store + "-" + mode.String())
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
	replay := fmt.Sprintf("replay: go test ./internal/soak -run 'TestSoak/%s$' -soak.store=%s -soak.vbc=%s -soak.seed=%d -soak.days=%d -v",
		rep.Name(), rep.Store, rep.VBCMode, rep.Seed, rep.Days)
	if rep.Violations != 0 {
		t.Errorf("%s, seed %d, %d days: %d violations:\n  %s\n%s",
			rep.Name(), rep.Seed, rep.Days, rep.Violations, strings.Join(rep.ViolationDetails, "\n  "), replay)
	}
	if f := rep.Forced(); f[classAvoidable] != 0 {
		t.Errorf("%s, seed %d: %d avoidable forced re-consents (%v; false alarms: %v)\n%s",
			rep.Name(), rep.Seed, f[classAvoidable], rep.Reconsents, rep.FalseAlarmDetails, replay)
	}
	// The sandbox counts the faults it produced; they must match the plan's draws.
	for kind, n := range rep.SandboxFaults {
		want := rep.TokenFaults[kind]
		switch kind {
		case "Delay":
			want = rep.TokenFaults[TokenDelaySlow]
		case TokenProcessedButLost:
			want += rep.TokenFaults[TokenTimeoutProcessed]
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
		return SecretsManagerBackend(srv.Client(), vbctoken.SecretIDs(ids))
	}
	t.Fatalf("-soak.store: unknown store %q (mem, file, moto or all)", store)
	return Backend{}
}

// regression is one line of testdata/regressions/seeds.txt.
type regression struct {
	store string
	seed  uint64
	days  int
	mode  vbcsandbox.Mode
	note  string
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
			t.Fatalf("seeds.txt:%d: want `store seed days lenient|strict|wso2  # note`", i+1)
		}
		seed, err1 := strconv.ParseUint(f[1], 10, 64)
		days, err2 := strconv.Atoi(f[2])
		mode, err3 := vbcsandbox.ParseMode(f[3])
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("seeds.txt:%d: bad line", i+1)
		}
		out = append(out, regression{f[0], seed, days, mode, strings.TrimSpace(note)})
	}
	return out
}

// TestSoakRegressions replays every seed that ever failed.
func TestSoakRegressions(t *testing.T) {
	for _, r := range readRegressions(t) {
		t.Run(fmt.Sprintf("%s-%s/seed%d", r.store, r.mode, r.seed), func(t *testing.T) {
			t.Logf("%s", r.note)
			soak(t, r.store, r.days, r.seed, r.mode)
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
	if d, _ := ctx.Deadline(); time.Until(d) < 9*time.Second || time.Until(d) > 10*time.Second {
		t.Fatalf("deadline %s away", time.Until(d))
	}
	c.Run(func() {
		if err := c.Sleep(ctx, 4*time.Second); err != nil {
			t.Errorf("sleep: %v", err)
		}
		if d, _ := ctx.Deadline(); time.Until(d) > 6*time.Second {
			t.Errorf("deadline %s away after 4 s", time.Until(d))
		}
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
		st := vbctoken.NewSecretsManagerStore(errAPI{api.apiError("GetSecretValue", kind, false)}, vbctoken.SecretIDs{Pair: "pair"})
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
