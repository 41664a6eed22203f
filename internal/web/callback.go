package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Limits on what the callback accepts. VBC's codes and our states are far shorter.
const (
	CallbackPath     = contract.CallbackPath
	maxQueryBytes    = 4096
	maxCodeBytes     = 1024
	maxDetailRunes   = 300
	consentURLAdvice = "Ask an admin for a new consent link:"
	consentURLCmd    = "vbctoken consent-url"
	statusAdvice     = "Check the connection:"
	statusCmd        = "vbctoken status"
)

// Consenter is the part of vbctoken.Keeper the callback calls.
type Consenter interface {
	CompleteConsent(ctx context.Context, state string, code vbctoken.Secret) (vbctoken.Result, error)
}

// AccountConsenter is the part of vbctoken.Accounts the callback calls in accounts mode: it
// takes the account from the signed state, never from an unsigned parameter, and returns it.
type AccountConsenter interface {
	CompleteConsent(ctx context.Context, state string, code vbctoken.Secret) (account string, res vbctoken.Result, err error)
}

// Request is what the callback reads of an HTTP request: never headers or a body.
type Request struct {
	Method    string
	Path      string
	RawQuery  string
	RequestID string
}

// Callback answers the registered callback URL: GET /callback?code&state completes a
// consent; GET /callback?error&error_description&state shows why it did not happen;
// anything else is a short 4xx page. Nothing is written unless the keeper accepts the
// state and VBC issues a pair.
type Callback struct {
	// Keeper completes consents in a single-account deployment.
	Keeper Consenter
	// Accounts, when set, completes them in accounts mode instead (docs/design.md
	// "Accounts mode"): the success page names the account the signed state carried.
	Accounts AccountConsenter
	Log      *slog.Logger
	// Path is the route; default CallbackPath.
	Path string
	// Location formats times on pages; default UTC.
	Location *time.Location
	// HomeURL, when set, adds a button back to it on every page the callback answers with
	// (`vbctoken serve` sets its status page; the Lambda has none).
	HomeURL string
}

// Serve handles one request.
func (c *Callback) Serve(ctx context.Context, req Request) Response {
	log := c.logger().With("request_id", req.RequestID)
	page := c.serve(ctx, req, log)
	page.RequestID = req.RequestID
	if c.HomeURL != "" && page.LinkURL == "" {
		page.LinkURL, page.LinkText = c.HomeURL, "Back to the status page"
	}
	resp := Respond(page)
	if page.Status == http.StatusMethodNotAllowed {
		resp.Headers["Allow"] = http.MethodGet
	}
	return resp
}

// ServeHTTP adapts Serve to net/http (vbctoken serve).
func (c *Callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		id = newRequestID()
	}
	c.Serve(r.Context(), Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestID: id}).Write(w)
}

func (c *Callback) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c *Callback) path() string {
	if c.Path == "" {
		return CallbackPath
	}
	return c.Path
}

func (c *Callback) serve(ctx context.Context, req Request, log *slog.Logger) Page {
	if req.Path != c.path() {
		log.InfoContext(ctx, "callback: no such route", "status", http.StatusNotFound, "method", safeText(req.Method, 16))
		return Page{Status: http.StatusNotFound, Tone: ToneBad, Title: "Not found", Lead: "There is nothing at this address."}
	}
	if req.Method != http.MethodGet {
		log.InfoContext(ctx, "callback: method not allowed", "status", http.StatusMethodNotAllowed, "method", safeText(req.Method, 16))
		return Page{Status: http.StatusMethodNotAllowed, Tone: ToneBad, Title: "Method not allowed", Lead: "This address only answers GET requests from your browser."}
	}
	q, problem, status := parseQuery(req.RawQuery)
	if problem != "" {
		log.InfoContext(ctx, "callback: malformed request", "status", status, "problem", problem)
		return Page{Status: status, Tone: ToneBad, Title: "This link is not valid", Lead: problem, Next: consentURLAdvice, NextCode: consentURLCmd}
	}
	if e := q.Get("error"); e != "" || q.Has("error") {
		return c.declined(ctx, q, log)
	}
	code, state := q.Get("code"), q.Get("state")
	switch {
	case code == "":
		log.InfoContext(ctx, "callback: no code", "status", http.StatusBadRequest)
		return Page{Status: http.StatusBadRequest, Tone: ToneBad, Title: "This link is not valid",
			Lead: "The link is missing the authorization code VBC adds when you approve.", Next: consentURLAdvice, NextCode: consentURLCmd}
	case state == "":
		log.InfoContext(ctx, "callback: no state", "status", http.StatusBadRequest)
		return Page{Status: http.StatusBadRequest, Tone: ToneBad, Title: "This link is not valid",
			Lead: "The link is missing its state, so it cannot be checked.", Next: consentURLAdvice, NextCode: consentURLCmd}
	case len(code) > maxCodeBytes:
		log.InfoContext(ctx, "callback: oversized code", "status", http.StatusBadRequest)
		return Page{Status: http.StatusBadRequest, Tone: ToneBad, Title: "This link is not valid",
			Lead: "The authorization code in the link is far longer than VBC's.", Next: consentURLAdvice, NextCode: consentURLCmd}
	}

	var (
		account string
		res     vbctoken.Result
		err     error
	)
	if c.Accounts != nil {
		account, res, err = c.Accounts.CompleteConsent(ctx, state, vbctoken.Secret(code))
		if account != "" {
			log = log.With("account", account)
		}
	} else {
		res, err = c.Keeper.CompleteConsent(ctx, state, vbctoken.Secret(code))
	}
	if err != nil {
		page := consentErrorPage(err)
		level := slog.LevelWarn
		if page.Status >= 500 {
			level = slog.LevelError
		}
		log.Log(ctx, level, "callback: consent failed", "status", page.Status, "error", err)
		return page
	}
	log.InfoContext(ctx, "callback: connected", "status", http.StatusOK, "result", res.Outcome,
		"access_expires_at", res.AccessExpiresAt, "refresh_expires_at", res.RefreshExpiresAt)
	page := Page{
		Status: http.StatusOK, Tone: ToneOK, Title: "Connected to Vonage Business Communications",
		Lead: "vbctoken stored the new connection. Apps read a fresh access token from now on, and the scheduled refresher keeps it alive: you do not need to do this again.",
		Facts: []Fact{
			{"Access token valid until", c.fmtTime(res.AccessExpiresAt)},
			{"Renewed automatically before", c.fmtTime(res.RefreshExpiresAt)},
		},
		Next: "You can close this page.",
	}
	if account != "" {
		page.Lead = "vbctoken stored the new connection of the account " + account + ". Its apps read a fresh access token from now on, and the scheduled refresher keeps it alive: you do not need to do this again."
		page.Facts = append([]Fact{{"Account", account}}, page.Facts...)
	}
	return page
}

// declined shows VBC's error redirect: the admin declined, or VBC failed. Nothing is
// written; the text VBC sent is shown escaped and shortened.
func (c *Callback) declined(ctx context.Context, q url.Values, log *slog.Logger) Page {
	code := safeText(q.Get("error"), 64)
	detail := safeText(q.Get("error_description"), maxDetailRunes)
	page := Page{Status: http.StatusBadRequest, Tone: ToneBad, Title: "VBC did not grant access", Detail: detail,
		Lead: "VBC answered with an error (" + code + "). Nothing was changed.", Next: "To try again, " + strings.ToLower(consentURLAdvice[:1]) + consentURLAdvice[1:], NextCode: consentURLCmd}
	switch code {
	case "access_denied":
		page.Status, page.Tone, page.Title = http.StatusForbidden, ToneWarn, "Consent declined"
		page.Lead = "Access was declined on the VBC consent page, so vbctoken stored nothing. Apps keep using the current connection, if there is one."
	case "server_error":
		page.Status = http.StatusBadGateway
	case "temporarily_unavailable":
		page.Status = http.StatusServiceUnavailable
	}
	log.InfoContext(ctx, "callback: VBC returned an error", "status", page.Status, "vbc_error", code)
	return page
}

// consentErrorPage maps the keeper's typed errors to what the admin can do about them.
// err.Error() never reaches the page.
func consentErrorPage(err error) Page {
	bad := func(status int, title, lead string) Page {
		return Page{Status: status, Tone: ToneBad, Title: title, Lead: lead, Next: consentURLAdvice, NextCode: consentURLCmd}
	}
	switch {
	case errors.Is(err, vbctoken.ErrStateExpired):
		return bad(http.StatusBadRequest, "This consent link has expired", "Consent links are valid for a short time only.")
	case errors.Is(err, vbctoken.ErrStateReused):
		// Most often the admin reloaded the success page: a warning, not a failure.
		p := bad(http.StatusConflict, "This consent link was already used", "Each consent link works once. If you approved a moment ago, the connection is made and you are done; otherwise start again.")
		p.Tone = ToneWarn
		return p
	case errors.Is(err, vbctoken.ErrBadState), errors.Is(err, vbctoken.ErrBadInput):
		return bad(http.StatusBadRequest, "This link is not valid", "The link was not issued by this vbctoken deployment, or it was changed.")
	case errors.Is(err, vbctoken.ErrInvalidGrant):
		return bad(http.StatusBadRequest, "VBC did not accept the authorization code", "The code may have been used already or expired. Nothing was changed.")
	case errors.Is(err, vbctoken.ErrBadClient):
		return Page{Status: http.StatusBadGateway, Tone: ToneBad, Title: "VBC rejected this app's credentials",
			Lead: "The client id or secret in the credentials secret is wrong or was rotated. An operator must fix it; nothing was changed."}
	case errors.Is(err, vbctoken.ErrNoCredentials):
		return Page{Status: http.StatusServiceUnavailable, Tone: ToneBad, Title: "vbctoken is not configured yet",
			Lead: "The client credentials secret is empty. An operator must store the VBC consumer key and secret first."}
	case errors.Is(err, vbctoken.ErrOutcomeUnknown):
		// The code reached VBC but no usable answer came back. It is never sent again (VBC
		// would revoke the token it issued), and the stored connection is kept.
		return Page{Status: http.StatusBadGateway, Tone: ToneWarn, Title: "VBC may have connected",
			Lead: "VBC did not answer clearly after the code was sent. The existing connection, if any, is unchanged. Check the status; if it is not connected, start again with a new link.",
			Next: statusAdvice, NextCode: statusCmd}
	case errors.Is(err, vbctoken.ErrTransient), errors.Is(err, context.DeadlineExceeded):
		return Page{Status: http.StatusServiceUnavailable, Tone: ToneBad, Title: "VBC or AWS is not answering right now",
			Lead: "Nothing was changed. Wait a few minutes, then start again.", Next: consentURLAdvice, NextCode: consentURLCmd}
	}
	return Page{Status: http.StatusInternalServerError, Tone: ToneBad, Title: "Something went wrong",
		Lead: "vbctoken could not complete the connection. The details are in its logs under the request id below."}
}

// parseQuery reads the callback's query strictly: bounded size, valid encoding and UTF-8,
// no parameter given twice. It returns a problem for the page and its status.
func parseQuery(raw string) (url.Values, string, int) {
	if len(raw) > maxQueryBytes {
		return nil, "The link is far longer than a VBC callback.", http.StatusRequestURITooLong
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, "The link's parameters are not encoded correctly.", http.StatusBadRequest
	}
	for k, vs := range q {
		if !utf8.ValidString(k) {
			return nil, "The link's parameters are not valid text.", http.StatusBadRequest
		}
		if len(vs) > 1 {
			return nil, "The link repeats a parameter.", http.StatusBadRequest
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return nil, "The link's parameters are not valid text.", http.StatusBadRequest
			}
		}
	}
	return q, "", 0
}

// safeText shortens s to max runes of printable text for a page or a log line.
func safeText(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

func (c *Callback) fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format("Mon 2 Jan 2006, 15:04 MST")
}
