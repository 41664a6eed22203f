package vbcsandbox

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Grant types the token endpoint accepts.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantPassword          = "password"
)

const maxFormBytes = 64 << 10

// TokenResponse is the JSON body of a successful token response, field for field as VBC
// documents it.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// oauthError is an RFC 6749 §5.2 error; Status is the HTTP status it is sent with.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func errRequest(desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

func errGrant(desc string) *oauthError {
	return &oauthError{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

func errClient(desc string) *oauthError {
	return &oauthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc}
}

func errServer(desc string) *oauthError {
	return &oauthError{Status: http.StatusInternalServerError, Code: "server_error", Description: desc}
}

// issue is a processed grant: the response to send, and where its pair sits in the log:
// logIndex is the pair's index in Sandbox.issued when newly issued, reuse the index of the
// pair handed out again (else -1), reuseAt the index in that pair's Reuses.
type issue struct {
	resp     TokenResponse
	subject  string
	clientID string
	iat, exp time.Time
	logIndex int
	reuse    int
	reuseAt  int
	release  func() // called, unlocked, once the answer is written; may be nil
}

// tokenReq is one POST /token request.
type tokenReq struct {
	r    *http.Request
	form url.Values
	seq  int    // from 1, every token request
	tag  string // TagHeader
}

func (s *Sandbox) handleToken(w http.ResponseWriter, r *http.Request) {
	form, perr := parseTokenForm(w, r)
	grant := form.Get("grant_type")

	s.mu.Lock()
	s.stats.Requests[grant]++
	s.reqSeq++
	req := &tokenReq{r: r, form: form, seq: s.reqSeq, tag: r.Header.Get(TagHeader)}
	s.mu.Unlock()

	fault := s.nextFault(r, grant)
	switch fault.Kind {
	case NoFault, ProcessedButLost:
	case Delay:
		d := fault.Delay
		if d <= 0 {
			d = s.opts.FaultDelay
		}
		if !sleepCtx(r.Context(), d) {
			return // the client gave up: nothing processed, nothing to answer
		}
	default:
		s.writeFault(w, fault)
		return
	}

	var res *issue
	oerr := perr
	if oerr == nil {
		res, oerr = s.processGrant(req, grant)
	}
	if res != nil && res.release != nil {
		defer res.release()
	}
	idToken := ""
	if oerr == nil && res.resp.Scope == "openid" {
		var err error
		if idToken, err = s.signIDToken(res.subject, res.clientID, res.iat, res.exp); err != nil {
			oerr = errServer("could not sign the id_token")
		}
	}

	s.mu.Lock()
	if oerr != nil {
		s.stats.Errors[oerr.Code]++
	} else {
		s.stats.Successes[grant]++
		if fault.Kind == ProcessedButLost {
			if res.logIndex >= 0 {
				s.issued[res.logIndex].Lost = true
			}
			if res.reuse >= 0 {
				s.issued[res.reuse].Reuses[res.reuseAt].Lost = true
			}
		}
	}
	s.mu.Unlock()

	if fault.Kind == ProcessedButLost {
		s.writeFault(w, fault)
		return
	}
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	res.resp.IDToken = idToken
	writeJSON(w, http.StatusOK, res.resp)
}

// parseTokenForm reads the urlencoded body. It always returns a non-nil form (possibly
// empty) so the grant type can be counted even for a malformed request.
func parseTokenForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return url.Values{}, errRequest("content type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return url.Values{}, errRequest("malformed form body")
	}
	for name, vs := range r.PostForm {
		if len(vs) > 1 {
			return r.PostForm, errRequest("parameter " + name + " is repeated")
		}
	}
	return r.PostForm, nil
}

func (s *Sandbox) processGrant(req *tokenReq, grant string) (*issue, *oauthError) {
	if s.wso2() {
		return s.wso2Grant(req, grant)
	}
	r, form := req.r, req.form
	switch grant {
	case "":
		return nil, errRequest("grant_type is missing")
	case GrantAuthorizationCode:
		return s.grantCode(req, r, form)
	case GrantRefreshToken:
		return s.grantRefresh(req, r, form)
	case GrantPassword:
		return s.grantPassword(req, r, form)
	default:
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type",
			Description: "grant_type must be authorization_code, refresh_token or password"}
	}
}

// authBasic authenticates the client with HTTP Basic only, as VBC's code exchange does.
func (s *Sandbox) authBasic(r *http.Request, form url.Values) (Client, *oauthError) {
	if form.Has("client_secret") {
		return Client{}, errClient("this grant takes client credentials in the Authorization header (Basic), not in the body")
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		return Client{}, errClient("client authentication with HTTP Basic is required")
	}
	if bid := form.Get("client_id"); bid != "" && bid != id && bid != unescape(id) {
		return Client{}, errClient("client_id in the body differs from the Authorization header")
	}
	// RFC 6749 §2.3.1 form-encodes id and secret before Base64; VBC's docs do not. Accept both.
	if c, ok := s.checkClient(id, secret); ok {
		return c, nil
	}
	if c, ok := s.checkClient(unescape(id), unescape(secret)); ok {
		return c, nil
	}
	return Client{}, errClient("unknown client or wrong secret")
}

// authBody authenticates the client from client_id and client_secret in the body only,
// as VBC's refresh and password grants do.
func (s *Sandbox) authBody(r *http.Request, form url.Values) (Client, *oauthError) {
	if r.Header.Get("Authorization") != "" {
		return Client{}, errClient("this grant takes client_id and client_secret in the body, not an Authorization header")
	}
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if id == "" || secret == "" {
		return Client{}, errClient("client_id and client_secret are required in the body")
	}
	if c, ok := s.checkClient(id, secret); ok {
		return c, nil
	}
	return Client{}, errClient("unknown client or wrong secret")
}

func (s *Sandbox) checkClient(id, secret string) (Client, bool) {
	c, ok := s.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return Client{}, false
	}
	return c, true
}

func unescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

func (s *Sandbox) grantCode(req *tokenReq, r *http.Request, form url.Values) (*issue, *oauthError) {
	c, oerr := s.authBasic(r, form)
	if oerr != nil {
		return nil, oerr
	}
	code, redirect := form.Get("code"), form.Get("redirect_uri")
	if code == "" || redirect == "" {
		return nil, errRequest("code and redirect_uri are required")
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok := s.codes[code]
	switch {
	case !ok:
		return nil, errGrant("unknown authorization code")
	case ac.clientID != c.ID:
		return nil, errGrant("authorization code was issued to another client")
	case ac.used:
		if ac.chain != nil {
			s.stats.CodeReplays++
		}
		if s.opts.RevokeOnCodeReuse && ac.chain != nil && !ac.chain.revoked {
			s.stats.CodeReplayKills++
			s.killChainLocked(ac.chain, now, KillCodeReplay, -1)
		}
		return nil, errGrant("authorization code was already used")
	case !now.Before(ac.expiresAt):
		return nil, errGrant("authorization code expired")
	}
	ac.used = true // any redemption attempt burns the code
	if ac.redirectURI != redirect {
		return nil, errGrant("redirect_uri does not match the authorization request")
	}
	if ac.challenge != "" {
		v := form.Get("code_verifier")
		if v == "" {
			return nil, errGrant("code_verifier is required: the authorization request had a code_challenge")
		}
		sum := sha256.Sum256([]byte(v))
		if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(ac.challenge)) != 1 {
			return nil, errGrant("code_verifier does not match the code_challenge")
		}
	}
	ch := &chain{clientID: c.ID, subject: ac.subject, scope: ac.scope}
	res, oerr := s.issueLocked(req, ch, now, GrantAuthorizationCode, nil)
	if oerr != nil {
		return nil, oerr
	}
	ac.chain = ch
	if s.opts.RevokeOnConsent {
		for _, old := range s.chains {
			if old != ch && old.clientID == c.ID {
				s.killChainLocked(old, now, KillConsent, res.logIndex)
			}
		}
	}
	return res, nil
}

func (s *Sandbox) grantRefresh(req *tokenReq, r *http.Request, form url.Values) (*issue, *oauthError) {
	c, oerr := s.authBody(r, form)
	if oerr != nil {
		return nil, oerr
	}
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, errRequest("refresh_token is required")
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.refresh[rt]
	switch {
	case !ok:
		return nil, errGrant("unknown refresh token")
	case e.chain.clientID != c.ID:
		return nil, errGrant("refresh token was issued to another client")
	case e.chain.revoked:
		return nil, errGrant("refresh token was revoked")
	case e.used:
		return nil, errGrant("refresh token was already used")
	case !now.Before(e.expiresAt):
		return nil, errGrant("refresh token expired")
	}
	e.used, e.usedAt = true, now
	if s.opts.RefreshRevokesAccess {
		for _, a := range e.chain.accesses {
			a.revoked = true
		}
	}
	return s.issueLocked(req, e.chain, now, GrantRefreshToken, e)
}

func (s *Sandbox) grantPassword(req *tokenReq, r *http.Request, form url.Values) (*issue, *oauthError) {
	c, oerr := s.authBody(r, form)
	if oerr != nil {
		return nil, oerr
	}
	user, pass := form.Get("username"), form.Get("password")
	if user == "" || pass == "" {
		return nil, errRequest("username and password are required")
	}
	if !strings.HasSuffix(user, UsernameSuffix) {
		return nil, errGrant("username must end in " + UsernameSuffix)
	}
	want, ok := s.opts.Users[user]
	if !ok {
		want, ok = s.opts.Users[strings.TrimSuffix(user, UsernameSuffix)]
	}
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
		return nil, errGrant("invalid user credentials")
	}
	scope := grantedScope(form.Get("scope"))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opts.NoTokenReuse {
		if a := s.latest[reuseKey{c.ID, user, scope}]; a != nil && a.validAt(now) && s.refresh[a.refresh].liveAt(now) {
			return s.reuseLocked(req, a, now, GrantPassword), nil
		}
	}
	return s.issueLocked(req, &chain{clientID: c.ID, subject: user, scope: scope}, now, GrantPassword, nil)
}

// reuseLocked answers a grant with the already-issued pair of access token a and records
// the reuse.
func (s *Sandbox) reuseLocked(req *tokenReq, a *accessEntry, now time.Time, grant string) *issue {
	s.stats.Reused++
	expiresIn := int64(a.expiresAt.Sub(now) / time.Second)
	p := &s.issued[a.pair]
	p.Reuses = append(p.Reuses, Reuse{Grant: grant, At: now, Request: req.seq, Tag: req.tag, ExpiresIn: expiresIn})
	return &issue{
		resp: TokenResponse{
			AccessToken:  a.token,
			RefreshToken: a.refresh,
			Scope:        a.chain.scope,
			TokenType:    "Bearer",
			ExpiresIn:    expiresIn,
		},
		subject: a.chain.subject, clientID: a.chain.clientID, iat: now, exp: a.expiresAt,
		logIndex: -1, reuse: a.pair, reuseAt: len(p.Reuses) - 1,
	}
}

// grantedScope is what VBC echoes: "openid" when asked for, else "default".
func grantedScope(requested string) string {
	for _, f := range strings.Fields(requested) {
		if f == "openid" {
			return "openid"
		}
	}
	return "default"
}

// issueLocked mints a new pair in ch and logs it. spent is the refresh token a refresh
// grant consumed (nil for a chain's first pair). A chain not yet registered (id 0) is
// registered only once its first pair exists.
func (s *Sandbox) issueLocked(req *tokenReq, ch *chain, now time.Time, grant string, spent *refreshEntry) (*issue, *oauthError) {
	return s.mintLocked(req, ch, now, grant, spent, nil)
}

// mintLocked mints a new access token in ch and logs the pair. With keep, the pair keeps
// that refresh token (ModeWSO2's renewed access); otherwise a new refresh token is minted.
func (s *Sandbox) mintLocked(req *tokenReq, ch *chain, now time.Time, grant string, spent, keep *refreshEntry) (*issue, *oauthError) {
	at, err := s.newValueLocked()
	if err != nil {
		return nil, errServer("could not generate a token")
	}
	a := &accessEntry{token: at, chain: ch, expiresAt: now.Add(s.opts.AccessTTL)}
	s.access[at] = a // reserve before drawing the next value
	var rt string
	prev := -1
	if keep != nil {
		rt, prev = ch.current, keep.pair
	} else {
		if rt, err = s.newValueLocked(); err != nil {
			delete(s.access, at)
			return nil, errServer("could not generate a token")
		}
		if spent != nil {
			prev = spent.pair
		}
	}
	if ch.id == 0 {
		s.chains = append(s.chains, ch)
		ch.id = len(s.chains)
	}
	idx := len(s.issued)
	a.refresh, a.pair = rt, idx
	re := keep
	if re == nil {
		re = &refreshEntry{chain: ch, issuedAt: now, expiresAt: now.Add(s.opts.RefreshTTL)}
		s.refresh[rt] = re
	}
	re.pair = idx
	ch.current = rt
	ch.accesses = append(ch.accesses, a)
	s.latest[reuseKey{ch.clientID, ch.subject, ch.scope}] = a
	p := IssuedPair{
		Seq: idx + 1, Chain: ch.id, Grant: grant, ClientID: ch.clientID, Subject: ch.subject,
		AccessToken: at, RefreshToken: rt, IssuedAt: now, RefreshIssuedAt: re.issuedAt,
		Request: req.seq, Tag: req.tag, RenewedAccess: keep != nil, Prev: prev + 1,
	}
	if spent != nil {
		p.Replaces = s.issued[spent.pair].RefreshToken
	}
	s.issued = append(s.issued, p)
	return &issue{
		resp: TokenResponse{
			AccessToken:  at,
			RefreshToken: rt,
			Scope:        ch.scope,
			TokenType:    "Bearer",
			ExpiresIn:    int64(s.opts.AccessTTL / time.Second),
		},
		subject: ch.subject, clientID: ch.clientID, iat: now, exp: a.expiresAt,
		logIndex: idx, reuse: -1,
	}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="vbcsandbox"`)
	}
	writeJSON(w, e.Status, e)
}

// sleepCtx sleeps for d and reports whether it did so without ctx ending first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
