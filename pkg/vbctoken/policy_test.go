package vbctoken

import (
	"testing"
	"time"
)

func TestPolicyDecide(t *testing.T) {
	pol := DefaultPolicy()
	obtained := t0
	pair := func(accessTTL time.Duration) *Pair {
		return &Pair{RefreshToken: "r", ObtainedAt: obtained, ExpiresAt: obtained.Add(accessTTL), RefreshExpiresAt: obtained.Add(RefreshTokenLifetime)}
	}
	cases := []struct {
		name  string
		pair  *Pair
		now   time.Time
		force bool
		want  decision
	}{
		{"nothing stored", nil, t0, false, decision{Reconsent: true, Reason: ReasonNotConnected}},
		{"placeholder", &Pair{}, t0, true, decision{Reconsent: true, Reason: ReasonNotConnected}},
		{"fresh", pair(24 * time.Hour), t0.Add(time.Hour), false, decision{Reason: ReasonFresh}},
		{"forced", pair(24 * time.Hour), t0.Add(time.Hour), true, decision{Refresh: true, Reason: ReasonForced}},
		{"inside margin", pair(24 * time.Hour), t0.Add(22*time.Hour + time.Second), false, decision{Refresh: true, Reason: ReasonAccessExpiring}},
		{"just outside margin", pair(24 * time.Hour), t0.Add(21*time.Hour + 59*time.Minute), false, decision{Reason: ReasonFresh}},
		{"short expires_in", pair(82566 * time.Second), t0.Add(21 * time.Hour), false, decision{Refresh: true, Reason: ReasonAccessExpiring}},
		{"access expired", pair(24 * time.Hour), t0.Add(30 * time.Hour), false, decision{Refresh: true, Reason: ReasonAccessExpiring}},
		{"max age with long access", pair(72 * time.Hour), t0.Add(24 * time.Hour), false, decision{Refresh: true, Reason: ReasonMaxAge}},
		{"refresh window end", &Pair{RefreshToken: "r", ObtainedAt: t0, ExpiresAt: t0.Add(500 * time.Hour), RefreshExpiresAt: t0.Add(time.Hour)}, t0, false, decision{Refresh: true, Reason: ReasonRefreshWindow}},
		{"refresh expired", pair(24 * time.Hour), t0.Add(RefreshTokenLifetime), true, decision{Reconsent: true, Reason: ReasonRefreshExpired}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := pol.decide(tc.pair, tc.now, tc.force); got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Policy
		ok bool
	}{
		{DefaultPolicy(), true},
		{Policy{Margin: 0, MaxAge: time.Hour}, true},
		{Policy{Margin: -time.Second, MaxAge: time.Hour}, false},
		{Policy{Margin: 24 * time.Hour, MaxAge: time.Hour}, false},
		{Policy{Margin: time.Hour, MaxAge: 0}, false},
		{Policy{Margin: time.Hour, MaxAge: RefreshTokenLifetime}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v", tc.p, err)
		}
	}
}

func TestNextRefresh(t *testing.T) {
	p := &Pair{ObtainedAt: t0, ExpiresAt: t0.Add(24 * time.Hour), RefreshExpiresAt: t0.Add(RefreshTokenLifetime)}
	if got, want := DefaultPolicy().NextRefresh(p), t0.Add(22*time.Hour); !got.Equal(want) {
		t.Errorf("NextRefresh = %v, want %v", got, want)
	}
}
