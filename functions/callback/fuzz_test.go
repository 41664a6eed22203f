package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/testutil"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// FuzzHandleEvent feeds arbitrary API Gateway v2 events (raw JSON, as the Lambda runtime
// receives them; the SAM fixtures in events/ are the seeds) to the callback's handler over
// memstore and the VBC sandbox. An event that decodes must never make Handle fail (API
// Gateway would answer a bare 500) nor panic; the answer is a 4xx page (502/503 only when
// VBC's error redirect reports its own failure) with every security header and no query
// text unescaped; nothing is written and VBC's token endpoint is never called: no fuzzed
// event carries a state this deployment signed.
func FuzzHandleEvent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "events", "callback-*.json"))
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}

	vbc := vbcsandbox.New(vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: "fuzz-client", Secret: "fuzz-CLIENT-secret-5e6f7a", RedirectURLs: []string{redirect}}},
		SigningKey: testutil.SigningKey(),
	})
	srv := httptest.NewServer(vbc)
	f.Cleanup(srv.Close)
	settings, err := config.FromEnv(func(k string) string {
		return map[string]string{
			config.EnvCredentialsSecretID: "creds", config.EnvTokenSecretID: "pair", config.EnvAccessSecretID: "access",
			config.EnvAuthorizeURL: srv.URL + "/authorize", config.EnvTokenURL: srv.URL + "/token", config.EnvRedirectURL: redirect,
		}[k]
	}, config.Need{Secrets: true, RedirectURL: true})
	if err != nil {
		f.Fatal(err)
	}
	store := memstore.New(vbctoken.Credentials{ClientID: "fuzz-client", ClientSecret: "fuzz-CLIENT-secret-5e6f7a"})
	h, err := buildHandler(store, settings, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	marker := strings.NewReplacer("<", "<Zq", "%3C", "%3CZq", "%3c", "%3cZq")

	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev events.APIGatewayV2HTTPRequest
		if json.Unmarshal(raw, &ev) != nil {
			return // the runtime would refuse it before the handler
		}
		ev.RawQueryString = marker.Replace(ev.RawQueryString)
		store.ResetCalls()
		before := vbc.Stats().Requests
		resp, err := h.Handle(context.Background(), ev)
		if err != nil {
			t.Fatalf("Handle returned an error: %v", err)
		}
		q, _ := url.ParseQuery(ev.RawQueryString)
		vbcErr := q.Get("error") == "server_error" || q.Get("error") == "temporarily_unavailable"
		switch s := resp.StatusCode; {
		case s == http.StatusBadGateway || s == http.StatusServiceUnavailable:
			if !vbcErr {
				t.Fatalf("HTTP %d without VBC reporting a failure", s)
			}
		case s < 400 || s > 499:
			t.Fatalf("HTTP %d for an event no admin approved", s)
		}
		for name, v := range web.SecurityHeaders() {
			if resp.Headers[name] != v {
				t.Fatalf("header %s = %q", name, resp.Headers[name])
			}
		}
		if bytes.Contains([]byte(resp.Body), []byte("<Zq")) {
			t.Fatalf("query text reached the page unescaped:\n%s", resp.Body)
		}
		if n := store.Calls(memstore.OpCommitPair) + store.Calls(memstore.OpPutAccess); n != 0 {
			t.Fatalf("%d store writes", n)
		}
		after := vbc.Stats().Requests
		for k, n := range after {
			if n != before[k] {
				t.Fatal("VBC's token endpoint was called")
			}
		}
	})
}
