package vbcsandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// WSO2's error descriptions, word for word (sources in doc.go). Callers must branch on the
// error code, never on these: they differ between WSO2 versions and configurations.
const (
	// Refresh grant (RefreshGrantHandler, DefaultRefreshTokenGrantProcessor).
	DescRefreshNotFound     = "Persisted access token data not found"      // unknown, or another client's
	DescRefreshInvalidState = "Invalid refresh token state"                // consumed by a refresh, or revoked
	DescRefreshNotLatest    = "Invalid refresh token value in the request" // expired by a racing refresh
	DescRefreshExpired      = "Refresh token is expired."                  // older than RefreshTTL
	DescServerError         = "Server Error"                               // 500 server_error
	DescCodeInvalid         = "Invalid authorization code received from token request"
	DescCodeInactive        = "Inactive authorization code received from token request"
	DescCodeExpiredRevoked  = "Expired or Revoked authorization code received from token request"
	DescCallbackMismatch    = "Callback url mismatch"
	DescPKCEFailed          = "PKCE validation failed"
	DescClientAuthFailed    = "Client Authentication failed."
	DescDuplicateClientAuth = "Request body and headers contain authorization information"
	DescBadBasicHeader      = `Error decoding authorization header. Space delimited "<authMethod> <base64Hash>" format violated.`
	// DescAuthFailedPrefix is followed by the user name as sent (PasswordGrantHandler).
	DescAuthFailedPrefix = "Authentication failed for "
	// DescLockedPrefix starts the answer to a locked user: WSO2's user-store error code
	// 17003 (USER_IS_LOCKED). The full text, from Identity Server 5.2 (product-is #3694),
	// is DescLockedPrefix + "User account is locked for user : " + name without the tenant
	// + ". cannot login until the account is unlocked " (sic, trailing space).
	DescLockedPrefix = "17003 "
)

func lockedDescription(user string) string {
	return DescLockedPrefix + "User account is locked for user : " + strings.TrimSuffix(user, UsernameSuffix) +
		". cannot login until the account is unlocked "
}

func (s *Sandbox) wso2Grant(req *tokenReq, grant string) (*issue, *oauthError) {
	switch grant {
	case "":
		return nil, errRequest("Missing grant_type parameter value")
	case GrantAuthorizationCode, GrantRefreshToken, GrantPassword:
	default:
		return nil, &oauthError{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: "Unsupported grant_type value"}
	}
	c, oerr := s.wso2Client(req.r, req.form)
	if oerr != nil {
		return nil, oerr
	}
	switch grant {
	case GrantAuthorizationCode:
		return s.wso2Code(req, c)
	case GrantRefreshToken:
		return s.wso2Refresh(req, c)
	default:
		return s.wso2Password(req, c)
	}
}

// wso2Client authenticates the client as WSO2's BasicAuthClientAuthenticator does: from an
// Authorization: Basic header or from client_id and client_secret in the body, either one
// for any grant, never both. The header is base64-decoded and split on ":", with no
// URL-decoding (WSO2 keys and secrets are [A-Za-z0-9_]).
func (s *Sandbox) wso2Client(r *http.Request, form url.Values) (Client, *oauthError) {
	bodyCreds := form.Get("client_id") != "" && form.Get("client_secret") != ""
	var id, secret string
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Basic") {
		if bodyCreds {
			return Client{}, errRequest(DescDuplicateClientAuth)
		}
		parts := strings.Split(strings.TrimSpace(h), " ")
		if len(parts) != 2 {
			return Client{}, errRequest(DescBadBasicHeader)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(parts[1]))
		if err != nil {
			return Client{}, errRequest(DescBadBasicHeader)
		}
		creds := strings.Split(string(raw), ":")
		if len(creds) != 2 || creds[0] == "" || creds[1] == "" {
			return Client{}, errRequest(DescBadBasicHeader)
		}
		id, secret = creds[0], creds[1]
		if bid := form.Get("client_id"); bid != "" && bid != id {
			return Client{}, errClient(DescClientAuthFailed)
		}
	} else if bodyCreds {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	} else {
		return Client{}, errClient(DescClientAuthFailed)
	}
	c, ok := s.checkClient(id, secret)
	if !ok {
		return Client{}, errClient(DescClientAuthFailed)
	}
	return c, nil
}

// wso2Code is AuthorizationCodeGrantHandler: a replayed code revokes the pair it was
// answered with; any exchange attempt spends the code, even one that fails.
func (s *Sandbox) wso2Code(req *tokenReq, c Client) (*issue, *oauthError) {
	code := req.form.Get("code")
	if code == "" {
		return nil, errRequest("Missing parameters: code")
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok := s.codes[code]
	if !ok || ac.clientID != c.ID {
		return nil, errGrant(DescCodeInvalid)
	}
	switch ac.state {
	case codeInactive:
		s.stats.CodeReplays++
		if a := ac.issued; a != nil && !a.chain.revoked && a == a.chain.head() {
			if s.pairAliveLocked(a.pair, now) {
				s.stats.CodeReplayKills++
			}
			s.killChainLocked(a.chain, now, KillCodeReplay, -1)
		} else if a != nil && !a.revoked {
			s.markKilledLocked(a.pair, now, KillCodeReplay, -1)
			a.revoked = true
		}
		return nil, errGrant(DescCodeInactive)
	case codeRevoked:
		return nil, errGrant(DescCodeExpiredRevoked)
	}
	if !now.Before(ac.expiresAt) {
		return nil, errGrant(DescCodeExpiredRevoked)
	}
	ac.used, ac.state = true, codeRevoked // spent, whatever happens next
	if ac.redirectURI != req.form.Get("redirect_uri") {
		return nil, errGrant(DescCallbackMismatch)
	}
	if ac.challenge != "" {
		sum := sha256.Sum256([]byte(req.form.Get("code_verifier")))
		if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(ac.challenge)) != 1 {
			return nil, errGrant(DescPKCEFailed)
		}
	}
	res, oerr := s.wso2IssueLocked(req, c.ID, ac.subject, ac.scope, now, GrantAuthorizationCode)
	if oerr != nil {
		return nil, oerr
	}
	ac.state = codeInactive
	ac.issued = s.access[res.resp.AccessToken]
	ac.chain = ac.issued.chain
	return res, nil
}

// wso2IssueLocked is AbstractAuthorizationGrantHandler.issue: one active token per client,
// user and scope. A valid one (access and refresh token both unexpired) is handed out
// again with its remaining expires_in; if only its access token expired, a new access
// token comes with the same refresh token, which keeps its issue time; otherwise a new
// chain starts.
func (s *Sandbox) wso2IssueLocked(req *tokenReq, clientID, subject, scope string, now time.Time, grant string) (*issue, *oauthError) {
	if a := s.latest[reuseKey{clientID, subject, scope}]; a != nil {
		if re := s.refresh[a.refresh]; re.liveAt(now) && a == a.chain.head() {
			if a.validAt(now) {
				return s.reuseLocked(req, a, now, grant), nil
			}
			if !a.revoked {
				s.stats.RenewedAccess++
				return s.mintLocked(req, a.chain, now, grant, nil, re)
			}
		}
	}
	return s.issueLocked(req, &chain{clientID: clientID, subject: subject, scope: scope}, now, grant, nil)
}

// wso2Refresh is RefreshGrantHandler: the old pair (access and refresh token) dies the
// moment the new one is issued. A consumed refresh token presented again within
// ClusterLag, or while the request that consumed it is still being answered, is a race
// across the cluster's nodes, settled by the RaceFunc.
func (s *Sandbox) wso2Refresh(req *tokenReq, c Client) (*issue, *oauthError) {
	rt := req.form.Get("refresh_token")
	if rt == "" {
		return nil, errRequest("Missing parameters: refresh_token")
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.refresh[rt]
	switch {
	case !ok || e.chain.clientID != c.ID:
		return nil, errGrant(DescRefreshNotFound)
	case e.chain.revoked:
		return nil, errGrant(DescRefreshInvalidState)
	case e.killed:
		return nil, errGrant(DescRefreshNotLatest)
	case e.used:
		inWindow := e.inflight > 0 || (s.opts.ClusterLag > 0 && now.Sub(e.usedAt) < s.opts.ClusterLag)
		if !inWindow {
			return nil, errGrant(DescRefreshInvalidState)
		}
		return s.raceLocked(req, e, now)
	case !now.Before(e.expiresAt):
		return nil, errGrant(DescRefreshExpired)
	}
	e.used, e.usedAt = true, now
	for _, a := range e.chain.accesses {
		a.revoked = true
	}
	res, oerr := s.issueLocked(req, e.chain, now, GrantRefreshToken, e)
	if oerr != nil {
		return nil, oerr
	}
	e.inflight++
	res.release = func() {
		s.mu.Lock()
		e.inflight--
		s.mu.Unlock()
	}
	return res, nil
}

// raceLocked settles a refresh of consumed token e inside the cluster-lag window.
func (s *Sandbox) raceLocked(req *tokenReq, e *refreshEntry, now time.Time) (*issue, *oauthError) {
	outcome := s.raceFn(req.r)
	s.stats.Races[outcome]++
	switch outcome {
	case RaceServerError:
		return nil, errServer(DescServerError)
	case RaceBothSucceed:
	default:
		return nil, errGrant(DescRefreshInvalidState)
	}
	// The second node inserts its own active token; the constraint on one active token per
	// client, user and scope expires the one the chain held (product-is #18890).
	ch := e.chain
	head := ch.head()
	headRT := s.refresh[ch.current]
	for _, a := range ch.accesses {
		a.revoked = true
	}
	res, oerr := s.issueLocked(req, ch, now, GrantRefreshToken, e)
	if oerr != nil {
		return nil, oerr
	}
	s.issued[res.logIndex].Race = true
	p := &s.issued[head.pair]
	if p.Killed == KillNone {
		p.Killed, p.KilledBy, p.KilledAt = KillRace, res.logIndex+1, now
	}
	if headRT != nil && !headRT.used {
		headRT.killed = true
	}
	return res, nil
}

// wso2Password is PasswordGrantHandler with the account-lock handler: LockAfter failures
// in a row lock the user for LockFor after the last attempt, and every attempt during the
// lock, right or wrong, restarts it.
func (s *Sandbox) wso2Password(req *tokenReq, c Client) (*issue, *oauthError) {
	user, pass := req.form.Get("username"), req.form.Get("password")
	var missing []string
	if user == "" {
		missing = append(missing, "username")
	}
	if pass == "" {
		missing = append(missing, "password")
	}
	if len(missing) > 0 {
		return nil, errRequest("Missing parameters: " + strings.Join(missing, " "))
	}
	failed := errGrant(DescAuthFailedPrefix + user)
	want, known := s.lookupUser(user)
	if !strings.HasSuffix(user, UsernameSuffix) || !known {
		return nil, failed // another tenant, or no such user: nothing to lock
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	key := userKey(user)
	ls := s.locks[key]
	if ls == nil {
		ls = &lockState{}
		s.locks[key] = ls
	}
	if !ls.until.IsZero() {
		if now.Before(ls.until) {
			ls.until = now.Add(s.opts.LockFor)
			s.stats.LockedAttempts++
			return nil, errGrant(lockedDescription(user))
		}
		ls.until, ls.failures = time.Time{}, 0 // the lock ran out
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
		ls.failures++
		if s.opts.LockAfter > 0 && ls.failures >= s.opts.LockAfter {
			ls.until = now.Add(s.opts.LockFor)
			s.stats.Lockouts++
			return nil, errGrant(lockedDescription(user))
		}
		return nil, failed
	}
	ls.failures = 0
	return s.wso2IssueLocked(req, c.ID, user, grantedScope(req.form.Get("scope")), now, GrantPassword)
}

// lookupUser finds a user's password; Options.Users may name users with or without the
// suffix.
func (s *Sandbox) lookupUser(user string) (string, bool) {
	if pw, ok := s.opts.Users[user]; ok {
		return pw, true
	}
	pw, ok := s.opts.Users[strings.TrimSuffix(user, UsernameSuffix)]
	return pw, ok && strings.HasSuffix(user, UsernameSuffix)
}

func userKey(user string) string { return strings.TrimSuffix(user, UsernameSuffix) + UsernameSuffix }

// LockedUntil returns when the password lock-out of user (with or without the @vbc.prod
// suffix) ends, or the zero time if the user is not locked now (ModeWSO2).
func (s *Sandbox) LockedUntil(user string) time.Time {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls := s.locks[userKey(user)]; ls != nil && now.Before(ls.until) {
		return ls.until
	}
	return time.Time{}
}

// FailedLogins returns how many failed password attempts in a row user has made since
// the last success or lock (ModeWSO2).
func (s *Sandbox) FailedLogins(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls := s.locks[userKey(user)]; ls != nil {
		return ls.failures
	}
	return 0
}

// handleRevoke is WSO2's POST /revoke (RFC 7009): form token and optional
// token_type_hint, client authentication as at /token. Revoking the live access or refresh
// token of a chain revokes the chain; an unknown, dead or already-replaced token changes
// nothing. Both answer 200 with an empty body. Another client's live token is 400
// unauthorized_client.
func (s *Sandbox) handleRevoke(w http.ResponseWriter, r *http.Request) {
	form, perr := parseTokenForm(w, r)
	if perr != nil {
		writeOAuthError(w, perr)
		return
	}
	c, oerr := s.wso2Client(r, form)
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		writeOAuthError(w, errRequest("Invalid revocation request"))
		return
	}
	now := s.now()
	s.mu.Lock()
	var ch *chain
	if e, ok := s.refresh[tok]; ok && e.liveAt(now) {
		ch = e.chain
	} else if a, ok := s.access[tok]; ok && a.validAt(now) {
		ch = a.chain
	}
	if ch != nil && ch.clientID != c.ID {
		s.mu.Unlock()
		writeOAuthError(w, &oauthError{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: "Unauthorized Client"})
		return
	}
	if ch != nil {
		s.stats.Revocations++
		s.killChainLocked(ch, now, KillRevoked, -1)
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
