package vbcsandbox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
)

// A consent without a browser, then the code exchange the way VBC documents it.
func Example() {
	sb := vbcsandbox.New(vbcsandbox.Options{
		Clients: []vbcsandbox.Client{{ID: "key", Secret: "secret", RedirectURLs: []string{"https://app.example/callback"}}},
	})
	srv := httptest.NewServer(sb)
	defer srv.Close()

	authURL := srv.URL + vbcsandbox.AuthorizePath + "?" + url.Values{
		"scope": {"openid"}, "response_type": {"code"}, "client_id": {"key"},
		"redirect_uri": {"https://app.example/callback"}, "state": {"xyz"},
	}.Encode()
	callback, err := sb.Approve(authURL)
	if err != nil {
		panic(err)
	}
	cb, _ := url.Parse(callback)

	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")},
		"redirect_uri": {"https://app.example/callback"}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+vbcsandbox.TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("key", "secret") // VBC's code exchange: HTTP Basic only
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	var tok vbcsandbox.TokenResponse
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil {
		panic(err)
	}
	fmt.Println(res.StatusCode, cb.Query().Get("state"), tok.Scope, tok.TokenType, tok.ExpiresIn, tok.IDToken != "")
	fmt.Println(sb.IsLiveRefreshToken(tok.RefreshToken), sb.LiveChains())
	// Output:
	// 200 xyz openid Bearer 86400 true
	// true 1
}
