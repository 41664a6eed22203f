package vbctoken_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

const (
	fzClientSecret = "fuzzCLIENTsecret-9f8e7d"
	fzRefresh      = "fuzzREFRESHcanary-1a2b3c"
)

// fzTransport answers every request with the fuzzed response, without a network.
type fzTransport struct {
	status      int
	contentType string
	retryAfter  string
	body        []byte
}

func (f *fzTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	h := http.Header{}
	if f.contentType != "" {
		h.Set("Content-Type", f.contentType)
	}
	if f.retryAfter != "" {
		h.Set("Retry-After", f.retryAfter)
	}
	return &http.Response{
		StatusCode:    f.status,
		Status:        http.StatusText(f.status),
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(f.body)),
		ContentLength: int64(len(f.body)),
		Request:       req,
	}, nil
}

// FuzzTokenResponse serves arbitrary token responses to Refresh. The client must not panic,
// must return either a pair with an access and a refresh token or an *UpstreamError of a
// known kind, and its errors must be short printable text that never quotes the body nor
// the request's secrets, even when the server echoes them.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, "application/json", "", []byte(`{"access_token":"a","refresh_token":"r","expires_in":82566}`))
	f.Add(400, "application/json", "", []byte(`{"error":"invalid_grant","error_description":"`+fzRefresh+`"}`))
	f.Add(429, "text/html", "3", []byte(`<html>slow down</html>`))
	f.Add(200, "text/plain", "", []byte(`access_token=a&expires_in=-1&error_description=`+fzClientSecret))
	kinds := []error{vbctoken.ErrTransient, vbctoken.ErrBadClient, vbctoken.ErrInvalidGrant, vbctoken.ErrMalformedResponse, vbctoken.ErrUpstreamRejected}

	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400 // 1xx are interim answers, not responses
		}
		c := vbctoken.NewClient(vbctoken.ClientConfig{
			Endpoints:  vbctoken.Endpoints{TokenURL: "https://vbc.example/token"},
			HTTPClient: &http.Client{Transport: &fzTransport{status, contentType, retryAfter, body}},
			Retry: vbctoken.RetryPolicy{MaxAttempts: 2,
				Sleep: func(context.Context, time.Duration) error { return nil }},
			Now: func() time.Time { return clT0 },
		}, vbctoken.Credentials{ClientID: "fuzz-client", ClientSecret: fzClientSecret})

		pair, err := c.Refresh(context.Background(), fzRefresh)

		if err == nil {
			switch {
			case pair == nil:
				t.Fatal("nil pair without an error")
			case pair.AccessToken.IsZero() || pair.RefreshToken.IsZero():
				t.Fatalf("pair without access or refresh token (status %d)", status)
			case status < 200 || status > 299:
				t.Fatalf("pair from an HTTP %d", status)
			case !pair.ExpiresAt.After(pair.ObtainedAt) || pair.ExpiresAt.After(pair.ObtainedAt.Add(vbctoken.RefreshTokenLifetime)):
				t.Fatalf("access expiry %v out of range from %v", pair.ExpiresAt, pair.ObtainedAt)
			}
			return
		}
		if pair != nil {
			t.Fatalf("pair together with error %v", err)
		}
		var ue *vbctoken.UpstreamError
		if !errors.As(err, &ue) {
			t.Fatalf("error %v is not an *UpstreamError", err)
		}
		known := false
		for _, k := range kinds {
			known = known || errors.Is(err, k)
		}
		if !known {
			t.Fatalf("error %v has unknown kind %v", err, ue.Kind)
		}
		msg := err.Error()
		if strings.Contains(msg, fzClientSecret) || strings.Contains(msg, fzRefresh) {
			t.Fatalf("error leaks a request secret: %q", msg)
		}
		// The message is built from fixed words, a status, a sanitised code and description:
		// a body with JSON or form structure can never appear in it whole.
		if len(body) >= 12 && bytes.ContainsAny(body, `{}&="`) && strings.Contains(msg, string(body)) {
			t.Fatalf("error quotes the body: %q", msg)
		}
		if len(msg) > 400 {
			t.Fatalf("error is %d bytes long", len(msg))
		}
		for _, r := range msg {
			if r < 0x20 || r > 0x7e {
				t.Fatalf("error holds a non-printable character %q: %q", r, msg)
			}
		}
	})
}
