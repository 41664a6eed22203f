package soak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// DeadReads counts the reads of one reader, while the chain lives, that yielded an access
// token VBC no longer accepts (revoked: WSO2 kills the old access token at each refresh;
// or expired), and the longest streak of such reads in a row, in reads and in time (from
// the first dead read to the next good one). Reads while the chain is broken (nothing
// valid exists until the admin consents) are counted elsewhere and end a streak.
type DeadReads struct {
	Revoked          int    `json:"revoked"`
	Expired          int    `json:"expired"`
	LongestStreak    int    `json:"longest_streak_reads"`
	LongestStreakFor string `json:"longest_streak_time"`

	run     int
	since   time.Time
	longest time.Duration
}

// Dead is the number of dead-token reads.
func (d *DeadReads) Dead() int { return d.Revoked + d.Expired }

func (d *DeadReads) dead(now time.Time, revoked bool) {
	if revoked {
		d.Revoked++
	} else {
		d.Expired++
	}
	if d.run == 0 {
		d.since = now
	}
	d.run++
	d.LongestStreak = max(d.LongestStreak, d.run)
}

func (d *DeadReads) good(now time.Time) {
	if d.run > 0 {
		d.longest = max(d.longest, now.Sub(d.since))
		d.run = 0
	}
}

func (d *DeadReads) close(now time.Time) {
	d.good(now)
	d.LongestStreakFor = d.longest.Round(time.Second).String()
}

// readers are the apps' three views of the access token: a read of the store; the token
// vbctoken.Source hands out (used at VBC: a dead one is the app's 401); the token the app
// ends up using, after Invalidate and a re-read when the first was dead (as
// vbctoken.Transport does).
type readers struct {
	Direct DeadReads `json:"store"`
	Source DeadReads `json:"source"`
	Final  DeadReads `json:"source_after_reread"`
	// Transport counts the requests an app sent through vbctoken.Transport that came back
	// 401 (after the Transport's own re-read and retry), judged by the token last sent.
	Transport DeadReads `json:"transport"`
}

// soakAPI is VBC's API as the apps' requests meet it: 200 for a bearer token VBC accepts
// now, 401 for any other. It remembers the token of the last request it saw.
type soakAPI struct {
	vbc  *vbcsandbox.Sandbox
	last string
}

func (a *soakAPI) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	a.last = strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
	status := http.StatusOK
	if !a.vbc.IsValidAccessToken(a.last) {
		status = http.StatusUnauthorized
	}
	return &http.Response{StatusCode: status, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

// failCounter is the Transport's access-secret loader: it counts the reads that failed
// (injected store faults), so that a 401 returned because the re-read after a 401 failed
// is told apart from one returned with a dead token the store still held.
type failCounter struct {
	vbctoken.AccessLoader
	failed int
}

func (f *failCounter) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	a, err := f.AccessLoader.LoadAccess(ctx)
	if err != nil {
		f.failed++
	}
	return a, err
}

// read is the apps' periodic read: one straight from the store, one through
// vbctoken.NewSource, both using the token at VBC (the sandbox's validity) the way an app
// would, and invalidating it on a 401.
func (s *sim) read() {
	ctx := context.Background()
	now := s.clock.Now()
	storedValid := s.stored != nil && !s.stored.AccessToken.IsZero() && s.vbc.IsValidAccessToken(s.stored.AccessToken.Reveal())
	if !storedValid && s.everConnected && s.broken == nil {
		s.rep.Reads.DeadWhileChainAlive++ // no valid token anywhere in the store's current pair
	}
	// dead judges a token an app received that is dead at VBC right now.
	dead := func(what string) {
		switch {
		case !storedValid && s.broken == nil && s.everConnected:
			// The chain lives, but the stored pair's access token is dead: the schedule
			// stopped, or the live pair is kept or pending beside a dead stored one.
			s.rep.Reads.ChainAlive++
		case !storedValid:
			s.rep.Reads.DuringOutage++
		case s.accessRepairPending:
			// A process died between its pair commit and its access write: the access
			// secret lags until the next keeper run rewrites it.
			s.rep.Reads.StaleAfterDeath++
		default:
			s.violation("%s a dead access token while the stored pair's (expires %s) was valid", what, s.stored.ExpiresAt.Format(time.RFC3339))
		}
	}
	// judge reports whether token is alive at VBC, keeping the reader's tally while the
	// chain lives.
	// A stopped schedule (and the hour after it) lets the token expire: not the keeper's.
	alive := s.everConnected && s.broken == nil && !now.Before(s.schedulerDownUntil.Add(time.Hour))
	judge := func(r *DeadReads, token string) bool {
		valid := s.vbc.IsValidAccessToken(token)
		switch {
		case valid || !alive:
			r.good(now)
		default:
			ip, known := s.byAT[token]
			r.dead(now, known && now.Before(ip.IssuedAt.Add(vbcsandbox.DefaultAccessTTL)))
		}
		return valid
	}

	s.rep.Reads.Direct++
	a, err := s.appStore.LoadAccess(ctx)
	switch {
	case err != nil:
		s.rep.Reads.Errors++
	case a.AccessToken.IsZero():
		s.rep.Reads.NoToken++
	case !judge(&s.readers.Direct, a.AccessToken.Reveal()):
		dead(fmt.Sprintf("an app read from the store (token expiring %s)", a.ExpiresAt.Format(time.RFC3339)))
	}

	s.rep.Reads.Source++
	tok, err := s.source.Token()
	if err == nil {
		if judge(&s.readers.Source, tok.AccessToken) {
			s.readers.Final.good(now)
		} else {
			s.rep.Reads.Invalidations++ // the API answered 401: the app asks for a fresh one
			s.source.Invalidate()
			tok, err = s.source.Token()
			if err == nil && judge(&s.readers.Final, tok.AccessToken) {
				// The app's next call to Token, right after the 401, got a live token:
				// the Source's streak of dead tokens ends here, not at the next read.
				s.readers.Source.good(now)
			}
		}
	}
	switch {
	case errors.Is(err, vbctoken.ErrNoValidToken) && storedValid:
		dead("vbctoken.Source found only")
	case errors.Is(err, vbctoken.ErrNoValidToken):
		s.rep.Reads.NoToken++
	case err != nil:
		s.rep.Reads.Errors++
	case !s.vbc.IsValidAccessToken(tok.AccessToken):
		dead("vbctoken.Source handed an app")
	}

	// An API request through vbctoken.Transport (its own Source): a 401 it returns is one
	// the app sees.
	s.rep.Reads.Requests++
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.vonage.com/t/vbc.prod/vbc.prod/api/self", nil)
	failed := s.apiLoader.failed
	res, err := s.api.Do(req)
	switch {
	case errors.Is(err, vbctoken.ErrNoValidToken) && storedValid:
		dead("a request through vbctoken.Transport found only")
	case err != nil:
		s.rep.Reads.RequestErrors++
	case res.StatusCode == http.StatusUnauthorized && s.apiLoader.failed > failed:
		// The re-read after the 401 failed (a store fault): the app gets the 401, as it
		// would get any error of a secret it cannot read.
		s.rep.Reads.RequestErrors++
	case res.StatusCode == http.StatusUnauthorized && !judge(&s.readers.Transport, s.apiServer.last):
		dead("a request through vbctoken.Transport got a 401 with")
	case res.StatusCode != http.StatusUnauthorized:
		s.readers.Transport.good(now)
	}
}

// accessWritten records when an access token first landed in the access secret.
func (s *sim) accessWritten(token string) {
	if token == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.accessAt[token]; !seen {
		s.accessAt[token] = s.clock.Now()
	}
}

// RevokedWindow describes, over the refreshes whose answer reached a live keeper and whose
// new access token reached the access secret, how long the secret still held the old token
// after VBC had killed it (WSO2 kills it the moment the refresh is issued): every app read
// in that window gets a token VBC refuses. Reads run between the simulated steps, so they
// never fall inside one; this is the window they would hit.
type RevokedWindow struct {
	Refreshes int    `json:"refreshes"`
	P50       string `json:"p50"`
	P90       string `json:"p90"`
	P99       string `json:"p99"`
	Max       string `json:"max"`
	// OverMinute counts the refreshes whose window exceeded a minute (a process died
	// between its pair commit and its access write, a pair left pending or kept and
	// settled by a later run).
	OverMinute int `json:"over_a_minute"`
}

// revokedWindow measures RevokedWindow from the issued pairs (ModeWSO2 and strict
// sandboxes kill the old access token at a refresh; lenient ones do not).
func (s *sim) revokedWindow(issued []vbcsandbox.IssuedPair) RevokedWindow {
	var ds []time.Duration
	s.mu.Lock()
	for _, ip := range issued {
		if ip.Grant != vbcsandbox.GrantRefreshToken || ip.Lost || s.died[ip.RefreshToken] {
			// A refresh whose answer never reached a live keeper breaks the chain; its
			// access token lands, if ever, when a re-consent hands the pair back (reuse).
			continue
		}
		if at, ok := s.accessAt[ip.AccessToken]; ok {
			ds = append(ds, at.Sub(ip.IssuedAt))
		}
	}
	s.mu.Unlock()
	if len(ds) == 0 {
		return RevokedWindow{}
	}
	slices.Sort(ds)
	over := 0
	for _, d := range ds {
		if d > time.Minute {
			over++
		}
	}
	q := func(p int) string { return ds[(len(ds)-1)*p/100].Round(time.Millisecond).String() }
	return RevokedWindow{Refreshes: len(ds), P50: q(50), P90: q(90), P99: q(99), Max: q(100), OverMinute: over}
}
