package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/bench"
)

func TestSummarizeTakesMediansPerBenchmark(t *testing.T) {
	res := []bench.GoBench{
		{Name: "BenchmarkA", Metrics: map[string]float64{"ns/op": 30}},
		{Name: "BenchmarkB", Metrics: map[string]float64{"ns/op": 5}},
		{Name: "BenchmarkA", Metrics: map[string]float64{"ns/op": 10}},
		{Name: "BenchmarkA", Metrics: map[string]float64{"ns/op": 20}},
	}
	got := summarize(res)
	if len(got) != 2 || got[0].Name != "BenchmarkA" || got[0].Runs != 3 || got[0].Metrics["ns/op"] != 20 {
		t.Fatalf("summarize = %+v", got)
	}
}

func TestCallsAbbreviates(t *testing.T) {
	got := calls([]string{"GetSecretValue vbc/pair", "UpdateSecretVersionStage vbc/pair → InvalidParameterException"})
	if want := "Get pair, Stage pair → InvalidParameterException"; got != want {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

// Targets are judged on this tree's functions only; a baseline is shown, never judged.
func TestJudgeIgnoresTheBaseline(t *testing.T) {
	fns := []function{{name: "hello"}, {name: "refresher"}, {name: "refresher@HEAD", baseline: true}}
	samples := map[string][]bench.Sample{
		"hello":          {{Init: 10 * time.Millisecond, FirstResponse: 10 * time.Millisecond, PeakRSS: 6 << 20}},
		"refresher":      {{Init: 12 * time.Millisecond, FirstResponse: 15 * time.Millisecond, PeakRSS: 9 << 20}},
		"refresher@HEAD": {{Init: 20 * time.Millisecond, FirstResponse: 25 * time.Millisecond, PeakRSS: 40 << 20}},
	}
	r := &Report{Sizes: []Size{{Function: "hello", Binary: 100, Zip: 100}, {Function: "refresher", Binary: 130, Zip: 120},
		{Function: "refresher@HEAD", Binary: 200, Zip: 200, baseline: true}}}
	r.addCold(fns, samples)
	r.addCycle(false, []bench.Check{{Outcome: "skipped", AWSCalls: 1}, {Outcome: "refreshed", AWSCalls: 4, TokenCalls: 1}})
	r.addCycle(true, []bench.Check{{Outcome: "skipped", AWSCalls: 1}, {Outcome: "refreshed", AWSCalls: 4, TokenCalls: 1}})
	r.judge()
	for _, tg := range r.Targets {
		if strings.Contains(tg.What, "@") {
			t.Errorf("baseline judged: %+v", tg)
		}
		if !tg.Met {
			t.Errorf("target missed: %+v", tg)
		}
	}
	if len(r.Targets) != 7 {
		t.Errorf("%d targets, want 7: %+v", len(r.Targets), r.Targets)
	}
	var b strings.Builder
	r.WriteTable(&b)
	for _, want := range []string{"refresher@HEAD", "1.20", "Targets (issue 7)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
