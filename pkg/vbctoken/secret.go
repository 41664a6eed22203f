package vbctoken

import "log/slog"

// redacted is what every secret prints as.
const redacted = "[REDACTED]"

// Secret holds a value that must never reach a log, an error, an HTTP response or a panic:
// an access or refresh token, an id_token, a client secret, a code or a password.
//
// String, GoString, LogValue and MarshalJSON all redact; Reveal returns the raw value and is
// called only where the value leaves the process on purpose (the token endpoint, the store's
// own codec, an Authorization header).
type Secret string

// Reveal returns the raw value.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts the value for %#v.
func (s Secret) GoString() string { return `vbctoken.Secret("` + s.String() + `")` }

// LogValue redacts the value for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts the value: a stray json.Marshal cannot leak it. The stores encode
// secrets through their own wire types.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }
