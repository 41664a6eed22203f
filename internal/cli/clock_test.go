package cli

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	since := func(c *clock) time.Duration { return c.Now().Sub(start) }

	t.Run("speed 1 is the wall clock", func(t *testing.T) {
		wall := newFakeClock()
		c := newClock(wall.Now, 1, time.Time{})
		wall.Advance(time.Second)
		c.hold(time.Minute)
		if got := c.Now(); !got.Equal(wall.Now()) {
			t.Errorf("Now = %v, want %v", got, wall.Now())
		}
	})

	t.Run("sped up, held, released, hold expiring", func(t *testing.T) {
		wall := newFakeClock()
		c := newClock(wall.Now, 3600, time.Time{})
		steps := []struct {
			do   func()
			want time.Duration // clock time since start
		}{
			{func() {}, 0},
			{func() { wall.Advance(time.Second) }, time.Hour},
			{func() { wall.Advance(24 * time.Second) }, 25 * time.Hour},
			{func() { c.hold(10 * time.Second) }, 25 * time.Hour},
			{func() { wall.Advance(2 * time.Second) }, 25*time.Hour + 2*time.Second},
			{func() { c.release() }, 25*time.Hour + 2*time.Second},
			{func() { wall.Advance(time.Second) }, 26*time.Hour + 2*time.Second},
			{func() { c.hold(5 * time.Second) }, 26*time.Hour + 2*time.Second},
			// The hold ends by itself after 5 s of wall time; then 3 more seconds run fast.
			{func() { wall.Advance(8 * time.Second) }, 29*time.Hour + 7*time.Second},
			{func() { c.release() }, 29*time.Hour + 7*time.Second},
			// Long runs rebase instead of overflowing.
			{func() { wall.Advance(48 * time.Hour) }, 29*time.Hour + 7*time.Second + 48*3600*time.Hour},
		}
		for i, s := range steps {
			s.do()
			if got := since(c); got != s.want {
				t.Errorf("step %d: clock at start+%v, want start+%v", i, got, s.want)
			}
		}
	})
}
