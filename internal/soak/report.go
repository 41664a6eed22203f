package soak

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Report is what one soak run measured. It holds no secret.
type Report struct {
	Store          string    `json:"store"`
	Seed           uint64    `json:"seed"`
	Days           int       `json:"days"`
	VBCMode        string    `json:"vbc"` // the sandbox's mode: lenient, strict or wso2
	SelfHeal       bool      `json:"self_heal,omitempty"`
	SimulatedUntil time.Time `json:"simulated_until"`
	Elapsed        string    `json:"elapsed"`
	Plan           Plan      `json:"plan"`

	// Keeper Refresh runs (the scheduled Lambda, duplicated or concurrent, Lambda's retries,
	// operators' `vbctoken refresh --force`, local serves' checks) and their outcomes:
	// refreshed, superseded, skipped, in_doubt, reconsent_required, failed (an error
	// Lambda retries after one and three minutes), died. RunsByRole is by role/outcome.
	RefresherRuns int            `json:"refresher_runs"`
	LambdaRetries int            `json:"lambda_retries"`
	ServeSessions int            `json:"serve_sessions"`
	Outcomes      map[string]int `json:"outcomes"`
	RunsByRole    map[string]int `json:"runs_by_role"`
	Refreshes     int            `json:"refreshes"`
	Superseded    int            `json:"superseded"`
	Skipped       int            `json:"skipped"`
	InDoubtRuns   int            `json:"in_doubt_runs"`
	// Interrupts counts CLI processes (by role) whose context was cancelled, as by SIGINT,
	// right when VBC's answer arrived.
	Interrupts map[string]int `json:"interrupts"`
	// FalseAlarms counts runs that said re-consent was required while the chain was alive
	// (they gave up waiting for a concurrent writer); they write nothing.
	FalseAlarms       int      `json:"false_alarms"`
	FalseAlarmDetails []string `json:"false_alarm_details,omitempty"`
	// RescuedAfterAlarm counts runs that rightly said re-consent was required (VBC had
	// rotated the token and the answer was lost) whose chain another keeper revived
	// later: its refresh of the same token raced the lost one inside WSO2's cluster lag
	// and got a second 200.
	RescuedAfterAlarm int `json:"rescued_after_alarm"`
	// DeliveredSuperseded counts pairs a refresher received and rightly did not store: a
	// consent had stored a newer chain meanwhile.
	DeliveredSuperseded int `json:"delivered_superseded"`
	TokenRequests       int `json:"token_requests"`

	// Re-consents that connected, by reason: initial, voluntary (the admin's own
	// schedule) or forced/<cause of the chain break>.
	Reconsents         map[string]int `json:"reconsents"`
	ConsentAttempts    int            `json:"consent_attempts"`
	ConsentFailures    int            `json:"consent_failures"`
	ConsentsMidRefresh int            `json:"consents_mid_refresh"`
	Logins             int            `json:"logins"`
	WrongPasswords     int            `json:"wrong_passwords"`
	// SchedulerOutages counts the times the scheduled refresher stopped for a day or two.
	SchedulerOutages int `json:"scheduler_outages"`
	CallbackReplays  int `json:"callback_replays"`
	ReplaysRefused   int `json:"replays_refused"`
	// Reloads counts the admin's reloads of a callback page that showed an error (the
	// same code again), by the HTTP status the reload got.
	Reloads     map[string]int `json:"reloads_after_error"`
	Revocations int            `json:"revocations"`
	// Callback500OnMalformed counts callback pages that answered 500 (rather than 502)
	// when VBC's answer to the code exchange was not a token response.
	Callback500OnMalformed int `json:"callback_500_on_malformed_vbc_answer"`

	// Faults injected, by kind.
	TokenFaults       map[string]int `json:"token_faults"`
	StoreFaults       map[string]int `json:"store_faults"`         // kind/before|after
	StoreFaultsByCall map[string]int `json:"store_faults_by_call"` // store method or AWS API call
	Deaths            map[string]int `json:"process_deaths"`
	SandboxFaults     map[string]int `json:"sandbox_faults"` // as counted by the sandbox
	FaultsTotal       int            `json:"faults_total"`
	// Stranded counts pair writes a death left pending in the store (new_pair: with
	// tokens never stored before; bookkeeping: a lease or a consent nonce);
	// StrandedFinished the new pairs a later run made current; StrandedNeverCurrent those
	// that never became current (the chain moved on without them).
	Stranded             map[string]int `json:"stranded_writes"`
	StrandedFinished     int            `json:"stranded_finished"`
	StrandedNeverCurrent int            `json:"stranded_never_current"`

	// Races counts refresh races at VBC (ModeWSO2) by who raced and how VBC settled them:
	// retry_after_lost_answer/<outcome> (a client retrying after VBC's answer was lost) or
	// two_keepers/<outcome> (two processes spent one refresh token: a violation).
	Races map[string]int `json:"races"`
	// VBCStats is what the sandbox counted.
	VBCStats struct {
		Races           map[string]int `json:"races"`
		Reused          int            `json:"reused_grants"`
		RenewedAccess   int            `json:"renewed_access"`
		CodeReplays     int            `json:"code_replays"`
		CodeReplayKills int            `json:"code_replay_kills"`
		Lockouts        int            `json:"lockouts"`
	} `json:"vbc_stats"`

	Reads struct {
		Direct       int `json:"direct"`
		Source       int `json:"source"`
		Errors       int `json:"errors"`
		NoToken      int `json:"no_token"`
		DuringOutage int `json:"dead_token_during_outage"`
		// ChainAlive: dead tokens read while the chain lived but the stored pair's own
		// access token was dead (the schedule stopped, or the live pair was kept or
		// pending beside a dead stored one).
		ChainAlive int `json:"dead_token_chain_alive"`
		// StaleAfterDeath: dead tokens read while the access secret lagged because a
		// process died between its pair commit and its access write (until the next run).
		StaleAfterDeath int `json:"dead_token_stale_after_death"`
		// DeadWhileChainAlive: reads when the stored pair's own access token was dead
		// although the chain was alive (a refresh came too late).
		DeadWhileChainAlive int `json:"stored_token_dead_while_chain_alive"`
		Invalidations       int `json:"invalidations"`
		// Requests are the apps' API requests through vbctoken.Transport, one per read;
		// RequestErrors those that failed because the access secret could not be read
		// (before the request, or in the re-read after a 401, which then stands).
		Requests      int `json:"transport_requests"`
		RequestErrors int `json:"transport_errors"`
	} `json:"reads"`
	// DeadReads counts reads that yielded a revoked or expired access token, per reader,
	// with the longest streak of them (docs/soak.md).
	DeadReads readers `json:"dead_reads"`
	// RevokedWindow: after each refresh, how long the access secret still held the token
	// VBC had just killed (strict and wso2 sandboxes).
	RevokedWindow RevokedWindow `json:"revoked_window"`

	// ChainBreaks counts chains lost, by cause: revoked, processed_but_lost,
	// process_death. UnavoidableLosses counts pairs VBC issued whose answer never reached a
	// live process, by cause and grant (a lost code exchange breaks nothing).
	ChainBreaks map[string]int `json:"chain_breaks"`
	// HealedBreaks counts chain breaks a keeper repaired (self-heal) before the admin
	// consented, by cause: they force no re-consent.
	HealedBreaks      map[string]int `json:"healed_breaks"`
	UnavoidableLosses map[string]int `json:"unavoidable_losses"`
	OutageHours       float64        `json:"outage_hours"`
	// InDoubt is how long the stored refresh token was dead while a pair kept beside it or
	// left pending in the store was live (the keeper settles it at its next run).
	InDoubt struct {
		Periods int     `json:"periods"`
		Hours   float64 `json:"hours"`
		Longest string  `json:"longest"`
		longest time.Duration
	} `json:"chain_in_doubt"`
	AccessLagging int `json:"access_lagging_steps"`

	LogLines         int      `json:"log_lines_checked"`
	SecretsTracked   int      `json:"secrets_tracked"`
	Violations       int      `json:"violations"`
	ViolationDetails []string `json:"violation_details,omitempty"`
}

func newReport(cfg Config, plan Plan) *Report {
	return &Report{Store: cfg.Backend.Name(), Seed: cfg.Seed, Days: cfg.Days, VBCMode: cfg.VBC.String(), SelfHeal: cfg.SelfHeal, Plan: plan}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (r *Report) total() {
	r.FaultsTotal = sum(r.TokenFaults) + sum(r.StoreFaults) + sum(r.Deaths)
}

// LostPairs is the number of pairs lost unavoidably.
func (r *Report) LostPairs() int { return sum(r.UnavoidableLosses) }

// ForcedReconsents is the number of re-consents chain breaks (or the keeper's false
// alarms) forced.
func (r *Report) ForcedReconsents() int {
	n := 0
	for _, v := range r.Forced() {
		n += v
	}
	return n
}

// Forced returns the forced re-consents by class: unavoidable (an answer lost in transit
// after VBC rotated, or the only copy died with its process), revoked (VBC revoked the
// grant on purpose) and avoidable (everything else).
func (r *Report) Forced() map[string]int {
	out := map[string]int{classUnavoidable: 0, classDeliberate: 0, classAvoidable: 0}
	for k, v := range r.Reconsents {
		if cause, ok := strings.CutPrefix(k, "forced/"); ok {
			out[classify(cause)] += v
		}
	}
	return out
}

// Name is how tables and test names call the run: store and VBC mode.
func (r *Report) Name() string { return r.Store + "-" + r.VBCMode }

// Mode is the VBC mode, with self-heal when the run has it.
func (r *Report) Mode() string {
	if r.SelfHeal {
		return r.VBCMode + " + self-heal"
	}
	return r.VBCMode
}

// WriteTable prints the reports side by side, one column per run.
func WriteTable(w io.Writer, reports []*Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(*Report) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range reports {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	num := func(label string, f func(*Report) int) {
		row(label, func(r *Report) string { return fmt.Sprint(f(r)) })
	}
	keys := func(get func(*Report) map[string]int) []string {
		seen := map[string]bool{}
		var out []string
		for _, r := range reports {
			for k := range get(r) {
				if !seen[k] {
					seen[k] = true
					out = append(out, k)
				}
			}
		}
		sort.Strings(out)
		return out
	}
	mapRows := func(prefix string, get func(*Report) map[string]int) {
		for _, k := range keys(get) {
			num("  "+prefix+k, func(r *Report) int { return get(r)[k] })
		}
	}

	row("store", func(r *Report) string { return r.Store })
	row("VBC behaviour", func(r *Report) string { return r.Mode() })
	num("days simulated", func(r *Report) int { return r.Days })
	row("seed", func(r *Report) string { return fmt.Sprint(r.Seed) })
	num("keeper refresh runs", func(r *Report) int { return r.RefresherRuns })
	row("  Lambda / its retries / CLI --force / serve", func(r *Report) string {
		by := func(role string) int {
			n := 0
			for k, v := range r.RunsByRole {
				if strings.HasPrefix(k, role+"/") {
					n += v
				}
			}
			return n
		}
		return fmt.Sprintf("%d / %d / %d / %d", by(roleRefresher)-r.LambdaRetries, r.LambdaRetries, by(roleCLI), by(roleServe))
	})
	row("  refreshed / superseded / skipped / in doubt", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.Refreshes, r.Superseded, r.Skipped, r.InDoubtRuns)
	})
	row("  re-consent required / failed / died", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d", r.Outcomes["reconsent_required"], r.Outcomes["failed"], r.Outcomes["died"])
	})
	num("  self-healed (chain restored by the password grant)", func(r *Report) int { return r.Outcomes[string(vbctoken.OutcomeConnected)] })
	num("  false alarms (re-consent while the chain lived)", func(r *Report) int { return r.FalseAlarms })
	num("  re-consent said, then revived by a racing keeper", func(r *Report) int { return r.RescuedAfterAlarm })
	num("  interrupted (SIGINT) right after VBC answered", func(r *Report) int { return sum(r.Interrupts) })
	num("  local serve sessions", func(r *Report) int { return r.ServeSessions })
	num("token requests", func(r *Report) int { return r.TokenRequests })
	row("refresh races at VBC: invalid_grant / 500 / both 200", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d", r.VBCStats.Races["invalid_grant"], r.VBCStats.Races["server_error"], r.VBCStats.Races["both_succeed"])
	})
	mapRows("by ", func(r *Report) map[string]int { return r.Races })
	row("re-grants reused / renewed access / code replays / lock-outs", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.VBCStats.Reused, r.VBCStats.RenewedAccess, r.VBCStats.CodeReplays, r.VBCStats.Lockouts)
	})
	num("scheduler outages (1-2 days)", func(r *Report) int { return r.SchedulerOutages })
	num("re-consents by admin (initial, own schedule, outage)", func(r *Report) int { return sum(r.Reconsents) - r.ForcedReconsents() })
	num("re-consents forced", func(r *Report) int { return r.ForcedReconsents() })
	row("  unavoidable / revoked at VBC / AVOIDABLE", func(r *Report) string {
		f := r.Forced()
		return fmt.Sprintf("%d / %d / %d", f[classUnavoidable], f[classDeliberate], f[classAvoidable])
	})
	mapRows("forced by ", func(r *Report) map[string]int {
		m := map[string]int{}
		for k, v := range r.Reconsents {
			if c, ok := strings.CutPrefix(k, "forced/"); ok {
				m[c] = v
			}
		}
		return m
	})
	num("consent attempts", func(r *Report) int { return r.ConsentAttempts })
	row("  failed / mid-refresh / logins (wrong password)", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d (%d)", r.ConsentFailures, r.ConsentsMidRefresh, r.Logins, r.WrongPasswords)
	})
	row("  double submits + reloads / refused", func(r *Report) string {
		return fmt.Sprintf("%d + %d / %d", r.CallbackReplays, sum(r.Reloads), r.ReplaysRefused)
	})
	num("  callback 500 on malformed VBC answer", func(r *Report) int { return r.Callback500OnMalformed })
	num("revocations at VBC", func(r *Report) int { return r.Revocations })
	num("faults injected", func(r *Report) int { return r.FaultsTotal })
	num("  token endpoint", func(r *Report) int { return sum(r.TokenFaults) })
	mapRows("", func(r *Report) map[string]int { return r.TokenFaults })
	num("  store", func(r *Report) int { return sum(r.StoreFaults) })
	mapRows("", func(r *Report) map[string]int { return r.StoreFaults })
	num("  process deaths", func(r *Report) int { return sum(r.Deaths) })
	mapRows("", func(r *Report) map[string]int { return r.Deaths })
	row("stranded writes: new pair / bookkeeping", func(r *Report) string {
		return fmt.Sprintf("%d / %d", r.Stranded["new_pair"], r.Stranded["bookkeeping"])
	})
	row("  new pairs finished later / never current", func(r *Report) string {
		return fmt.Sprintf("%d / %d", r.StrandedFinished, r.StrandedNeverCurrent)
	})
	row("reads (store / Source)", func(r *Report) string { return fmt.Sprintf("%d / %d", r.Reads.Direct, r.Reads.Source) })
	row("  errors / no token / 401s", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d", r.Reads.Errors, r.Reads.NoToken, r.Reads.Invalidations)
	})
	row("  dead token: chain broken / stored one dead", func(r *Report) string {
		return fmt.Sprintf("%d / %d", r.Reads.DuringOutage, r.Reads.ChainAlive)
	})
	row("  stale after death / stored dead, chain alive", func(r *Report) string {
		return fmt.Sprintf("%d / %d", r.Reads.StaleAfterDeath, r.Reads.DeadWhileChainAlive)
	})
	deadRow := func(label string, get func(*Report) DeadReads) {
		row(label, func(r *Report) string {
			d := get(r)
			return fmt.Sprintf("%d+%d / %d / %s", d.Revoked, d.Expired, d.LongestStreak, d.LongestStreakFor)
		})
	}
	deadRow("dead reads revoked+expired / streak / for: store", func(r *Report) DeadReads { return r.DeadReads.Direct })
	deadRow("  Source (the app's 401)", func(r *Report) DeadReads { return r.DeadReads.Source })
	deadRow("  Source after the 401's re-read", func(r *Report) DeadReads { return r.DeadReads.Final })
	row("  requests through Transport / secret unreadable", func(r *Report) string {
		return fmt.Sprintf("%d / %d", r.Reads.Requests, r.Reads.RequestErrors)
	})
	deadRow("  requests through Transport: 401s", func(r *Report) DeadReads { return r.DeadReads.Transport })
	row("revoked window per refresh: p50 / p90 / p99 / max (> 1 min)", func(r *Report) string {
		w := r.RevokedWindow
		if w.Refreshes == 0 {
			return "-"
		}
		return fmt.Sprintf("%s / %s / %s / %s (%d)", w.P50, w.P90, w.P99, w.Max, w.OverMinute)
	})
	num("chain breaks", func(r *Report) int { return sum(r.ChainBreaks) })
	mapRows("", func(r *Report) map[string]int { return r.ChainBreaks })
	num("  healed by a keeper before the admin consented", func(r *Report) int { return sum(r.HealedBreaks) })
	row("chain in doubt: periods / hours / longest", func(r *Report) string {
		return fmt.Sprintf("%d / %.1f / %s", r.InDoubt.Periods, r.InDoubt.Hours, r.InDoubt.Longest)
	})
	num("unavoidable losses (pairs)", func(r *Report) int { return r.LostPairs() })
	mapRows("", func(r *Report) map[string]int { return r.UnavoidableLosses })
	row("hours without a live chain", func(r *Report) string { return fmt.Sprintf("%.1f", r.OutageHours) })
	num("log lines checked", func(r *Report) int { return r.LogLines })
	num("secrets tracked", func(r *Report) int { return r.SecretsTracked })
	num("VIOLATIONS", func(r *Report) int { return r.Violations })
	row("time taken", func(r *Report) string { return r.Elapsed })
	tw.Flush()
}
