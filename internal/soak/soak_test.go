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
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

var (
	flagDays         = flag.Int("soak.days", 30, "days to simulate against memstore and the file store")
	flagMotoDays     = flag.Int("soak.motodays", 3, "days to simulate against Secrets Manager on moto_server")
	flagSeed         = flag.Uint64("soak.seed", 1, "seed of the simulation")
	flagStore        = flag.String("soak.store", "all", "stores to soak: mem, file, moto or all (comma-separated)")
	flagVBC          = flag.String("soak.vbc", "lenient,wso2", "VBC sandbox modes to soak: lenient, strict, wso2 or all (comma-separated)")
	flagReport       = flag.String("soak.report", "", "write the JSON report to this file")
	flagTrace        = flag.String("soak.trace", "", "write every log line of the simulated processes to this file")
	flagSelfHeal     = flag.Bool("soak.selfheal", false, "give the keepers the admin's login for self-heal (KeeperConfig.SelfHeal)")
	flagCheckEvery   = flag.Duration("soak.checkevery", 0, "schedule the refresher this often too (under an hour), as a self-heal deployment does")
	flagAdminOnAlarm = flag.Bool("soak.adminonalarm", false, "the admin consents after a break only when a keeper declares re-consent or apps failed for a day")
	flagWild         = flag.Float64("soak.wildclock", 0, "experiment: share of operators' machines whose clock is off by 20 s to 2 min, beyond the refresh lease's tolerance")
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
	cfg := Config{Days: days, Seed: seed, VBC: mode, SelfHeal: *flagSelfHeal, CheckEvery: *flagCheckEvery, AdminOnAlarm: *flagAdminOnAlarm, Backend: backend(t, store)}
	if *flagWild > 0 {
		plan := PlanFor(mode)
		plan.WildClock = *flagWild
		cfg.Plan = &plan
	}
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
		return SecretsManagerBackend(srv.Client(), smstore.SecretIDs(ids))
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

// A process that dies in the middle of a pair commit leaves the pair pending in every
// store, where the next LoadPair reports it, and the current pair untouched.
func TestDeathMidCommitStrandsThePair(t *testing.T) {
	ctx := context.Background()
	pair := func(rt string) *vbctoken.Pair {
		now := simStart
		return &vbctoken.Pair{
			AccessToken: vbctoken.Secret("access-" + rt), RefreshToken: vbctoken.Secret(rt),
			TokenType: "Bearer", Scope: "openid", Grant: vbctoken.GrantRefreshToken,
			ExpiresAt: now.Add(24 * time.Hour), RefreshExpiresAt: now.Add(vbctoken.RefreshTokenLifetime), ObtainedAt: now,
		}
	}
	for _, store := range []string{"mem", "file", "moto"} {
		t.Run(store, func(t *testing.T) {
			plan := Plan{}
			s, err := newSim(ctx, Config{Days: 1, Seed: 1, Backend: backend(t, store), Plan: &plan})
			if err != nil {
				t.Fatal(err)
			}
			defer s.srv.Close()
			v0, err := s.backend.clean.LoadPair(ctx)
			if err != nil {
				t.Fatal(err)
			}
			first, second := pair("first-refresh-token-0001"), pair("second-refresh-token-0002")
			v1, err := s.backend.open(s.newProcess(roleRefresher)).CommitPair(ctx, first, v0.Version)
			if err != nil {
				t.Fatal(err)
			}
			s.plan.DeathMidCommit = 1
			p := s.newProcess(roleRefresher)
			if _, err := s.backend.open(p).CommitPair(ctx, second, v1); !errors.Is(err, errKilled) {
				t.Fatalf("commit: %v, want the process killed", err)
			}
			if p.dead() != DeathMidCommit {
				t.Fatalf("death %q, want %q", p.dead(), DeathMidCommit)
			}
			v, err := s.backend.clean.LoadPair(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Pair.SameTokens(first) || v.Version != v1 {
				t.Errorf("current pair changed: %v (version %s, want %s)", v.Pair, v.Version, v1)
			}
			if v.Pending == nil || !v.Pending.SameTokens(second) {
				t.Errorf("pending %v, want the stranded pair", v.Pending)
			}
			if !s.isStranded("second-refresh-token-0002") || s.rep.Stranded["new_pair"] != 1 {
				t.Errorf("stranded writes %v, want the new pair recorded", s.rep.Stranded)
			}
		})
	}
}

// A race is a process retrying after a lost answer, or the next keeper after one gave up;
// any other two processes spending one refresh token is a violation (the lease failed).
func TestRacesBetweenKeepers(t *testing.T) {
	s := &sim{rep: &Report{}, clock: NewClock(simStart), died: map[string]bool{}, consumedBy: map[string]vbcsandbox.IssuedPair{
		"retried":  {Tag: "1"},
		"lost":     {Tag: "1", Lost: true},
		"died":     {Tag: "1", RefreshToken: "died-successor"},
		"answered": {Tag: "1"},
	}}
	s.died["died-successor"] = true
	s.races = []raceRecord{
		{rt: "retried", tag: "1", outcome: vbcsandbox.RaceBothSucceed},
		{rt: "lost", tag: "2", outcome: vbcsandbox.RaceInvalidGrant},
		{rt: "died", tag: "2", outcome: vbcsandbox.RaceServerError},
		{rt: "answered", tag: "2", outcome: vbcsandbox.RaceBothSucceed},
	}
	s.checkRaces()
	want := map[string]int{
		"retry_after_lost_answer/both_succeed":        1,
		"next_keeper_after_lost_answer/invalid_grant": 1,
		"next_keeper_after_lost_answer/server_error":  1,
		"two_keepers/both_succeed":                    1,
	}
	if fmt.Sprint(s.rep.Races) != fmt.Sprint(want) {
		t.Errorf("races %v, want %v", s.rep.Races, want)
	}
	if s.rep.Violations != 1 {
		t.Errorf("%d violations, want 1: %v", s.rep.Violations, s.rep.ViolationDetails)
	}
}

// TestSoakSelfHeal is a self-heal deployment as its README section describes one: the
// refresher every 15 minutes, and an admin who is not watching, consenting only when an
// alarm pages them (a keeper declared re-consent) or apps have failed for a day. Every
// chain lost in half a year on WSO2 is restored by self-heal: no admin is ever needed.
// docs/soak.md "With self-heal" has the ten-year figures.
func TestSoakSelfHeal(t *testing.T) {
	rep, err := Run(context.Background(), Config{Days: 180, Seed: 1, VBC: vbcsandbox.ModeWSO2,
		SelfHeal: true, CheckEvery: 15 * time.Minute, AdminOnAlarm: true, Backend: backend(t, "mem")})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if n := rep.ForcedReconsents(); n != 0 {
		t.Errorf("%d forced re-consents with self-heal (%v), want 0", n, rep.Forced())
	}
	if rep.Outcomes[string(vbctoken.OutcomeConnected)] == 0 {
		t.Error("self-heal never restored a chain: the scenario lost none, or the keepers never healed")
	}
}
