package vbctoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func samplePair() *Pair {
	return &Pair{
		AccessToken:      "at-SECRET-1",
		RefreshToken:     "rt-SECRET-1",
		TokenType:        "Bearer",
		Scope:            "openid",
		IDToken:          "idt-SECRET-1",
		ExpiresAt:        t0.Add(82566 * time.Second),
		RefreshExpiresAt: t0.Add(RefreshTokenLifetime),
		ObtainedAt:       t0,
		Grant:            GrantAuthorizationCode,
		ConsentNonces:    []UsedNonce{{Nonce: "n1", ExpiresAt: t0.Add(15 * time.Minute)}},
	}
}

func TestPairRoundTrip(t *testing.T) {
	p := samplePair()
	data, err := EncodePair(p)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"version", "access_token", "refresh_token", "token_type", "scope", "id_token", "expires_at", "refresh_expires_at", "obtained_at", "grant"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("stored pair lacks %q: %s", f, data)
		}
	}
	if raw["expires_at"] != "2026-11-25T08:56:06Z" {
		t.Errorf("expires_at = %v, want RFC 3339 UTC", raw["expires_at"])
	}
	got, err := DecodePair(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != p.RefreshToken || got.AccessToken != p.AccessToken || got.IDToken != p.IDToken ||
		!got.ExpiresAt.Equal(p.ExpiresAt) || !got.RefreshExpiresAt.Equal(p.RefreshExpiresAt) ||
		!got.ObtainedAt.Equal(p.ObtainedAt) || got.Grant != p.Grant || got.Scope != p.Scope || len(got.ConsentNonces) != 1 {
		t.Errorf("round trip changed the pair: %s", data)
	}
}

func TestDecodePairKeepsUnknownFields(t *testing.T) {
	in := `{"version":1,"refresh_token":"r","refresh_expires_at":"2026-12-01T10:00:00Z","future_field":{"a":[1,2]},"note":"x"}`
	p, err := DecodePair([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	p.AccessToken = "new"
	out, err := EncodePair(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"future_field":{"a":[1,2]}`)) || !bytes.Contains(out, []byte(`"note":"x"`)) {
		t.Errorf("unknown fields lost on rewrite: %s", out)
	}
	again, _ := EncodePair(p)
	if !bytes.Equal(out, again) {
		t.Errorf("encoding is not deterministic")
	}
}

func TestDecodePairErrors(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"newer schema", `{"version":2,"refresh_token":"rt-SECRET"}`, ErrNewerSchema},
		{"not json", `rt-SECRET`, ErrMalformedSecret},
		{"array", `["rt-SECRET"]`, ErrMalformedSecret},
		{"null", `null`, ErrMalformedSecret},
		{"bad version", `{"version":"one"}`, ErrMalformedSecret},
		{"zero version", `{"version":0}`, ErrMalformedSecret},
		{"wrong type", `{"version":1,"refresh_token":42}`, ErrMalformedSecret},
		{"bad time", `{"version":1,"expires_at":"rt-SECRET"}`, ErrMalformedSecret},
		{"refresh without expiry", `{"version":1,"refresh_token":"rt-SECRET"}`, ErrMalformedSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePair([]byte(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
	var se *SchemaError
	_, err := DecodePair([]byte(`{"version":7}`))
	if !errors.As(err, &se) || se.Version != 7 {
		t.Errorf("want *SchemaError{7}, got %v", err)
	}
}

func TestPlaceholderIsNotConnected(t *testing.T) {
	for _, in := range []string{`{"version":1}`, `{}`} {
		p, err := DecodePair([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if p.Connected(t0) {
			t.Errorf("%s reads as connected", in)
		}
		a, err := DecodeAccess([]byte(in))
		if err != nil || a.Valid(t0) {
			t.Errorf("%s access: %v %v", in, a, err)
		}
	}
}

func TestAccessRoundTrip(t *testing.T) {
	a := samplePair().Access()
	data, err := EncodeAccess(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"access_token":"at-SECRET-1","token_type":"Bearer","expires_at":"2026-11-25T08:56:06Z"}`
	if string(data) != want {
		t.Errorf("access secret = %s, want %s", data, want)
	}
	got, err := DecodeAccess(data)
	if err != nil || got != a {
		t.Errorf("round trip: %v %v", got, err)
	}
	if _, err := DecodeAccess([]byte(`{"version":3}`)); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("newer access schema: %v", err)
	}
	if _, err := DecodeAccess([]byte(`{"version":1,"access_token":"x"}`)); !errors.Is(err, ErrMalformedSecret) {
		t.Errorf("access without expiry: %v", err)
	}
}

// TestSecretsNeverPrint formats every secret-holding type every way a careless caller might.
func TestSecretsNeverPrint(t *testing.T) {
	p := samplePair()
	creds := Credentials{ClientID: "client-1", ClientSecret: "cs-SECRET-1"}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("pair", "pair", p, "access", p.Access(), "creds", creds, "rt", p.RefreshToken)
	log.Info("values", "pair", *p, "access", p.Access())
	out := logs.String()
	for _, v := range []any{p, *p, p.Access(), creds, p.RefreshToken, []any{p, creds}} {
		out += fmt.Sprintf("%v %+v %#v %s", v, v, v, v)
		j, _ := json.Marshal(v)
		out += string(j)
	}
	if strings.Contains(out, "SECRET") {
		t.Fatalf("a secret printed:\n%s", out)
	}
	if !strings.Contains(out, "client-1") || !strings.Contains(out, redacted) {
		t.Errorf("expected the client id and redaction markers in:\n%s", out)
	}
}

func TestWithTokensKeepsBookkeeping(t *testing.T) {
	stored, _ := DecodePair([]byte(`{"version":1,"x":1,"consent_nonces":[{"nonce":"a","expires_at":"2026-11-24T10:15:00Z"}]}`))
	fresh := samplePair()
	fresh.ConsentNonces = nil
	got := stored.WithTokens(fresh)
	if got.RefreshToken != fresh.RefreshToken || len(got.ConsentNonces) != 1 || got.extra["x"] == nil {
		t.Errorf("WithTokens lost something: %#v", got)
	}
	if stored.RefreshToken != "" {
		t.Error("WithTokens changed its receiver")
	}
}
