package vbcsandbox

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var uuidLike = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestGrantsHappyPath(t *testing.T) {
	tests := []struct {
		name      string
		get       func(t *testing.T, e *env) reply
		wantScope string
		wantSub   string
	}{
		{"authorization_code openid", func(t *testing.T, e *env) reply {
			return e.token(t, exchangeForm(e.approveCode(t, nil)), appBasic)
		}, "openid", DefaultConsentSubject},
		{"authorization_code default scope", func(t *testing.T, e *env) reply {
			return e.token(t, exchangeForm(e.approveCode(t, map[string]string{"scope": ""})), appBasic)
		}, "default", DefaultConsentSubject},
		{"authorization_code url-encoded Basic (RFC 6749 style)", func(t *testing.T, e *env) reply {
			req := e.tokenRequest(t, exchangeForm(e.approveCode(t, nil)), basic{})
			req.SetBasicAuth(url.QueryEscape(appID), url.QueryEscape(appSecret))
			return e.do(t, req)
		}, "openid", DefaultConsentSubject},
		{"password openid", func(t *testing.T, e *env) reply {
			return e.token(t, passwordForm(userName, userPass, "openid"), basic{})
		}, "openid", userName},
		{"password no scope", func(t *testing.T, e *env) reply {
			return e.token(t, passwordForm(userName, userPass, ""), basic{})
		}, "default", userName},
		{"refresh_token", func(t *testing.T, e *env) reply {
			return e.token(t, refreshForm(e.consent(t).str("refresh_token")), basic{})
		}, "openid", DefaultConsentSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := tt.get(t, e)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			at, rt := r.str("access_token"), r.str("refresh_token")
			if !uuidLike.MatchString(at) || !uuidLike.MatchString(rt) || at == rt {
				t.Errorf("tokens not distinct UUID-like values: %q %q", at, rt)
			}
			if r.str("token_type") != "Bearer" || r.expiresIn() != 86400 || r.str("scope") != tt.wantScope {
				t.Errorf("token_type/expires_in/scope = %q/%d/%q", r.str("token_type"), r.expiresIn(), r.str("scope"))
			}
			_, hasID := r.body["id_token"]
			if hasID != (tt.wantScope == "openid") {
				t.Errorf("id_token present = %v for scope %s", hasID, tt.wantScope)
			}
			if !e.sb.IsValidAccessToken(at) || !e.sb.IsLiveRefreshToken(rt) {
				t.Errorf("issued pair is not live")
			}
			w := e.whoami(t, at)
			if w.status != http.StatusOK || w.str("sub") != tt.wantSub || w.str("client_id") != appID {
				t.Errorf("whoami: %d %s", w.status, w.raw)
			}
		})
	}
}

func TestClientAuthStyle(t *testing.T) {
	e := newEnv(t, nil)
	withBody := func(f url.Values, id, secret string) url.Values {
		f.Set("client_id", id)
		f.Set("client_secret", secret)
		return f
	}
	tests := []struct {
		name string
		form func() url.Values
		auth basic
	}{
		{"code: credentials in body", func() url.Values {
			return withBody(exchangeForm(e.approveCode(t, nil)), appID, appSecret)
		}, basic{}},
		{"code: Basic plus client_secret in body", func() url.Values {
			return withBody(exchangeForm(e.approveCode(t, nil)), appID, appSecret)
		}, appBasic},
		{"code: no authentication", func() url.Values { return exchangeForm(e.approveCode(t, nil)) }, basic{}},
		{"code: wrong secret", func() url.Values { return exchangeForm(e.approveCode(t, nil)) }, basic{appID, "nope"}},
		{"code: unknown client", func() url.Values { return exchangeForm(e.approveCode(t, nil)) }, basic{"ghost", "x"}},
		{"code: body client_id differs from Basic", func() url.Values {
			f := exchangeForm(e.approveCode(t, nil))
			f.Set("client_id", otherID)
			return f
		}, appBasic},
		{"refresh: Basic header", func() url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {e.consent(t).str("refresh_token")}}
		}, appBasic},
		{"refresh: Basic header and body", func() url.Values { return refreshForm(e.consent(t).str("refresh_token")) }, appBasic},
		{"refresh: wrong secret", func() url.Values {
			return withBody(refreshForm(e.consent(t).str("refresh_token")), appID, "nope")
		}, basic{}},
		{"refresh: no client_secret", func() url.Values {
			f := refreshForm(e.consent(t).str("refresh_token"))
			f.Del("client_secret")
			return f
		}, basic{}},
		{"password: Basic header", func() url.Values {
			f := passwordForm(userName, userPass, "openid")
			f.Del("client_id")
			f.Del("client_secret")
			return f
		}, appBasic},
		{"password: wrong secret", func() url.Values {
			return withBody(passwordForm(userName, userPass, "openid"), appID, "nope")
		}, basic{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.token(t, tt.form(), tt.auth)
			wantOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic") {
				t.Errorf("WWW-Authenticate %q, want Basic", got)
			}
		})
	}
}

func TestAuthorizationCodeRules(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, e *env) reply
		want string // error code, "" for success
	}{
		{"single use", func(t *testing.T, e *env) reply {
			code := e.approveCode(t, nil)
			if r := e.token(t, exchangeForm(code), appBasic); r.status != http.StatusOK {
				t.Fatalf("first use: %d %s", r.status, r.raw)
			}
			return e.token(t, exchangeForm(code), appBasic)
		}, "invalid_grant"},
		{"valid just before 10 minutes", func(t *testing.T, e *env) reply {
			code := e.approveCode(t, nil)
			e.clock.Advance(CodeTTL - time.Second)
			return e.token(t, exchangeForm(code), appBasic)
		}, ""},
		{"expired after 10 minutes", func(t *testing.T, e *env) reply {
			code := e.approveCode(t, nil)
			e.clock.Advance(CodeTTL)
			return e.token(t, exchangeForm(code), appBasic)
		}, "invalid_grant"},
		{"unknown code", func(t *testing.T, e *env) reply {
			return e.token(t, exchangeForm("00000000-0000-3000-8000-000000000000"), appBasic)
		}, "invalid_grant"},
		{"other client's code", func(t *testing.T, e *env) reply {
			return e.token(t, exchangeForm(e.approveCode(t, nil)), basic{otherID, otherSecret})
		}, "invalid_grant"},
		{"redirect_uri differs", func(t *testing.T, e *env) reply {
			f := exchangeForm(e.approveCode(t, nil))
			f.Set("redirect_uri", appCallback+"/")
			return e.token(t, f, appBasic)
		}, "invalid_grant"},
		{"failed attempt burns the code", func(t *testing.T, e *env) reply {
			code := e.approveCode(t, nil)
			f := exchangeForm(code)
			f.Set("redirect_uri", "https://evil.example/")
			e.token(t, f, appBasic)
			return e.token(t, exchangeForm(code), appBasic)
		}, "invalid_grant"},
		{"missing redirect_uri", func(t *testing.T, e *env) reply {
			f := exchangeForm(e.approveCode(t, nil))
			f.Del("redirect_uri")
			return e.token(t, f, appBasic)
		}, "invalid_request"},
		{"missing code", func(t *testing.T, e *env) reply {
			f := exchangeForm("x")
			f.Del("code")
			return e.token(t, f, appBasic)
		}, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run(t, newEnv(t, nil))
			if tt.want == "" {
				if r.status != http.StatusOK {
					t.Fatalf("got %d %s, want 200", r.status, r.raw)
				}
				return
			}
			wantOAuthError(t, r, http.StatusBadRequest, tt.want)
		})
	}
}

func TestCodeReuseRevokesChainWhenAsked(t *testing.T) {
	for _, revoke := range []bool{false, true} {
		e := newEnv(t, func(o *Options) { o.RevokeOnCodeReuse = revoke })
		code := e.approveCode(t, nil)
		first := e.token(t, exchangeForm(code), appBasic)
		wantOAuthError(t, e.token(t, exchangeForm(code), appBasic), http.StatusBadRequest, "invalid_grant")
		if live := e.sb.IsLiveRefreshToken(first.str("refresh_token")); live == revoke {
			t.Errorf("RevokeOnCodeReuse=%v: first chain live = %v", revoke, live)
		}
	}
}

func TestPKCE(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge := s256(verifier)
	tests := []struct {
		name     string
		verifier string // "" sends none
		ignore   bool
		want     int
	}{
		{"matching verifier", verifier, false, http.StatusOK},
		{"missing verifier", "", false, http.StatusBadRequest},
		{"wrong verifier", verifier + "x", false, http.StatusBadRequest},
		{"IgnorePKCE: missing verifier accepted", "", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.IgnorePKCE = tt.ignore })
			code := e.approveCode(t, map[string]string{"code_challenge": challenge, "code_challenge_method": "S256"})
			f := exchangeForm(code)
			if tt.verifier != "" {
				f.Set("code_verifier", tt.verifier)
			}
			r := e.token(t, f, appBasic)
			if tt.want == http.StatusOK {
				if r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
				return
			}
			wantOAuthError(t, r, tt.want, "invalid_grant")
		})
	}
	t.Run("verifier without challenge is ignored", func(t *testing.T) {
		e := newEnv(t, nil)
		f := exchangeForm(e.approveCode(t, nil))
		f.Set("code_verifier", verifier)
		if r := e.token(t, f, appBasic); r.status != http.StatusOK {
			t.Fatalf("got %d %s", r.status, r.raw)
		}
	})
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, nil)
	first := e.consent(t)
	rt0 := first.str("refresh_token")

	e.clock.Advance(6 * time.Hour)
	second := e.token(t, refreshForm(rt0), basic{})
	if second.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", second.status, second.raw)
	}
	rt1 := second.str("refresh_token")
	if rt1 == rt0 || second.str("access_token") == first.str("access_token") {
		t.Fatal("refresh did not rotate the pair")
	}
	if e.sb.IsLiveRefreshToken(rt0) || !e.sb.IsLiveRefreshToken(rt1) {
		t.Fatalf("after rotation: old live=%v new live=%v", e.sb.IsLiveRefreshToken(rt0), e.sb.IsLiveRefreshToken(rt1))
	}
	if !e.sb.IsValidAccessToken(first.str("access_token")) {
		t.Error("old access token died on refresh; default is to keep it until expiry")
	}
	wantOAuthError(t, e.token(t, refreshForm(rt0), basic{}), http.StatusBadRequest, "invalid_grant")
	if e.sb.LiveChains() != 1 {
		t.Errorf("LiveChains = %d, want 1", e.sb.LiveChains())
	}

	issued := e.sb.Issued()
	if len(issued) != 2 || issued[1].Replaces != rt0 || issued[1].RefreshToken != rt1 || issued[1].Grant != GrantRefreshToken || issued[1].Chain != issued[0].Chain {
		t.Errorf("Issued log: %v", issued)
	}
	if s := issued[1].String(); strings.Contains(s, rt0) || strings.Contains(s, rt1) {
		t.Errorf("IssuedPair.String leaks a token: %s", s)
	}
}

func TestRefreshTokenErrors(t *testing.T) {
	tests := []struct {
		name string
		opts func(*Options)
		run  func(t *testing.T, e *env, rt string) reply
		want string
	}{
		{"valid just before 7 days", nil, func(t *testing.T, e *env, rt string) reply {
			e.clock.Advance(7*24*time.Hour - time.Second)
			return e.token(t, refreshForm(rt), basic{})
		}, ""},
		{"expired at 7 days", nil, func(t *testing.T, e *env, rt string) reply {
			e.clock.Advance(7 * 24 * time.Hour)
			return e.token(t, refreshForm(rt), basic{})
		}, "invalid_grant"},
		{"other client", nil, func(t *testing.T, e *env, rt string) reply {
			f := refreshForm(rt)
			f.Set("client_id", otherID)
			f.Set("client_secret", otherSecret)
			return e.token(t, f, basic{})
		}, "invalid_grant"},
		{"unknown", nil, func(t *testing.T, e *env, rt string) reply {
			return e.token(t, refreshForm("nope"), basic{})
		}, "invalid_grant"},
		{"revoked by the sandbox", nil, func(t *testing.T, e *env, rt string) reply {
			e.sb.Revoke(rt)
			return e.token(t, refreshForm(rt), basic{})
		}, "invalid_grant"},
		{"missing refresh_token", nil, func(t *testing.T, e *env, rt string) reply {
			f := refreshForm(rt)
			f.Del("refresh_token")
			return e.token(t, f, basic{})
		}, "invalid_request"},
		{"custom RefreshTTL", func(o *Options) { o.RefreshTTL = time.Hour }, func(t *testing.T, e *env, rt string) reply {
			e.clock.Advance(time.Hour)
			return e.token(t, refreshForm(rt), basic{})
		}, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			r := tt.run(t, e, e.consent(t).str("refresh_token"))
			if tt.want == "" {
				if r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
				return
			}
			wantOAuthError(t, r, http.StatusBadRequest, tt.want)
			if r.str("error_description") == "" {
				t.Error("no error_description")
			}
		})
	}
}

func TestAccessTokenLifetimeAndRevocation(t *testing.T) {
	e := newEnv(t, nil)
	p := e.consent(t)
	at, rt := p.str("access_token"), p.str("refresh_token")
	e.clock.Advance(24*time.Hour - time.Second)
	if !e.sb.IsValidAccessToken(at) {
		t.Fatal("access token dead before 24h")
	}
	e.clock.Advance(time.Second)
	if e.sb.IsValidAccessToken(at) {
		t.Fatal("access token alive at 24h")
	}
	if w := e.whoami(t, at); w.status != http.StatusUnauthorized {
		t.Fatalf("whoami with expired token: %d", w.status)
	}

	n := e.token(t, refreshForm(rt), basic{})
	e.sb.Revoke(rt) // an old refresh token of the chain names the chain
	if e.sb.IsLiveRefreshToken(n.str("refresh_token")) || e.sb.IsValidAccessToken(n.str("access_token")) || e.sb.LiveChains() != 0 {
		t.Fatal("Revoke left part of the chain alive")
	}
	e.sb.Revoke("unknown") // no-op
}

func TestRefreshRevokesAccess(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RefreshRevokesAccess = true })
	p := e.consent(t)
	n := e.token(t, refreshForm(p.str("refresh_token")), basic{})
	if e.sb.IsValidAccessToken(p.str("access_token")) || !e.sb.IsValidAccessToken(n.str("access_token")) {
		t.Fatal("RefreshRevokesAccess: old access token should be dead, new alive")
	}
}

func TestConsentChains(t *testing.T) {
	for _, revoke := range []bool{false, true} {
		e := newEnv(t, func(o *Options) { o.RevokeOnConsent = revoke })
		a := e.consent(t)
		b := e.consent(t)
		want := 2
		if revoke {
			want = 1
		}
		if got := e.sb.LiveChains(); got != want {
			t.Errorf("RevokeOnConsent=%v: LiveChains = %d, want %d", revoke, got, want)
		}
		if e.sb.IsLiveRefreshToken(a.str("refresh_token")) == revoke || !e.sb.IsLiveRefreshToken(b.str("refresh_token")) {
			t.Errorf("RevokeOnConsent=%v: wrong chain states", revoke)
		}
	}
}

func TestPasswordGrantRules(t *testing.T) {
	tests := []struct {
		name       string
		user, pass string
		status     int
		code       string
	}{
		{"suffix required", "alice", userPass, http.StatusBadRequest, "invalid_grant"},
		{"other suffix", "alice@vbc.test", userPass, http.StatusBadRequest, "invalid_grant"},
		{"wrong password", userName, "wrong", http.StatusBadRequest, "invalid_grant"},
		{"unknown user", "bob@vbc.prod", userPass, http.StatusBadRequest, "invalid_grant"},
		{"missing password", userName, "", http.StatusBadRequest, "invalid_request"},
		{"missing username", "", userPass, http.StatusBadRequest, "invalid_request"},
	}
	e := newEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := passwordForm(tt.user, tt.pass, "openid")
			for k, v := range f {
				if v[0] == "" {
					f.Del(k)
				}
			}
			wantOAuthError(t, e.token(t, f, basic{}), tt.status, tt.code)
		})
	}
	t.Run("user registered with suffix", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Users = map[string]string{"bob@vbc.prod": "pw"} })
		if r := e.token(t, passwordForm("bob@vbc.prod", "pw", ""), basic{}); r.status != http.StatusOK {
			t.Fatalf("got %d %s", r.status, r.raw)
		}
	})
}

func TestPasswordRepeatedGrantQuirk(t *testing.T) {
	e := newEnv(t, nil)
	first := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
	if first.expiresIn() != 86400 {
		t.Fatalf("first expires_in = %d", first.expiresIn())
	}
	e.clock.Advance(3834 * time.Second) // the docs' example: 86400 - 3834 = 82566
	again := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
	if again.status != http.StatusOK || again.str("access_token") != first.str("access_token") || again.str("refresh_token") != first.str("refresh_token") {
		t.Fatalf("repeated grant did not return the same pair: %s", again.raw)
	}
	if again.expiresIn() != 82566 {
		t.Errorf("repeated expires_in = %d, want 82566", again.expiresIn())
	}
	if again.str("id_token") == "" {
		t.Error("repeated openid grant without id_token")
	}
	e.clock.Advance(time.Hour)
	if third := e.token(t, passwordForm(userName, userPass, "openid"), basic{}); third.expiresIn() != 82566-3600 {
		t.Errorf("third expires_in = %d, want %d", third.expiresIn(), 82566-3600)
	}

	// Another scope is another token.
	if d := e.token(t, passwordForm(userName, userPass, ""), basic{}); d.str("access_token") == first.str("access_token") || d.expiresIn() != 86400 {
		t.Errorf("scope default reused the openid token")
	}
	// After expiry: a new pair.
	e.clock.Advance(23 * time.Hour)
	if n := e.token(t, passwordForm(userName, userPass, "openid"), basic{}); n.str("access_token") == first.str("access_token") || n.expiresIn() != 86400 {
		t.Errorf("expired token reused: %s", n.raw)
	}
	st := e.sb.Stats()
	if st.Reused != 2 || st.Successes[GrantPassword] != 5 || len(e.sb.Issued()) != 3 {
		t.Errorf("Stats = %+v, issued = %d", st, len(e.sb.Issued()))
	}

	// After a refresh, the quirk hands back the refreshed pair.
	e2 := newEnv(t, nil)
	p := e2.token(t, passwordForm(userName, userPass, "openid"), basic{})
	n := e2.token(t, refreshForm(p.str("refresh_token")), basic{})
	if r := e2.token(t, passwordForm(userName, userPass, "openid"), basic{}); r.str("refresh_token") != n.str("refresh_token") {
		t.Errorf("quirk after refresh returned a dead or new refresh token")
	}
}

func TestPasswordNoTokenReuse(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.NoTokenReuse = true })
	a := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
	e.clock.Advance(time.Hour)
	b := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
	if a.str("access_token") == b.str("access_token") || b.expiresIn() != 86400 {
		t.Fatalf("NoTokenReuse: got the same token back")
	}
	if e.sb.LiveChains() != 2 {
		t.Errorf("LiveChains = %d, want 2", e.sb.LiveChains())
	}
}

func TestIDToken(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Issuer = "https://issuer.example" })
	r := e.consent(t)
	parts := strings.Split(r.str("id_token"), ".")
	if len(parts) != 3 {
		t.Fatalf("id_token has %d parts", len(parts))
	}
	var hdr map[string]string
	decodeSegment(t, parts[0], &hdr)
	if hdr["alg"] != "RS256" || hdr["typ"] != "JWT" || hdr["kid"] == "" {
		t.Errorf("header %v", hdr)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(e.sb.PublicKey(), crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("signature does not verify with PublicKey(): %v", err)
	}
	var c IDTokenClaims
	decodeSegment(t, parts[1], &c)
	now := e.clock.Now()
	want := IDTokenClaims{Issuer: "https://issuer.example", Subject: DefaultConsentSubject, Audience: appID, AZP: appID,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(24 * time.Hour).Unix()}
	if c != want {
		t.Errorf("claims %+v, want %+v", c, want)
	}
}

func TestNewGeneratesKey(t *testing.T) {
	sb := New(Options{})
	if sb.PublicKey() == nil || sb.PublicKey().N.BitLen() != 2048 {
		t.Fatal("no 2048-bit key")
	}
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestTokenEndpointRequestErrors(t *testing.T) {
	e := newEnv(t, nil)
	post := func(ctype, body string) reply {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+TokenPath, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		return e.do(t, req)
	}
	tests := []struct {
		name   string
		r      func() reply
		status int
		code   string
	}{
		{"missing grant_type", func() reply { return e.token(t, url.Values{"code": {"x"}}, appBasic) }, 400, "invalid_request"},
		{"unsupported grant", func() reply {
			return e.token(t, url.Values{"grant_type": {"client_credentials"}}, appBasic)
		}, 400, "unsupported_grant_type"},
		{"JSON body", func() reply { return post("application/json", `{"grant_type":"password"}`) }, 400, "invalid_request"},
		{"no content type", func() reply { return post("", "grant_type=password") }, 400, "invalid_request"},
		{"repeated parameter", func() reply {
			return post("application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=a&refresh_token=b&client_id="+appID+"&client_secret="+appSecret)
		}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOAuthError(t, tt.r(), tt.status, tt.code) })
	}
	t.Run("GET is 405", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+TokenPath, nil)
		if r := e.do(t, req); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") == "" {
			t.Fatalf("got %d, Allow %q", r.status, r.header.Get("Allow"))
		}
	})
	t.Run("stats count errors by code", func(t *testing.T) {
		st := e.sb.Stats()
		if st.Errors["invalid_request"] != 4 || st.Errors["unsupported_grant_type"] != 1 || st.Requests["client_credentials"] != 1 {
			t.Errorf("Stats = %+v", st)
		}
	})
}

func TestConcurrentRefreshSucceedsOnce(t *testing.T) {
	e := newEnv(t, nil)
	rt := e.consent(t).str("refresh_token")
	const n = 16
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			res, err := e.srv.Client().PostForm(e.srv.URL+TokenPath, refreshForm(rt))
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		})
	}
	wg.Go(func() { // readers alongside
		for range n {
			e.sb.Stats()
			e.sb.LiveChains()
			e.sb.Issued()
		}
	})
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == http.StatusOK {
			ok++
		}
	}
	if ok != 1 || e.sb.LiveChains() != 1 {
		t.Fatalf("%d of %d concurrent refreshes succeeded, LiveChains %d; want exactly 1", ok, n, e.sb.LiveChains())
	}
}

func TestSeededRandIsReproducible(t *testing.T) {
	run := func() []string {
		e := newEnv(t, func(o *Options) { o.Rand = rand.NewChaCha8([32]byte{7}) })
		p := e.consent(t)
		n := e.token(t, refreshForm(p.str("refresh_token")), basic{})
		return []string{p.str("access_token"), p.str("refresh_token"), n.str("access_token"), n.str("refresh_token")}
	}
	a, b := run(), run()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("same seed, different tokens:\n%v\n%v", a, b)
	}
}

func TestRandThatRepeatsFailsLoudly(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Rand = bytes.NewReader(make([]byte, 1<<10)) })
	code := e.approveCode(t, nil) // all zeros: the first value is fine
	r := e.token(t, exchangeForm(code), appBasic)
	wantOAuthError(t, r, http.StatusInternalServerError, "server_error")
}
