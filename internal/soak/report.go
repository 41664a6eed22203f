package soak

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what one soak run measured. It holds no secret.
type Report struct {
	Store          string    `json:"store"`
	Seed           uint64    `json:"seed"`
	Days           int       `json:"days"`
	StrictVBC      bool      `json:"strict_vbc"`
	SimulatedUntil time.Time `json:"simulated_until"`
	Elapsed        string    `json:"elapsed"`
	Plan           Plan      `json:"plan"`

	// Refresher invocations (scheduled, duplicated, concurrent, forced) and their outcomes:
	// refreshed, superseded, skipped, reconsent_required, failed (an error Lambda retries
	// after one and three minutes), died.
	RefresherRuns int            `json:"refresher_runs"`
	LambdaRetries int            `json:"lambda_retries"`
	Outcomes      map[string]int `json:"outcomes"`
	Refreshes     int            `json:"refreshes"`
	Superseded    int            `json:"superseded"`
	Skipped       int            `json:"skipped"`
	// FalseAlarms counts runs that said re-consent was required while the chain was alive
	// (they gave up waiting for a concurrent writer); they write nothing.
	FalseAlarms       int      `json:"false_alarms"`
	FalseAlarmDetails []string `json:"false_alarm_details,omitempty"`
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
	CallbackReplays    int            `json:"callback_replays"`
	ReplaysRefused     int            `json:"replays_refused"`
	Revocations        int            `json:"revocations"`
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

	Reads struct {
		Direct       int `json:"direct"`
		Source       int `json:"source"`
		Errors       int `json:"errors"`
		NoToken      int `json:"no_token"`
		DuringOutage int `json:"dead_token_during_outage"`
		// StaleAfterDeath: dead tokens read while the access secret lagged because a
		// process died between its pair commit and its access write (until the next run).
		StaleAfterDeath int `json:"dead_token_stale_after_death"`
		// DeadWhileChainAlive: reads when the stored pair's own access token was dead
		// although the chain was alive (a refresh came too late).
		DeadWhileChainAlive int `json:"stored_token_dead_while_chain_alive"`
		Invalidations       int `json:"invalidations"`
	} `json:"reads"`

	// ChainBreaks counts chains lost, by cause: revoked, processed_but_lost,
	// process_death. UnavoidableLosses counts pairs VBC issued whose answer never reached a
	// live process, by cause and grant (a lost code exchange breaks nothing).
	ChainBreaks       map[string]int `json:"chain_breaks"`
	UnavoidableLosses map[string]int `json:"unavoidable_losses"`
	OutageHours       float64        `json:"outage_hours"`
	AccessLagging     int            `json:"access_lagging_steps"`

	LogLines         int      `json:"log_lines_checked"`
	SecretsTracked   int      `json:"secrets_tracked"`
	Violations       int      `json:"violations"`
	ViolationDetails []string `json:"violation_details,omitempty"`
}

func newReport(cfg Config, plan Plan) *Report {
	return &Report{Store: cfg.Backend.Name(), Seed: cfg.Seed, Days: cfg.Days, StrictVBC: cfg.StrictVBC, Plan: plan}
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

// ForcedReconsents is the number of re-consents chain breaks forced.
func (r *Report) ForcedReconsents() int {
	n := 0
	for k, v := range r.Reconsents {
		if strings.HasPrefix(k, "forced/") {
			n += v
		}
	}
	return n
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
	num("days simulated", func(r *Report) int { return r.Days })
	row("seed", func(r *Report) string { return fmt.Sprint(r.Seed) })
	row("VBC behaviour", func(r *Report) string {
		if r.StrictVBC {
			return "strict"
		}
		return "lenient"
	})
	num("refresher runs", func(r *Report) int { return r.RefresherRuns })
	num("  Lambda retries of failed runs", func(r *Report) int { return r.LambdaRetries })
	num("  refreshed", func(r *Report) int { return r.Refreshes })
	num("  superseded", func(r *Report) int { return r.Superseded })
	num("  skipped", func(r *Report) int { return r.Skipped })
	num("  re-consent required", func(r *Report) int { return r.Outcomes["reconsent_required"] })
	num("    of which false alarms", func(r *Report) int { return r.FalseAlarms })
	num("  failed (Lambda retries scheduled runs)", func(r *Report) int { return r.Outcomes["failed"] })
	num("  died", func(r *Report) int { return r.Outcomes["died"] })
	num("token requests", func(r *Report) int { return r.TokenRequests })
	num("re-consents by admin schedule", func(r *Report) int { return r.Reconsents["voluntary"] + r.Reconsents["initial"] })
	num("re-consents forced", func(r *Report) int { return r.ForcedReconsents() })
	mapRows("forced by ", func(r *Report) map[string]int {
		m := map[string]int{}
		for k, v := range r.Reconsents {
			if c, ok := strings.CutPrefix(k, "forced/"); ok {
				m[c] = v
			}
		}
		return m
	})
	num("consent attempts (mid-refresh)", func(r *Report) int { return r.ConsentAttempts })
	row("  failed / mid-refresh / logins", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d", r.ConsentFailures, r.ConsentsMidRefresh, r.Logins)
	})
	row("  callback replays / refused", func(r *Report) string { return fmt.Sprintf("%d / %d", r.CallbackReplays, r.ReplaysRefused) })
	num("  callback 500 on malformed VBC answer", func(r *Report) int { return r.Callback500OnMalformed })
	num("revocations at VBC", func(r *Report) int { return r.Revocations })
	num("faults injected", func(r *Report) int { return r.FaultsTotal })
	num("  token endpoint", func(r *Report) int { return sum(r.TokenFaults) })
	mapRows("", func(r *Report) map[string]int { return r.TokenFaults })
	num("  store", func(r *Report) int { return sum(r.StoreFaults) })
	mapRows("", func(r *Report) map[string]int { return r.StoreFaults })
	num("  process deaths", func(r *Report) int { return sum(r.Deaths) })
	mapRows("", func(r *Report) map[string]int { return r.Deaths })
	row("reads (store / Source)", func(r *Report) string { return fmt.Sprintf("%d / %d", r.Reads.Direct, r.Reads.Source) })
	row("  errors / no token / outage / 401s", func(r *Report) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.Reads.Errors, r.Reads.NoToken, r.Reads.DuringOutage, r.Reads.Invalidations)
	})
	row("  stale after death / stored dead, chain alive", func(r *Report) string {
		return fmt.Sprintf("%d / %d", r.Reads.StaleAfterDeath, r.Reads.DeadWhileChainAlive)
	})
	num("chain breaks", func(r *Report) int { return sum(r.ChainBreaks) })
	mapRows("", func(r *Report) map[string]int { return r.ChainBreaks })
	num("unavoidable losses (pairs)", func(r *Report) int { return r.LostPairs() })
	mapRows("", func(r *Report) map[string]int { return r.UnavoidableLosses })
	row("hours without a live chain", func(r *Report) string { return fmt.Sprintf("%.1f", r.OutageHours) })
	num("log lines checked", func(r *Report) int { return r.LogLines })
	num("secrets tracked", func(r *Report) int { return r.SecretsTracked })
	num("VIOLATIONS", func(r *Report) int { return r.Violations })
	row("time taken", func(r *Report) string { return r.Elapsed })
	tw.Flush()
}
