package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vbctoken/vbctoken/internal/web"
)

// In `vbctoken serve` (HomeURL set) every callback page leads back to the status page; the
// Lambda's pages (no HomeURL) have no such button. A replayed link is a warning: most often
// the admin reloaded the success page, and the page says they are done.
func TestCallbackPagesLeadHome(t *testing.T) {
	for _, home := range []string{"", "/"} {
		env := newCallbackEnv(t)
		env.cb.HomeURL = home
		state, code := env.consent(t)
		serve := func(q url.Values) (web.Response, string) {
			resp := env.cb.Serve(context.Background(), web.Request{Method: http.MethodGet, Path: web.CallbackPath, RawQuery: q.Encode()})
			return resp, resp.Body
		}
		pages := map[string]url.Values{
			"success":  {"code": {code}, "state": {state}},
			"replayed": {"code": {code}, "state": {state}},
			"declined": {"error": {"access_denied"}, "state": {state}},
			"invalid":  {"code": {"x"}},
		}
		for _, name := range []string{"success", "replayed", "declined", "invalid"} {
			resp, body := serve(pages[name])
			hasLink := strings.Contains(body, `<a class="button" id="link" href="/">Back to the status page</a>`)
			if hasLink != (home != "") {
				t.Errorf("HomeURL %q, %s page (%d): back link %v", home, name, resp.Status, hasLink)
			}
			if name == "replayed" {
				if resp.Status != http.StatusConflict || !strings.Contains(body, `<main class="warn"`) || !strings.Contains(body, "you are done") {
					t.Errorf("replayed link page: %d\n%s", resp.Status, body)
				}
			}
		}
	}
}
