package fleetsim

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is what one fleet simulation measured. Durations in Dist are minutes.
type Report struct {
	Config ReportConfig `json:"config"`

	WallTime       string    `json:"wall_time"`
	CPUTime        string    `json:"cpu_time"`
	SimulatedUntil time.Time `json:"simulated_until"`
	ClockSteps     uint64    `json:"clock_steps"`
	ClockWakes     uint64    `json:"clock_wakes"`

	// Invariants.
	Violations       int      `json:"violations"`
	ViolationDetails []string `json:"violation_details,omitempty"`
	LiveChains       int      `json:"live_chains"`
	// LostChains are chains the keeper lost: 0 is the invariant.
	LostChains int `json:"lost_chains"`
	// LostToFaults are chains lost to a fault no keeper survives against WSO2 (a refresh
	// VBC processed whose answer never reached a live process), by cause; an admin
	// consented again for each.
	LostToFaults  map[string]int `json:"lost_to_unsurvivable_faults"`
	LostAccounts  []string       `json:"lost_accounts,omitempty"`
	AwaitingAdmin int            `json:"awaiting_admin_at_end"`
	OverdueAtEnd  int            `json:"overdue_at_end"`
	Revoked       string         `json:"revoked_account"`
	Malformed     string         `json:"malformed_account"`
	// ReconsentsRevoked counts the revoked account's runs that reported re-consent.
	ReconsentsRevoked int `json:"reconsent_runs_of_revoked_account"`

	ThrottlesSeen     int64 `json:"throttles_seen"`
	QuotaThrottles    int64 `json:"quota_throttles"`
	InjectedThrottles int64 `json:"injected_throttles"`
	// ThrottlesSurfaced counts refreshes and consents that failed because of throttling:
	// 0 is the invariant.
	ThrottlesSurfaced      int   `json:"throttles_surfaced_as_failures"`
	PacerRefusals          int64 `json:"pacer_refusals"`
	SDKRetries             int64 `json:"sdk_retries"`
	SDKRetryQuotaExhausted int64 `json:"sdk_retry_quota_exhausted"`

	Leaks       int            `json:"secret_leaks"`
	LogLines    int            `json:"log_lines"`
	LogMessages map[string]int `json:"log_messages"`

	// Load on the Secrets Manager quota.
	PeakWritesPerSecond          int              `json:"peak_writes_per_second"`
	PeakWritesAt                 time.Time        `json:"peak_writes_at"`
	PeakWritesByCaller           map[string]int   `json:"peak_writes_by_caller"`
	RolePeakWrites               map[string]int   `json:"role_peak_writes_per_second"`
	RolePeakAttemptedWrites      map[string]int   `json:"role_peak_attempted_writes_per_second"`
	PeakAttemptedWritesPerSecond int              `json:"peak_attempted_writes_per_second"`
	PeakReadsPerSecond           int              `json:"peak_reads_per_second"`
	SecondsOverQuota             int64            `json:"seconds_with_attempts_over_quota"`
	WriteSecondsHistogram        map[string]int64 `json:"write_seconds_histogram"`

	// Timeliness.
	Lateness                   Dist     `json:"refresh_lateness_minutes"`
	EarlyRefreshes             int      `json:"early_refreshes"`
	AccessExpiredBeforeRefresh int      `json:"access_expired_before_refresh"`
	EarlySamples               []string `json:"early_samples,omitempty"`
	// SweepDuration runs from the hourly rule to the sweep's last account refreshed or
	// skipped; SweepDrain until its last message is gone (retries to the DLQ included).
	SweepDuration  Dist           `json:"sweep_duration_minutes"`
	SweepDrain     Dist           `json:"sweep_drain_minutes"`
	Runs           int            `json:"refresher_runs"`
	RefreshRunMs   int64          `json:"refresh_run_ms_total"`
	SkipRunMs      int64          `json:"skip_run_ms_total"`
	Outcomes       map[string]int `json:"outcomes"`
	RefreshReasons map[string]int `json:"refresh_reasons"`

	Failures          map[string]int      `json:"failures"`
	FailureSamples    map[string][]string `json:"failure_samples,omitempty"`
	Kills             int64               `json:"kills"`
	KilledInvocations int64               `json:"killed_invocations"`
	BatchItemFailures int64               `json:"batch_item_failures"`
	Duplicates        int64               `json:"duplicate_deliveries"`
	DLQ               map[string]int      `json:"dlq_by_account"`
	Consents          int64               `json:"consents"`
	ConsentFailures   int64               `json:"consent_failures"`
	TokenFaults       map[string]int      `json:"token_faults"`
	SandboxFaults     map[string]int      `json:"sandbox_faults"`
	SMFaults          map[string]int64    `json:"sm_faults"`

	PairBytes   int `json:"pair_bytes"`
	AccessBytes int `json:"access_bytes"`

	Usage Usage     `json:"usage"`
	Costs CostTable `json:"costs"`
}

// ReportConfig is the configuration a report was made with.
type ReportConfig struct {
	Accounts          int     `json:"accounts"`
	Days              int     `json:"days"`
	Seed              uint64  `json:"seed"`
	Concurrency       int     `json:"max_concurrency"`
	BatchSize         int     `json:"batch_size"`
	BatchWindow       string  `json:"batch_window"`
	Spread            string  `json:"sweep_spread"`
	VisibilityTimeout string  `json:"visibility_timeout"`
	MaxReceiveCount   int     `json:"max_receive_count"`
	LambdaTimeout     string  `json:"lambda_timeout"`
	WriteBudget       float64 `json:"refresher_write_budget_per_second"`
	OnboardWithin     string  `json:"onboard_within"`
	LatenessBound     string  `json:"lateness_bound"`
	Plan              Plan    `json:"plan"`
}

// Usage is what the run consumed, as AWS bills it.
type Usage struct {
	SMCalls              map[string]map[string]int64 `json:"sm_calls_by_role"`
	StoreOps             map[string]map[string]int64 `json:"store_ops_by_role"`
	RefresherInvocations int64                       `json:"refresher_invocations"`
	RefresherBilledMs    int64                       `json:"refresher_billed_ms"`
	SweeperInvocations   int64                       `json:"sweeper_invocations"`
	SweeperBilledMs      int64                       `json:"sweeper_billed_ms"`
	CallbackInvocations  int64                       `json:"callback_invocations"`
	CallbackBilledMs     int64                       `json:"callback_billed_ms"`
	Records              int64                       `json:"sqs_records"`
	SQSSendBatches       int64                       `json:"sqs_send_batches"`
	SQSReceives          int64                       `json:"sqs_receives"`
	SQSDeleteBatches     int64                       `json:"sqs_delete_batches"`
	TokenRequests        int64                       `json:"token_requests"`
	Environments         map[string]int64            `json:"environments"`
}

// Dist summarizes a distribution (minutes).
type Dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func summarize(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(p * float64(len(s)-1))
		return s[i].Minutes()
	}
	return Dist{Count: len(s), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: s[len(s)-1].Minutes()}
}

func newReport(cfg Config) *Report {
	return &Report{
		Config: ReportConfig{
			Accounts: cfg.Accounts, Days: cfg.Days, Seed: cfg.Seed, Concurrency: cfg.Concurrency,
			BatchSize: cfg.BatchSize, BatchWindow: cfg.BatchWindow.String(), Spread: cfg.Spread.String(),
			VisibilityTimeout: cfg.VisibilityTimeout.String(), MaxReceiveCount: cfg.MaxReceiveCount,
			LambdaTimeout: cfg.LambdaTimeout.String(), WriteBudget: cfg.WriteBudget,
			OnboardWithin: cfg.OnboardWithin.String(), LatenessBound: cfg.LatenessBound.String(), Plan: cfg.Plan,
		},
		LostToFaults:   map[string]int{},
		Outcomes:       map[string]int{},
		RefreshReasons: map[string]int{},
		Failures:       map[string]int{},
		FailureSamples: map[string][]string{},
		TokenFaults:    map[string]int{},
	}
}

// total computes the costs once the usage is known.
func (r *Report) total() {
	r.Costs = costTable(r, DefaultPrices())
}

// OK reports whether every invariant held.
func (r *Report) OK() bool { return r.Violations == 0 }

// WriteText writes the report's headline numbers for a person.
func (r *Report) WriteText(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "fleet simulation: %d accounts × %d days (seed %d), N=%d, batch %d, spread %s, visibility %s, maxReceiveCount %d, refresher write budget %.0f/s\n",
		c.Accounts, c.Days, c.Seed, c.Concurrency, c.BatchSize, c.Spread, c.VisibilityTimeout, c.MaxReceiveCount, c.WriteBudget)
	fmt.Fprintf(w, "  wall %s, cpu %s, %d clock steps, %d wake-ups, simulated until %s\n",
		r.WallTime, r.CPUTime, r.ClockSteps, r.ClockWakes, r.SimulatedUntil.Format(time.RFC3339))
	fmt.Fprintf(w, "  invariants: %d violations; live chains %d; lost by the keeper %d; lost to unsurvivable faults %v (awaiting admin at end %d); revoked %s, malformed %s; overdue at end %d; leaks %d in %d log lines\n",
		r.Violations, r.LiveChains, r.LostChains, r.LostToFaults, r.AwaitingAdmin, r.Revoked, r.Malformed, r.OverdueAtEnd, r.Leaks, r.LogLines)
	fmt.Fprintf(w, "  throttles: seen %d (quota %d, injected %d), surfaced as failures %d; SDK retries %d, SDK retry quota exhausted %d, pacer refusals %d\n",
		r.ThrottlesSeen, r.QuotaThrottles, r.InjectedThrottles, r.ThrottlesSurfaced, r.SDKRetries, r.SDKRetryQuotaExhausted, r.PacerRefusals)
	fmt.Fprintf(w, "  writes/s: peak accepted %d at %s %v, peak attempted %d, seconds with attempts over 50: %d; peak reads/s %d\n",
		r.PeakWritesPerSecond, r.PeakWritesAt.Format(time.RFC3339), r.PeakWritesByCaller, r.PeakAttemptedWritesPerSecond, r.SecondsOverQuota, r.PeakReadsPerSecond)
	fmt.Fprintf(w, "  writes/s by role: peak accepted %v, peak attempted %v\n", r.RolePeakWrites, r.RolePeakAttemptedWrites)
	fmt.Fprintf(w, "  refresh lateness (min): n=%d p50 %.1f p90 %.1f p99 %.1f max %.1f; early %d; access expired before refresh %d\n",
		r.Lateness.Count, r.Lateness.P50, r.Lateness.P90, r.Lateness.P99, r.Lateness.Max, r.EarlyRefreshes, r.AccessExpiredBeforeRefresh)
	fmt.Fprintf(w, "  sweep duration (min): n=%d p50 %.1f p90 %.1f p99 %.1f max %.1f; drain incl. retries: p50 %.1f max %.1f\n",
		r.SweepDuration.Count, r.SweepDuration.P50, r.SweepDuration.P90, r.SweepDuration.P99, r.SweepDuration.Max, r.SweepDrain.P50, r.SweepDrain.Max)
	for _, e := range r.EarlySamples {
		fmt.Fprintf(w, "  early: %s\n", e)
	}
	fmt.Fprintf(w, "  runs %d %v; refresh reasons %v\n", r.Runs, r.Outcomes, r.RefreshReasons)
	fmt.Fprintf(w, "  failures %v; kills %d (invocations killed %d), batch item failures %d, duplicates %d, DLQ %v\n",
		r.Failures, r.Kills, r.KilledInvocations, r.BatchItemFailures, r.Duplicates, r.DLQ)
	fmt.Fprintf(w, "  consents %d (failed attempts %d); token faults %v; store faults %v\n", r.Consents, r.ConsentFailures, r.TokenFaults, r.SMFaults)
	fmt.Fprintf(w, "  stored pair %d B, access %d B\n", r.PairBytes, r.AccessBytes)
	r.Costs.write(w)
	if len(r.ViolationDetails) > 0 {
		fmt.Fprintf(w, "  violations:\n    %s\n", strings.Join(r.ViolationDetails, "\n    "))
	}
	keys := slices.Sorted(maps.Keys(r.FailureSamples))
	for _, k := range keys {
		for _, s := range r.FailureSamples[k] {
			fmt.Fprintf(w, "  sample %s: %s\n", k, s)
		}
	}
	msgs := slices.Collect(maps.Keys(r.LogMessages))
	sort.Slice(msgs, func(i, j int) bool { return r.LogMessages[msgs[i]] > r.LogMessages[msgs[j]] })
	for _, m := range msgs[:min(len(msgs), 12)] {
		fmt.Fprintf(w, "  log %6d × %s\n", r.LogMessages[m], m)
	}
}
