package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/contract"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// The deployment's OAuth client and the callback URL registered for it.
const (
	ClientID     = "bench-client"
	ClientSecret = "cs-SECRET-bench-0123456789"
	RedirectURL  = "https://abc123.execute-api.eu-west-1.amazonaws.com/callback"
)

// NewStore returns the Secrets Manager store of a deployment reached through client.
func NewStore(client smstore.API) *smstore.Store {
	return smstore.New(client, secretIDs)
}

// PairSecret is the name of the pair secret in every deployment.
const PairSecret = "vbc/pair"

// Secret names of the deployment.
var secretIDs = smstore.SecretIDs{Credentials: "vbc/credentials", Pair: PairSecret, Access: "vbc/access"}

// Deployment is one vbctoken installation on 127.0.0.1: the three secrets in a
// FakeSecretsManager, VBC as a vbcsandbox, and the environment the functions get from the
// SAM template. Admin is the admin's side (what `vbctoken consent-url` does).
type Deployment struct {
	SM    *FakeSecretsManager
	VBC   *vbcsandbox.Sandbox
	Store *smstore.Store
	Admin *vbctoken.Keeper
	// Client is the OAuth client configuration pointing at VBC.
	Client vbctoken.ClientConfig
	// Env is the functions' environment (secret ids, VBC URLs, the Secrets Manager
	// endpoint), without what Lambda itself sets.
	Env map[string]string
	// URLs are the servers' base URLs.
	URLs URLs

	smSrv, vbcSrv *httptest.Server
}

// URLs are a deployment's base URLs on 127.0.0.1.
type URLs struct {
	SecretsManager string `json:"secrets_manager"`
	VBC            string `json:"vbc"`
}

// signingKey is the sandboxes' id_token key, made once: a 2048-bit key takes ~0.1 s.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("bench: generate signing key: " + err.Error())
	}
	return key
})

// NewDeployment starts the servers and creates the secrets with the CDK placeholders and
// the client credentials. Close stops it.
func NewDeployment() (*Deployment, error) {
	d := &Deployment{SM: NewFakeSecretsManager()}
	d.VBC = vbcsandbox.New(vbcsandbox.Options{
		Clients:    []vbcsandbox.Client{{ID: ClientID, Secret: ClientSecret, RedirectURLs: []string{RedirectURL}}},
		SigningKey: signingKey(),
	})
	d.smSrv = httptest.NewServer(d.SM)
	d.vbcSrv = httptest.NewServer(d.VBC)
	placeholder := `{"version":1}`
	creds, err := vbctoken.EncodeCredentials(vbctoken.Credentials{ClientID: ClientID, ClientSecret: ClientSecret})
	if err != nil {
		d.Close()
		return nil, err
	}
	credsValue := string(creds)
	d.SM.CreateSecret(secretIDs.Credentials, &credsValue)
	d.SM.CreateSecret(secretIDs.Pair, &placeholder)
	d.SM.CreateSecret(secretIDs.Access, &placeholder)

	d.Store = NewStore(d.SMClient())
	d.Client = ClientConfig(d.vbcSrv.URL)
	d.Admin, err = vbctoken.NewKeeper(vbctoken.KeeperConfig{Store: d.Store, Client: d.Client})
	if err != nil {
		d.Close()
		return nil, err
	}
	// URLs of the servers, for a process that talks to them from outside.
	d.URLs = URLs{SecretsManager: d.smSrv.URL, VBC: d.vbcSrv.URL}
	d.Env = map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": d.smSrv.URL,
		contract.EnvCredentialsSecretID:    secretIDs.Credentials,
		contract.EnvTokenSecretID:          secretIDs.Pair,
		contract.EnvAccessSecretID:         secretIDs.Access,
		contract.EnvAuthorizeURL:           d.vbcSrv.URL + "/authorize",
		contract.EnvTokenURL:               d.vbcSrv.URL + "/token",
		contract.EnvRedirectURL:            RedirectURL,
		contract.EnvScope:                  "openid",
	}
	return d, nil
}

// Close stops the servers.
func (d *Deployment) Close() {
	d.smSrv.Close()
	d.vbcSrv.Close()
}

// SMClient returns an SDK client for the deployment's Secrets Manager.
func (d *Deployment) SMClient() *secretsmanager.Client { return NewSMClient(d.smSrv.URL) }

// ClientConfig is the OAuth client configuration of a deployment whose VBC is at vbcURL.
func ClientConfig(vbcURL string) vbctoken.ClientConfig {
	return vbctoken.ClientConfig{
		Endpoints:   vbctoken.Endpoints{AuthorizeURL: vbcURL + "/authorize", TokenURL: vbcURL + "/token"},
		RedirectURL: RedirectURL, Scope: "openid",
	}
}

// NewSMClient returns an SDK client for the Secrets Manager endpoint, configured without
// the environment: static credentials, the standard retryer.
func NewSMClient(endpoint string) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "bench", SecretAccessKey: "bench", Source: "bench"}, nil
		}),
	})
}

// FillEvent puts a fresh, genuine state and code (a consent the admin minted and approved
// at VBC) in place of an events/callback-*.json file's placeholders.
func (d *Deployment) FillEvent(ctx context.Context, raw []byte) ([]byte, error) {
	state, code, err := Approve(ctx, d.Admin, d.VBC)
	if err != nil {
		return nil, err
	}
	raw = bytes.ReplaceAll(raw, []byte("STATE_PLACEHOLDER"), []byte(state))
	return bytes.ReplaceAll(raw, []byte("CODE_PLACEHOLDER"), []byte(code)), nil
}

// Approver consents to an authorize URL at VBC and returns the callback URL;
// *vbcsandbox.Sandbox is one.
type Approver interface {
	Approve(authorizeURL string) (callbackURL string, err error)
}

// Approve mints a consent link with admin and approves it at vbc, returning the state and
// code VBC redirects back with.
func Approve(ctx context.Context, admin *vbctoken.Keeper, vbc Approver) (state, code string, err error) {
	authURL, err := admin.ConsentURL(ctx)
	if err != nil {
		return "", "", fmt.Errorf("consent url: %w", err)
	}
	cb, err := vbc.Approve(authURL)
	if err != nil {
		return "", "", fmt.Errorf("approve: %w", err)
	}
	u, err := url.Parse(cb)
	if err != nil {
		return "", "", err
	}
	return u.Query().Get("state"), u.Query().Get("code"), nil
}

// Connect completes a consent with Admin, as after the admin's first approval.
func (d *Deployment) Connect(ctx context.Context) error {
	state, code, err := Approve(ctx, d.Admin, d.VBC)
	if err != nil {
		return err
	}
	if _, err := d.Admin.CompleteConsent(ctx, state, vbctoken.Secret(code)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return nil
}

// Backdate rewrites the stored pair as if it had been obtained age ago (its access token
// expiring accordingly), so the refresher's policy finds it due without forcing. The tokens
// stay live at VBC.
func (d *Deployment) Backdate(ctx context.Context, age time.Duration) error {
	cur, err := d.Store.LoadPair(ctx)
	if err != nil {
		return err
	}
	p := cur.Pair.Clone()
	p.ObtainedAt = p.ObtainedAt.Add(-age)
	p.ExpiresAt = p.ExpiresAt.Add(-age)
	if _, err := d.Store.CommitPair(ctx, p, cur.Version); err != nil {
		return fmt.Errorf("backdate pair by %v: %w", age, err)
	}
	return nil
}
