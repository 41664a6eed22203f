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

// ModeWSO2 with a cluster that answers both racing refreshes: the second answer expires
// the pair the first one carried.
func Example_wso2RefreshRace() {
	sb := vbcsandbox.New(vbcsandbox.Options{
		Mode:    vbcsandbox.ModeWSO2,
		Clients: []vbcsandbox.Client{{ID: "key", Secret: "secret", RedirectURLs: []string{"https://app.example/callback"}}},
		Users:   map[string]string{"alice": "pw"},
		Race:    vbcsandbox.FixedRace(vbcsandbox.RaceBothSucceed),
	})
	srv := httptest.NewServer(sb)
	defer srv.Close()

	grant := func(form url.Values) (int, vbcsandbox.TokenResponse) {
		form.Set("client_id", "key")
		form.Set("client_secret", "secret")
		res, err := http.PostForm(srv.URL+vbcsandbox.TokenPath, form)
		if err != nil {
			panic(err)
		}
		defer res.Body.Close()
		var tok vbcsandbox.TokenResponse
		_ = json.NewDecoder(res.Body).Decode(&tok)
		return res.StatusCode, tok
	}
	_, login := grant(url.Values{"grant_type": {"password"}, "username": {"alice@vbc.prod"}, "password": {"pw"}})
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {login.RefreshToken}}
	s1, first := grant(refresh)  // one node
	s2, second := grant(refresh) // another node, a moment later
	fmt.Println(s1, s2)
	fmt.Println("first answer live:", sb.IsLiveRefreshToken(first.RefreshToken))
	fmt.Println("second answer live:", sb.IsLiveRefreshToken(second.RefreshToken))
	killed := sb.Issued()[1]
	fmt.Println(killed.Killed, killed.KilledBy)
	// Output:
	// 200 200
	// first answer live: false
	// second answer live: true
	// race 3
}
