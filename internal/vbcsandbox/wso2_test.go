package vbcsandbox

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// newWSO2 starts a ModeWSO2 sandbox; edit adjusts the options after the mode is set.
func newWSO2(t *testing.T, edit func(*Options)) *env {
	t.Helper()
	return newEnv(t, func(o *Options) {
		o.Mode = ModeWSO2
		if edit != nil {
			edit(o)
		}
	})
}

// wantWSO2Error checks a WSO2 error answer word for word.
func wantWSO2Error(t *testing.T, r reply, status int, code, desc string) {
	t.Helper()
	wantOAuthError(t, r, status, code)
	if got := r.str("error_description"); got != desc {
		t.Fatalf("error_description %q, want %q", got, desc)
	}
}

func (e *env) issuedBySeq(t *testing.T, seq int) IssuedPair {
	t.Helper()
	is := e.sb.Issued()
	if seq < 1 || seq > len(is) {
		t.Fatalf("no issued pair #%d (have %d)", seq, len(is))
	}
	return is[seq-1]
}

func (e *env) pairLive(at, rt string) bool {
	return e.sb.IsValidAccessToken(at) && e.sb.IsLiveRefreshToken(rt)
}

func TestModeNamesAndParse(t *testing.T) {
	for _, m := range []Mode{ModeLenient, ModeStrict, ModeWSO2} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("vbc"); err == nil {
		t.Error("ParseMode accepted an unknown name")
	}
	if Mode(9).String() != "Mode(9)" || RaceOutcome(9).String() != "RaceOutcome(9)" {
		t.Error("unknown values do not print their number")
	}
	if b, _ := RaceBothSucceed.MarshalText(); string(b) != "both_succeed" {
		t.Errorf("MarshalText = %s", b)
	}
}

func TestModeWSO2RejectsLenientKnobs(t *testing.T) {
	for name, edit := range map[string]func(*Options){
		"NoTokenReuse":         func(o *Options) { o.NoTokenReuse = true },
		"RevokeOnConsent":      func(o *Options) { o.RevokeOnConsent = true },
		"RevokeOnCodeReuse":    func(o *Options) { o.RevokeOnCodeReuse = true },
		"RefreshRevokesAccess": func(o *Options) { o.RefreshRevokesAccess = true },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			o := Options{Mode: ModeWSO2, SigningKey: testKey()}
			edit(&o)
			New(o)
		})
	}
}

func TestModeStrictIsTheStrictKnobs(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Mode = ModeStrict })
	a := e.consent(t)
	b := e.consent(t)
	if e.sb.IsLiveRefreshToken(a.str("refresh_token")) || e.sb.LiveChains() != 1 {
		t.Error("ModeStrict: a consent did not revoke the older chain")
	}
	if p := e.issuedBySeq(t, 1); p.Killed != KillConsent || p.KilledBy != 2 {
		t.Errorf("older consent's pair: %v", p)
	}
	n := e.token(t, refreshForm(b.str("refresh_token")), basic{})
	if e.sb.IsValidAccessToken(b.str("access_token")) || !e.sb.IsValidAccessToken(n.str("access_token")) {
		t.Error("ModeStrict: a refresh did not kill the older access token")
	}
}

func TestWSO2RefreshKillsOldPairAtOnce(t *testing.T) {
	e := newWSO2(t, nil)
	first := e.consent(t)
	at0, rt0 := first.str("access_token"), first.str("refresh_token")
	e.clock.Advance(time.Hour)
	n := e.token(t, refreshForm(rt0), basic{})
	if n.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", n.status, n.raw)
	}
	if e.sb.IsValidAccessToken(at0) || e.whoami(t, at0).status != http.StatusUnauthorized {
		t.Error("the old access token survived the refresh")
	}
	if e.sb.IsLiveRefreshToken(rt0) || !e.pairLive(n.str("access_token"), n.str("refresh_token")) {
		t.Error("after the refresh: old refresh live or new pair dead")
	}
	e.clock.Advance(DefaultClusterLag) // no race any more: a plain replay
	wantWSO2Error(t, e.token(t, refreshForm(rt0), basic{}), 400, "invalid_grant", DescRefreshInvalidState)
	p := e.issuedBySeq(t, 2)
	if p.Prev != 1 || p.Replaces != rt0 || p.Killed != KillNone || e.issuedBySeq(t, 1).Killed != KillNone {
		t.Errorf("bookkeeping: %v / %v", e.issuedBySeq(t, 1), p)
	}
}

func TestWSO2RefreshErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, e *env, rt string) reply
		desc string
	}{
		{"unknown", func(t *testing.T, e *env, _ string) reply {
			return e.token(t, refreshForm("00000000-0000-3000-8000-000000000000"), basic{})
		}, DescRefreshNotFound},
		{"another client's", func(t *testing.T, e *env, rt string) reply {
			f := refreshForm(rt)
			f.Set("client_id", otherID)
			f.Set("client_secret", otherSecret)
			return e.token(t, f, basic{})
		}, DescRefreshNotFound},
		{"revoked", func(t *testing.T, e *env, rt string) reply {
			e.sb.Revoke(rt)
			return e.token(t, refreshForm(rt), basic{})
		}, DescRefreshInvalidState},
		{"expired after 7 days", func(t *testing.T, e *env, rt string) reply {
			e.clock.Advance(DefaultRefreshTTL)
			return e.token(t, refreshForm(rt), basic{})
		}, DescRefreshExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWSO2(t, nil)
			wantWSO2Error(t, tt.run(t, e, e.consent(t).str("refresh_token")), 400, "invalid_grant", tt.desc)
		})
	}
	t.Run("valid just before 7 days", func(t *testing.T) {
		e := newWSO2(t, nil)
		rt := e.consent(t).str("refresh_token")
		e.clock.Advance(DefaultRefreshTTL - time.Second)
		if r := e.token(t, refreshForm(rt), basic{}); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("missing refresh_token", func(t *testing.T) {
		e := newWSO2(t, nil)
		f := refreshForm("x")
		f.Del("refresh_token")
		wantWSO2Error(t, e.token(t, f, basic{}), 400, "invalid_request", "Missing parameters: refresh_token")
	})
}

func TestWSO2TokenReuse(t *testing.T) {
	consent := func(t *testing.T, e *env) reply { return e.consent(t) }
	login := func(t *testing.T, e *env) reply {
		t.Helper()
		r := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
		if r.status != http.StatusOK {
			t.Fatalf("password grant: %d %s", r.status, r.raw)
		}
		return r
	}
	for _, g := range []struct {
		name  string
		grant string
		get   func(t *testing.T, e *env) reply
	}{{"authorization_code", GrantAuthorizationCode, consent}, {"password", GrantPassword, login}} {
		t.Run(g.name+"/same pair, remaining expires_in", func(t *testing.T) {
			e := newWSO2(t, nil)
			e.sb.Issued()
			first := g.get(t, e)
			e.clock.Advance(3834 * time.Second)
			again := g.get(t, e)
			if again.str("access_token") != first.str("access_token") || again.str("refresh_token") != first.str("refresh_token") {
				t.Fatal("a repeated grant did not hand out the same pair")
			}
			if again.expiresIn() != 82566 || again.str("id_token") == "" {
				t.Errorf("expires_in %d, id_token %q", again.expiresIn(), again.str("id_token"))
			}
			is := e.sb.Issued()
			if len(is) != 1 || len(is[0].Reuses) != 1 || is[0].Reuses[0].Grant != g.grant || is[0].Reuses[0].ExpiresIn != 82566 {
				t.Errorf("Issued = %v", is)
			}
			if st := e.sb.Stats(); st.Reused != 1 || e.sb.LiveChains() != 1 {
				t.Errorf("Reused %d, LiveChains %d", st.Reused, e.sb.LiveChains())
			}
		})
		t.Run(g.name+"/after a refresh, the newest pair", func(t *testing.T) {
			e := newWSO2(t, nil)
			p := g.get(t, e)
			n := e.token(t, refreshForm(p.str("refresh_token")), basic{})
			again := g.get(t, e)
			if again.str("refresh_token") != n.str("refresh_token") || again.str("access_token") != n.str("access_token") {
				t.Fatal("reuse after a refresh did not hand out the refreshed pair")
			}
		})
		t.Run(g.name+"/access expired: new access token, same refresh token, its 7 days kept", func(t *testing.T) {
			e := newWSO2(t, nil)
			p := g.get(t, e)
			start := e.clock.Now()
			e.clock.Advance(DefaultAccessTTL + time.Hour)
			r := g.get(t, e)
			if r.str("refresh_token") != p.str("refresh_token") || r.str("access_token") == p.str("access_token") || r.expiresIn() != 86400 {
				t.Fatalf("renewal: same refresh %v, new access %v, expires_in %d",
					r.str("refresh_token") == p.str("refresh_token"), r.str("access_token") != p.str("access_token"), r.expiresIn())
			}
			q := e.issuedBySeq(t, 2)
			if !q.RenewedAccess || q.Prev != 1 || q.Replaces != "" || !q.RefreshIssuedAt.Equal(start) || q.Chain != 1 {
				t.Errorf("renewed pair: %v refresh issued %v", q, q.RefreshIssuedAt)
			}
			if !e.pairLive(r.str("access_token"), r.str("refresh_token")) || e.sb.Stats().RenewedAccess != 1 {
				t.Error("renewed pair not live or not counted")
			}
			e.clock.Set(start.Add(DefaultRefreshTTL))
			wantWSO2Error(t, e.token(t, refreshForm(r.str("refresh_token")), basic{}), 400, "invalid_grant", DescRefreshExpired)
		})
		t.Run(g.name+"/refresh token expired: a new chain", func(t *testing.T) {
			e := newWSO2(t, nil)
			p := g.get(t, e)
			e.clock.Advance(6*24*time.Hour + 12*time.Hour)
			g.get(t, e) // renewed access, valid until day 7.5; its refresh token ends at day 7
			e.clock.Advance(18 * time.Hour)
			r := g.get(t, e)
			if r.str("refresh_token") == p.str("refresh_token") || r.expiresIn() != 86400 || e.issuedBySeq(t, 3).Chain != 2 {
				t.Fatalf("no new chain once the refresh token expired: %s", r.raw)
			}
		})
	}
	t.Run("scope default when none asked, and another scope is another token", func(t *testing.T) {
		e := newWSO2(t, nil)
		o := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
		d := e.token(t, passwordForm(userName, userPass, ""), basic{})
		if d.str("scope") != "default" || d.str("access_token") == o.str("access_token") || d.str("id_token") != "" {
			t.Errorf("scope %q, same token %v", d.str("scope"), d.str("access_token") == o.str("access_token"))
		}
	})
	t.Run("a consent and a password login of another user are separate", func(t *testing.T) {
		e := newWSO2(t, nil)
		c := e.consent(t)
		l := login(t, e)
		if c.str("access_token") == l.str("access_token") || e.sb.LiveChains() != 2 {
			t.Error("different users shared a token")
		}
	})
}

func TestWSO2AuthorizationCode(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	pkce := map[string]string{"code_challenge": s256(verifier), "code_challenge_method": "S256"}
	tests := []struct {
		name   string
		params map[string]string // authorize request
		first  func(url.Values)  // edits the first exchange; nil: a correct exchange
		want1  string            // "" success, else error_description
		want2  string            // the same code again, correct
	}{
		{"replay after success", nil, nil, "", DescCodeInactive},
		{"wrong redirect_uri spends the code", nil, func(f url.Values) { f.Set("redirect_uri", appCallback+"/") }, DescCallbackMismatch, DescCodeExpiredRevoked},
		{"missing redirect_uri spends the code", nil, func(f url.Values) { f.Del("redirect_uri") }, DescCallbackMismatch, DescCodeExpiredRevoked},
		{"wrong verifier spends the code", pkce, func(f url.Values) { f.Set("code_verifier", verifier+"x") }, DescPKCEFailed, DescCodeExpiredRevoked},
		{"missing verifier spends the code", pkce, func(f url.Values) { f.Del("code_verifier") }, DescPKCEFailed, DescCodeExpiredRevoked},
		{"right verifier, then replay", pkce, nil, "", DescCodeInactive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWSO2(t, nil)
			code := e.approveCode(t, tt.params)
			good := exchangeForm(code)
			if tt.params != nil {
				good.Set("code_verifier", verifier)
			}
			f := exchangeForm(code)
			f.Set("code_verifier", verifier)
			if tt.first != nil {
				tt.first(f)
			}
			r1 := e.token(t, f, appBasic)
			if tt.want1 == "" {
				if r1.status != http.StatusOK {
					t.Fatalf("first exchange: %d %s", r1.status, r1.raw)
				}
			} else {
				wantWSO2Error(t, r1, 400, "invalid_grant", tt.want1)
			}
			wantWSO2Error(t, e.token(t, good, appBasic), 400, "invalid_grant", tt.want2)
		})
	}
	t.Run("expired", func(t *testing.T) {
		e := newWSO2(t, nil)
		code := e.approveCode(t, nil)
		e.clock.Advance(CodeTTL)
		wantWSO2Error(t, e.token(t, exchangeForm(code), appBasic), 400, "invalid_grant", DescCodeExpiredRevoked)
	})
	t.Run("unknown and another client's", func(t *testing.T) {
		e := newWSO2(t, nil)
		wantWSO2Error(t, e.token(t, exchangeForm("nope"), appBasic), 400, "invalid_grant", DescCodeInvalid)
		code := e.approveCode(t, nil)
		wantWSO2Error(t, e.token(t, exchangeForm(code), basic{otherID, otherSecret}), 400, "invalid_grant", DescCodeInvalid)
		if r := e.token(t, exchangeForm(code), appBasic); r.status != http.StatusOK {
			t.Fatalf("the owner's exchange after another client tried: %d %s", r.status, r.raw)
		}
	})
	t.Run("missing code", func(t *testing.T) {
		e := newWSO2(t, nil)
		f := exchangeForm("x")
		f.Del("code")
		wantWSO2Error(t, e.token(t, f, appBasic), 400, "invalid_request", "Missing parameters: code")
	})
}

func TestWSO2CodeReplayRevokes(t *testing.T) {
	tests := []struct {
		name      string
		run       func(t *testing.T, e *env) (replayed string, live reply)
		wantDead  []int // Seq of pairs killed by the replay
		wantKills int   // Stats.CodeReplayKills
	}{
		{"the pair issued for the code dies", func(t *testing.T, e *env) (string, reply) {
			code := e.approveCode(t, nil)
			e.token(t, exchangeForm(code), appBasic)
			return code, reply{}
		}, []int{1}, 1},
		{"a reused exchange: the live chain dies", func(t *testing.T, e *env) (string, reply) {
			e.consent(t) // the chain
			code := e.approveCode(t, nil)
			if r := e.token(t, exchangeForm(code), appBasic); e.sb.Stats().Reused != 1 {
				t.Fatalf("second consent not reused: %s", r.raw)
			}
			return code, reply{}
		}, []int{1}, 1},
		{"after a refresh, the refreshed chain lives", func(t *testing.T, e *env) (string, reply) {
			code := e.approveCode(t, nil)
			p := e.token(t, exchangeForm(code), appBasic)
			return code, e.token(t, refreshForm(p.str("refresh_token")), basic{})
		}, nil, 0},
		{"an older renewed row: the chain lives", func(t *testing.T, e *env) (string, reply) {
			code := e.approveCode(t, nil)
			e.token(t, exchangeForm(code), appBasic)
			e.clock.Advance(DefaultAccessTTL)
			return code, e.consent(t) // renewed access on the same refresh token
		}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWSO2(t, nil)
			code, live := tt.run(t, e)
			wantWSO2Error(t, e.token(t, exchangeForm(code), appBasic), 400, "invalid_grant", DescCodeInactive)
			for _, seq := range tt.wantDead {
				p := e.issuedBySeq(t, seq)
				if p.Killed != KillCodeReplay || e.sb.IsLiveRefreshToken(p.RefreshToken) || e.sb.IsValidAccessToken(p.AccessToken) {
					t.Errorf("pair #%d not killed by the replay: %v", seq, p)
				}
			}
			if live.status != 0 && !e.pairLive(live.str("access_token"), live.str("refresh_token")) {
				t.Error("the live pair died")
			}
			if st := e.sb.Stats(); st.CodeReplays != 1 || st.CodeReplayKills != tt.wantKills {
				t.Errorf("CodeReplays %d, CodeReplayKills %d", st.CodeReplays, st.CodeReplayKills)
			}
		})
	}
}

func TestWSO2RefreshRaceSequential(t *testing.T) {
	tests := []struct {
		outcome    RaceOutcome
		lag        time.Duration // Options.ClusterLag, 0 default
		after      time.Duration // from the first refresh to the second
		raced      bool
		wantStatus int
		wantDesc   string
	}{
		{RaceInvalidGrant, 0, time.Second, true, 400, DescRefreshInvalidState},
		{RaceServerError, 0, time.Second, true, 500, DescServerError},
		{RaceBothSucceed, 0, time.Second, true, 200, ""},
		{RaceBothSucceed, 0, 0, true, 200, ""},
		{RaceBothSucceed, 0, DefaultClusterLag, false, 400, DescRefreshInvalidState}, // outside the window
		{RaceServerError, 10 * time.Second, 9 * time.Second, true, 500, DescServerError},
		{RaceBothSucceed, -1, 0, false, 400, DescRefreshInvalidState}, // window off, nothing in flight
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/lag=%v/after=%v", tt.outcome, tt.lag, tt.after), func(t *testing.T) {
			e := newWSO2(t, func(o *Options) { o.Race, o.ClusterLag = FixedRace(tt.outcome), tt.lag })
			rt0 := e.consent(t).str("refresh_token")
			a := e.token(t, refreshForm(rt0), basic{})
			e.clock.Advance(tt.after)
			b := e.token(t, refreshForm(rt0), basic{})
			if tt.wantStatus != http.StatusOK {
				code := "invalid_grant"
				if tt.wantStatus == 500 {
					code = "server_error"
				}
				wantWSO2Error(t, b, tt.wantStatus, code, tt.wantDesc)
				if !e.pairLive(a.str("access_token"), a.str("refresh_token")) || len(e.sb.Issued()) != 2 {
					t.Error("a losing race changed the winner's pair")
				}
			} else {
				if b.status != http.StatusOK || b.str("refresh_token") == a.str("refresh_token") {
					t.Fatalf("second answer: %d %s", b.status, b.raw)
				}
				if e.sb.IsValidAccessToken(a.str("access_token")) || e.sb.IsLiveRefreshToken(a.str("refresh_token")) {
					t.Error("the first answer's pair survived the second")
				}
				if !e.pairLive(b.str("access_token"), b.str("refresh_token")) || e.sb.LiveChains() != 1 {
					t.Error("the second answer's pair is not the live chain")
				}
				pa, pb := e.issuedBySeq(t, 2), e.issuedBySeq(t, 3)
				if pa.Killed != KillRace || pa.KilledBy != 3 || !pb.Race || pb.Replaces != rt0 || pb.Prev != 1 || pb.Chain != pa.Chain {
					t.Errorf("bookkeeping: %v / %v", pa, pb)
				}
				wantWSO2Error(t, e.token(t, refreshForm(a.str("refresh_token")), basic{}), 400, "invalid_grant", DescRefreshNotLatest)
				if r := e.token(t, refreshForm(b.str("refresh_token")), basic{}); r.status != http.StatusOK {
					t.Errorf("the race winner's pair does not refresh: %d %s", r.status, r.raw)
				}
			}
			if n := e.sb.Stats().Races[tt.outcome]; tt.raced && n != 1 || !tt.raced && n != 0 {
				t.Errorf("Stats.Races[%v] = %d", tt.outcome, n)
			}
		})
	}
}

func TestWSO2RefreshRaceConcurrent(t *testing.T) {
	tests := []struct {
		outcome RaceOutcome
		want    map[int]int // status -> count
	}{
		{RaceInvalidGrant, map[int]int{200: 1, 400: 1}},
		{RaceServerError, map[int]int{200: 1, 500: 1}},
		{RaceBothSucceed, map[int]int{200: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.outcome.String(), func(t *testing.T) {
			e := newWSO2(t, func(o *Options) { o.Race = FixedRace(tt.outcome) })
			rt0 := e.consent(t).str("refresh_token")
			replies := make(chan reply, 2)
			start := make(chan struct{})
			for range 2 {
				go func() {
					<-start
					replies <- e.token(t, refreshForm(rt0), basic{})
				}()
			}
			close(start)
			got := map[int]int{}
			var ok []reply
			for range 2 {
				r := <-replies
				got[r.status]++
				if r.status == http.StatusOK {
					ok = append(ok, r)
				}
			}
			for s, n := range tt.want {
				if got[s] != n {
					t.Fatalf("statuses %v, want %v", got, tt.want)
				}
			}
			live := 0
			for _, r := range ok {
				if e.pairLive(r.str("access_token"), r.str("refresh_token")) {
					live++
				}
			}
			if live != 1 || e.sb.LiveChains() != 1 {
				t.Fatalf("%d of the %d answered pairs live, LiveChains %d; want exactly 1", live, len(ok), e.sb.LiveChains())
			}
		})
	}
}

// blockingWriter is a ResponseWriter whose Write waits for release, so a request can be
// held "in flight" after the sandbox processed it.
type blockingWriter struct {
	header  http.Header
	status  int
	written chan struct{} // closed at WriteHeader
	release chan struct{}
}

func (w *blockingWriter) Header() http.Header { return w.header }
func (w *blockingWriter) WriteHeader(s int) {
	w.status = s
	close(w.written)
}
func (w *blockingWriter) Write(b []byte) (int, error) {
	<-w.release
	return len(b), nil
}

func TestWSO2RefreshRaceWhileInFlight(t *testing.T) {
	// ClusterLag off: only a request still being answered makes a race.
	e := newWSO2(t, func(o *Options) { o.ClusterLag, o.Race = -1, FixedRace(RaceServerError) })
	rt0 := e.consent(t).str("refresh_token")
	w := &blockingWriter{header: http.Header{}, written: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.sb.ServeHTTP(w, e.tokenRequest(t, refreshForm(rt0), basic{}))
	}()
	<-w.written
	if w.status != http.StatusOK {
		t.Fatalf("first refresh: %d", w.status)
	}
	wantWSO2Error(t, e.token(t, refreshForm(rt0), basic{}), 500, "server_error", DescServerError)
	close(w.release)
	<-done
	wantWSO2Error(t, e.token(t, refreshForm(rt0), basic{}), 400, "invalid_grant", DescRefreshInvalidState)
}

func TestRandomRaceIsSeededAndCoversAll(t *testing.T) {
	draw := func(seed uint64) []RaceOutcome {
		f := RandomRace(seed)
		out := make([]RaceOutcome, 60)
		for i := range out {
			out[i] = f(nil)
		}
		return out
	}
	a, b := draw(42), draw(42)
	seen := map[RaceOutcome]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different draw %d: %v vs %v", i, a[i], b[i])
		}
		seen[a[i]] = true
	}
	if len(seen) != 3 {
		t.Errorf("60 draws saw %v", seen)
	}
	e := newWSO2(t, nil)
	e.sb.SetRace(FixedRace(RaceBothSucceed))
	rt := e.consent(t).str("refresh_token")
	e.token(t, refreshForm(rt), basic{})
	if r := e.token(t, refreshForm(rt), basic{}); r.status != http.StatusOK {
		t.Errorf("SetRace not applied: %d", r.status)
	}
	e.sb.SetRace(nil)
	if r := e.token(t, refreshForm(rt), basic{}); r.status != http.StatusBadRequest {
		t.Errorf("SetRace(nil) not the default: %d", r.status)
	}
}

func TestWSO2ClientAuthentication(t *testing.T) {
	withBody := func(f url.Values) url.Values {
		f.Set("client_id", appID)
		f.Set("client_secret", appSecret)
		return f
	}
	noBody := func(f url.Values) url.Values {
		f.Del("client_id")
		f.Del("client_secret")
		return f
	}
	type req struct {
		form   url.Values
		auth   basic
		header string // raw Authorization header, overrides auth
	}
	tests := []struct {
		name   string
		make   func(t *testing.T, e *env) req
		status int
		code   string
		desc   string
	}{
		{"code: Basic and body credentials", func(t *testing.T, e *env) req {
			return req{form: withBody(exchangeForm(e.approveCode(t, nil))), auth: appBasic}
		}, 400, "invalid_request", DescDuplicateClientAuth},
		{"refresh: Basic and body credentials", func(t *testing.T, e *env) req {
			return req{form: refreshForm(e.consent(t).str("refresh_token")), auth: appBasic}
		}, 400, "invalid_request", DescDuplicateClientAuth},
		{"password: Basic and body credentials", func(t *testing.T, e *env) req {
			return req{form: passwordForm(userName, userPass, ""), auth: appBasic}
		}, 400, "invalid_request", DescDuplicateClientAuth},
		{"code: body credentials", func(t *testing.T, e *env) req {
			return req{form: withBody(exchangeForm(e.approveCode(t, nil)))}
		}, 200, "", ""},
		{"code: Basic and client_id in body", func(t *testing.T, e *env) req {
			f := exchangeForm(e.approveCode(t, nil))
			f.Set("client_id", appID)
			return req{form: f, auth: appBasic}
		}, 200, "", ""},
		{"refresh: Basic", func(t *testing.T, e *env) req {
			return req{form: noBody(refreshForm(e.consent(t).str("refresh_token"))), auth: appBasic}
		}, 200, "", ""},
		{"password: Basic", func(t *testing.T, e *env) req {
			return req{form: noBody(passwordForm(userName, userPass, "")), auth: appBasic}
		}, 200, "", ""},
		{"wrong secret in Basic", func(t *testing.T, e *env) req {
			return req{form: exchangeForm(e.approveCode(t, nil)), auth: basic{appID, "nope"}}
		}, 401, "invalid_client", DescClientAuthFailed},
		{"wrong secret in body", func(t *testing.T, e *env) req {
			f := refreshForm(e.consent(t).str("refresh_token"))
			f.Set("client_secret", "nope")
			return req{form: f}
		}, 401, "invalid_client", DescClientAuthFailed},
		{"no credentials", func(t *testing.T, e *env) req {
			return req{form: exchangeForm(e.approveCode(t, nil))}
		}, 401, "invalid_client", DescClientAuthFailed},
		{"client_id only", func(t *testing.T, e *env) req {
			f := refreshForm(e.consent(t).str("refresh_token"))
			f.Del("client_secret")
			return req{form: f}
		}, 401, "invalid_client", DescClientAuthFailed},
		{"Basic client_id differs from body client_id", func(t *testing.T, e *env) req {
			f := exchangeForm(e.approveCode(t, nil))
			f.Set("client_id", otherID)
			return req{form: f, auth: appBasic}
		}, 401, "invalid_client", DescClientAuthFailed},
		{"Basic is not URL-decoded", func(t *testing.T, e *env) req {
			return req{form: noBody(passwordForm(userName, userPass, "")), auth: basic{"plus-key", url.QueryEscape("s+cret")}}
		}, 401, "invalid_client", DescClientAuthFailed},
		{"Basic without a colon", func(t *testing.T, e *env) req {
			return req{form: exchangeForm(e.approveCode(t, nil)), header: "Basic " + base64.StdEncoding.EncodeToString([]byte(appID))}
		}, 400, "invalid_request", DescBadBasicHeader},
		{"Basic not base64", func(t *testing.T, e *env) req {
			return req{form: exchangeForm(e.approveCode(t, nil)), header: "Basic %%%"}
		}, 400, "invalid_request", DescBadBasicHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWSO2(t, func(o *Options) {
				o.Clients = append(o.Clients, Client{ID: "plus-key", Secret: "s+cret", RedirectURLs: []string{"https://plus.example/cb"}})
			})
			rq := tt.make(t, e)
			hr := e.tokenRequest(t, rq.form, rq.auth)
			if rq.header != "" {
				hr.Header.Set("Authorization", rq.header)
			}
			r := e.do(t, hr)
			if tt.status == http.StatusOK {
				if r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
				return
			}
			wantWSO2Error(t, r, tt.status, tt.code, tt.desc)
			if tt.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestWSO2RequestErrors(t *testing.T) {
	e := newWSO2(t, nil)
	wantWSO2Error(t, e.token(t, url.Values{"code": {"x"}}, appBasic), 400, "invalid_request", "Missing grant_type parameter value")
	wantWSO2Error(t, e.token(t, url.Values{"grant_type": {"client_credentials"}}, appBasic), 400, "unsupported_grant_type", "Unsupported grant_type value")
	f := passwordForm(userName, "", "")
	f.Del("password")
	f.Del("username")
	wantWSO2Error(t, e.token(t, f, basic{}), 400, "invalid_request", "Missing parameters: username password")
}

func TestWSO2PasswordLockout(t *testing.T) {
	const alice = userName
	type step struct {
		at     time.Duration // since the start
		user   string
		pass   string
		want   string        // "" success, else error_description
		locked time.Duration // LockedUntil afterwards, from the start; 0 not locked
	}
	lockedMsg := "17003 User account is locked for user : alice. cannot login until the account is unlocked "
	failed := DescAuthFailedPrefix + alice
	tests := []struct {
		name  string
		edit  func(*Options)
		steps []step
	}{
		{"three failures lock for 30 minutes from the last attempt", nil, []step{
			{0, alice, "x", failed, 0},
			{time.Minute, alice, "x", failed, 0},
			{2 * time.Minute, alice, "x", lockedMsg, 32 * time.Minute},
			{12 * time.Minute, alice, userPass, lockedMsg, 42 * time.Minute}, // right password extends too
			{41 * time.Minute, alice, "x", lockedMsg, 71 * time.Minute},
			{71 * time.Minute, alice, userPass, "", 0}, // the lock ran out
		}},
		{"a success resets the count", nil, []step{
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, userPass, "", 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
		}},
		{"after a lock runs out the count starts again", nil, []step{
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", lockedMsg, 30 * time.Minute},
			{30 * time.Minute, alice, "x", failed, 0},
			{30 * time.Minute, alice, "x", failed, 0},
			{30 * time.Minute, alice, "x", lockedMsg, time.Hour},
		}},
		{"unknown users and other tenants never lock", nil, []step{
			{0, "bob@vbc.prod", "x", DescAuthFailedPrefix + "bob@vbc.prod", 0},
			{0, "bob@vbc.prod", "x", DescAuthFailedPrefix + "bob@vbc.prod", 0},
			{0, "bob@vbc.prod", "x", DescAuthFailedPrefix + "bob@vbc.prod", 0},
			{0, "alice", userPass, DescAuthFailedPrefix + "alice", 0},
			{0, "alice", userPass, DescAuthFailedPrefix + "alice", 0},
			{0, "alice", userPass, DescAuthFailedPrefix + "alice", 0},
			{0, alice, userPass, "", 0},
		}},
		{"LockAfter and LockFor", func(o *Options) { o.LockAfter, o.LockFor = 5, time.Hour }, []step{
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", lockedMsg, time.Hour},
		}},
		{"negative LockAfter never locks", func(o *Options) { o.LockAfter = -1 }, []step{
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, "x", failed, 0},
			{0, alice, userPass, "", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWSO2(t, tt.edit)
			start := e.clock.Now()
			for i, s := range tt.steps {
				e.clock.Set(start.Add(s.at))
				r := e.token(t, passwordForm(s.user, s.pass, ""), basic{})
				if s.want == "" {
					if r.status != http.StatusOK {
						t.Fatalf("step %d: %d %s", i, r.status, r.raw)
					}
				} else {
					wantWSO2Error(t, r, 400, "invalid_grant", s.want)
				}
				if strings.Contains(r.raw, userPass) || strings.Contains(r.raw, appSecret) {
					t.Fatalf("step %d: a secret in the answer", i)
				}
				var want time.Time
				if s.locked != 0 {
					want = start.Add(s.locked)
				}
				if got := e.sb.LockedUntil(s.user); !got.Equal(want) {
					t.Fatalf("step %d: LockedUntil = %v, want %v", i, got, want)
				}
			}
		})
	}
	t.Run("lock is per user; counters", func(t *testing.T) {
		e := newWSO2(t, func(o *Options) { o.Users["carol@vbc.prod"] = "pw" })
		for range 4 {
			e.token(t, passwordForm(alice, "x", ""), basic{})
		}
		if e.sb.LockedUntil("alice").IsZero() || !e.sb.LockedUntil("carol").IsZero() {
			t.Error("LockedUntil: alice not locked or carol locked")
		}
		if r := e.token(t, passwordForm("carol@vbc.prod", "pw", ""), basic{}); r.status != http.StatusOK {
			t.Errorf("carol: %d %s", r.status, r.raw)
		}
		e.token(t, passwordForm("carol@vbc.prod", "x", ""), basic{})
		if st := e.sb.Stats(); st.Lockouts != 1 || st.LockedAttempts != 1 || e.sb.FailedLogins("carol@vbc.prod") != 1 {
			t.Errorf("Lockouts %d, LockedAttempts %d, carol's failures %d", st.Lockouts, st.LockedAttempts, e.sb.FailedLogins("carol"))
		}
	})
}

func TestWSO2Revoke(t *testing.T) {
	post := func(t *testing.T, e *env, form url.Values, auth basic) reply {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+RevokePath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth.id != "" {
			req.SetBasicAuth(auth.id, auth.secret)
		}
		return e.do(t, req)
	}
	tests := []struct {
		name    string
		form    func(p reply) url.Values
		auth    basic
		status  int
		revoked bool
	}{
		{"refresh token", func(p reply) url.Values {
			return url.Values{"token": {p.str("refresh_token")}, "token_type_hint": {"refresh_token"}}
		}, appBasic, 200, true},
		{"access token", func(p reply) url.Values { return url.Values{"token": {p.str("access_token")}} }, appBasic, 200, true},
		{"body credentials", func(p reply) url.Values {
			return url.Values{"token": {p.str("refresh_token")}, "client_id": {appID}, "client_secret": {appSecret}}
		}, basic{}, 200, true},
		{"unknown token", func(reply) url.Values { return url.Values{"token": {"nope"}} }, appBasic, 200, false},
		{"another client's token", func(p reply) url.Values { return url.Values{"token": {p.str("refresh_token")}} }, basic{otherID, otherSecret}, 400, false},
		{"bad client", func(p reply) url.Values { return url.Values{"token": {p.str("refresh_token")}} }, basic{appID, "nope"}, 401, false},
		{"missing token", func(reply) url.Values { return url.Values{} }, appBasic, 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWSO2(t, nil)
			p := e.consent(t)
			r := post(t, e, tt.form(p), tt.auth)
			if r.status != tt.status {
				t.Fatalf("status %d %s, want %d", r.status, r.raw, tt.status)
			}
			if tt.status == http.StatusOK && r.raw != "" {
				t.Errorf("body %q, want empty", r.raw)
			}
			if live := e.pairLive(p.str("access_token"), p.str("refresh_token")); live == tt.revoked {
				t.Errorf("pair live = %v", live)
			}
			if tt.revoked && (e.issuedBySeq(t, 1).Killed != KillRevoked || e.sb.Stats().Revocations != 1) {
				t.Errorf("not recorded: %v", e.issuedBySeq(t, 1))
			}
		})
	}
	t.Run("not served outside ModeWSO2", func(t *testing.T) {
		e := newEnv(t, nil)
		if r := post(t, e, url.Values{"token": {"x"}}, appBasic); r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("status %d", r.status)
		}
	})
}

func TestWSO2IDTokenX5t(t *testing.T) {
	header := func(e *env) map[string]string {
		var h map[string]string
		decodeSegment(t, strings.Split(e.consent(t).str("id_token"), ".")[0], &h)
		return h
	}
	h := header(newWSO2(t, nil))
	raw, err := base64.RawURLEncoding.DecodeString(h["x5t"])
	if err != nil || len(raw) != 40 {
		t.Fatalf("x5t %q: %v, %d bytes", h["x5t"], err, len(raw))
	}
	if _, err := hex.DecodeString(string(raw)); err != nil || strings.ToLower(string(raw)) != string(raw) {
		t.Errorf("x5t is not base64url of a lower-case hex thumbprint: %q", raw)
	}
	if _, ok := header(newEnv(t, nil))["x5t"]; ok {
		t.Error("lenient mode sends x5t")
	}
}

func TestIssuedBookkeeping(t *testing.T) {
	e := newWSO2(t, nil)
	tagged := func(form url.Values, auth basic, tag string) reply {
		req := e.tokenRequest(t, form, auth)
		req.Header.Set(TagHeader, tag)
		return e.do(t, req)
	}
	p := tagged(exchangeForm(e.approveCode(t, nil)), appBasic, "consent-1")
	e.sb.InjectNext(ProcessedButLost)
	if r := tagged(exchangeForm(e.approveCode(t, nil)), appBasic, "consent-2"); r.status != http.StatusBadGateway {
		t.Fatalf("lost reuse: %d", r.status)
	}
	n := tagged(refreshForm(p.str("refresh_token")), basic{}, "refresh-1")
	is := e.sb.Issued()
	if len(is) != 2 {
		t.Fatalf("Issued = %v", is)
	}
	first, second := is[0], is[1]
	if first.Seq != 1 || first.Tag != "consent-1" || first.Request != 1 || first.Prev != 0 || !first.RefreshIssuedAt.Equal(first.IssuedAt) {
		t.Errorf("first: %+v", first)
	}
	if len(first.Reuses) != 1 || !first.Reuses[0].Lost || first.Reuses[0].Tag != "consent-2" || first.Reuses[0].Request != 2 {
		t.Errorf("reuse: %+v", first.Reuses)
	}
	if second.Seq != 2 || second.Tag != "refresh-1" || second.Request != 3 || second.Prev != 1 || second.RefreshToken != n.str("refresh_token") {
		t.Errorf("second: %+v", second)
	}
	is[0].Reuses[0].Tag = "changed"
	if e.sb.Issued()[0].Reuses[0].Tag != "consent-2" {
		t.Error("Issued shares its Reuses with the caller")
	}
	for _, s := range []string{first.String(), second.String()} {
		if strings.Contains(s, first.AccessToken) || strings.Contains(s, first.RefreshToken) || strings.Contains(s, second.RefreshToken) {
			t.Errorf("String leaks a token: %s", s)
		}
	}
	if !strings.Contains(first.String(), "reused=1") {
		t.Errorf("String: %s", first.String())
	}
}
