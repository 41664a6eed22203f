package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/web"
)

// Placeholders a FuzzCallback query may hold: each is replaced by a consent state and its
// authorization code, minted and approved for that call, so the fuzzer can combine
// genuine values with anything else.
const (
	stateSlot = "{state}"
	codeSlot  = "{code}"
)

// marked returns raw with every '<' it can decode to followed by "Zq", a token the page
// template never writes: if a page reflects query text without escaping it, "<Zq" shows.
func marked(raw string) string {
	r := strings.NewReplacer("<", "<Zq", "%3C", "%3CZq", "%3c", "%3cZq")
	return r.Replace(raw)
}

// genuine reports whether a callback request completes a consent: GET on the callback
// path, a query the callback accepts (at most 4 KiB, well encoded, valid UTF-8, no
// parameter twice) with exactly the minted code and state and no error parameter.
func genuine(method, path, raw, state, code string) bool {
	if method != http.MethodGet || path != web.CallbackPath || len(raw) > 4096 || state == "" {
		return false
	}
	q, err := url.ParseQuery(raw)
	if err != nil || q.Has("error") {
		return false
	}
	for k, vs := range q {
		if len(vs) > 1 || !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return q.Get("state") == state && q.Get("code") == code
}

// FuzzCallback sends arbitrary methods, paths and raw queries through web.Callback.Serve,
// backed by a real keeper over memstore and the VBC sandbox. It must never panic; it
// answers 2xx exactly when the request completes a genuine consent and 4xx otherwise (502
// and 503 only when VBC's own error redirect says server_error or temporarily_unavailable);
// no '<' from the query reaches the page unescaped; every page carries the security
// headers; and a request without the genuine state writes nothing (a genuine state with a
// wrong code spends its nonce, one write, by design).
func FuzzCallback(f *testing.F) {
	f.Add("GET", "/callback", "code="+codeSlot+"&state="+stateSlot)
	f.Add("GET", "/callback", "state="+stateSlot+"&code="+codeSlot+"&extra=1")
	f.Add("GET", "/callback", "code="+codeSlot+"&state="+stateSlot+"&code="+codeSlot)
	f.Add("GET", "/callback", "code=x"+codeSlot+"&state="+stateSlot)
	f.Add("GET", "/callback", "error=%3Cscript%3Ealert(1)%3C/script%3E&error_description=%3Cimg+src=x+onerror=alert(2)%3E&state="+stateSlot)
	f.Add("POST", "/callback", "code="+codeSlot+"&state="+stateSlot)
	f.Add("GET", "/", "")

	env := newCallbackEnv(f)
	f.Fuzz(func(t *testing.T, method, path, raw string) {
		state, code := "", ""
		if strings.Contains(raw, stateSlot) || strings.Contains(raw, codeSlot) {
			state, code = env.consent(t)
			raw = strings.ReplaceAll(strings.ReplaceAll(raw, stateSlot, url.QueryEscape(state)), codeSlot, url.QueryEscape(code))
		}
		want := genuine(method, path, raw, state, code)

		env.store.ResetCalls()
		resp := env.cb.Serve(context.Background(), web.Request{Method: method, Path: path, RawQuery: raw, RequestID: "fuzz"})
		commits, puts := env.store.Calls(memstore.OpCommitPair), env.store.Calls(memstore.OpPutAccess)
		q, _ := url.ParseQuery(raw)
		vbcError := q.Get("error") == "server_error" || q.Get("error") == "temporarily_unavailable"
		switch {
		case want && resp.Status != http.StatusOK:
			t.Fatalf("genuine consent answered %d:\n%s", resp.Status, resp.Body)
		case !want && resp.Status >= 200 && resp.Status < 300:
			t.Fatalf("HTTP %d for a request that is not a genuine consent", resp.Status)
		case !want && resp.Status >= 500 && !(vbcError && (resp.Status == http.StatusBadGateway || resp.Status == http.StatusServiceUnavailable)):
			t.Fatalf("HTTP %d for bad input:\n%s", resp.Status, resp.Body)
		case !want && (resp.Status < 400 || resp.Status > 599):
			t.Fatalf("HTTP %d", resp.Status)
		}
		for name, v := range web.SecurityHeaders() {
			if resp.Headers[name] != v {
				t.Fatalf("header %s = %q", name, resp.Headers[name])
			}
		}
		if !want {
			genuineState := state != "" && q.Get("state") == state
			if puts != 0 || commits > 1 || (commits == 1 && !genuineState) {
				t.Fatalf("%d pair commits and %d access writes for a request that is not a genuine consent", commits, puts)
			}
		}
		if code != "" && strings.Contains(resp.Body, code) && onlyInCode(q, code) {
			t.Fatal("the authorization code is in the page")
		}

		// Escaping: the same request with every '<' marked must not show the mark raw.
		if strings.Contains(raw, "<") || strings.Contains(strings.ToLower(raw), "%3c") {
			env.store.ResetCalls()
			m := env.cb.Serve(context.Background(), web.Request{Method: method, Path: path, RawQuery: marked(raw), RequestID: "fuzz"})
			if strings.Contains(m.Body, "<Zq") {
				t.Fatalf("query text reached the page unescaped:\n%s", m.Body)
			}
			if env.writes() > 1 {
				t.Fatalf("%d writes for a marked request", env.writes())
			}
		}
	})
}

// onlyInCode reports whether code appears in q only as the code parameter's value: a page
// may show what the request put in a reflected parameter (error, error_description), but
// never the code it was given to exchange.
func onlyInCode(q url.Values, code string) bool {
	for k, vs := range q {
		if strings.Contains(k, code) {
			return false
		}
		for _, v := range vs {
			if k != "code" && strings.Contains(v, code) {
				return false
			}
		}
	}
	return true
}
