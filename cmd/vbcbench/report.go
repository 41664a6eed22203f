package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vbctoken/vbctoken/internal/bench"
)

// Report is bench-report.json. Durations are in milliseconds, sizes in bytes, memory in
// MiB; a Ratio is to hello world's median in the same run.
type Report struct {
	Date      string   `json:"date"`
	GoVersion string   `json:"go_version"`
	Host      string   `json:"host"`
	CPUs      int      `json:"cpus"`
	Rounds    int      `json:"rounds"`
	Baseline  string   `json:"baseline,omitempty"`
	Seconds   float64  `json:"seconds"`
	Cold      []Cold   `json:"cold_start"`
	Sizes     []Size   `json:"sizes_linux_arm64"`
	Calls     Calls    `json:"calls"`
	Warm      []Bench  `json:"warm_handlers,omitempty"`
	Reader    []Bench  `json:"reader,omitempty"`
	Targets   []Target `json:"targets"`
}

// Dist summarises one measurement over the rounds.
type Dist struct {
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
	Ratio  float64 `json:"ratio_to_hello,omitempty"`
}

// Cold is one function's cold starts.
type Cold struct {
	Function    string `json:"function"`
	Baseline    bool   `json:"baseline,omitempty"`
	InitMS      Dist   `json:"init_ms"`
	FirstRespMS Dist   `json:"first_response_ms"`
	PeakRSSMiB  Dist   `json:"peak_rss_mib"`
	CPUMS       Dist   `json:"cpu_ms"`
	AWSCalls    int    `json:"aws_calls_per_invoke"`
	TokenCalls  int    `json:"token_calls_per_invoke"`
}

// Size is one function's deployment package.
type Size struct {
	Function    string  `json:"function"`
	Binary      int64   `json:"binary_bytes"`
	Zip         int64   `json:"zip_bytes"`
	BinaryRatio float64 `json:"binary_ratio_to_hello"`
	ZipRatio    float64 `json:"zip_ratio_to_hello"`
	baseline    bool
}

// Calls are the upstream calls counted by the test doubles.
type Calls struct {
	Consent      []string `json:"consent_aws_call_log"`
	ConsentTotal int      `json:"consent_aws"`
	ConsentToken int      `json:"consent_token"`
	// One day of hourly checks, each in a new execution environment (fresh) or all in one
	// (reused).
	Fresh  Day `json:"day_fresh_environments"`
	Reused Day `json:"day_reused_environment"`
}

// Day is one daily cycle of the refresher.
type Day struct {
	AWS   int `json:"aws_calls"`
	Token int `json:"token_calls"`
	// Skip is the median of AWS calls per skipped check, SkipLog one such check's calls.
	Skip         int           `json:"aws_calls_per_skipped_check"`
	SkipMax      int           `json:"aws_calls_per_skipped_check_max"`
	SkipLog      []string      `json:"skipped_check_aws_call_log"`
	Skipped      int           `json:"skipped_checks"`
	Refresh      int           `json:"aws_calls_per_refresh"`
	RefreshLog   []string      `json:"refresh_aws_call_log"`
	RefreshToken int           `json:"refresh_token_calls"`
	Refreshes    int           `json:"refreshes"`
	Checks       []bench.Check `json:"checks"`
}

// Bench is a Go benchmark's medians over -count runs.
type Bench struct {
	Name    string             `json:"name"`
	Runs    int                `json:"runs"`
	Metrics map[string]float64 `json:"metrics"`
}

// Target is one of issue 7's targets and whether this run met it.
type Target struct {
	What     string `json:"what"`
	Limit    string `json:"limit"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func dist(xs []float64, hello float64) Dist {
	d := Dist{Median: bench.Quantile(xs, 0.5), P90: bench.Quantile(xs, 0.9), Max: bench.Quantile(xs, 1)}
	if hello > 0 {
		d.Ratio = d.Median / hello
	}
	return d
}

func (r *Report) addCold(fns []function, samples map[string][]bench.Sample) {
	series := func(name string, f func(bench.Sample) float64) []float64 {
		var xs []float64
		for _, s := range samples[name] {
			xs = append(xs, f(s))
		}
		return xs
	}
	init := func(s bench.Sample) float64 { return ms(s.Init) }
	first := func(s bench.Sample) float64 { return ms(s.FirstResponse) }
	rss := func(s bench.Sample) float64 { return float64(s.PeakRSS) / (1 << 20) }
	cpu := func(s bench.Sample) float64 { return ms(s.CPU) }
	helloInit := bench.Quantile(series("hello", init), 0.5)
	helloFirst := bench.Quantile(series("hello", first), 0.5)
	for _, f := range fns {
		last := samples[f.name][len(samples[f.name])-1]
		c := Cold{
			Function:    f.name,
			Baseline:    f.baseline,
			InitMS:      dist(series(f.name, init), helloInit),
			FirstRespMS: dist(series(f.name, first), helloFirst),
			PeakRSSMiB:  dist(series(f.name, rss), 0),
			CPUMS:       dist(series(f.name, cpu), 0),
			AWSCalls:    last.AWSCalls,
			TokenCalls:  last.TokenCalls,
		}
		r.Cold = append(r.Cold, c)
	}
	for i := range r.Sizes {
		r.Sizes[i].BinaryRatio = float64(r.Sizes[i].Binary) / float64(r.Sizes[0].Binary)
		r.Sizes[i].ZipRatio = float64(r.Sizes[i].Zip) / float64(r.Sizes[0].Zip)
	}
}

func (r *Report) addCycle(reused bool, checks []bench.Check) {
	day := Day{Checks: checks}
	var skips []float64
	for _, c := range checks {
		day.AWS += c.AWSCalls
		day.Token += c.TokenCalls
		switch c.Outcome {
		case "skipped":
			day.Skipped++
			day.SkipMax = max(day.SkipMax, c.AWSCalls)
			skips = append(skips, float64(c.AWSCalls))
		case "refreshed":
			day.Refreshes++
			day.Refresh, day.RefreshLog, day.RefreshToken = c.AWSCalls, c.AWSCallLog, c.TokenCalls
		}
	}
	if len(skips) > 0 {
		day.Skip = int(bench.Quantile(skips, 0.5))
		for _, c := range checks {
			if c.Outcome == "skipped" && c.AWSCalls == day.Skip {
				day.SkipLog = c.AWSCallLog
				break
			}
		}
	}
	if reused {
		r.Calls.Reused = day
	} else {
		r.Calls.Fresh = day
	}
}

// summarize takes the median of each metric per benchmark name, in first-seen order.
func summarize(res []bench.GoBench) []Bench {
	var order []string
	by := map[string][]bench.GoBench{}
	for _, b := range res {
		if _, ok := by[b.Name]; !ok {
			order = append(order, b.Name)
		}
		by[b.Name] = append(by[b.Name], b)
	}
	var out []Bench
	for _, name := range order {
		runs := by[name]
		m := map[string]float64{}
		for unit := range runs[0].Metrics {
			var xs []float64
			for _, b := range runs {
				xs = append(xs, b.Metrics[unit])
			}
			m[unit] = bench.Quantile(xs, 0.5)
		}
		out = append(out, Bench{Name: name, Runs: len(runs), Metrics: m})
	}
	return out
}

func findBench(bs []Bench, name string) (Bench, bool) {
	for _, b := range bs {
		if b.Name == name {
			return b, true
		}
	}
	return Bench{}, false
}

// judge fills Targets (issue 7).
func (r *Report) judge() {
	add := func(what, limit, measured string, met bool) {
		r.Targets = append(r.Targets, Target{What: what, Limit: limit, Measured: measured, Met: met})
	}
	ours := slices.DeleteFunc(slices.Clone(r.Cold[1:]), func(c Cold) bool { return c.Baseline })
	for _, c := range ours {
		add("init "+c.Function, "≤ 1.3× hello", fmt.Sprintf("%.2f×", c.InitMS.Ratio), c.InitMS.Ratio <= 1.3)
	}
	for _, s := range r.Sizes[1:] {
		if !s.baseline {
			add("zip "+s.Function, "≤ 1.4× hello", fmt.Sprintf("%.2f×", s.ZipRatio), s.ZipRatio <= 1.4)
		}
	}
	for _, c := range ours {
		add("peak RSS "+c.Function, "≤ 30 MiB", fmt.Sprintf("%.1f MiB (max)", c.PeakRSSMiB.Max), c.PeakRSSMiB.Max <= 30)
	}
	for _, b := range r.Warm {
		if !strings.HasSuffix(b.Name, "store=secretsmanager") {
			continue // what ships; memstore isolates the keeper
		}
		cpu := b.Metrics["cpu-ns/op"] / 1e6
		add("warm CPU "+shortName(b.Name), "≤ 1 ms", fmt.Sprintf("%.2f ms", cpu), cpu <= 1)
	}
	for _, d := range []struct {
		name string
		day  Day
	}{{"fresh env", r.Calls.Fresh}, {"reused env", r.Calls.Reused}} {
		add("AWS calls per refresh ("+d.name+")", "≤ 4", fmt.Sprint(d.day.Refresh), d.day.Refresh <= 4)
		add("AWS calls per skipped check ("+d.name+")", "1", fmt.Sprintf("%d (max %d)", d.day.Skip, d.day.SkipMax), d.day.SkipMax <= 1)
	}
	if b, ok := findBench(r.Reader, "BenchmarkSourceTokenCached/clock=time.Now"); ok {
		ns, allocs := b.Metrics["ns/op"], b.Metrics["allocs/op"]
		add("cached Token()", "≤ 50 ns, 0 allocs", fmt.Sprintf("%.0f ns, %.0f allocs", ns, allocs), ns <= 50 && allocs == 0)
	}
}

func shortName(s string) string {
	s = strings.TrimPrefix(s, "Benchmark")
	return strings.ReplaceAll(s, "/store=", " ")
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nvbctoken performance — %s, %s, %d CPUs, %d cold starts per function, %s\n",
		r.Host, r.GoVersion, r.CPUs, r.Rounds, r.Date)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title string) { fmt.Fprintf(tw, "\n%s\n", title) }

	section("Cold start (Lambda-like env, host arch)")
	fmt.Fprintln(tw, "function\tinit p50\tp90\t×hello\tfirst resp p50\tp90\t×hello\tpeak RSS p50\tmax\tCPU p50\tAWS calls\ttoken calls\t")
	for _, c := range r.Cold {
		fmt.Fprintf(tw, "%s\t%.1f ms\t%.1f ms\t%.2f\t%.1f ms\t%.1f ms\t%.2f\t%.1f MiB\t%.1f MiB\t%.1f ms\t%d\t%d\t\n", c.Function,
			c.InitMS.Median, c.InitMS.P90, c.InitMS.Ratio, c.FirstRespMS.Median, c.FirstRespMS.P90, c.FirstRespMS.Ratio,
			c.PeakRSSMiB.Median, c.PeakRSSMiB.Max, c.CPUMS.Median, c.AWSCalls, c.TokenCalls)
	}

	section("Size (linux/arm64, stripped, lambda.norpc)")
	fmt.Fprintln(tw, "function\tbinary\t×hello\tzip\t×hello\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%s\t%.2f MB\t%.2f\t%.2f MB\t%.2f\t\n", s.Function, float64(s.Binary)/1e6, s.BinaryRatio, float64(s.Zip)/1e6, s.ZipRatio)
	}

	section("Calls (counted by the fake Secrets Manager and the VBC sandbox)")
	fmt.Fprintln(tw, "what\tAWS calls\ttoken calls\tAWS calls in order\t")
	fmt.Fprintf(tw, "consent (callback)\t%d\t%d\t%s\t\n", r.Calls.ConsentTotal, r.Calls.ConsentToken, calls(r.Calls.Consent))
	for _, d := range []struct {
		name string
		day  Day
	}{{"fresh env", r.Calls.Fresh}, {"reused env", r.Calls.Reused}} {
		fmt.Fprintf(tw, "hourly check, skips (%s)\t%d\t0\t%s\t\n", d.name, d.day.Skip, calls(d.day.SkipLog))
		fmt.Fprintf(tw, "hourly check, refreshes (%s)\t%d\t%d\t%s\t\n", d.name, d.day.Refresh, d.day.RefreshToken, calls(d.day.RefreshLog))
		fmt.Fprintf(tw, "day: %d checks, %d refresh (%s)\t%d\t%d\t\t\n", d.day.Skipped+d.day.Refreshes, d.day.Refreshes, d.name, d.day.AWS, d.day.Token)
	}

	if len(r.Warm) > 0 {
		section(fmt.Sprintf("Warm handler, one invoke (Go benchmarks, medians of %d runs)", r.Warm[0].Runs))
		fmt.Fprintln(tw, "benchmark\twall/op\tCPU/op\tallocs/op\tB/op\t")
		for _, b := range r.Warm {
			fmt.Fprintf(tw, "%s\t%.3f ms\t%.3f ms\t%.0f\t%.0f\t\n", shortName(b.Name), b.Metrics["ns/op"]/1e6,
				b.Metrics["cpu-ns/op"]/1e6, b.Metrics["allocs/op"], b.Metrics["B/op"])
		}
	}
	if len(r.Reader) > 0 {
		section("Reader (pkg/vbctoken Source)")
		fmt.Fprintln(tw, "benchmark\tns/op\tallocs/op\treads/app-day\trevoked token served, max\t401s/app-day\t")
		for _, b := range r.Reader {
			metric := func(unit, format string) string {
				if v, ok := b.Metrics[unit]; ok {
					return fmt.Sprintf(format, v)
				}
				return "—"
			}
			ns := fmt.Sprintf("%.1f", b.Metrics["ns/op"])
			if strings.Contains(b.Name, "ReadsPerDay") {
				ns = "(simulation)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t\n", strings.TrimPrefix(b.Name, "Benchmark"), ns, b.Metrics["allocs/op"],
				metric("reads/day", "%.2f"), metric("revoked-max-s", "%.0f s"), metric("401s/day", "%.1f"))
		}
	}

	section("Targets (issue 7)")
	fmt.Fprintln(tw, "target\tlimit\tmeasured\tmet\t")
	for _, t := range r.Targets {
		met := "MISSED"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", t.What, t.Limit, t.Measured, met)
	}
	tw.Flush()
}

// calls abbreviates a call log: "GetSecretValue vbc/pair" is "Get pair".
func calls(log []string) string {
	short := strings.NewReplacer("GetSecretValue", "Get", "PutSecretValue", "Put", "UpdateSecretVersionStage", "Stage", "vbc/", "")
	var parts []string
	for _, c := range log {
		parts = append(parts, short.Replace(c))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}
