package vbcsandbox

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// noRedirect returns a client that hands 302s back instead of following them.
func (e *env) noRedirect() *http.Client {
	c := *e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (e *env) whoami(t *testing.T, at string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+WhoAmIPath, nil)
	if at != "" {
		req.Header.Set("Authorization", "Bearer "+at)
	}
	return e.do(t, req)
}

func TestAuthorizeValidation(t *testing.T) {
	tests := []struct {
		name     string
		params   map[string]string
		wantErr  error  // no redirect: error page / Approve error
		wantCode string // redirect with error=
	}{
		{"unknown client", map[string]string{"client_id": "ghost"}, ErrUnknownClient, ""},
		{"missing client", map[string]string{"client_id": ""}, ErrUnknownClient, ""},
		{"unregistered redirect", map[string]string{"redirect_uri": "https://evil.example/cb"}, ErrBadRedirectURI, ""},
		{"redirect differs by a slash", map[string]string{"redirect_uri": appCallback + "/"}, ErrBadRedirectURI, ""},
		{"other client's redirect", map[string]string{"redirect_uri": otherCB}, ErrBadRedirectURI, ""},
		{"missing redirect", map[string]string{"redirect_uri": ""}, ErrBadRedirectURI, ""},
		{"response_type token", map[string]string{"response_type": "token"}, nil, "unsupported_response_type"},
		{"missing response_type", map[string]string{"response_type": ""}, nil, "invalid_request"},
		{"PKCE plain", map[string]string{"code_challenge": s256("v"), "code_challenge_method": "plain"}, nil, "invalid_request"},
		{"PKCE without method", map[string]string{"code_challenge": s256("v")}, nil, "invalid_request"},
		{"PKCE bad challenge", map[string]string{"code_challenge": "short", "code_challenge_method": "S256"}, nil, "invalid_request"},
		{"valid, no state", map[string]string{"state": ""}, nil, ""},
		{"valid, with PKCE", map[string]string{"code_challenge": s256("v"), "code_challenge_method": "S256"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			authURL := e.authorizeURL(tt.params)

			// Programmatic consent.
			cb, err := e.sb.Approve(authURL)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Approve error = %v, want %v", err, tt.wantErr)
			}

			// The browser's view.
			res, err := e.noRedirect().Get(authURL)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()

			wantState := "st-1"
			if v, ok := tt.params["state"]; ok {
				wantState = v
			}
			switch {
			case tt.wantErr != nil:
				if cb != "" || res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
					t.Fatalf("must not redirect: Approve=%q, GET %d Location=%q", cb, res.StatusCode, res.Header.Get("Location"))
				}
			case tt.wantCode != "":
				for _, got := range []string{cb, res.Header.Get("Location")} {
					q := callbackQuery(t, got)
					if q.Get("error") != tt.wantCode || q.Get("error_description") == "" || q.Get("code") != "" || q.Get("state") != wantState {
						t.Errorf("error redirect %q, want error=%s state=%q", got, tt.wantCode, wantState)
					}
				}
			default:
				q := callbackQuery(t, cb)
				if q.Get("code") == "" || res.StatusCode != http.StatusOK {
					t.Errorf("Approve=%q, GET %d", cb, res.StatusCode)
				}
				if _, has := q["state"]; q.Get("state") != wantState || has != (wantState != "") {
					t.Errorf("state in %q, want %q", cb, wantState)
				}
			}
		})
	}
}

// callbackQuery checks that u goes to the app's callback and returns its query.
func callbackQuery(t *testing.T, u string) url.Values {
	t.Helper()
	if !strings.HasPrefix(u, appCallback+"?") {
		t.Fatalf("redirect %q does not go to %s", u, appCallback)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Query()
}

func TestConsentPage(t *testing.T) {
	e := newEnv(t, nil)
	evil := `"><script>alert(1)</script>`
	res, err := e.noRedirect().Get(e.authorizeURL(map[string]string{"state": evil}))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	page := string(body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /authorize: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`id="approve"`, `id="decline"`, "Sandbox VBC — ", "Test App", "wants access to your account",
		"local sandbox", `method="post"`, `action="authorize"`, `name="client_id" value="app-key"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, evil) {
		t.Error("reflected state is not escaped")
	}
	for _, external := range []string{"<link", "<script", "<img", " src=", "@import", "url("} {
		if strings.Contains(page, external) {
			t.Errorf("page loads an asset (%q)", external)
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}

	t.Run("error page reflects nothing unescaped and does not redirect", func(t *testing.T) {
		res, err := e.noRedirect().Get(e.authorizeURL(map[string]string{"client_id": evil}))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "<script>") {
			t.Fatalf("error page: %d", res.StatusCode)
		}
	})
}

func TestConsentFormPost(t *testing.T) {
	const state = "s&t=1 <x>"
	form := url.Values{
		"client_id": {appID}, "redirect_uri": {appCallback}, "response_type": {"code"},
		"scope": {"openid"}, "state": {state},
	}
	tests := []struct {
		decision  string
		status    int
		wantQuery string // key that must be in the callback
	}{
		{"approve", http.StatusFound, "code"},
		{"decline", http.StatusFound, "error"},
		{"maybe", http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.decision, func(t *testing.T) {
			e := newEnv(t, nil)
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("decision", tt.decision)
			res, err := e.noRedirect().PostForm(e.srv.URL+AuthorizePath, f)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.wantQuery == "" {
				return
			}
			u, err := url.Parse(res.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(u.String(), appCallback+"?") {
				t.Fatalf("Location %q", res.Header.Get("Location"))
			}
			q := u.Query()
			if q.Get(tt.wantQuery) == "" || q.Get("state") != state {
				t.Fatalf("callback query %v", q)
			}
			if tt.decision == "decline" && (q.Get("error") != "access_denied" || q.Get("error_description") == "" || q.Get("code") != "") {
				t.Fatalf("decline callback %v", q)
			}
			if tt.decision == "approve" {
				if r := e.token(t, exchangeForm(q.Get("code")), appBasic); r.status != http.StatusOK {
					t.Fatalf("exchange of page code: %d %s", r.status, r.raw)
				}
			}
		})
	}
}

func TestDeclineProgrammatic(t *testing.T) {
	e := newEnv(t, nil)
	cb, err := e.sb.Decline(e.authorizeURL(nil))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	if q := u.Query(); q.Get("error") != "access_denied" || q.Get("state") != "st-1" || q.Get("code") != "" {
		t.Fatalf("Decline callback %q", cb)
	}
	if _, err := e.sb.Decline(e.authorizeURL(map[string]string{"client_id": "ghost"})); !errors.Is(err, ErrUnknownClient) {
		t.Fatalf("Decline unknown client: %v", err)
	}
	if _, err := e.sb.Approve("://bad"); err == nil {
		t.Fatal("Approve accepted an unparsable URL")
	}
	if st := e.sb.Stats(); st.Declined != 1 || st.Approved != 0 {
		t.Errorf("Stats %+v", st)
	}
}

func TestRedirectKeepsRegisteredQuery(t *testing.T) {
	const cbURL = "https://app.example/cb?tenant=a"
	e := newEnv(t, func(o *Options) { o.Clients[0].RedirectURLs = []string{cbURL} })
	cb, err := e.sb.Approve(e.authorizeURL(map[string]string{"redirect_uri": cbURL}))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	if u.Query().Get("tenant") != "a" || u.Query().Get("code") == "" {
		t.Fatalf("callback %q", cb)
	}
}

func TestWhoAmI(t *testing.T) {
	e := newEnv(t, nil)
	at := e.consent(t).str("access_token")
	ok := e.whoami(t, at)
	if ok.status != http.StatusOK || ok.str("sub") != DefaultConsentSubject || ok.str("client_id") != appID ||
		ok.str("expires_at") != e.clock.Now().Add(24*time.Hour).Format(time.RFC3339) {
		t.Fatalf("whoami: %d %s", ok.status, ok.raw)
	}
	for name, token := range map[string]string{"unknown": "nope", "missing": ""} {
		r := e.whoami(t, token)
		if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s token: %d %q", name, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
	if got := e.whoami(t, "nope").header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
}

func TestIndexAndUnknownPaths(t *testing.T) {
	e := newEnv(t, nil)
	res, err := e.srv.Client().Get(e.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /: %d", res.StatusCode)
	}
	res, err = e.srv.Client().Get(e.srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d", res.StatusCode)
	}
}
