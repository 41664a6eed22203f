package vbctoken_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// The access secret's stored form, refresh_at included, is fixed: apps in other languages
// parse it (README "Apps").
func TestAccessEncode(t *testing.T) {
	exp := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   vbctoken.AccessToken
		want string
	}{
		{
			name: "with the keeper's hint",
			in: vbctoken.AccessToken{AccessToken: "at-1", TokenType: "Bearer", ExpiresAt: exp,
				RefreshAt: time.Date(2026, 11, 25, 8, 0, 0, 500, time.FixedZone("CET", 3600))},
			want: `{"version":1,"access_token":"at-1","token_type":"Bearer","expires_at":"2026-11-25T09:00:00Z","refresh_at":"2026-11-25T07:00:00Z"}`,
		},
		{
			name: "without a hint the field is left out",
			in:   vbctoken.AccessToken{AccessToken: "at-1", TokenType: "Bearer", ExpiresAt: exp},
			want: `{"version":1,"access_token":"at-1","token_type":"Bearer","expires_at":"2026-11-25T09:00:00Z"}`,
		},
		{name: "placeholder", want: `{"version":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vbctoken.EncodeAccess(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	if _, err := vbctoken.EncodeAccess(vbctoken.AccessToken{AccessToken: "x", ExpiresAt: exp, RefreshAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("a year EncodeAccess cannot write was encoded")
	}
}

// DecodeAccess reads refresh_at when present, ignores fields it does not know (a newer
// keeper's, within schema 1) and refuses a known field of the wrong type.
func TestAccessDecode(t *testing.T) {
	exp := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	base := `"version":1,"access_token":"SRC-SECRET-a","token_type":"Bearer","expires_at":"2026-11-25T09:00:00Z"`
	tests := []struct {
		name    string
		in      string
		want    vbctoken.AccessToken
		wantErr error
	}{
		{name: "no hint", in: `{` + base + `}`,
			want: vbctoken.AccessToken{AccessToken: "SRC-SECRET-a", TokenType: "Bearer", ExpiresAt: exp}},
		{name: "hint", in: `{` + base + `,"refresh_at":"2026-11-25T07:00:00Z"}`,
			want: vbctoken.AccessToken{AccessToken: "SRC-SECRET-a", TokenType: "Bearer", ExpiresAt: exp, RefreshAt: exp.Add(-2 * time.Hour)}},
		{name: "hint with an offset is read as UTC", in: `{` + base + `,"refresh_at":"2026-11-25T08:00:00+01:00"}`,
			want: vbctoken.AccessToken{AccessToken: "SRC-SECRET-a", TokenType: "Bearer", ExpiresAt: exp, RefreshAt: exp.Add(-2 * time.Hour)}},
		{name: "null hint is no hint", in: `{` + base + `,"refresh_at":null}`,
			want: vbctoken.AccessToken{AccessToken: "SRC-SECRET-a", TokenType: "Bearer", ExpiresAt: exp}},
		{name: "unknown fields are ignored", in: `{` + base + `,"refresh_window":{"from":"x"},"next":[1,2]}`,
			want: vbctoken.AccessToken{AccessToken: "SRC-SECRET-a", TokenType: "Bearer", ExpiresAt: exp}},
		{name: "names are exact: Refresh_At is an unknown field", in: `{` + base + `,"Refresh_At":"2026-11-25T07:00:00Z"}`,
			want: vbctoken.AccessToken{AccessToken: "SRC-SECRET-a", TokenType: "Bearer", ExpiresAt: exp}},
		{name: "placeholder with a hint", in: `{"version":1,"refresh_at":"2026-11-25T07:00:00Z"}`,
			want: vbctoken.AccessToken{RefreshAt: exp.Add(-2 * time.Hour)}},
		{name: "hint of the wrong type", in: `{` + base + `,"refresh_at":1764054000}`, wantErr: vbctoken.ErrMalformedSecret},
		{name: "hint that is not a time", in: `{` + base + `,"refresh_at":"tomorrow"}`, wantErr: vbctoken.ErrMalformedSecret},
		{name: "hint EncodeAccess could not write back", in: `{` + base + `,"refresh_at":"0000-01-01T00:00:00+01:00"}`, wantErr: vbctoken.ErrMalformedSecret},
		{name: "newer schema", in: `{"version":2,"refresh_at":"2026-11-25T07:00:00Z"}`, wantErr: vbctoken.ErrNewerSchema},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vbctoken.DecodeAccess([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				srcNoSecret(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if !got.RefreshAt.IsZero() && got.RefreshAt.Location() != time.UTC {
				t.Errorf("RefreshAt in %s, want UTC", got.RefreshAt.Location())
			}
		})
	}
}

// An AccessToken prints and logs its times, never its value.
func TestAccessRedacts(t *testing.T) {
	a := vbctoken.AccessToken{AccessToken: srcSecret + "a", TokenType: "Bearer",
		ExpiresAt: srcT0.Add(24 * time.Hour), RefreshAt: srcT0.Add(22 * time.Hour)}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("read", "access", a)
	js, _ := json.Marshal(a)
	out := strings.Join([]string{a.String(), fmt.Sprintf("%v %+v %#v", a, a, a), logs.String(), string(js)}, "\n")
	if strings.Contains(out, srcSecret) {
		t.Fatalf("a token printed:\n%s", out)
	}
	for _, want := range []string{"refresh_at=2026-11-25T07:00:00Z", `"refresh_at":"2026-11-25T07:00:00Z"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

// FuzzDecodeAccess: DecodeAccess never panics, never quotes a token in its errors, and what
// it accepts survives a round trip through EncodeAccess.
func FuzzDecodeAccess(f *testing.F) {
	for _, s := range []string{
		`{"version":1}`,
		`{}`,
		`{"version":1,"access_token":"a","token_type":"Bearer","expires_at":"2026-11-25T09:00:00Z","refresh_at":"2026-11-25T07:00:00Z"}`,
		`{"version":1,"access_token":"a","expires_at":"2026-11-25T09:00:00Z","refresh_at":7}`,
		`{"version":1,"access_token":"a","expires_at":"2026-11-25T09:00:00Z","Refresh_At":"2026-11-25T07:00:00Z"}`,
		`{"version":1,"access_token":"a","expires_at":"2026-11-25T09:00:00Z","refresh_at":"0000-01-01T00:00:00+01:00"}`,
		`{"version":2}`,
		`[]`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := vbctoken.DecodeAccess(data)
		if err != nil {
			var raw struct {
				AccessToken string `json:"access_token"`
			}
			if json.Unmarshal(data, &raw) == nil && len(raw.AccessToken) >= 4 && strings.Contains(err.Error(), raw.AccessToken) {
				t.Fatalf("error quotes the token: %v", err)
			}
			return
		}
		enc, err := vbctoken.EncodeAccess(a)
		if err != nil {
			t.Fatalf("decoded %v but cannot encode it: %v", a, err)
		}
		b, err := vbctoken.DecodeAccess(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		// Stored times have whole seconds.
		trunc := func(x vbctoken.AccessToken) vbctoken.AccessToken {
			x.ExpiresAt, x.RefreshAt = x.ExpiresAt.Truncate(time.Second), x.RefreshAt.Truncate(time.Second)
			return x
		}
		if !trunc(a).ExpiresAt.Equal(b.ExpiresAt) || !trunc(a).RefreshAt.Equal(b.RefreshAt) ||
			a.AccessToken != b.AccessToken || a.TokenType != b.TokenType {
			t.Fatalf("round trip changed %v into %v", a, b)
		}
	})
}
