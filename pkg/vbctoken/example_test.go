package vbctoken_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// exampleVBC starts a VBC sandbox that, like VBC, kills an access token the moment it is
// refreshed, and a keeper that has connected the chain, as the callback or `vbctoken
// login` would. It returns the sandbox's base URL, the keeper and the access secret the
// keeper writes, which counts the app's reads. In production the access secret is the
// Secrets Manager secret named by VBC_ACCESS_SECRET_ID and the keeper runs elsewhere.
func exampleVBC() (baseURL string, keeper *vbctoken.Keeper, secret *accessSecret, stop func()) {
	srv := httptest.NewServer(vbcsandbox.New(vbcsandbox.Options{
		Clients:              []vbcsandbox.Client{{ID: "key", Secret: "secret", RedirectURLs: []string{"https://app.example/callback"}}},
		Users:                map[string]string{"alice": "pw"},
		RefreshRevokesAccess: true,
	}))
	store := memstore.New(vbctoken.Credentials{ClientID: "key", ClientSecret: "secret"})
	keeper, err := vbctoken.NewKeeper(vbctoken.KeeperConfig{
		Store: store,
		Client: vbctoken.ClientConfig{
			Endpoints:   vbctoken.Endpoints{TokenURL: srv.URL + vbcsandbox.TokenPath},
			RedirectURL: "https://app.example/callback",
		},
	})
	if err != nil {
		panic(err)
	}
	if _, err := keeper.Login(context.Background(), "alice", "pw", false); err != nil {
		panic(err)
	}
	return srv.URL, keeper, &accessSecret{store: store}, srv.Close
}

// accessSecret is the access secret as an app sees it: an AccessLoader. It counts reads.
type accessSecret struct {
	store *memstore.Store
	reads atomic.Int64
}

func (s *accessSecret) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	s.reads.Add(1)
	return s.store.LoadAccess(ctx)
}

// whoami calls the sandbox's protected API and prints the answer.
func whoami(client *http.Client, vbc string) {
	res, err := client.Get(vbc + vbcsandbox.WhoAmIPath)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	var who vbcsandbox.WhoAmI
	_ = json.NewDecoder(res.Body).Decode(&who)
	fmt.Println(res.StatusCode, who.Sub)
}

// An app calls VBC's APIs through the Source's client. It attaches the access token the
// keeper maintains; when VBC rejects it (the keeper refreshed, which kills the old token
// at once), it re-reads the access secret and sends the request again. The app holds no
// refresh token and no client credentials, and never handles the rotation.
func Example() {
	vbc, keeper, secret, stop := exampleVBC()
	defer stop()

	// The app. On AWS:
	//   cfg, err := config.LoadDefaultConfig(ctx)
	//   src, err := smstore.NewSource(cfg, os.Getenv("VBC_ACCESS_SECRET_ID"))
	src := vbctoken.NewSource(secret)
	client := src.Client()

	whoami(client, vbc)
	whoami(client, vbc)
	// Meanwhile the refresher rotates the pair: the token the app holds is dead.
	if _, err := keeper.Refresh(context.Background(), true); err != nil {
		panic(err)
	}
	whoami(client, vbc) // a 401, a re-read and a retry, inside the client
	fmt.Println("secret reads:", secret.reads.Load())
	// Output:
	// 200 alice@vbc.prod
	// 200 alice@vbc.prod
	// 200 alice@vbc.prod
	// secret reads: 2
}

// Code that needs the token itself (a WebSocket, another SDK) calls Token for each use; a
// cached token costs no read. Such code reports a 401 with Invalidate (see
// ExampleSource_Invalidate).
func ExampleNewSource() {
	_, _, secret, stop := exampleVBC()
	defer stop()

	src := vbctoken.NewSource(secret)
	for range 3 {
		tok, err := src.Token()
		if err != nil {
			panic(err)
		}
		fmt.Println(tok.Type(), len(tok.AccessToken) > 0)
	}
	fmt.Println("secret reads:", secret.reads.Load())
	// Output:
	// Bearer true
	// Bearer true
	// Bearer true
	// secret reads: 1
}

// Transport is the client's RoundTripper; set Base to send through a transport of your
// own (a proxy, tracing, custom TLS).
func ExampleTransport() {
	vbc, _, secret, stop := exampleVBC()
	defer stop()

	client := &http.Client{Transport: &vbctoken.Transport{
		Source: vbctoken.NewSource(secret),
		Base:   http.DefaultTransport, // or your own
	}}
	whoami(client, vbc)
	// Output:
	// 200 alice@vbc.prod
}

// Code that does not send its requests through the Source's client reports a 401 with
// Invalidate and tries once more: the Source re-reads the access secret and finds the
// token the keeper wrote. It never refreshes by itself.
func ExampleSource_Invalidate() {
	vbc, keeper, secret, stop := exampleVBC()
	defer stop()

	src := vbctoken.NewSource(secret)
	call := func() int {
		tok, err := src.Token()
		if err != nil {
			panic(err)
		}
		req, _ := http.NewRequest(http.MethodGet, vbc+vbcsandbox.WhoAmIPath, nil)
		tok.SetAuthHeader(req)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		res.Body.Close()
		return res.StatusCode
	}

	fmt.Println(call())
	if _, err := keeper.Refresh(context.Background(), true); err != nil {
		panic(err)
	}
	status := call()
	if status == http.StatusUnauthorized {
		fmt.Println(status, "- invalidate and retry")
		src.Invalidate()
		status = call()
	}
	fmt.Println(status)
	fmt.Println("secret reads:", secret.reads.Load())
	// Output:
	// 200
	// 401 - invalidate and retry
	// 200
	// secret reads: 2
}
