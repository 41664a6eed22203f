package vbctoken_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

const (
	sbClientID = "sandboxCONSUMERkey"
	sbSecret   = "sandboxCONSUMERsecret-77"
	sbUser     = "admin"
	sbPassword = "sandbox-PASSWORD-88"
)

var (
	sbKeyOnce sync.Once
	sbKey     *rsa.PrivateKey
)

// sbWorld is one VBC sandbox behind an httptest server, on a fake clock that the client's
// retry sleeps advance.
type sbWorld struct {
	t     *testing.T
	clock *clClock
	vbc   *vbcsandbox.Sandbox
	srv   *httptest.Server
}

func newSBWorld(t *testing.T, mod ...func(*vbcsandbox.Options)) *sbWorld {
	t.Helper()
	sbKeyOnce.Do(func() {
		var err error
		if sbKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	clock := newClClock(clT0)
	opts := vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: sbClientID, Secret: sbSecret, RedirectURLs: []string{clRedirect}}},
		Users:      map[string]string{sbUser: sbPassword},
		Now:        clock.Now,
		SigningKey: sbKey,
	}
	for _, m := range mod {
		m(&opts)
	}
	w := &sbWorld{t: t, clock: clock, vbc: vbcsandbox.New(opts)}
	w.srv = httptest.NewServer(w.vbc)
	t.Cleanup(w.srv.Close)
	return w
}

func (w *sbWorld) client(pkce bool, mod ...func(*vbctoken.ClientConfig)) *vbctoken.Client {
	cfg := vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: w.srv.URL + vbcsandbox.AuthorizePath, TokenURL: w.srv.URL + vbcsandbox.TokenPath},
		RedirectURL: clRedirect,
		PKCE:        pkce,
		Retry:       vbctoken.RetryPolicy{Sleep: w.clock.Sleep, Now: w.clock.Now, Rand: func() float64 { return 0.5 }},
		Now:         w.clock.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	return vbctoken.NewClient(cfg, vbctoken.Credentials{ClientID: sbClientID, ClientSecret: sbSecret})
}

// consent runs the browser part of the code flow: mint a state, build the authorize URL,
// approve it at the sandbox and verify the state that comes back. It returns the code and
// the PKCE verifier ("" without PKCE).
func (w *sbWorld) consent(c *vbctoken.Client, pkce bool) (code vbctoken.Secret, verifier string) {
	w.t.Helper()
	signer := vbctoken.NewStateSigner(vbctoken.StateKeyFromClientSecret(sbSecret), 0)
	state, nonce, err := signer.Mint(w.clock.Now(), "")
	if err != nil {
		w.t.Fatal(err)
	}
	if pkce {
		verifier = signer.PKCEVerifier(nonce)
	}
	cb, err := w.vbc.Approve(c.AuthCodeURL(state, verifier))
	if err != nil {
		w.t.Fatalf("Approve: %v", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		w.t.Fatal(err)
	}
	q := u.Query()
	if q.Get("error") != "" || q.Get("code") == "" {
		w.t.Fatalf("callback %s carries no code (error %q)", u.Path, q.Get("error"))
	}
	claims, err := signer.Verify(q.Get("state"), w.clock.Now())
	if err != nil || claims.Nonce != nonce {
		w.t.Fatalf("state back from VBC: %+v, %v", claims, err)
	}
	return vbctoken.Secret(q.Get("code")), verifier
}

// assertLive checks the pair against the sandbox: both tokens accepted, times from
// expires_in, and an id_token that verifies with the sandbox key.
func (w *sbWorld) assertLive(p *vbctoken.Pair, grant vbctoken.Grant) {
	w.t.Helper()
	now := w.clock.Now()
	if !w.vbc.IsValidAccessToken(p.AccessToken.Reveal()) || !w.vbc.IsLiveRefreshToken(p.RefreshToken.Reveal()) {
		w.t.Errorf("the sandbox does not accept the pair's tokens")
	}
	if p.Grant != grant || p.TokenType != "Bearer" || p.Scope != "openid" {
		w.t.Errorf("grant/type/scope = %q/%q/%q", p.Grant, p.TokenType, p.Scope)
	}
	if !p.ObtainedAt.Equal(now) || !p.ExpiresAt.Equal(now.Add(24*time.Hour)) || !p.RefreshExpiresAt.Equal(now.Add(vbctoken.RefreshTokenLifetime)) {
		w.t.Errorf("times: obtained %v, expires %v, refresh expires %v (now %v)", p.ObtainedAt, p.ExpiresAt, p.RefreshExpiresAt, now)
	}
	claims := sbVerifyIDToken(w.t, p.IDToken.Reveal(), w.vbc.PublicKey())
	if claims.Audience != sbClientID {
		w.t.Errorf("id_token aud = %q, want %q", claims.Audience, sbClientID)
	}
}

func sbVerifyIDToken(t *testing.T, jwt string, pub *rsa.PublicKey) vbcsandbox.IDTokenClaims {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token has %d parts", len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("id_token signature: %v", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c vbcsandbox.IDTokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSandboxCodeFlow(t *testing.T) {
	for _, pkce := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "pkce"}[pkce], func(t *testing.T) {
			w := newSBWorld(t)
			c := w.client(pkce)
			code, verifier := w.consent(c, pkce)

			pair, err := c.Exchange(context.Background(), code, verifier)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			w.assertLive(pair, vbctoken.GrantAuthorizationCode)

			// A code is single use.
			_, err = c.Exchange(context.Background(), code, verifier)
			if !errors.Is(err, vbctoken.ErrInvalidGrant) {
				t.Errorf("second Exchange = %v, want ErrInvalidGrant", err)
			}
			clAssertNoSecrets(t, err, code.Reveal(), sbSecret, verifier)
		})
	}
	t.Run("pkce with the wrong verifier", func(t *testing.T) {
		w := newSBWorld(t)
		c := w.client(true)
		code, _ := w.consent(c, true)
		wrong := strings.Repeat("x", 43)
		_, err := c.Exchange(context.Background(), code, wrong)
		if !errors.Is(err, vbctoken.ErrInvalidGrant) {
			t.Errorf("Exchange = %v, want ErrInvalidGrant", err)
		}
		clAssertNoSecrets(t, err, code.Reveal(), wrong)
	})
}

func TestSandboxRefreshRotates(t *testing.T) {
	w := newSBWorld(t)
	c := w.client(false)
	first, err := c.Password(context.Background(), sbUser, sbPassword)
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(23 * time.Hour)

	second, err := c.Refresh(context.Background(), first.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	w.assertLive(second, vbctoken.GrantRefreshToken)
	if second.RefreshToken == first.RefreshToken || w.vbc.IsLiveRefreshToken(first.RefreshToken.Reveal()) {
		t.Error("the refresh token did not rotate")
	}

	// The spent token is dead: invalid_grant at once, no retries.
	_, err = c.Refresh(context.Background(), first.RefreshToken)
	var ue *vbctoken.UpstreamError
	if !errors.Is(err, vbctoken.ErrInvalidGrant) || !errors.As(err, &ue) || ue.Attempts != 1 {
		t.Errorf("refresh with the spent token = %v, want ErrInvalidGrant after 1 attempt", err)
	}
	clAssertNoSecrets(t, err, first.RefreshToken.Reveal(), second.RefreshToken.Reveal(), sbSecret)
}

func TestSandboxPasswordGrant(t *testing.T) {
	w := newSBWorld(t)
	c := w.client(false)
	first, err := c.Password(context.Background(), sbUser, sbPassword)
	if err != nil {
		t.Fatalf("Password: %v", err)
	}
	w.assertLive(first, vbctoken.GrantPassword)

	// VBC's repeated-grant quirk: the same pair again, with the remaining expires_in. The
	// expiry must come from expires_in, not from an assumed 24 h.
	w.clock.Advance(3 * time.Hour)
	again, err := c.Password(context.Background(), sbUser+"@vbc.prod", sbPassword)
	if err != nil {
		t.Fatalf("second Password: %v", err)
	}
	if !again.SameTokens(first) || !again.ExpiresAt.Equal(first.ExpiresAt) {
		t.Errorf("repeated grant: same tokens %v, expires %v, want %v", again.SameTokens(first), again.ExpiresAt, first.ExpiresAt)
	}

	_, err = c.Password(context.Background(), sbUser, "wrong-PASSWORD-00")
	if !errors.Is(err, vbctoken.ErrInvalidGrant) {
		t.Errorf("wrong password = %v, want ErrInvalidGrant", err)
	}
	clAssertNoSecrets(t, err, "wrong-PASSWORD-00", sbPassword, sbSecret)
}

func TestSandboxWrongClientSecret(t *testing.T) {
	w := newSBWorld(t)
	good := w.client(false)
	pair, err := good.Password(context.Background(), sbUser, sbPassword)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := w.consent(good, false)
	bad := vbctoken.NewClient(vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{TokenURL: w.srv.URL + vbcsandbox.TokenPath},
		RedirectURL: clRedirect,
		Retry:       vbctoken.RetryPolicy{Sleep: w.clock.Sleep, Now: w.clock.Now},
	}, vbctoken.Credentials{ClientID: sbClientID, ClientSecret: "not-THE-secret-99"})
	ctx := context.Background()
	for name, call := range map[string]func() (*vbctoken.Pair, error){
		"exchange": func() (*vbctoken.Pair, error) { return bad.Exchange(ctx, code, "") },
		"refresh":  func() (*vbctoken.Pair, error) { return bad.Refresh(ctx, pair.RefreshToken) },
		"password": func() (*vbctoken.Pair, error) { return bad.Password(ctx, sbUser, sbPassword) },
	} {
		_, err := call()
		var ue *vbctoken.UpstreamError
		if !errors.Is(err, vbctoken.ErrBadClient) || !errors.As(err, &ue) || ue.Attempts != 1 {
			t.Errorf("%s with a wrong client secret = %v, want ErrBadClient after 1 attempt", name, err)
		}
		clAssertNoSecrets(t, err, "not-THE-secret-99", sbSecret, sbPassword, code.Reveal(), pair.RefreshToken.Reveal())
	}
}

func TestSandboxFaults(t *testing.T) {
	cases := []struct {
		name         string
		faults       []vbcsandbox.FaultKind
		want         error // nil: the refresh succeeds in the end
		wantAttempts int
	}{
		{
			name: "rides out 5xx, throttling, HTML and truncation",
			faults: []vbcsandbox.FaultKind{vbcsandbox.Status503, vbcsandbox.Status429, vbcsandbox.HTML200,
				vbcsandbox.Status502, vbcsandbox.Truncated, vbcsandbox.Status500},
			wantAttempts: 7,
		},
		{name: "malformed JSON is not retried", faults: []vbcsandbox.FaultKind{vbcsandbox.MalformedJSON}, want: vbctoken.ErrMalformedResponse, wantAttempts: 1},
		{name: "missing access_token is not retried", faults: []vbcsandbox.FaultKind{vbcsandbox.MissingAccessToken}, want: vbctoken.ErrMalformedResponse, wantAttempts: 1},
		{
			// Rotated at VBC, answer lost: the retry presents the spent token and meets
			// invalid_grant. The keeper re-reads the store before it calls that re-consent.
			name:         "processed but lost",
			faults:       []vbcsandbox.FaultKind{vbcsandbox.ProcessedButLost},
			want:         vbctoken.ErrInvalidGrant,
			wantAttempts: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newSBWorld(t)
			c := w.client(false)
			first, err := c.Password(context.Background(), sbUser, sbPassword)
			if err != nil {
				t.Fatal(err)
			}
			w.vbc.InjectNext(tc.faults...)

			pair, err := c.Refresh(context.Background(), first.RefreshToken)

			if got := w.vbc.Stats().Requests[vbcsandbox.GrantRefreshToken]; got != tc.wantAttempts {
				t.Errorf("sandbox saw %d refresh requests, want %d", got, tc.wantAttempts)
			}
			clAssertNoSecrets(t, err, first.RefreshToken.Reveal(), sbSecret)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				w.assertLive(pair, vbctoken.GrantRefreshToken)
				return
			}
			var ue *vbctoken.UpstreamError
			if !errors.Is(err, tc.want) || !errors.As(err, &ue) || ue.Attempts != tc.wantAttempts {
				t.Errorf("Refresh = %v, want %v after %d attempts", err, tc.want, tc.wantAttempts)
			}
		})
	}
	t.Run("429 Retry-After is honoured", func(t *testing.T) {
		w := newSBWorld(t)
		c := w.client(false)
		first, err := c.Password(context.Background(), sbUser, sbPassword)
		if err != nil {
			t.Fatal(err)
		}
		w.vbc.InjectNext(vbcsandbox.Status429)
		if _, err := c.Refresh(context.Background(), first.RefreshToken); err != nil {
			t.Fatal(err)
		}
		if got := w.clock.Sleeps(); !clEqualDurations(got, []time.Duration{time.Second}) {
			t.Errorf("sleeps = %v, want [1s] (the sandbox's Retry-After)", got)
		}
	})
	t.Run("a slow answer times out and the retry gets through", func(t *testing.T) {
		w := newSBWorld(t, func(o *vbcsandbox.Options) { o.FaultDelay = time.Minute })
		// The first answer is a minute late; the client gives up on it after a timeout long
		// enough that the prompt retry fits in it however loaded the machine is.
		c := w.client(false, func(cfg *vbctoken.ClientConfig) {
			cfg.HTTPClient = &http.Client{Timeout: 2 * time.Second}
		})
		first, err := c.Password(context.Background(), sbUser, sbPassword)
		if err != nil {
			t.Fatal(err)
		}
		w.vbc.InjectNext(vbcsandbox.Delay)

		pair, err := c.Refresh(context.Background(), first.RefreshToken)

		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		w.assertLive(pair, vbctoken.GrantRefreshToken)
		if got := w.vbc.Stats().Requests[vbcsandbox.GrantRefreshToken]; got != 2 {
			t.Errorf("sandbox saw %d refresh requests, want 2", got)
		}
	})
}
