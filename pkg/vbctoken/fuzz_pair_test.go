package vbctoken_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"testing"

	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// pairErrorRE matches every error DecodePair may return. Errors are built from fixed
// words, the names of the schema's own fields and a schema version number: never from
// the stored bytes, which hold tokens.
var pairErrorRE = regexp.MustCompile(`^(decode pair: malformed stored value: (not a JSON object|version is not a positive integer|invalid JSON or time value|refresh_token without refresh_expires_at|field "[a-z_.]*" has the wrong type)|pair has schema version [0-9]+; this build knows [0-9]+: upgrade vbctoken, nothing was overwritten)$`)

// schemaFields are the names of schema version 1; anything else is an unknown field that
// a rewrite must keep.
var schemaFields = map[string]bool{
	"version": true, "access_token": true, "refresh_token": true, "token_type": true, "scope": true,
	"id_token": true, "expires_at": true, "refresh_expires_at": true, "obtained_at": true,
	"grant": true, "consent_nonces": true,
}

// FuzzDecodePair feeds arbitrary bytes to DecodePair, as a pair secret edited by hand or
// written by another version would be. It must never panic; a refusal is
// ErrMalformedSecret or ErrNewerSchema with a message that quotes nothing of the input;
// what it accepts re-encodes to bytes that decode to the same pair (decode → encode →
// decode → encode is stable); and every field it does not know survives the rewrite.
func FuzzDecodePair(f *testing.F) {
	f.Add([]byte(`{"version":1,"access_token":"at-0","refresh_token":"rt-0","token_type":"Bearer","scope":"openid","id_token":"eyJ.x.y","expires_at":"2026-11-25T09:00:00Z","refresh_expires_at":"2026-12-01T09:00:00Z","obtained_at":"2026-11-24T09:00:00Z","grant":"authorization_code","consent_nonces":[{"nonce":"n1","expires_at":"2026-11-24T09:15:00Z"}]}`))
	f.Add([]byte(`{"version":1,"future_field":{"a":[1,2,{"b":null}]},"x":"\u003c"}`))
	f.Add([]byte(`{"version":2,"access_token":"at"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"Access_Token":"a","access_token":"b"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := vbctoken.DecodePair(data)
		if err != nil {
			if p != nil {
				t.Fatal("a pair returned with an error")
			}
			if !errors.Is(err, vbctoken.ErrMalformedSecret) && !errors.Is(err, vbctoken.ErrNewerSchema) {
				t.Fatalf("error %q is neither ErrMalformedSecret nor ErrNewerSchema", err)
			}
			if !pairErrorRE.MatchString(err.Error()) {
				t.Fatalf("unexpected error text (it may quote the input): %q", err)
			}
			return
		}
		enc, err := vbctoken.EncodePair(p)
		if err != nil {
			t.Fatalf("an accepted pair does not encode: %v", err)
		}
		p2, err := vbctoken.DecodePair(enc)
		if err != nil {
			t.Fatalf("the encoding of an accepted pair does not decode: %v\n%s", err, enc)
		}
		enc2, err := vbctoken.EncodePair(p2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("decode → encode is not stable:\n%s\n%s", enc, enc2)
		}
		if p.String() != p2.String() || p.RefreshToken != p2.RefreshToken || p.AccessToken != p2.AccessToken || p.IDToken != p2.IDToken ||
			p.TokenType != p2.TokenType || p.Scope != p2.Scope || len(p.ConsentNonces) != len(p2.ConsentNonces) {
			t.Fatalf("the pair changed through its encoding: %v / %v", p, p2)
		}

		// Unknown top-level fields come back with the same JSON value.
		var in, out map[string]json.RawMessage
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("DecodePair accepted what is not a JSON object: %v", err)
		}
		if err := json.Unmarshal(enc, &out); err != nil {
			t.Fatal(err)
		}
		for k, v := range in {
			if schemaFields[k] {
				continue
			}
			got, ok := out[k]
			if !ok {
				t.Fatalf("unknown field %q was dropped", k)
			}
			// Same JSON value; the bytes may differ (json.Marshal escapes <, > and &).
			if a, b := jsonValue(t, v), jsonValue(t, got); !reflect.DeepEqual(a, b) {
				t.Fatalf("unknown field %q changed: %s → %s", k, v, got)
			}
		}
	})
}

// jsonValue decodes a JSON value keeping numbers as written.
func jsonValue(t *testing.T, raw []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("kept field is not JSON: %v", err)
	}
	return v
}

// Found by FuzzDecodePair: encoding/json matches field names case-insensitively, so a key
// such as "Id_Token" was read as the id_token and also kept as an unknown field; once the
// real field was empty (and omitted), the next read brought the stale value back. Only
// exact names are schema fields; other spellings are unknown fields, kept and ignored.
func TestDecodePairReadsExactFieldNamesOnly(t *testing.T) {
	p, err := vbctoken.DecodePair([]byte(`{"version":1,"Id_Token":"stale","id_token":"","REFRESH_TOKEN":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.IDToken.IsZero() || !p.RefreshToken.IsZero() {
		t.Fatalf("a case variant was read as a schema field: %#v", p)
	}
	enc, err := vbctoken.EncodePair(p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := vbctoken.DecodePair(enc)
	if err != nil || !again.IDToken.IsZero() || !again.RefreshToken.IsZero() {
		t.Fatalf("after a rewrite: %v %v", again, err)
	}
	if !bytes.Contains(enc, []byte(`"Id_Token":"stale"`)) || !bytes.Contains(enc, []byte(`"REFRESH_TOKEN":"x"`)) {
		t.Fatalf("unknown fields were not kept: %s", enc)
	}
}

// Found by FuzzDecodePair: a time that JSON allows but whose UTC year is outside
// 0000–9999 was accepted, and the pair could then never be written back (EncodePair
// stores UTC). DecodePair refuses it like any other bad time value.
func TestDecodePairRefusesTimesItCannotWriteBack(t *testing.T) {
	for _, raw := range []string{
		`{"version":1,"expires_at":"0000-01-01T00:00:00+01:00"}`,
		`{"version":1,"refresh_token":"rt","refresh_expires_at":"9999-12-31T23:00:00-02:00"}`,
	} {
		if _, err := vbctoken.DecodePair([]byte(raw)); !errors.Is(err, vbctoken.ErrMalformedSecret) {
			t.Errorf("%s: %v, want ErrMalformedSecret", raw, err)
		}
	}
}
