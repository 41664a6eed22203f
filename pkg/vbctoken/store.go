package vbctoken

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// Credentials are the VBC application's consumer key and secret, stored once by an admin in
// the credentials secret as {"client_id","client_secret"}.
type Credentials struct {
	ClientID     string
	ClientSecret Secret
}

// String shows the client id only.
func (c Credentials) String() string {
	return fmt.Sprintf("vbctoken.Credentials{client_id=%s}", c.ClientID)
}

// GoString is String.
func (c Credentials) GoString() string { return c.String() }

// LogValue logs the client id only.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client_id", c.ClientID))
}

type credentialsWire struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// EncodeCredentials returns the stored JSON of the credentials secret.
func EncodeCredentials(c Credentials) ([]byte, error) {
	return json.Marshal(credentialsWire{ClientID: c.ClientID, ClientSecret: c.ClientSecret.Reveal()})
}

// DecodeCredentials parses the credentials secret; a placeholder without both fields is
// ErrNoCredentials.
func DecodeCredentials(data []byte) (Credentials, error) {
	var w credentialsWire
	if err := strictUnmarshal(data, &w); err != nil {
		return Credentials{}, fmt.Errorf("decode credentials: %w: %s", ErrMalformedSecret, err)
	}
	c := Credentials{ClientID: strings.TrimSpace(w.ClientID), ClientSecret: Secret(strings.TrimSpace(w.ClientSecret))}
	if c.ClientID == "" || c.ClientSecret.IsZero() {
		return Credentials{}, fmt.Errorf("decode credentials: %w: client_id and client_secret are both required", ErrNoCredentials)
	}
	return c, nil
}

type loginWire struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// DecodeLogin parses the self-heal login secret {"username","password"}; a placeholder
// without both fields is ErrNoCredentials.
func DecodeLogin(data []byte) (username string, password Secret, err error) {
	var w loginWire
	if err := strictUnmarshal(data, &w); err != nil {
		return "", "", fmt.Errorf("decode login: %w: %s", ErrMalformedSecret, err)
	}
	if strings.TrimSpace(w.Username) == "" || w.Password == "" {
		return "", "", fmt.Errorf("decode login: %w: username and password are both required", ErrNoCredentials)
	}
	return strings.TrimSpace(w.Username), Secret(w.Password), nil
}

// Versioned is a pair as read from a store, with the version a compare-and-swap write must
// name. Pair is an empty, not-connected pair when nothing was stored yet; Version is "" when
// the store holds no version at all.
//
// Pending is a pair whose write reached the store but never became current (the writer
// died, or the write's last step kept failing), when the store can tell; nil otherwise. The
// keeper decides what to do with it (docs/chain-safety.md); a store whose writes are
// atomic never reports one.
type Versioned struct {
	Pair    *Pair
	Version string
	Pending *Pair
}

// Store keeps the three secrets of the design: credentials, the pair (source of truth,
// written with compare-and-swap) and the app-facing access token derived from it.
//
// Implementations: smstore.Store (AWS Secrets Manager), filestore.Store (local runs) and
// dynamostore.Store (DynamoDB). All pass the conformance suite in storetest.
type Store interface {
	// LoadCredentials returns the client credentials, ErrNoCredentials when unset.
	LoadCredentials(ctx context.Context) (Credentials, error)
	// LoadPair returns the current pair and its version, and a pending write that never
	// became current, if any.
	LoadPair(ctx context.Context) (Versioned, error)
	// CommitPair stores p as the current pair if the current version is still prev
	// ("" when nothing was stored), and returns the new version. It returns an error
	// matching ErrConflict when another writer moved the pair; retrying the same call
	// after a transient failure is safe (idempotent).
	CommitPair(ctx context.Context, p *Pair, prev string) (string, error)
	// PutAccess writes the app-facing access secret.
	PutAccess(ctx context.Context, a AccessToken) error
	// LoadAccess reads the app-facing access secret (what apps do): ErrNotFound when the
	// secret is missing or has no value, a zero AccessToken for the {"version":1}
	// placeholder (not connected yet).
	LoadAccess(ctx context.Context) (AccessToken, error)
}
