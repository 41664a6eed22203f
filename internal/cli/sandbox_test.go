package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// A refresh token saved by an earlier run works once in the new sandbox, like any refresh
// token, and not after its saved expiry; the seed chains behind them are never saved.
func TestLocalSandboxRevivesSavedChains(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	creds := vbctoken.Credentials{ClientID: SandboxClientPrefix + "t", ClientSecret: "s3cret"}
	l, err := newLocalSandbox(context.Background(), sandboxSetup{
		dir: dir, creds: creds, redirect: testRedirect, scope: "openid", now: clock.Now, signingKey: signingKey(),
		log: slog.New(slog.DiscardHandler),
		state: sandboxState{Version: sandboxStateVersion, Chains: []savedChain{
			{RefreshToken: "live-old", RefreshExpiresAt: start.Add(time.Hour)},
			{RefreshToken: "soon-old", RefreshExpiresAt: start.Add(time.Minute)},
			{RefreshToken: "dead-old", RefreshExpiresAt: start.Add(-time.Minute)},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	refresh := func(rt string) (int, vbcsandbox.TokenResponse) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {creds.ClientID}, "client_secret": {"s3cret"}}
		req := httptest.NewRequest(http.MethodPost, vbcsandbox.TokenPath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		l.ServeHTTP(rec, req)
		var tr vbcsandbox.TokenResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &tr)
		return rec.Code, tr
	}
	code, tr := refresh("live-old")
	if code != http.StatusOK || tr.RefreshToken == "" {
		t.Fatalf("revived token: %d", code)
	}
	if code, _ := refresh("live-old"); code != http.StatusBadRequest {
		t.Errorf("a revived token worked twice: %d", code)
	}
	if code, _ := refresh("dead-old"); code != http.StatusBadRequest {
		t.Errorf("an expired saved token worked: %d", code)
	}
	clock.Advance(2 * time.Minute)
	if code, _ := refresh("soon-old"); code != http.StatusBadRequest {
		t.Errorf("a saved token worked after its expiry: %d", code)
	}
	if code, _ := refresh(tr.RefreshToken); code != http.StatusOK {
		t.Errorf("the chain does not go on: %d", code)
	}

	data, err := os.ReadFile(filepath.Join(dir, sandboxFile))
	if err != nil {
		t.Fatal(err)
	}
	saved, err := loadSandboxState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Chains) != 1 || saved.knows("live-old") || saved.knows("soon-old") {
		t.Errorf("saved chains: %s", data)
	}
	for _, p := range l.sb.Issued() {
		if l.seeds[p.RefreshToken] && strings.Contains(string(data), p.RefreshToken) {
			t.Errorf("a seed token was saved")
		}
	}
}

func TestLoadSandboxState(t *testing.T) {
	dir := t.TempDir()
	if st, err := loadSandboxState(dir); err != nil || len(st.Chains) != 0 {
		t.Errorf("missing file: %+v %v", st, err)
	}
	for body, want := range map[string]error{"{bad": vbctoken.ErrMalformedSecret, `{"version":2}`: vbctoken.ErrNewerSchema} {
		if err := os.WriteFile(filepath.Join(dir, sandboxFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadSandboxState(dir); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", body, err, want)
		}
	}
}
