package vbcsandbox

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Errors from Approve and Decline for authorization requests that must not redirect
// (RFC 6749 §4.1.2.1): the sandbox shows an error page instead. Test with errors.Is.
var (
	ErrUnknownClient  = errors.New("vbcsandbox: client_id is missing, repeated or not registered")
	ErrBadRedirectURI = errors.New("vbcsandbox: redirect_uri is missing, repeated or not registered for the client")
)

// authRequest is a validated authorization request.
type authRequest struct {
	client      Client
	redirectURI string
	state       string
	scope       string // as requested
	challenge   string
	method      string
}

// parseAuthorize validates an authorization request. A non-nil error means no redirect is
// allowed; a non-nil *oauthError is to be sent back to the (valid) redirect URI.
func (s *Sandbox) parseAuthorize(q url.Values) (authRequest, *oauthError, error) {
	var req authRequest
	if vs := q["client_id"]; len(vs) != 1 {
		return req, nil, ErrUnknownClient
	} else if c, ok := s.clients[vs[0]]; ok {
		req.client = c
	} else {
		return req, nil, ErrUnknownClient
	}
	if vs := q["redirect_uri"]; len(vs) != 1 || !slices.Contains(req.client.RedirectURLs, vs[0]) {
		return req, nil, ErrBadRedirectURI
	}
	req.redirectURI = q.Get("redirect_uri")
	if len(q["state"]) > 1 {
		return req, errRequest("state is repeated"), nil
	}
	req.state = q.Get("state")
	for _, name := range []string{"response_type", "scope", "code_challenge", "code_challenge_method"} {
		if len(q[name]) > 1 {
			return req, errRequest(name + " is repeated"), nil
		}
	}
	switch q.Get("response_type") {
	case "code":
	case "":
		return req, errRequest("response_type is missing"), nil
	default:
		return req, &oauthError{Code: "unsupported_response_type", Description: "only response_type=code is supported"}, nil
	}
	req.scope = q.Get("scope")
	if s.opts.IgnorePKCE {
		return req, nil, nil
	}
	req.challenge, req.method = q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case req.challenge == "" && req.method != "":
		return req, errRequest("code_challenge_method without code_challenge"), nil
	case req.challenge != "" && req.method != "S256":
		return req, errRequest("code_challenge_method must be S256"), nil
	case req.challenge != "" && !isS256Challenge(req.challenge):
		return req, errRequest("code_challenge must be 43 base64url characters"), nil
	}
	return req, nil, nil
}

func isS256Challenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for _, r := range c {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// redirectTo returns base with params (name, value pairs) added to its query; empty
// values are left out.
func redirectTo(base string, params ...string) string {
	u, err := url.Parse(base)
	if err != nil { // registered URLs are compared as strings; keep a broken one usable
		u = &url.URL{Path: base}
	}
	q := u.Query()
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] != "" {
			q.Set(params[i], params[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func errorRedirect(req authRequest, e *oauthError) string {
	return redirectTo(req.redirectURI, "error", e.Code, "error_description", e.Description, "state", req.state)
}

// decide applies a consent decision to an authorization request and returns where the
// browser goes next.
func (s *Sandbox) decide(q url.Values, approve bool, subject string) (string, error) {
	req, rerr, err := s.parseAuthorize(q)
	if err != nil {
		return "", err
	}
	if rerr != nil {
		return errorRedirect(req, rerr), nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !approve {
		s.stats.Declined++
		return errorRedirect(req, &oauthError{Code: "access_denied", Description: "The user declined the authorization request."}), nil
	}
	code, err := s.newValueLocked()
	if err != nil {
		return "", fmt.Errorf("vbcsandbox: issue code: %w", err)
	}
	if subject == "" {
		subject = s.opts.ConsentSubject
	}
	s.codes[code] = &authCode{
		subject:     subject,
		clientID:    req.client.ID,
		redirectURI: req.redirectURI,
		scope:       grantedScope(req.scope),
		challenge:   req.challenge,
		expiresAt:   now.Add(CodeTTL),
	}
	s.stats.Approved++
	return redirectTo(req.redirectURI, "code", code, "state", req.state), nil
}

// Approve consents to authorizeURL (only its query is read) as if a user clicked Approve,
// and returns the callback URL the browser would be sent to: normally with code and
// state, or with error=… when the request is invalid but may still redirect (an
// unsupported response_type, a bad PKCE challenge). It returns ErrUnknownClient or
// ErrBadRedirectURI when the sandbox would show an error page instead.
func (s *Sandbox) Approve(authorizeURL string) (callbackURL string, err error) {
	u, err := url.Parse(authorizeURL)
	if err != nil {
		return "", fmt.Errorf("vbcsandbox: approve: %w", err)
	}
	return s.decide(u.Query(), true, "")
}

// ApproveAs is Approve by another VBC user than Options.ConsentSubject: the admin of
// another VBC account, whose tokens form a chain of their own (WSO2 keeps one active token
// per client, user and scope). user gets "@vbc.prod" appended when it has no domain.
func (s *Sandbox) ApproveAs(authorizeURL, user string) (callbackURL string, err error) {
	u, err := url.Parse(authorizeURL)
	if err != nil {
		return "", fmt.Errorf("vbcsandbox: approve: %w", err)
	}
	if user == "" {
		return "", fmt.Errorf("vbcsandbox: approve: empty user")
	}
	if !strings.Contains(user, "@") {
		user += UsernameSuffix
	}
	return s.decide(u.Query(), true, user)
}

// Decline refuses authorizeURL as if a user clicked Decline, and returns the callback URL
// with error=access_denied and the state. Validation is as for Approve.
func (s *Sandbox) Decline(authorizeURL string) (callbackURL string, err error) {
	u, err := url.Parse(authorizeURL)
	if err != nil {
		return "", fmt.Errorf("vbcsandbox: decline: %w", err)
	}
	return s.decide(u.Query(), false, "")
}

func (s *Sandbox) handleAuthorizeGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, rerr, err := s.parseAuthorize(q)
	if err != nil {
		renderPage(w, http.StatusBadRequest, errorPage, pageData{Message: errorMessage(err)})
		return
	}
	if rerr != nil {
		http.Redirect(w, r, errorRedirect(req, rerr), http.StatusFound)
		return
	}
	var hidden []field
	for _, name := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge", "code_challenge_method"} {
		if v := q.Get(name); v != "" {
			hidden = append(hidden, field{Name: name, Value: v})
		}
	}
	name := req.client.Name
	if name == "" {
		name = req.client.ID
	}
	renderPage(w, http.StatusOK, consentPage, pageData{
		Client:      name,
		Subject:     s.opts.ConsentSubject,
		RedirectURI: req.redirectURI,
		Scope:       grantedScope(req.scope),
		Hidden:      hidden,
	})
}

func (s *Sandbox) handleAuthorizePost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		renderPage(w, http.StatusBadRequest, errorPage, pageData{Message: "The form could not be read."})
		return
	}
	var approve bool
	switch r.PostForm.Get("decision") {
	case "approve":
		approve = true
	case "decline":
	default:
		renderPage(w, http.StatusBadRequest, errorPage, pageData{Message: "Choose Approve or Decline."})
		return
	}
	// The consent page may name the approving user (a local run connecting several VBC
	// accounts); the default is Options.ConsentSubject.
	user := strings.TrimSpace(r.PostForm.Get("user"))
	if user != "" && !strings.Contains(user, "@") {
		user += UsernameSuffix
	}
	next, err := s.decide(r.PostForm, approve, user)
	if err != nil {
		renderPage(w, http.StatusBadRequest, errorPage, pageData{Message: errorMessage(err)})
		return
	}
	http.Redirect(w, r, next, http.StatusFound)
}

func errorMessage(err error) string {
	switch {
	case errors.Is(err, ErrUnknownClient):
		return "The client_id is missing or not registered with the sandbox. Nothing was sent back to the application."
	case errors.Is(err, ErrBadRedirectURI):
		return "The redirect_uri is missing or does not exactly match a callback URL registered for this client. Nothing was sent back to the application."
	default:
		return "The sandbox could not complete the request."
	}
}

func (s *Sandbox) handleIndex(w http.ResponseWriter, _ *http.Request) {
	var clients []clientInfo
	for _, c := range s.opts.Clients {
		clients = append(clients, clientInfo{ID: c.ID, Name: c.Name, RedirectURLs: strings.Join(c.RedirectURLs, " ")})
	}
	renderPage(w, http.StatusOK, indexPage, pageData{Clients: clients, Subject: s.opts.ConsentSubject})
}

type field struct{ Name, Value string }

type clientInfo struct{ ID, Name, RedirectURLs string }

type pageData struct {
	Client, Subject, RedirectURI, Scope, Message string
	Hidden                                       []field
	Clients                                      []clientInfo
}

func renderPage(w http.ResponseWriter, status int, t *template.Template, data pageData) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// No form-action: browsers apply it to the redirect that follows the POST.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

const pageStyle = `<style>
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
  font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f2f2f7;color:#1c1c1e}
main{background:#fff;max-width:30rem;width:100%;margin:1rem;padding:2rem;border-radius:12px;
  box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:.2rem 0 1rem}
.badge{display:inline-block;font-size:.75rem;font-weight:600;letter-spacing:.04em;text-transform:uppercase;
  color:#7a4b00;background:#fff1d6;border-radius:999px;padding:.15rem .6rem}
code{background:#f2f2f7;border-radius:4px;padding:.1rem .3rem;overflow-wrap:anywhere}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{flex:1;font:inherit;font-weight:600;padding:.7rem 1rem;border-radius:8px;cursor:pointer;border:1px solid #c7c7cc}
#approve{background:#871fff;border-color:#871fff;color:#fff}
#decline{background:#fff;color:#1c1c1e}
.note{margin-top:1.5rem;font-size:.85rem;color:#6e6e73}
.error{color:#b00020}
</style>`

var consentPage = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox VBC — authorize {{.Client}}</title>` + pageStyle + `</head>
<body><main>
<span class="badge">Local sandbox</span>
<h1 id="title">Sandbox VBC — <span id="client">{{.Client}}</span> wants access to your account</h1>
<p>Signed in as <strong id="subject">{{.Subject}}</strong>. Scope: <code id="scope">{{.Scope}}</code>.</p>
<p>Approving sends an authorization code to <code id="redirect-uri">{{.RedirectURI}}</code>.</p>
<form id="consent" method="post" action="authorize">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<p><label for="user">Approve as (another VBC account's admin, for a multi-account run)</label>
<input id="user" name="user" type="text" value="{{.Subject}}" autocomplete="off" spellcheck="false"></p>
<div class="actions">
<button id="approve" type="submit" name="decision" value="approve">Approve</button>
<button id="decline" type="submit" name="decision" value="decline">Decline</button>
</div>
</form>
<p class="note" id="sandbox-note">This is a local sandbox standing in for Vonage Business Communications.
No real account is involved and the tokens it issues work nowhere else.</p>
</main></body></html>
`))

var errorPage = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox VBC — invalid request</title>` + pageStyle + `</head>
<body><main>
<span class="badge">Local sandbox</span>
<h1 class="error">Invalid authorization request</h1>
<p id="message">{{.Message}}</p>
</main></body></html>
`))

var indexPage = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox VBC</title>` + pageStyle + `</head>
<body><main>
<span class="badge">Local sandbox</span>
<h1>Sandbox VBC OAuth server</h1>
<p>Stands in for <code>api.vonage.com</code>: <code>GET /authorize</code> (consent as
<strong>{{.Subject}}</strong>), <code>POST /token</code>, and <code>GET /api/whoami</code> to check an access token.</p>
{{if .Clients}}<p>Registered clients:</p><ul>
{{range .Clients}}<li><code>{{.ID}}</code>{{if .Name}} ({{.Name}}){{end}} → <code>{{.RedirectURLs}}</code></li>
{{end}}</ul>{{else}}<p>No clients are registered.</p>{{end}}
</main></body></html>
`))
