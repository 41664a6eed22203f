package fleetsim

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

// `make test` runs the small fleet; `make fleetsim` the month of 10,000 accounts
// (docs/fleet.md gives the exact command).
var (
	flagAccounts    = flag.Int("fleet.accounts", 200, "accounts in the simulated fleet")
	flagDays        = flag.Int("fleet.days", 3, "simulated days")
	flagSeed        = flag.Uint64("fleet.seed", 1, "seed")
	flagConcurrency = flag.Int("fleet.n", 0, "event source mapping maximum concurrency (0: default)")
	flagSpread      = flag.Duration("fleet.spread", -1, "sweep DelaySeconds spread (-1: default)")
	flagBudget      = flag.Float64("fleet.budget", 0, "refreshers' write budget per second (0: default, negative: no pacer)")
	flagBatch       = flag.Int("fleet.batch", 0, "SQS batch size (0: default)")
	flagKill        = flag.Float64("fleet.kill", -1, "chance that a refresher invocation is killed (-1: default)")
	flagNoFaults    = flag.Bool("fleet.nofaults", false, "run without faults")
	flagReport      = flag.String("fleet.report", "", "write the JSON report to this file")
	flagTrace       = flag.Bool("fleet.trace", false, "print every log line")
)

func flagConfig() Config {
	cfg := DefaultConfig()
	cfg.Accounts, cfg.Days, cfg.Seed = *flagAccounts, *flagDays, *flagSeed
	if *flagConcurrency > 0 {
		cfg.Concurrency = *flagConcurrency
	}
	if *flagSpread >= 0 {
		cfg.Spread = *flagSpread
	}
	if *flagBudget != 0 {
		cfg.WriteBudget = *flagBudget
	}
	if *flagBatch > 0 {
		cfg.BatchSize = *flagBatch
	}
	if *flagKill >= 0 {
		cfg.Plan.Kill = *flagKill
	}
	if *flagNoFaults {
		cfg.Plan = Plan{RevokeAt: -1, MalformedAt: -1}
	}
	if *flagTrace {
		cfg.Trace = os.Stderr
	}
	return cfg
}

// TestFleet runs the fleet simulation (by default 200 accounts × 3 days, about ten
// seconds) and checks every invariant: no chain lost by the keeper, no throttle surfacing
// as a failure, no refresh later than its due time by more than the bound, peak writes
// within the quota, no secret in logs, the revoked and the malformed account alone
// affected.
func TestFleet(t *testing.T) {
	cfg := flagConfig()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Log("\n" + text.String())
	if *flagReport != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*flagReport, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !rep.OK() {
		t.Errorf("%d invariant violations:\n%s", rep.Violations, strings.Join(rep.ViolationDetails, "\n"))
	}
	if rep.LostChains != 0 {
		t.Errorf("the keeper lost %d chains", rep.LostChains)
	}
	if rep.ThrottlesSurfaced != 0 {
		t.Errorf("%d throttles surfaced as failures", rep.ThrottlesSurfaced)
	}
	if rep.PeakWritesPerSecond > smWriteQuota {
		t.Errorf("peak writes %d/s over the quota", rep.PeakWritesPerSecond)
	}
	if cfg.WriteBudget > 0 {
		// Each environment sends at most budget/N writes a second; their latencies differ,
		// so one more each may arrive within the same second.
		if by, bound := rep.RolePeakAttemptedWrites[roleRefresher], int(cfg.WriteBudget)+cfg.Concurrency; by > bound || by > smWriteQuota {
			t.Errorf("refreshers attempted %d writes/s, over the bound of %d", by, min(bound, smWriteQuota))
		}
	}
	if rep.Leaks != 0 {
		t.Errorf("%d secrets in logs or errors", rep.Leaks)
	}
	if want := cfg.Accounts - 2 - rep.AwaitingAdmin; cfg.Plan.RevokeAt >= 0 && rep.LiveChains != want {
		t.Errorf("live chains at the end = %d, want %d (all but the revoked and the malformed account)", rep.LiveChains, want)
	}
	if max := cfg.LatenessBound.Minutes(); rep.Lateness.Max > max {
		t.Errorf("max lateness %.0f min over %v", rep.Lateness.Max, cfg.LatenessBound)
	}
	if rep.Lateness.Count == 0 {
		t.Error("no refresh measured")
	}
	for acct := range rep.DLQ {
		if acct != rep.Revoked && acct != rep.Malformed && !slices.Contains(rep.LostAccounts, acct) {
			t.Errorf("account %s reached the DLQ; only the revoked, the malformed and a lost account may", acct)
		}
	}
}
