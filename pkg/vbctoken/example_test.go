package vbctoken_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"golang.org/x/oauth2"

	"github.com/vbctoken/vbctoken/internal/memstore"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// exampleVBC starts a VBC sandbox and a keeper that has connected the chain, as the
// callback or `vbctoken login` would; it returns the sandbox's base URL, the keeper and
// the store holding the access secret. In production the store is the Secrets Manager
// secret named by VBC_ACCESS_SECRET_ID and the keeper runs elsewhere.
func exampleVBC(opts vbcsandbox.Options) (baseURL string, keeper *vbctoken.Keeper, store *memstore.Store, stop func()) {
	opts.Clients = []vbcsandbox.Client{{ID: "key", Secret: "secret", RedirectURLs: []string{"https://app.example/callback"}}}
	opts.Users = map[string]string{"alice": "pw"}
	srv := httptest.NewServer(vbcsandbox.New(opts))
	store = memstore.New(vbctoken.Credentials{ClientID: "key", ClientSecret: "secret"})
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
	if _, err := keeper.Login(context.Background(), "alice", "pw"); err != nil {
		panic(err)
	}
	return srv.URL, keeper, store, srv.Close
}

// An app calls a VBC API with the access token the keeper maintains. The Source reads the
// access secret once and serves it from memory until shortly before it expires; the app
// holds no refresh token and no client credentials.
func ExampleNewSource() {
	vbc, _, store, stop := exampleVBC(vbcsandbox.Options{})
	defer stop()

	// The app: on AWS, cfg, _ := config.LoadDefaultConfig(ctx) and then
	// vbctoken.NewSecretsManagerSource(cfg, os.Getenv("VBC_ACCESS_SECRET_ID")).
	ctx := context.Background()
	src := vbctoken.NewSource(store)
	client := oauth2.NewClient(ctx, src)

	for range 3 {
		res, err := client.Get(vbc + vbcsandbox.WhoAmIPath)
		if err != nil {
			panic(err)
		}
		var who vbcsandbox.WhoAmI
		err = json.NewDecoder(res.Body).Decode(&who)
		res.Body.Close()
		if err != nil {
			panic(err)
		}
		fmt.Println(res.StatusCode, who.Sub)
	}
	fmt.Println("secret reads:", store.Calls(memstore.OpLoadAccess))
	// Output:
	// 200 alice@vbc.prod
	// 200 alice@vbc.prod
	// 200 alice@vbc.prod
	// secret reads: 1
}

// On a 401 the app calls Invalidate and retries once: the Source re-reads the access secret
// and finds the token the keeper wrote. The app never refreshes by itself.
//
// The client is built on oauth2.Transport directly so that every request asks the Source:
// oauth2.NewClient would keep its own copy of the token and not see Invalidate.
func ExampleSource_Invalidate() {
	// This sandbox kills an access token as soon as the keeper refreshes it.
	vbc, keeper, store, stop := exampleVBC(vbcsandbox.Options{RefreshRevokesAccess: true})
	defer stop()

	src := vbctoken.NewSource(store)
	client := &http.Client{Transport: &oauth2.Transport{Source: src}}
	whoami := func() int {
		res, err := client.Get(vbc + vbcsandbox.WhoAmIPath)
		if err != nil {
			panic(err)
		}
		res.Body.Close()
		return res.StatusCode
	}

	fmt.Println(whoami())
	// Meanwhile the refresher rotates the pair and rewrites the access secret.
	if _, err := keeper.Refresh(context.Background(), true); err != nil {
		panic(err)
	}

	status := whoami()
	if status == http.StatusUnauthorized {
		fmt.Println(status, "- invalidate and retry")
		src.Invalidate()
		status = whoami()
	}
	fmt.Println(status)
	fmt.Println("secret reads:", store.Calls(memstore.OpLoadAccess))
	// Output:
	// 200
	// 401 - invalidate and retry
	// 200
	// secret reads: 2
}
