package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// FuzzConsentAccount: the account a browser names on serve's /consent (the connect form,
// outside input) is either a valid id, answered with a redirect to a consent link for it,
// or refused with one fixed page that never reflects the input.
func FuzzConsentAccount(f *testing.F) {
	for _, seed := range []string{"acme", "globex-eu", "", "Acme", "a_b", "-x", "../etc", "<script>", strings.Repeat("a", 64), "acme\x00", "é", "a b"} {
		f.Add(seed)
	}
	dir := filepath.Join(f.TempDir(), "store")
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" },
		now: newFakeClock().Now, signingKey: signingKey(), location: time.UTC}
	a.setDefaults()
	o, _, _ := a.parseServe([]string{"--store", dir, "--accounts"})
	p, code, ok := a.prepareServe(context.Background(), o)
	if !ok {
		f.Fatalf("prepare: exit %d", code)
	}
	f.Cleanup(p.close)
	rig, err := a.buildServe(context.Background(), p, "http://127.0.0.1:9")
	if err != nil {
		f.Fatal(err)
	}
	consent := func(account string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/consent?"+url.Values{"account": {account}}.Encode(), nil)
		rec := httptest.NewRecorder()
		rig.handler.ServeHTTP(rec, req)
		return rec
	}
	refused := consent("Bad_Id").Body.String()
	f.Fuzz(func(t *testing.T, account string) {
		rec := consent(account)
		if vbctoken.CheckAccount(account) == nil {
			if rec.Code != http.StatusFound || !strings.Contains(rec.Header().Get("Location"), "/sandbox/authorize?") {
				t.Fatalf("valid account %q: %d %s", account, rec.Code, rec.Header().Get("Location"))
			}
			return
		}
		if rec.Code != http.StatusBadRequest || rec.Body.String() != refused {
			t.Fatalf("invalid account %q: %d\n%s", account, rec.Code, rec.Body)
		}
	})
}
