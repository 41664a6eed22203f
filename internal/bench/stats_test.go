package bench

import (
	"math"
	"testing"
)

func TestQuantile(t *testing.T) {
	xs := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {0.5, 5}, {0.9, 9}, {1, 10}} {
		if got := Quantile(xs, tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of nothing is not NaN")
	}
	if xs[0] != 10 {
		t.Error("Quantile sorted its input")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkRefresherSkip/store=memstore-2   	   22748	     51654 ns/op	     46905 cpu-ns/op	   11037 B/op	     136 allocs/op
BenchmarkSourceReadsPerDay/old_tokens_live-2        	       7	 152645647 ns/op	         1.333 reads/day	30013077 B/op	  267976 allocs/op
PASS
`
	got := ParseGoBench(out)
	if len(got) != 2 {
		t.Fatalf("got %d results, want 2: %+v", len(got), got)
	}
	if got[0].Name != "BenchmarkRefresherSkip/store=memstore" || got[0].N != 22748 ||
		got[0].Metrics["cpu-ns/op"] != 46905 || got[0].Metrics["allocs/op"] != 136 {
		t.Errorf("first = %+v", got[0])
	}
	if got[1].Metrics["reads/day"] != 1.333 {
		t.Errorf("second = %+v", got[1])
	}
}
