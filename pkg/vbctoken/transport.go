package vbctoken

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Transport is the http.RoundTripper apps call VBC's APIs with: it sets the Authorization
// header from a Source and, when the API answers 401 Unauthorized, tells the Source the
// token was rejected, takes the token the Source re-reads from the access secret and
// sends the request once more with it. App code never handles token rotation.
//
// The request is sent again only when it can be replayed (no body, or GetBody set, as
// http.NewRequest does for in-memory bodies), only once, and only when the re-read
// returned another token: when the access secret still holds the rejected token (the
// keeper has not replaced it, or the token was refused for another reason), the 401 is
// returned as it came. A retry is safe in the sense that matters here: the API refused the
// first attempt before doing anything. Whether a request may be repeated for any other
// reason is the app's business, and Transport never retries anything else.
//
// Requests that fail with one token at once share one re-read of the secret. Transport
// never refreshes a token: only the keeper holds the refresh token. It is safe for
// concurrent use; its errors never carry a token.
type Transport struct {
	// Source provides the token. Required.
	Source *Source
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
}

var _ http.RoundTripper = (*Transport)(nil)

// Client returns an *http.Client that authorizes each request with the Source's token and,
// on a 401, re-reads the secret and retries once (a Transport over http.DefaultTransport).
// Set a Timeout on it as for any client.
func (s *Source) Client() *http.Client {
	return &http.Client{Transport: &Transport{Source: s}}
}

// maxDrain is how much of a 401 body RoundTrip reads before closing it for a retry, so
// that the connection can be reused; a longer body closes the connection instead.
const maxDrain = 64 << 10

// RoundTrip sends req with the Source's token; see Transport. It does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody := func() {
		if req.Body != nil {
			req.Body.Close()
		}
	}
	if t.Source == nil {
		closeBody()
		return nil, errors.New("vbctoken transport: nil Source")
	}
	ctx := req.Context()
	tok, err := t.Source.TokenContext(ctx)
	if err != nil {
		closeBody()
		return nil, fmt.Errorf("vbctoken transport: %w", err)
	}
	// Whether the request can be sent twice: the first attempt consumes req.Body.
	replay := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	res, err := t.base().RoundTrip(authorized(req, req.Body, tok.Type(), tok.AccessToken))
	if err != nil || res.StatusCode != http.StatusUnauthorized {
		return res, err
	}

	// 401: the token was rejected. Report it whether or not this request can be retried,
	// so that the next request carries the token the keeper wrote since.
	t.Source.reject(tok.AccessToken)
	if !replay {
		return res, nil
	}
	next, err := t.Source.TokenContext(ctx)
	if err != nil || next.AccessToken == tok.AccessToken {
		// No other token to try: the 401 stands. (A failed re-read is the Source's to
		// retry on the next request; the caller gets the API's answer, not ours.)
		return res, nil
	}
	body := req.Body
	if req.GetBody != nil {
		if body, err = req.GetBody(); err != nil {
			return res, nil // cannot replay after all: the 401 stands
		}
	}
	_, _ = io.CopyN(io.Discard, res.Body, maxDrain)
	res.Body.Close()
	return t.base().RoundTrip(authorized(req, body, next.Type(), next.AccessToken))
}

// authorized returns a copy of req with body and the Authorization header set; the
// caller's request and its headers are left as they were (RoundTripper contract).
func authorized(req *http.Request, body io.ReadCloser, tokenType, token string) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Set("Authorization", tokenType+" "+token)
	return r
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}
