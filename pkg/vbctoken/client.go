package vbctoken

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/vbctoken/vbctoken/internal/contract"
	"golang.org/x/oauth2"
)

// defaultHTTPTimeout bounds one token request, body included.
const defaultHTTPTimeout = 15 * time.Second

const (
	// usernameDomain is what the password grant wants after the VBC user name.
	usernameDomain = "vbc.prod"
	// maxTokenBody is what x/oauth2 reads of a token response (1 MiB); longer is not a
	// token response.
	maxTokenBody = 1 << 20
	// defaultExpiresIn is assumed when a token response carries no usable expires_in
	// (absent, not a number, zero or negative). VBC always sends one; if it ever does not,
	// an hour is short enough that the keeper refreshes (the policy's 2 h margin fires at
	// once) well before a real 24 h token would die, and apps re-read on a 401 anyway.
	// Assuming 24 h could hand apps a dead token for hours. The tokens are kept either way:
	// a 200 to a refresh carries the only live refresh token.
	defaultExpiresIn = time.Hour
	// maxExpiresIn caps expires_in at VBC's documented access token lifetime: a longer
	// value is believed only as far as VBC's docs go.
	maxExpiresIn = accessLifetime
	// MaxCodeLen is the longest authorization code accepted. WSO2's codes are UUIDs (36
	// characters); anything this long is not one of VBC's.
	maxCodeLen = 512
	// maxDescription bounds the sanitised error_description kept in an error.
	maxDescription = 120
	// maxCode bounds the OAuth error code kept in an error.
	maxCode = 48
	// lockedCode starts WSO2's error_description for a user locked after failed logins.
	lockedCode = "17003"
)

// Endpoints are VBC's OAuth endpoints. White-label tenants use another token host.
type Endpoints struct {
	AuthorizeURL string // default https://api.vonage.com/authorize
	TokenURL     string // default https://api.vonage.com/token
}

// ClientConfig configures a client. Only RedirectURL has no useful default (the code flow
// needs the callback registered in the VBC portal).
type ClientConfig struct {
	Endpoints
	// RedirectURL is the registered callback URL, sent with the authorize URL and the code
	// exchange.
	RedirectURL string
	// Scope is the space-separated scope asked for; default "openid".
	Scope string
	// PKCE says the code flow carries an S256 challenge; see client.PKCE.
	PKCE bool
	// HTTPClient makes the token requests. Default: defaultHTTPTimeout per request and
	// http.DefaultTransport (TLS verified). Redirects are not followed unless its
	// CheckRedirect says otherwise. The client and its Transport are wrapped, never modified.
	HTTPClient *http.Client
	// Retry governs retries of transient failures within the caller's deadline.
	Retry RetryPolicy
	// Now stamps ExpiresAt, RefreshExpiresAt and ObtainedAt; default time.Now.
	Now func() time.Time
}

// client talks to VBC's OAuth endpoints on golang.org/x/oauth2: it builds the consent URL
// and runs the three grants VBC supports, returning a Pair stamped at receipt or an
// *UpstreamError that holds no secret. It is safe for concurrent use.
type client struct {
	creds    Credentials
	pkce     bool
	scope    string
	header   *oauth2.Config // client credentials in HTTP Basic: the code exchange
	params   *oauth2.Config // client credentials in the form body: refresh and password
	http     *http.Client
	retry    RetryPolicy
	now      func() time.Time
	setupErr error // reported by every grant: nothing may be sent
}

// NewClient returns a client for creds. Configuration problems (no credentials, a token URL
// that is not https — or http on a loopback host, for local runs) surface as errors from the
// grant methods.
func newClient(cfg ClientConfig, creds Credentials) *client {
	ep := cfg.Endpoints
	if ep.AuthorizeURL == "" {
		ep.AuthorizeURL = contract.DefaultAuthorizeURL
	}
	if ep.TokenURL == "" {
		ep.TokenURL = contract.DefaultTokenURL
	}
	scope := strings.TrimSpace(cfg.Scope)
	if scope == "" {
		scope = contract.DefaultScope
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: defaultHTTPTimeout}
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	checkRedirect := hc.CheckRedirect
	if checkRedirect == nil {
		// Never follow a token endpoint's redirect unless told to: a 307/308 would re-post
		// the client secret and the grant to wherever it points.
		checkRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	c := &client{
		creds: creds,
		pkce:  cfg.PKCE,
		scope: scope,
		http: &http.Client{
			Transport:     &inspectTransport{base: base},
			CheckRedirect: checkRedirect,
			Jar:           hc.Jar,
			Timeout:       hc.Timeout,
		},
		retry: cfg.Retry,
		now:   now,
	}
	// One oauth2.Config per client-auth style, always explicit: AuthStyleAutoDetect would
	// retry a failed request with the other style, sending every grant twice and a refresh
	// token that may already be spent.
	mk := func(style oauth2.AuthStyle) *oauth2.Config {
		return &oauth2.Config{
			ClientID:     creds.ClientID,
			ClientSecret: creds.ClientSecret.Reveal(),
			Endpoint:     oauth2.Endpoint{AuthURL: ep.AuthorizeURL, TokenURL: ep.TokenURL, AuthStyle: style},
			RedirectURL:  cfg.RedirectURL,
			Scopes:       strings.Fields(scope),
		}
	}
	c.header = mk(oauth2.AuthStyleInHeader)
	c.params = mk(oauth2.AuthStyleInParams)
	switch {
	case creds.ClientID == "" || creds.ClientSecret.IsZero():
		c.setupErr = ErrNoCredentials
	default:
		c.setupErr = checkTokenURL(ep.TokenURL)
	}
	return c
}

// checkTokenURL refuses a token URL the client secret must not be sent to.
func checkTokenURL(raw string) error {
	if err := contract.CheckURL(raw); err != nil {
		return fmt.Errorf("%w: token URL %v", ErrBadInput, err)
	}
	return nil
}

// AuthCodeURL returns the consent URL an admin opens: scope, response_type=code,
// redirect_uri, client_id and state, plus an S256 code_challenge of verifier unless verifier
// is "" (no PKCE).
func (c *client) AuthCodeURL(state string, verifier string) string {
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	return c.header.AuthCodeURL(state, opts...)
}

// Exchange trades an authorization code for a pair (grant authorization_code). The client
// authenticates with HTTP Basic, as VBC documents; verifier is the PKCE code verifier, ""
// without PKCE (required when the client is configured with PKCE).
//
// The code is sent again only when the earlier request certainly did not reach VBC (the
// connection was refused, or a 429/503 said when to come back): WSO2 revokes the token
// issued for a code presented twice. Any other failure is an error matching
// ErrOutcomeUnknown: VBC may have issued a pair whose answer was lost.
//
// x/oauth2 form-encodes the client id and secret before Basic-encoding them (RFC 6749
// §2.3.1); for VBC's alphanumeric consumer keys and secrets that is the plain
// base64(key:secret) of VBC's docs.
func (c *client) Exchange(ctx context.Context, code Secret, verifier string) (*Pair, error) {
	const op = "exchange"
	if err := checkCode(code); err != nil {
		return nil, fmt.Errorf("vbc %s: %w", op, err)
	}
	if c.pkce && verifier == "" {
		return nil, fmt.Errorf("vbc %s: %w: PKCE is on but no code verifier was given", op, ErrBadInput)
	}
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	return c.retrieve(ctx, op, GrantAuthorizationCode, false, []string{code.Reveal(), verifier},
		func(ctx context.Context) (*oauth2.Token, error) {
			return c.header.Exchange(ctx, code.Reveal(), opts...)
		})
}

// checkCode refuses what cannot be a VBC authorization code (empty, longer than 512 bytes,
// control characters or white space), so that it is never sent.
func checkCode(code Secret) error {
	c := code.Reveal()
	switch {
	case c == "":
		return fmt.Errorf("%w: empty authorization code", ErrBadInput)
	case len(c) > maxCodeLen:
		return fmt.Errorf("%w: authorization code longer than %d bytes", ErrBadInput, maxCodeLen)
	case strings.ContainsFunc(c, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) }):
		return fmt.Errorf("%w: authorization code contains control characters or white space", ErrBadInput)
	}
	return nil
}

// Refresh trades a refresh token for a new pair (grant refresh_token), client credentials in
// the form body. When VBC's answer omits refresh_token, the pair keeps refreshToken
// (x/oauth2 does this).
//
// Transient failures are retried with the same refresh token: VBC answers a token it has
// already rotated with invalid_grant, never by revoking anything. Such an invalid_grant
// after an attempt whose outcome is unknown carries Unknown: the rotation's answer may have
// been lost in transit.
func (c *client) Refresh(ctx context.Context, refreshToken Secret) (*Pair, error) {
	const op = "refresh"
	if refreshToken.IsZero() {
		return nil, fmt.Errorf("vbc %s: %w: empty refresh token", op, ErrBadInput)
	}
	return c.retrieve(ctx, op, GrantRefreshToken, true, []string{refreshToken.Reveal()},
		func(ctx context.Context) (*oauth2.Token, error) {
			return c.params.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken.Reveal()}).Token()
		})
}

// Password trades an administrator's user name and password for a pair (grant password),
// client credentials and scope in the form body. The user name goes through
// NormalizeUsername. Like a code, a password is sent once: a rejected password is never
// retried (VBC locks the account after a few failures), and a request that may have reached
// VBC is never repeated; only one that certainly did not (connection refused, 429 or 503
// with Retry-After) is.
func (c *client) Password(ctx context.Context, username string, password Secret) (*Pair, error) {
	const op = "password"
	user, err := NormalizeUsername(username)
	if err != nil {
		return nil, fmt.Errorf("vbc %s: %w", op, err)
	}
	if password.IsZero() {
		return nil, fmt.Errorf("vbc %s: %w: empty password", op, ErrBadInput)
	}
	return c.retrieve(ctx, op, GrantPassword, false, []string{password.Reveal()},
		func(ctx context.Context) (*oauth2.Token, error) {
			return c.params.PasswordCredentialsToken(ctx, user, password.Reveal())
		})
}

// NormalizeUsername returns the user name the password grant wants: USER@vbc.prod. It
// appends "@vbc.prod" when there is no domain, keeps one that is already there, and rejects
// an empty name, white space or another domain with ErrBadInput.
func NormalizeUsername(u string) (string, error) {
	u = strings.TrimSpace(u)
	if u == "" {
		return "", fmt.Errorf("%w: empty username", ErrBadInput)
	}
	if strings.ContainsFunc(u, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return "", fmt.Errorf("%w: username contains white space or control characters", ErrBadInput)
	}
	local, domain, found := strings.Cut(u, "@")
	if !found {
		return u + "@" + usernameDomain, nil
	}
	if local == "" || !strings.EqualFold(domain, usernameDomain) {
		return "", fmt.Errorf("%w: username must be USER or USER@%s", ErrBadInput, usernameDomain)
	}
	return local + "@" + usernameDomain, nil
}

// retrieve runs one grant with retries and turns the outcome into a Pair or an
// *UpstreamError. secrets are the request's secret values, kept out of every error.
// replayable says the grant may be sent again after an attempt that may have reached VBC
// (refresh); codes and passwords are resent only when the earlier attempt certainly did not.
func (c *client) retrieve(ctx context.Context, op string, grant Grant, replayable bool, secrets []string, call func(context.Context) (*oauth2.Token, error)) (*Pair, error) {
	if c.setupErr != nil {
		return nil, fmt.Errorf("vbc %s: %w", op, c.setupErr)
	}
	secrets = append(secrets, c.creds.ClientSecret.Reveal())
	var pair *Pair
	unknown := false // an attempt may have reached VBC without a usable answer
	_, err := c.retry.Do(ctx, func(attempt int) (time.Duration, error) {
		resp := &responseInfo{}
		actx := context.WithValue(context.WithValue(ctx, oauth2.HTTPClient, c.http), responseInfoKey{}, resp)
		tok, err := call(actx)
		var ue *UpstreamError
		if err == nil {
			pair, ue = c.pairFrom(op, grant, tok, resp)
		} else {
			ue = classify(op, err, resp, secrets)
			if ue.Kind == ErrMalformedResponse {
				if p, complete := c.rescue(grant, resp); complete {
					pair, ue = p, nil
				} else {
					ue.salvage = p
				}
			}
		}
		if ue == nil {
			return 0, nil
		}
		ue.Attempts = attempt
		if ue.Kind == ErrTransient && !resp.certainlyNotProcessed() {
			unknown = true
		}
		ue.Unknown = unknown
		return retryAfter(resp, c.now()), ue
	}, func(err error) bool {
		if !errors.Is(err, ErrTransient) {
			return false
		}
		return replayable || !errors.Is(err, ErrOutcomeUnknown)
	})
	if err != nil {
		return nil, err
	}
	return pair, nil
}

// rescue reads the tokens of a 2xx that x/oauth2 refused. x/oauth2 rejects a whole
// response over an expires_in it cannot parse (a fraction, a string that is not an integer)
// or a missing access_token, while a refresh answer carries the only live refresh token of
// the chain: this small parse of the same JSON keeps what can be kept. With an access and a
// refresh token the pair is complete (expires_in as expiresIn reads it); with a refresh token
// alone it is a salvage whose access token is treated as expired at once; otherwise nil.
func (c *client) rescue(grant Grant, resp *responseInfo) (p *Pair, complete bool) {
	if resp.status < 200 || resp.status > 299 || len(resp.body) == 0 || resp.html || resp.oversized {
		return nil, false
	}
	var body struct {
		AccessToken  any `json:"access_token"`
		RefreshToken any `json:"refresh_token"`
		TokenType    any `json:"token_type"`
		Scope        any `json:"scope"`
		IDToken      any `json:"id_token"`
		ExpiresIn    any `json:"expires_in"`
	}
	if json.Unmarshal(resp.body, &body) != nil {
		return nil, false
	}
	str := func(v any) string { s, _ := v.(string); return strings.TrimSpace(s) }
	rt, at := str(body.RefreshToken), str(body.AccessToken)
	if rt == "" {
		return nil, false
	}
	now := c.now()
	p = &Pair{
		AccessToken: Secret(at), RefreshToken: Secret(rt), TokenType: str(body.TokenType),
		Scope: str(body.Scope), IDToken: Secret(str(body.IDToken)),
		ExpiresAt: now, RefreshExpiresAt: now.Add(RefreshTokenLifetime), ObtainedAt: now, Grant: grant,
	}
	if p.TokenType == "" {
		p.TokenType = "Bearer"
	}
	if p.Scope == "" {
		p.Scope = c.scope
	}
	if at == "" {
		return p, false
	}
	p.ExpiresAt = now.Add(expiresIn(body.ExpiresIn))
	return p, true
}

// pairFrom builds the pair from a token x/oauth2 accepted, stamped with c.now at receipt.
func (c *client) pairFrom(op string, grant Grant, tok *oauth2.Token, resp *responseInfo) (*Pair, *UpstreamError) {
	malformed := func(reason string) (*Pair, *UpstreamError) {
		return nil, &UpstreamError{Op: op, StatusCode: resp.status, Kind: ErrMalformedResponse, Err: errors.New(reason)}
	}
	switch {
	case tok == nil || tok.AccessToken == "":
		return malformed("no access_token")
	case tok.RefreshToken == "":
		// Refresh cannot get here: x/oauth2 keeps the presented refresh token.
		return malformed("no refresh_token")
	case resp.oversized:
		return malformed("body larger than 1 MiB")
	}
	ttl := expiresIn(tok.Extra("expires_in"))
	now := c.now()
	scope := extraString(tok, "scope")
	if scope == "" {
		scope = c.scope
	}
	return &Pair{
		AccessToken:      Secret(tok.AccessToken),
		RefreshToken:     Secret(tok.RefreshToken),
		TokenType:        tok.Type(), // "Bearer" when absent
		Scope:            scope,
		IDToken:          Secret(extraString(tok, "id_token")),
		ExpiresAt:        now.Add(ttl),
		RefreshExpiresAt: now.Add(RefreshTokenLifetime),
		ObtainedAt:       now,
		Grant:            grant,
	}, nil
}

// expiresIn reads expires_in from the raw response, never failing: the answer to a refresh
// carries the only live refresh token, so a strange expires_in changes the time the keeper
// believes, never whether it keeps the tokens. Fractions are dropped; absent, unparsable,
// zero or negative values are defaultExpiresIn; values above maxExpiresIn are capped.
// tok.ExpiresIn is not enough: x/oauth2 fills it only for JSON, caps it at MaxInt32 and
// cannot tell 0 from absent.
func expiresIn(raw any) time.Duration {
	var secs float64
	switch v := raw.(type) {
	case float64: // JSON number
		secs = v
	case int64: // form-encoded number
		secs = float64(v)
	case string: // JSON string (x/oauth2 accepts "3600"), or form value that is not a number
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return defaultExpiresIn
		}
		secs = n
	default:
		return defaultExpiresIn
	}
	switch {
	case math.IsNaN(secs) || secs < 1:
		return defaultExpiresIn
	case secs > maxExpiresIn.Seconds():
		return maxExpiresIn
	}
	return time.Duration(math.Trunc(secs)) * time.Second
}

// extraString reads a string field of the raw response.
func extraString(tok *oauth2.Token, key string) string {
	switch v := tok.Extra(key).(type) {
	case string:
		return v
	case int64: // form-encoded values that look numeric come back parsed
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// classify turns a failed grant into an *UpstreamError without secrets: x/oauth2's
// RetrieveError.Error quotes the whole response body, so it is never wrapped; only the
// status, a sanitised error code and (for non-2xx) a sanitised error_description are kept.
func classify(op string, err error, resp *responseInfo, secrets []string) *UpstreamError {
	ue := &UpstreamError{Op: op, StatusCode: resp.status}
	var rawCode, rawDesc string
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		rawCode, rawDesc = re.ErrorCode, re.ErrorDescription
		if ue.StatusCode == 0 && re.Response != nil {
			ue.StatusCode = re.Response.StatusCode
		}
	}
	ue.Code = sanitizeCode(rawCode, secrets)
	// WSO2's account-locked answer: an error_description that starts with 17003.
	ue.Locked = strings.HasPrefix(strings.TrimSpace(rawDesc), lockedCode)
	code := strings.ToLower(strings.TrimSpace(rawCode))
	status := ue.StatusCode
	success := status >= 200 && status < 300
	switch {
	case resp.readErr != nil: // the body was cut short (connection closed, timeout)
		ue.Kind, ue.Err = ErrTransient, err
	case status == 0: // no answer at all: network error, timeout, cancelled
		ue.Kind, ue.Err = ErrTransient, err
	case code == "invalid_grant":
		ue.Kind = ErrInvalidGrant
	case code == "invalid_client" || status == http.StatusUnauthorized:
		ue.Kind = ErrBadClient
	case code == "temporarily_unavailable" || code == "server_error":
		ue.Kind = ErrTransient
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		ue.Kind = ErrTransient
	case status >= 300 && status < 400: // redirects are not followed: a misconfigured URL
		ue.Kind = ErrUpstreamRejected
	case resp.html: // maintenance or gateway page, whatever its status
		ue.Kind, ue.Err = ErrTransient, errors.New("HTML page instead of a token response")
	case success && code == "":
		ue.Kind = ErrMalformedResponse
		if resp.oversized {
			ue.Err = errors.New("body larger than 1 MiB")
		} else {
			ue.Err = errors.New("not a token response (unparsable body or no access_token)")
		}
	default: // other 4xx, or a 2xx carrying an error code
		ue.Kind = ErrUpstreamRejected
	}
	if !success && ue.Err == nil {
		if d := sanitizeDescription(rawDesc, secrets); d != "" {
			ue.Err = fmt.Errorf("error_description %q", d)
		}
	}
	return ue
}

// sanitizeCode keeps an OAuth error code only if it looks like one: short, [a-z0-9_.-].
func sanitizeCode(code string, secrets []string) string {
	code = strings.TrimSpace(code)
	if code == "" || len(code) > maxCode || containsSecret(code, secrets) {
		return ""
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return ""
		}
	}
	return code
}

// sanitizeDescription keeps a short printable-ASCII error_description, and none at all if
// it echoes a secret of the request.
func sanitizeDescription(desc string, secrets []string) string {
	if containsSecret(desc, secrets) {
		return ""
	}
	var b strings.Builder
	for _, r := range desc {
		if b.Len() >= maxDescription {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte(' ')
		}
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	if containsSecret(out, secrets) {
		return ""
	}
	return out
}

func containsSecret(s string, secrets []string) bool {
	for _, v := range secrets {
		if v != "" && strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// retryAfter is the server's Retry-After on a 429 or 503, in seconds or as an HTTP date.
func retryAfter(resp *responseInfo, now time.Time) time.Duration {
	if resp.status != http.StatusTooManyRequests && resp.status != http.StatusServiceUnavailable {
		return 0
	}
	v := strings.TrimSpace(resp.retryAfter)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(math.MaxInt64/time.Second) {
			return math.MaxInt64
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// responseInfo is what inspectTransport saw of one token request and its response.
type responseInfo struct {
	wrote      bool   // the request was written to the connection: VBC may have seen it
	status     int    // 0: no response arrived
	html       bool   // an HTML (or other markup) page, not a token response
	oversized  bool   // longer than maxTokenBody
	readErr    error  // the body could not be read in full (truncated, timed out)
	retryAfter string // the Retry-After header
	body       []byte // a 2xx body, for salvage; holds secrets, never printed
}

// certainlyNotProcessed reports whether VBC certainly did not act on the request: it was
// never written to a connection, or VBC answered 429/503 with a Retry-After (throttled
// before the grant handler ran).
func (r *responseInfo) certainlyNotProcessed() bool {
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		return strings.TrimSpace(r.retryAfter) != ""
	}
	return !r.wrote && r.status == 0
}

type responseInfoKey struct{}

// inspectTransport reads each token response in full before x/oauth2 parses it, recording
// what x/oauth2 loses: x/oauth2 parses text/plain as form values and reports an unparsable
// 200 with a plain error, so afterwards an HTML maintenance page (transient) cannot be told
// from a broken JSON body (malformed), a body cut short mid-read shows as a parse failure
// rather than the network failure it is, and the Retry-After header is gone. Requests whose
// context carries no *responseInfo pass through untouched.
type inspectTransport struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t *inspectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	info, _ := req.Context().Value(responseInfoKey{}).(*responseInfo)
	if info == nil {
		return t.base.RoundTrip(req)
	}
	// Whether the request left this machine decides whether a code may be sent again.
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(w httptrace.WroteRequestInfo) {
		if w.Err == nil {
			wrote.Store(true)
		}
	}}
	resp, err := t.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	info.wrote = wrote.Load()
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody+1))
	resp.Body.Close()
	info.status = resp.StatusCode
	info.retryAfter = resp.Header.Get("Retry-After")
	if err != nil {
		info.readErr = err
		return nil, fmt.Errorf("read token response: %w", err)
	}
	if len(body) > maxTokenBody {
		info.oversized = true
		body = body[:maxTokenBody]
	}
	info.html = isMarkup(resp.Header.Get("Content-Type"), body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		info.body = body
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// isMarkup reports an HTML or XML page: by Content-Type, or by a body that opens with '<'
// (gateways often label their error pages text/plain or nothing at all).
func isMarkup(contentType string, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "text/html", "application/xhtml+xml":
		return true
	}
	b := bytes.TrimLeft(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), " \t\r\n")
	return len(b) > 0 && b[0] == '<'
}
