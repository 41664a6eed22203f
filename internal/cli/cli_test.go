package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

func TestUsageAndHelp(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name       string
		args       []string
		code       int
		stdoutHas  []string
		stderrHas  []string
		emptyOut   bool
		emptyErr   bool
		goldenName string
	}{
		{name: "no command", args: nil, code: ExitUsage, stderrHas: []string{"Usage: vbctoken <command>"}, emptyOut: true},
		{name: "--help", args: []string{"--help"}, code: ExitOK, goldenName: "usage.txt", emptyErr: true},
		{name: "help status", args: []string{"help", "status"}, code: ExitOK, stdoutHas: []string{"Usage: vbctoken status", "-json"}, emptyErr: true},
		{name: "unknown command", args: []string{"frobnicate"}, code: ExitUsage, stderrHas: []string{`unknown command "frobnicate"`, "Commands:"}, emptyOut: true},
		{name: "unknown flag", args: []string{"status", "--frob"}, code: ExitUsage, stderrHas: []string{"flag provided but not defined: -frob", "Usage: vbctoken status"}, emptyOut: true},
		{name: "stray argument", args: []string{"refresh", "now"}, code: ExitUsage, stderrHas: []string{`unexpected argument "now"`}, emptyOut: true},
		{name: "bad duration", args: []string{"status", "--timeout", "soon"}, code: ExitUsage, stderrHas: []string{"invalid value"}, emptyOut: true},
	}
	for _, c := range commands {
		tests = append(tests, struct {
			name       string
			args       []string
			code       int
			stdoutHas  []string
			stderrHas  []string
			emptyOut   bool
			emptyErr   bool
			goldenName string
		}{name: c.name + " -h", args: []string{c.name, "-h"}, code: ExitOK, goldenName: "help-" + c.name + ".txt", emptyErr: true})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run("", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, s := range tc.stdoutHas {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if tc.emptyOut && r.stdout != "" {
				t.Errorf("stdout not empty: %s", r.stdout)
			}
			if tc.emptyErr && r.stderr != "" {
				t.Errorf("stderr not empty: %s", r.stderr)
			}
			if tc.goldenName != "" {
				golden(t, tc.goldenName, r.stdout)
				if !strings.Contains(r.stdout, "3  re-consent needed") {
					t.Errorf("help does not document the exit codes")
				}
			}
		})
	}
}

func TestSecretFlagsAreRejected(t *testing.T) {
	h := newHarness(t)
	h.env[EnvPassword] = testPassword
	for _, args := range [][]string{
		{"login", "--username", testUser, "--password", "hunter2"},
		{"login", "--username", testUser, "--password=hunter2"},
		{"login", "-password", "hunter2", "--username", testUser},
		{"serve", "--client-secret=hunter2"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := h.run("", args...)
			if r.code != ExitUsage {
				t.Errorf("exit %d, want %d", r.code, ExitUsage)
			}
			if !strings.Contains(r.stderr, "is not accepted: secret values never go on the command line") || !strings.Contains(r.stderr, EnvPassword) {
				t.Errorf("stderr does not explain: %s", r.stderr)
			}
			if strings.Contains(r.all(), "hunter2") {
				t.Errorf("the value was echoed: %s", r.all())
			}
		})
	}
	if n := len(h.sb.Stats().Requests); n != 0 {
		t.Errorf("token requests were made: %v", h.sb.Stats().Requests)
	}
}

func TestConfigErrorsListEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{
			name: "status: partial secret ids, bad PKCE, bad timeout",
			env:  map[string]string{config.EnvTokenSecretID: "pair", config.EnvPKCE: "maybe", config.EnvTokenURL: "http://api.vonage.com/token"},
			args: []string{"status", "--timeout", "-1s"},
			want: []string{"--timeout must be positive", config.EnvCredentialsSecretID, config.EnvAccessSecretID, config.EnvPKCE, config.EnvTokenURL},
		},
		{
			name: "consent-url needs the redirect URL",
			env:  map[string]string{config.EnvRefreshMargin: "soon"},
			args: []string{"consent-url"},
			want: []string{config.EnvRedirectURL, config.EnvRefreshMargin},
		},
		{
			name: "login needs a username",
			env:  map[string]string{config.EnvScope: "openid", config.EnvRefreshMaxAge: "400h"},
			args: []string{"login"},
			want: []string{"--username is required", "max age"},
		},
		{
			name: "serve: flags and environment together",
			env:  map[string]string{config.EnvPKCE: "sometimes"},
			args: []string{"serve", "--clock-speed", "0", "--refresh-every", "0s"},
			want: []string{"--clock-speed must be between 1 and", "--refresh-every must be positive", config.EnvPKCE},
		},
		{
			name: "serve against VBC needs the redirect URL and no clock speed",
			env:  map[string]string{config.EnvTokenURL: "https://api.vonage.com/token"},
			args: []string{"serve", "--clock-speed", "60", "--store", "STORE"},
			want: []string{"--clock-speed works only in sandbox mode", config.EnvRedirectURL},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.env = tc.env
			for i, a := range tc.args {
				if a == "STORE" {
					tc.args[i] = t.TempDir()
				}
			}
			r := h.run("", tc.args...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want %d\n%s", r.code, ExitUsage, r.all())
			}
			if !strings.Contains(r.stderr, "configuration problems:") {
				t.Errorf("stderr: %s", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout: %s", r.stdout)
			}
		})
	}
}

func TestConsentURL(t *testing.T) {
	h := newHarness(t)
	r := h.run("", "consent-url")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	link := lastLine(r.stdout)
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, h.env[config.EnvAuthorizeURL]+"?") {
		t.Fatalf("last line of stdout is not the authorize URL: %q", link)
	}
	q := u.Query()
	if q.Get("client_id") != testClientID || q.Get("redirect_uri") != testRedirect || q.Get("state") == "" || q.Get("response_type") != "code" {
		t.Errorf("authorize URL query: %v", q)
	}
	for _, want := range []string{"Open this link", "expires at 2026-03-01 10:15:00 UTC (in 15m 0s)", testRedirect} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
	if _, err := h.sb.Approve(link); err != nil {
		t.Errorf("the sandbox refuses the link: %v", err)
	}

	r = h.run("", "consent-url", "--json")
	var got struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitOK {
		t.Fatalf("exit %d, json %v: %s", r.code, err, r.stdout)
	}
	if !strings.HasPrefix(got.URL, h.env[config.EnvAuthorizeURL]) || !got.ExpiresAt.Equal(start.Add(15*time.Minute)) {
		t.Errorf("json: %+v", got)
	}

	// Without credentials: a configuration error with the next step.
	h.store = memstore.New(vbctoken.Credentials{})
	r = h.run("", "consent-url")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "client credentials not configured") || !strings.Contains(r.stderr, "credentials.json") {
		t.Errorf("no credentials: exit %d: %s", r.code, r.stderr)
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(h *harness)
		code   int
		golden string
	}{
		{name: "not connected", setup: func(*harness) {}, code: ExitReconsent, golden: "status-not-connected.txt"},
		{name: "connected", setup: func(h *harness) { h.connect(); h.clock.Advance(2 * time.Hour) }, code: ExitOK, golden: "status-connected.txt"},
		{name: "refresh due", setup: func(h *harness) { h.connect(); h.clock.Advance(23 * time.Hour) }, code: ExitOK, golden: "status-due.txt"},
		{name: "refresh token expired", setup: func(h *harness) { h.connect(); h.clock.Advance(8 * 24 * time.Hour) }, code: ExitReconsent, golden: "status-expired.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			r := h.run("", "status")
			if r.code != tc.code {
				t.Errorf("exit %d, want %d: %s", r.code, tc.code, r.all())
			}
			if r.stderr != "" {
				t.Errorf("stderr: %s", r.stderr)
			}
			golden(t, tc.golden, r.stdout)

			r = h.run("", "status", "--json")
			var st vbctoken.Status
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
				t.Fatalf("status --json: %v: %s", err, r.stdout)
			}
			if r.code != tc.code || st.Connected != (tc.code == ExitOK) || !st.Now.Equal(h.clock.Now()) {
				t.Errorf("status --json: exit %d, %+v", r.code, st)
			}
		})
	}
}

// status (and every other command) never prints a token, whatever happened before.
func TestStatusNeverPrintsASecret(t *testing.T) {
	h := newHarness(t)
	h.env[EnvPassword] = testPassword
	var outputs []string
	record := func(r result) { outputs = append(outputs, r.all()) }
	h.connect()
	for range 3 {
		h.clock.Advance(23 * time.Hour)
		record(h.run("", "refresh"))
		record(h.run("", "refresh", "--force", "--json"))
	}
	record(h.run("", "login", "--username", testUser))
	record(h.run("", "login", "--username", testUser, "--json"))
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"status", "-v"}, {"status", "--json", "-v"}} {
		record(h.run("", args...))
	}
	h.clock.Advance(30 * 24 * time.Hour)
	record(h.run("", "status"))
	record(h.run("", "refresh", "--json", "-v"))

	secrets := h.secrets()
	if len(secrets) < 12 {
		t.Fatalf("only %d secrets issued; the scenario did not run", len(secrets))
	}
	for i, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %d contains a secret:\n%s", i, out)
			}
		}
	}
}

func TestRefresh(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(h *harness)
		args    []string
		code    int
		outcome vbctoken.Outcome
		golden  string
		stderr  string
	}{
		{name: "not connected", setup: func(*harness) {}, args: []string{"refresh"}, code: ExitReconsent, outcome: vbctoken.OutcomeReconsent, stderr: nextStepConsent},
		{name: "fresh pair is skipped", setup: func(h *harness) { h.connect(); h.clock.Advance(time.Hour) }, args: []string{"refresh"}, code: ExitOK, outcome: vbctoken.OutcomeSkipped, golden: "refresh-skipped.txt"},
		{name: "forced", setup: func(h *harness) { h.connect(); h.clock.Advance(time.Hour) }, args: []string{"refresh", "--force"}, code: ExitOK, outcome: vbctoken.OutcomeRefreshed, golden: "refresh-forced.txt"},
		{name: "access expiring", setup: func(h *harness) { h.connect(); h.clock.Advance(23 * time.Hour) }, args: []string{"refresh"}, code: ExitOK, outcome: vbctoken.OutcomeRefreshed, golden: "refresh-due.txt"},
		{name: "chain revoked at VBC", setup: func(h *harness) {
			h.connect()
			for _, p := range h.sb.Issued() {
				h.sb.Revoke(p.RefreshToken)
			}
		}, args: []string{"refresh", "--force"}, code: ExitReconsent, outcome: vbctoken.OutcomeReconsent, stderr: nextStepConsent},
		{name: "VBC unavailable", setup: func(h *harness) {
			h.connect()
			h.sb.SetFaults(func(_ *http.Request, _ string) vbcsandbox.Fault { return vbcsandbox.Fault{Kind: vbcsandbox.Status503} })
		}, args: []string{"refresh", "--force"}, code: ExitTransient, outcome: vbctoken.OutcomeInDoubt, stderr: "try again in a few minutes"},
		{name: "bad client secret", setup: func(h *harness) {
			h.connect()
			h.store = withCredentials(t, h.store, vbctoken.Credentials{ClientID: testClientID, ClientSecret: "wrong"})
		}, args: []string{"refresh", "--force"}, code: ExitFailure, stderr: "check the consumer key and secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				h := newHarness(t)
				tc.setup(h)
				args := tc.args
				if asJSON {
					args = append(append([]string(nil), args...), "--json")
				}
				r := h.run("", args...)
				if r.code != tc.code {
					t.Fatalf("%v: exit %d, want %d:\n%s", args, r.code, tc.code, r.all())
				}
				if tc.stderr != "" && !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.stderr)) {
					t.Errorf("%v: stderr lacks %q:\n%s", args, tc.stderr, r.stderr)
				}
				if !asJSON {
					if tc.golden != "" {
						golden(t, tc.golden, r.stdout)
					}
					continue
				}
				var got struct {
					vbctoken.Result
					Error    string `json:"error"`
					ExitCode int    `json:"exit_code"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatalf("%v: %v: %q", args, err, r.stdout)
				}
				if got.Outcome != tc.outcome || (tc.code != ExitOK) != (got.Error != "") || (tc.code != ExitOK && got.ExitCode != tc.code) {
					t.Errorf("%v: json %+v", args, got)
				}
			}
		})
	}
}

// withCredentials returns a store holding old's pair and creds.
func withCredentials(t *testing.T, old *memstore.Store, creds vbctoken.Credentials) *memstore.Store {
	t.Helper()
	v, err := old.LoadPair(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data, err := vbctoken.EncodePair(v.Pair)
	if err != nil {
		t.Fatal(err)
	}
	s := memstore.New(creds)
	s.SetRawPair(data)
	return s
}

func TestLogin(t *testing.T) {
	tests := []struct {
		name     string
		env      string
		stdin    string
		username string
		code     int
		want     string
	}{
		{name: "password from the environment", env: testPassword, username: testUser, code: ExitOK, want: "Connected with the password grant as alice@vbc.prod."},
		{name: "password from stdin", stdin: testPassword + "\n", username: testUser, code: ExitOK, want: "as alice@vbc.prod"},
		{name: "stdin without newline, CRLF tolerated", stdin: testPassword + "\r\n", username: "alice@vbc.prod", code: ExitOK, want: "as alice@vbc.prod"},
		{name: "environment wins over stdin", env: testPassword, stdin: "wrong\n", username: testUser, code: ExitOK, want: "as alice@vbc.prod"},
		{name: "wrong password", stdin: "wrong\n", username: testUser, code: ExitFailure, want: "grant rejected"},
		{name: "no password at all", username: testUser, code: ExitUsage, want: "no password: set VBC_PASSWORD or write the password on stdin"},
		{name: "unknown user", env: testPassword, username: "bob", code: ExitFailure, want: "grant rejected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.env != "" {
				h.env[EnvPassword] = tc.env
			}
			r := h.run(tc.stdin, "login", "--username", tc.username)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", r.code, tc.code, r.all())
			}
			if !strings.Contains(r.all(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, r.all())
			}
			if strings.Contains(r.all(), testPassword) {
				t.Errorf("the password was printed")
			}
			st := h.run("", "status", "--json")
			if (st.code == ExitOK) != (tc.code == ExitOK) {
				t.Errorf("status after login: exit %d", st.code)
			}
			if tc.code == ExitOK && !strings.Contains(st.stdout, `"grant": "password"`) {
				t.Errorf("status after login: %s", st.stdout)
			}
		})
	}

	h := newHarness(t)
	h.env[EnvPassword] = testPassword
	r := h.run("", "login", "--username", testUser, "--json")
	var got struct {
		vbctoken.Result
		Username string `json:"username"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitOK {
		t.Fatalf("exit %d, %v: %s", r.code, err, r.stdout)
	}
	if got.Username != "alice@vbc.prod" || got.Outcome != vbctoken.OutcomeConnected || got.Grant != vbctoken.GrantPassword {
		t.Errorf("json: %+v", got)
	}
}

// The commands work the same on the file store that `make local` uses.
func TestFileStore(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(t.TempDir(), "store")
	fs, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.SaveCredentials(context.Background(), vbctoken.Credentials{ClientID: testClientID, ClientSecret: testClientSecret}); err != nil {
		t.Fatal(err)
	}
	runFile := func(stdin string, args ...string) result {
		var out, errOut strings.Builder
		a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
			getenv: func(k string) string { return h.env[k] }, now: h.clock.Now,
			storeRetry: vbctoken.RetryPolicy{Sleep: noSleep}, clientRetry: vbctoken.RetryPolicy{Sleep: noSleep}}
		return result{a.run(context.Background(), args), out.String(), errOut.String()}
	}
	if r := runFile("", "status", "--store", dir); r.code != ExitReconsent || !strings.Contains(r.stdout, "files in "+dir) {
		t.Fatalf("status: %d %s", r.code, r.all())
	}
	if r := runFile(testPassword+"\n", "login", "--store", dir, "--username", testUser); r.code != ExitOK {
		t.Fatalf("login: %d %s", r.code, r.all())
	}
	h.clock.Advance(23 * time.Hour)
	if r := runFile("", "refresh", "--store", dir); r.code != ExitOK || !strings.Contains(r.stdout, "Refreshed") {
		t.Fatalf("refresh: %d %s", r.code, r.all())
	}
	if r := runFile("", "status", "--store", dir); r.code != ExitOK || !strings.Contains(r.stdout, "refresh_token (refreshed by the keeper)") {
		t.Fatalf("status: %d %s", r.code, r.all())
	}
	for _, name := range []string{"credentials.json", "pair.json", "access.json"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", name, info.Mode(), err)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitFailure},
		{&config.Error{Problems: []string{"x"}}, ExitUsage},
		{fmt.Errorf("login: %w", vbctoken.ErrBadInput), ExitUsage},
		{fmt.Errorf("consent url: %w", vbctoken.ErrNoCredentials), ExitUsage},
		{fmt.Errorf("refresh: %w", vbctoken.ErrReconsentRequired), ExitReconsent},
		{fmt.Errorf("refresh: %w: %w", vbctoken.ErrReconsentRequired, vbctoken.ErrInvalidGrant), ExitReconsent},
		{&vbctoken.UpstreamError{Op: "refresh", Kind: vbctoken.ErrTransient}, ExitTransient},
		{fmt.Errorf("load pair: %w", context.DeadlineExceeded), ExitTransient},
		{&vbctoken.UpstreamError{Op: "refresh", Kind: vbctoken.ErrBadClient}, ExitFailure},
		{&vbctoken.SchemaError{What: "pair", Version: 2}, ExitFailure},
	} {
		if got := exitCode(tc.err); got != tc.code {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
}

func TestExitCodesOfPermanentAndLocalErrors(t *testing.T) {
	dnsErr := &net.DNSError{Err: "no such host", Name: "api.vonage.example", IsNotFound: true}
	for _, tc := range []struct {
		name string
		err  error
		code int
		hint string
	}{
		{"no store", &noStoreError{Dir: ".vbctoken", Why: "does not exist"}, ExitNoStore, "VBC_TOKEN_SECRET_ID"},
		{"sandbox store without serve", &noStoreError{Dir: "s", SandboxIdle: true}, ExitNoStore, "vbctoken serve --store s"},
		{"DNS: no such host, through the client's transient kind",
			&vbctoken.UpstreamError{Op: "refresh", Kind: vbctoken.ErrTransient, Err: &url.Error{Op: "Post", URL: "https://api.vonage.example/token", Err: &net.OpError{Op: "dial", Err: dnsErr}}},
			ExitUsage, "DNS knows no host api.vonage.example"},
		{"DNS timeout stays transient", &vbctoken.UpstreamError{Op: "refresh", Kind: vbctoken.ErrTransient, Err: &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}}, ExitTransient, "Try again"},
		{"AWS profile", &awsSetupError{What: "AWS_PROFILE names the profile", Fix: "aws configure list-profiles"}, ExitUsage, "list-profiles"},
		{"AWS access denied", fmt.Errorf("load pair: %w", &smstore.Error{Op: "GetSecretValue", SecretID: "arn:pair", Code: "AccessDeniedException"}), ExitUsage, "secretsmanager:GetSecretValue"},
		{"AWS credentials refused", &smstore.Error{Op: "GetSecretValue", SecretID: "p", Code: "UnrecognizedClientException"}, ExitUsage, "aws sso login"},
		{"AWS session expired", &smstore.Error{Op: "GetSecretValue", SecretID: "p", Code: "ExpiredTokenException"}, ExitUsage, "expired"},
		{"AWS secret missing", &smstore.Error{Op: "GetSecretValue", SecretID: "p", Code: "ResourceNotFoundException", Kind: vbctoken.ErrNotFound}, ExitUsage, "No secret p"},
		{"AWS throttled", &smstore.Error{Op: "GetSecretValue", SecretID: "p", Code: "ThrottlingException", Kind: vbctoken.ErrTransient}, ExitTransient, "Try again"},
		{"store held by a serve", &storeBusyError{Dir: "d", Other: serveInfo{PID: 7, URL: "http://127.0.0.1:1"}}, ExitFailure, "http://127.0.0.1:1"},
		{"what the serve said", &remoteError{Msg: "refresh: re-consent required", Code: ExitReconsent, Hint: "hint from serve"}, ExitReconsent, "hint from serve"},
		{"damaged pair", fmt.Errorf("load pair: %w", vbctoken.ErrMalformedSecret), ExitFailure, "vbctoken reset --store d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.code {
				t.Errorf("exitCode = %d, want %d", got, tc.code)
			}
			if hint := hintFor(tc.err, "d", ""); !strings.Contains(hint, tc.hint) {
				t.Errorf("hint %q lacks %q", hint, tc.hint)
			}
		})
	}
}

// A token URL whose host DNS does not know is a configuration error (exit 2), never
// "try again in a few minutes".
func TestUnknownHostIsPermanent(t *testing.T) {
	h := newHarness(t)
	h.connect()
	h.env[config.EnvTokenURL] = "https://vbc-token.invalid/token"
	r := h.run("", "refresh", "--force")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "DNS knows no host vbc-token.invalid") || strings.Contains(r.stderr, "Try again") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

// Errors name what was being done once: no "refresh: refresh:" or "file store: file store".
func TestErrorsDoNotRepeatPrefixes(t *testing.T) {
	h := newHarness(t)
	outputs := []string{h.run("", "refresh").stderr}
	h.store.SetRawPair([]byte("{damaged"))
	outputs = append(outputs, h.run("", "refresh").stderr, h.run("", "status").stderr)
	for _, out := range outputs {
		for _, p := range []string{"refresh: refresh:", "status: status:", "file store: file store", "consent url: consent url"} {
			if strings.Contains(out, p) {
				t.Errorf("%q repeats %q", out, p)
			}
		}
	}
}

// --json gets a JSON error object for usage and configuration errors too, and a consent
// URL keeps its "&".
func TestJSONErrorsAndURLs(t *testing.T) {
	h := newHarness(t)
	h.env[config.EnvPKCE] = "maybe"
	for _, args := range [][]string{{"status", "--json"}, {"refresh", "--json", "--timeout", "-1s"}, {"status", "--json", "--frob"}} {
		r := h.run("", args...)
		var got problemsJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitUsage || got.ExitCode != ExitUsage || len(got.Problems) == 0 || got.Error == "" {
			t.Errorf("%v: exit %d, %v, %q", args, r.code, err, r.stdout)
		}
	}
	delete(h.env, config.EnvPKCE)
	r := h.run("", "consent-url", "--json")
	if r.code != ExitOK || !strings.Contains(r.stdout, "&") || strings.Contains(r.stdout, `\u0026`) {
		t.Errorf("consent-url --json: %s", r.stdout)
	}
}

// AWS configuration problems come out as what is wrong and how to fix it, exit 2, never
// as raw SDK text with exit 1.
func TestAWSSetupErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	env := map[string]string{config.EnvCredentialsSecretID: "vbc/creds", config.EnvTokenSecretID: "vbc/pair", config.EnvAccessSecretID: "vbc/access"}

	for _, tc := range []struct {
		name  string
		setup func()
		want  []string
	}{
		{"unknown profile", func() { t.Setenv("AWS_PROFILE", "nope") }, []string{`the profile "nope"`, "aws configure list-profiles"}},
		{"no region", func() { t.Setenv("AWS_PROFILE", "") }, []string{"no AWS region", "AWS_REGION"}},
		{"no credentials", func() { t.Setenv("AWS_REGION", "eu-west-1") }, []string{"no usable AWS credentials", "aws sso login"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			r := runCLI(t, env, nil, "status")
			if r.code != ExitUsage {
				t.Errorf("exit %d, want %d: %s", r.code, ExitUsage, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			r = runCLI(t, env, nil, "status", "--json")
			var got struct {
				Error    string `json:"error"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ExitCode != ExitUsage {
				t.Errorf("--json: %v %q", err, r.stdout)
			}
		})
	}
}

// `vbctoken status` says when self-heal is restoring a lost chain, and when it halted.
func TestStatusShowsSelfHeal(t *testing.T) {
	now := start
	lost := vbctoken.Status{Now: now, Reason: vbctoken.ReasonRejected, Grant: vbctoken.GrantRefreshToken,
		ObtainedAt: now.Add(-5 * time.Hour), RefreshExpiresAt: now.Add(6 * 24 * time.Hour), SelfHealAt: now.Add(-10 * time.Minute)}
	halted := lost
	halted.SelfHealHalted = true
	for _, tc := range []struct {
		name string
		st   vbctoken.Status
		want []string
	}{
		{"restoring", lost, []string{"self-heal is restoring the chain", "got no usable answer; the refresher tries again from 2026-03-01 10:20:00 UTC"}},
		{"halted", halted, []string{"the chain is gone", "halted: VBC rejected its login"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			writeStatus(&out, tc.st, "file store", "")
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("status lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
