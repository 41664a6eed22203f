package vbctoken_test

import (
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// benchSource is a Source with a warm cache, on now (nil: time.Now).
func benchSource(b *testing.B, now func() time.Time) *vbctoken.Source {
	b.Helper()
	src := vbctoken.NewSource(srcStore(b, srcAccess("bench", time.Now().Add(24*time.Hour))), vbctoken.WithClock(now))
	if _, err := src.Token(); err != nil {
		b.Fatal(err)
	}
	return src
}

// benchClocks are the clocks the hot path is measured with: time.Now, as in production,
// and a fixed time that isolates the Source's own cost from the platform's clock read.
var benchClocks = []struct {
	name string
	now  func() time.Time
}{
	{"clock=time.Now", nil},
	{"clock=fixed", func() time.Time { return srcT0 }},
}

// BenchmarkSourceTokenCached is the hot path: a valid cached token, one caller. The one
// allocation is the *oauth2.Token each caller gets to itself (see Source).
func BenchmarkSourceTokenCached(b *testing.B) {
	for _, c := range benchClocks {
		b.Run(c.name, func(b *testing.B) {
			src := benchSource(b, c.now)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.Token(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSourceTokenCachedParallel is the hot path under contention; run it with
// -cpu 1,2,… to see that cached callers do not serialise.
func BenchmarkSourceTokenCachedParallel(b *testing.B) {
	for _, c := range benchClocks {
		b.Run(c.name, func(b *testing.B) {
			src := benchSource(b, c.now)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := src.Token(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSourceReadsPerDay reports how often one app process calling Token once per
// second reads the access secret while a keeper refreshes on the DESIGN.md policy
// (three simulated days per iteration; the ns/op are the simulation's, not the Source's).
func BenchmarkSourceReadsPerDay(b *testing.B) {
	const days = 3
	for _, tc := range []struct {
		name   string
		revoke bool
	}{{"old_tokens_live", false}, {"refresh_revokes_access", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var reads int64
			n := 0
			for b.Loop() {
				sim := simulateDays(b, days, tc.revoke)
				if sim.failures != 0 {
					b.Fatalf("%d calls without a working token", sim.failures)
				}
				reads += sim.reads
				n++
			}
			b.ReportMetric(float64(reads)/float64(n*days), "reads/day")
		})
	}
}
