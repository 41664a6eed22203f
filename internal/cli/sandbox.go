package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// sandboxStateVersion is the schema version of sandbox.json.
const sandboxStateVersion = 1

// maxSavedChains bounds sandbox.json: each consent starts a chain, and old ones die after
// seven sandbox days anyway.
const maxSavedChains = 50

// maxTokenForm bounds a token request's body read by the local sandbox's front.
const maxTokenForm = 64 << 10

// sandboxState is <store>/sandbox.json (mode 0600): what the local VBC sandbox must remember
// for the connection to survive a restart of serve. It holds refresh tokens, so it is as
// secret as pair.json beside it.
//
//	{"version":1,"clock":"2026-03-08T10:00:00Z",
//	 "chains":[{"refresh_token":"…","refresh_expires_at":"2026-03-15T09:00:00Z"}]}
type sandboxState struct {
	Version int `json:"version"`
	// Clock is serve's clock when the state was saved: a sped-up clock resumes from there,
	// so the store's times never lie in the clock's future.
	Clock time.Time `json:"clock"`
	// Chains are the sandbox's live refresh tokens, newest last.
	Chains []savedChain `json:"chains"`
}

// savedChain is one live refresh token of the sandbox.
type savedChain struct {
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	// Subject is the VBC user of the chain: the sandbox keeps one active token per user
	// (WSO2), so each revived chain is seeded as its own user.
	Subject string `json:"subject,omitempty"`
}

// LogValue leaves the token out.
func (c savedChain) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("refresh_expires_at", c.RefreshExpiresAt))
}

// loadSandboxState reads dir/sandbox.json; a missing file is an empty state.
func loadSandboxState(dir string) (sandboxState, error) {
	data, err := os.ReadFile(filepath.Join(dir, sandboxFile))
	if errors.Is(err, fs.ErrNotExist) {
		return sandboxState{Version: sandboxStateVersion}, nil
	}
	if err != nil {
		return sandboxState{}, fmt.Errorf("read %s: %w", sandboxFile, err)
	}
	var st sandboxState
	if err := json.Unmarshal(data, &st); err != nil {
		return sandboxState{}, fmt.Errorf("read %s: %w: %s", sandboxFile, vbctoken.ErrMalformedSecret, err)
	}
	if st.Version != sandboxStateVersion {
		return sandboxState{}, fmt.Errorf("read %s: %w: version %d", sandboxFile, vbctoken.ErrNewerSchema, st.Version)
	}
	return st, nil
}

// knows reports whether the saved sandbox issued rt (and had not seen it used).
func (st sandboxState) knows(rt string) bool {
	return rt != "" && slices.ContainsFunc(st.Chains, func(c savedChain) bool { return c.RefreshToken == rt })
}

// saveSandboxState writes dir/sandbox.json atomically, mode 0600.
func saveSandboxState(dir string, st sandboxState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+sandboxFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", sandboxFile, err)
	}
	defer os.Remove(tmp.Name())
	if err = tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, sandboxFile))
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", sandboxFile, err)
	}
	return nil
}

// localSandbox is serve's VBC sandbox with a memory: vbcsandbox keeps its tokens in memory
// only, so localSandbox saves the live refresh tokens to sandbox.json after every token
// response and revives them in the next serve.
//
// vbcsandbox has no import: a revived refresh token R is mapped to a seed chain that the new
// sandbox starts by an ordinary consent at startup, and the first refresh grant naming R is
// sent to the sandbox naming the seed's token instead. The refresh that follows rotates the
// seed as it would have rotated R, so the keeper's chain goes on, and R stops working once
// used or past its saved expiry, as in the sandbox that issued it.
type localSandbox struct {
	sb      *vbcsandbox.Sandbox
	handler http.Handler
	dir     string
	now     func() time.Time
	log     *slog.Logger

	seeds map[string]bool // seed refresh tokens: internal, never saved; fixed after start

	mu      sync.Mutex
	revived map[string]revivedChain // refresh token of an earlier run → its seed here

	// saveMu orders saves: a state computed earlier never overwrites a later one.
	saveMu sync.Mutex
	saved  []byte // the chains last written
}

type revivedChain struct {
	seed    string
	expires time.Time
	subject string
}

// sandboxSetup is what newLocalSandbox needs.
type sandboxSetup struct {
	dir        string
	creds      vbctoken.Credentials
	redirect   string // serve's callback URL, registered with the sandbox
	scope      string
	now        func() time.Time
	signingKey *rsa.PrivateKey
	log        *slog.Logger
	state      sandboxState // the earlier run's
}

// newLocalSandbox builds the sandbox and revives the earlier run's live chains.
func newLocalSandbox(ctx context.Context, in sandboxSetup) (*localSandbox, error) {
	sb := vbcsandbox.New(vbcsandbox.Options{
		Clients: []vbcsandbox.Client{{ID: in.creds.ClientID, Secret: in.creds.ClientSecret.Reveal(),
			RedirectURLs: []string{in.redirect}, Name: "vbctoken (local)"}},
		Mode:       vbcsandbox.ModeWSO2, // VBC's token server: WSO2 (docs/vbc.md)
		Now:        in.now,
		SigningKey: in.signingKey,
	})
	l := &localSandbox{sb: sb, handler: sb, dir: in.dir, now: in.now, log: in.log,
		revived: map[string]revivedChain{}, seeds: map[string]bool{}}
	now := in.now()
	for _, c := range in.state.Chains {
		if !now.Before(c.RefreshExpiresAt) || c.RefreshToken == "" {
			continue
		}
		seed, err := l.seed(ctx, in.creds, in.redirect, in.scope, c.Subject)
		if err != nil {
			return nil, fmt.Errorf("sandbox mode: revive a chain of the earlier run: %w", err)
		}
		l.revived[c.RefreshToken] = revivedChain{seed: seed, expires: c.RefreshExpiresAt, subject: c.Subject}
		l.seeds[seed] = true
	}
	return l, nil
}

// seed starts a chain in the new sandbox by a consent and a code exchange, through the
// sandbox's own handler (httptest.NewRecorder is only an in-memory ResponseWriter here),
// and returns its refresh token.
func (l *localSandbox) seed(ctx context.Context, creds vbctoken.Credentials, redirect, scope, subject string) (string, error) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	q := url.Values{"response_type": {"code"}, "client_id": {creds.ClientID}, "redirect_uri": {redirect},
		"scope": {scope}, "state": {hex.EncodeToString(nonce)}}
	link := vbcsandbox.AuthorizePath + "?" + q.Encode()
	var cb string
	var err error
	if subject != "" {
		cb, err = l.sb.ApproveAs(link, subject)
	} else {
		cb, err = l.sb.Approve(link)
	}
	if err != nil {
		return "", err
	}
	u, err := url.Parse(cb)
	if err != nil || u.Query().Get("code") == "" {
		return "", fmt.Errorf("the sandbox refused the seed consent: %s", u.Query().Get("error"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {redirect}}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, vbcsandbox.TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(creds.ClientID), url.QueryEscape(creds.ClientSecret.Reveal()))
	rec := httptest.NewRecorder()
	l.sb.ServeHTTP(rec, req)
	var tr vbcsandbox.TokenResponse
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tr) != nil || tr.RefreshToken == "" {
		return "", fmt.Errorf("the sandbox refused the seed's code exchange (HTTP %d)", rec.Code)
	}
	return tr.RefreshToken, nil
}

// ServeHTTP serves the sandbox, sending a revived refresh token's grant to its seed and
// saving the live chains after every token response.
func (l *localSandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != vbcsandbox.TokenPath {
		l.handler.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenForm+1))
	if err != nil || len(body) > maxTokenForm {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"unreadable or oversized body"}`))
		return
	}
	spent := ""
	if form, err := url.ParseQuery(string(body)); err == nil && form.Get("grant_type") == "refresh_token" {
		rt := form.Get("refresh_token")
		l.mu.Lock()
		rc, ok := l.revived[rt]
		l.mu.Unlock()
		if ok && l.now().Before(rc.expires) {
			form.Set("refresh_token", rc.seed)
			body, spent = []byte(form.Encode()), rt
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	l.handler.ServeHTTP(rec, r)
	if rec.status != http.StatusOK {
		return
	}
	l.mu.Lock()
	if spent != "" {
		delete(l.revived, spent)
	}
	l.mu.Unlock()
	if err := l.persist(); err != nil {
		l.log.Error("sandbox mode: cannot save the sandbox's chains; a restart of serve will lose the connection", "error", err)
	}
}

// state returns the sandbox's live chains: those it issued (seeds excepted) and the
// revived ones not used yet.
func (l *localSandbox) state() sandboxState {
	now := l.now()
	st := sandboxState{Version: sandboxStateVersion, Clock: now.UTC()}
	l.mu.Lock()
	for rt, rc := range l.revived {
		if now.Before(rc.expires) {
			st.Chains = append(st.Chains, savedChain{RefreshToken: rt, RefreshExpiresAt: rc.expires.UTC(), Subject: rc.subject})
		}
	}
	l.mu.Unlock()
	slices.SortFunc(st.Chains, func(a, b savedChain) int { return a.RefreshExpiresAt.Compare(b.RefreshExpiresAt) })
	for _, p := range l.sb.Issued() {
		if l.seeds[p.RefreshToken] || !l.sb.IsLiveRefreshToken(p.RefreshToken) {
			continue
		}
		issued := p.RefreshIssuedAt
		if issued.IsZero() {
			issued = p.IssuedAt
		}
		st.Chains = append(st.Chains, savedChain{RefreshToken: p.RefreshToken,
			RefreshExpiresAt: issued.Add(vbcsandbox.DefaultRefreshTTL).UTC(), Subject: p.Subject})
	}
	if n := len(st.Chains); n > maxSavedChains {
		st.Chains = st.Chains[n-maxSavedChains:]
	}
	return st
}

// persist saves the state when it changed (the clock alone is saved at shutdown).
func (l *localSandbox) persist() error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	st := l.state()
	chains, _ := json.Marshal(st.Chains)
	if bytes.Equal(chains, l.saved) {
		return nil
	}
	if err := saveSandboxState(l.dir, st); err != nil {
		return err
	}
	l.saved = chains
	return nil
}

// save writes the state with the clock, whatever changed (at shutdown).
func (l *localSandbox) save() error {
	l.saveMu.Lock()
	l.saved = nil
	l.saveMu.Unlock()
	return l.persist()
}
