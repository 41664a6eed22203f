// Package web holds the HTML side of vbctoken: the consent callback's logic and pages
// (shared by the Lambda and `vbctoken serve`) and the local status page. Handlers here are
// thin: they parse and answer, vbctoken.Keeper decides.
package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// css is the one stylesheet of every page. It is inline and allowed by its hash in the CSP,
// so pages load nothing from anywhere.
const css = `
:root{color-scheme:light dark;--ok:#137333;--bad:#b3261e;--warn:#8a5300;--on-badge:#fff;--fg:#1f1f1f;--muted:#5f6368;--card:#fff;--bg:#f3f4f6;--line:#e0e0e0}
@media (prefers-color-scheme:dark){:root{--fg:#e8eaed;--muted:#9aa0a6;--card:#202124;--bg:#121212;--line:#3c4043;--ok:#81c995;--bad:#f28b82;--warn:#fdd663;--on-badge:#121212}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:36rem;width:calc(100% - 2rem);margin:1rem 0;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:2rem 2.25rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{font-size:1.4rem;margin:.25rem 0 1rem;display:flex;gap:.6rem;align-items:center}
.badge{display:inline-flex;width:2rem;height:2rem;border-radius:50%;align-items:center;justify-content:center;color:var(--on-badge);font-size:1.1rem;font-weight:700;flex:none}
.ok .badge{background:var(--ok)}.bad .badge{background:var(--bad)}.warn .badge{background:var(--warn)}
p{margin:.5rem 0}.muted{color:var(--muted);font-size:.9rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:1rem 0}dt{color:var(--muted)}dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
code{background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:.05rem .35rem;font-size:.9em;display:inline-block;max-width:100%;overflow-wrap:anywhere}
.detail{border-left:3px solid var(--line);padding:.25rem .75rem;color:var(--muted);overflow-wrap:anywhere}
a.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;border-radius:6px;background:#1a73e8;color:#fff;text-decoration:none}
footer{margin-top:1.5rem;font-size:.8rem;color:var(--muted)}
main.wide{max-width:64rem}
table{width:100%;border-collapse:collapse;margin:1rem 0;font-size:.9rem;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--muted);font-weight:600}
td.ok{color:var(--ok)}td.bad{color:var(--bad)}td.warn{color:var(--warn)}
form{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap;margin:1rem 0}
input{font:inherit;padding:.4rem .6rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
button{font:inherit;padding:.45rem 1rem;border-radius:6px;border:0;background:#1a73e8;color:#fff;cursor:pointer}
`

var cspStyleHash = func() string {
	sum := sha256.Sum256([]byte(css))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// SecurityHeaders are sent with every page: nothing cached (the URL carried a code), no
// framing, no sniffing, no referrer (the callback URL holds code and state), and a CSP
// that allows only the page's own stylesheet.
func SecurityHeaders() map[string]string { return securityHeaders("'none'") }

// securityHeaders are SecurityHeaders with the CSP's form-action: 'none', or 'self' for a
// page with a form.
func securityHeaders(formAction string) map[string]string {
	return map[string]string{
		"Content-Type":              "text/html; charset=utf-8",
		"Cache-Control":             "no-store",
		"Pragma":                    "no-cache",
		"Content-Security-Policy":   "default-src 'none'; style-src " + cspStyleHash + "; base-uri 'none'; form-action " + formAction + "; frame-ancestors 'none'",
		"X-Frame-Options":           "DENY",
		"X-Content-Type-Options":    "nosniff",
		"Referrer-Policy":           "no-referrer",
		"Strict-Transport-Security": "max-age=31536000",
	}
}

// Tone picks the page's colour and badge.
type Tone string

// The tones of a page.
const (
	ToneOK   Tone = "ok"
	ToneBad  Tone = "bad"
	ToneWarn Tone = "warn"
)

// Fact is one row of a page's definition list.
type Fact struct{ Label, Value string }

// Page is the content of one small HTML page. Every field is text: the template escapes it.
type Page struct {
	Status    int
	Tone      Tone
	Title     string
	Lead      string
	Facts     []Fact
	Detail    string // reflected text (e.g. VBC's error_description), shown escaped
	Next      string // what to do next
	NextCode  string // a command to run, shown as code
	LinkURL   string // an optional button
	LinkText  string
	Refresh   int // seconds; a status page reloads itself
	RequestID string
	// Table and Form, when set, come before the facts (the accounts page); Wide widens the
	// page for the table.
	Table *Table
	Form  *Form
	Wide  bool
}

// Table is a table of text cells under a header row.
type Table struct {
	ID   string
	Head []string
	Rows []Row
}

// Row is one row of a Table; ID, when set, is its element id.
type Row struct {
	ID    string
	Cells []Cell
}

// Cell is one cell: text, coloured by Tone when set, or a link when LinkURL is set.
type Cell struct {
	Text    string
	Tone    Tone
	LinkURL string
}

// Form is a one-field GET form: Label, an input named Name, and a submit button.
type Form struct {
	ID, Action, Label, Name, Placeholder, Button string
	// Pattern and MaxLength let the browser check the value before it is sent; the server
	// checks it again.
	Pattern   string
	MaxLength int
}

// Render returns the page's HTML.
//
// It is written out by hand instead of with html/template: the page has one fixed shape and
// every field is plain text, so escaping each field (html.EscapeString, in element content
// and in double-quoted attributes) and vetting the one URL is all html/template would do
// here — and in the callback Lambda html/template cost 2.4 MB of binary (its reflection
// keeps the linker from dropping methods) and about 2 ms of cold start (measured with
// `make bench`). The XSS tests in this package and in functions/callback hold it to the
// same standard.
func (p Page) Render() string {
	e := html.EscapeString
	var b strings.Builder
	b.Grow(len(css) + 2048)
	b.WriteString(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">`)
	if p.Refresh > 0 {
		b.WriteString(`<meta http-equiv="refresh" content="` + strconv.Itoa(p.Refresh) + `">`)
	}
	b.WriteString("\n<title>" + e(p.Title) + " · vbctoken</title><style>" + css + "</style></head>\n")
	class := string(p.Tone)
	if p.Wide {
		class += " wide"
	}
	b.WriteString(`<body><main class="` + e(class) + `" id="page" data-status="` + strconv.Itoa(p.Status) + `">` + "\n")
	badge := "✕"
	switch p.Tone {
	case ToneOK:
		badge = "✓"
	case ToneWarn:
		badge = "!"
	}
	b.WriteString(`<h1><span class="badge">` + badge + `</span><span id="title">` + e(p.Title) + "</span></h1>\n")
	if p.Lead != "" {
		b.WriteString(`<p id="lead">` + e(p.Lead) + "</p>\n")
	}
	if p.Table != nil {
		p.Table.render(&b)
	}
	if p.Form != nil {
		p.Form.render(&b)
	}
	if len(p.Facts) > 0 {
		b.WriteString(`<dl id="facts">`)
		for _, f := range p.Facts {
			b.WriteString("<dt>" + e(f.Label) + "</dt><dd>" + e(f.Value) + "</dd>")
		}
		b.WriteString("</dl>\n")
	}
	if p.Detail != "" {
		b.WriteString(`<p class="detail" id="detail">` + e(p.Detail) + "</p>\n")
	}
	if p.Next != "" {
		b.WriteString(`<p id="next">` + e(p.Next))
		if p.NextCode != "" {
			b.WriteString(" <code>" + e(p.NextCode) + "</code>")
		}
		b.WriteString("</p>\n")
	}
	if p.LinkURL != "" {
		b.WriteString(`<a class="button" id="link" href="` + e(safeURL(p.LinkURL)) + `">` + e(p.LinkText) + "</a>\n")
	}
	b.WriteString("<footer>vbctoken keeps your Vonage Business Communications connection alive.")
	if p.RequestID != "" {
		b.WriteString(" Request id <code>" + e(p.RequestID) + "</code>.")
	}
	b.WriteString("</footer>\n</main></body></html>\n")
	return b.String()
}

func (t *Table) render(b *strings.Builder) {
	e := html.EscapeString
	b.WriteString(`<table id="` + e(t.ID) + `"><thead><tr>`)
	for _, h := range t.Head {
		b.WriteString("<th>" + e(h) + "</th>")
	}
	b.WriteString("</tr></thead><tbody>\n")
	for _, r := range t.Rows {
		b.WriteString("<tr")
		if r.ID != "" {
			b.WriteString(` id="` + e(r.ID) + `"`)
		}
		b.WriteString(">")
		for _, c := range r.Cells {
			b.WriteString("<td")
			if c.Tone != "" {
				b.WriteString(` class="` + e(string(c.Tone)) + `"`)
			}
			b.WriteString(">")
			if c.LinkURL != "" {
				b.WriteString(`<a href="` + e(safeURL(c.LinkURL)) + `">` + e(c.Text) + "</a>")
			} else {
				b.WriteString(e(c.Text))
			}
			b.WriteString("</td>")
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</tbody></table>\n")
}

func (f *Form) render(b *strings.Builder) {
	e := html.EscapeString
	b.WriteString(`<form id="` + e(f.ID) + `" method="get" action="` + e(safeURL(f.Action)) + `">`)
	b.WriteString(`<label for="` + e(f.Name) + `">` + e(f.Label) + `</label> `)
	b.WriteString(`<input id="` + e(f.Name) + `" name="` + e(f.Name) + `" type="text" required autocomplete="off" spellcheck="false"`)
	if f.Placeholder != "" {
		b.WriteString(` placeholder="` + e(f.Placeholder) + `"`)
	}
	if f.Pattern != "" {
		b.WriteString(` pattern="` + e(f.Pattern) + `"`)
	}
	if f.MaxLength > 0 {
		b.WriteString(` maxlength="` + strconv.Itoa(f.MaxLength) + `"`)
	}
	b.WriteString(`> <button id="` + e(f.ID) + `-submit" type="submit">` + e(f.Button) + "</button></form>\n")
}

// safeURL lets through http(s) and relative links only; anything else (javascript:,
// data:, …) becomes "#", as html/template does with unsafe URLs.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "#"
	}
	switch strings.ToLower(u.Scheme) {
	case "", "http", "https":
		return raw
	}
	return "#"
}

// Response is a rendered HTTP answer, independent of net/http and API Gateway.
type Response struct {
	Status  int
	Headers map[string]string
	Body    string
}

// Respond renders p with the security headers.
func Respond(p Page) Response {
	if p.Status == 0 {
		p.Status = http.StatusOK
	}
	headers := SecurityHeaders()
	if p.Form != nil {
		headers = securityHeaders("'self'")
	}
	return Response{Status: p.Status, Headers: headers, Body: p.Render()}
}

// Write sends r on w.
func (r Response) Write(w http.ResponseWriter) {
	for k, v := range r.Headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(r.Body)))
	w.WriteHeader(r.Status)
	_, _ = w.Write([]byte(r.Body))
}

// newRequestID returns a random id for a request that came without one.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
