package vbctoken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// SchemaVersion is the version of the stored JSON this build writes and reads.
const SchemaVersion = 1

// RefreshTokenLifetime is how long VBC keeps an unused refresh token alive.
const RefreshTokenLifetime = 7 * 24 * time.Hour

// Grant names how a pair was obtained.
type Grant string

// The grants VBC supports.
const (
	GrantAuthorizationCode Grant = "authorization_code"
	GrantRefreshToken      Grant = "refresh_token"
	GrantPassword          Grant = "password"
)

// Pair is the token pair the keeper owns: the source of truth, stored in the pair secret.
// Only the keeper (callback, refresher, admin CLI) ever holds it; apps get an AccessToken.
//
// A zero Pair (no refresh token) means "not connected": the pair secret exists but no admin
// has consented yet, or the chain was lost.
type Pair struct {
	AccessToken      Secret
	RefreshToken     Secret
	TokenType        string
	Scope            string
	IDToken          Secret
	ExpiresAt        time.Time // access token expiry, from expires_in at receipt
	RefreshExpiresAt time.Time // ObtainedAt + RefreshTokenLifetime
	ObtainedAt       time.Time
	Grant            Grant

	// ConsentNonces remembers the consent links already used, until they expire, so that a
	// replayed link is refused. Stored as "consent_nonces".
	ConsentNonces []UsedNonce

	// The keeper's bookkeeping of the chain (docs/design.md "The pair secret"), kept
	// unexported: only the keeper reads or changes it.
	//
	// lease is a keeper's claim on the refresh token ("lease"): while it is live, no other
	// keeper spends the token.
	lease *lease
	// retired are short hashes of the refresh tokens this chain has spent or replaced,
	// newest first ("retired"): a pair whose refresh token is among them is dead.
	retired []string
	// kept are pairs VBC issued that lost a race to the stored one ("kept"): tried before
	// re-consent is ever declared.
	kept []*Pair
	// estimated says RefreshExpiresAt is a conservative guess, not VBC's
	// ("refresh_expiry_estimated"): a re-grant reused a refresh token of unknown age.
	estimated bool
	// loginLock is a VBC user lock a password grant met ("login_lock"), so that no
	// keeper tries that user again before it ends.
	loginLock *loginLock
	// selfHeal records the last self-heal attempt ("self_heal").
	selfHeal *selfHeal
	// rejected is the short hash of the stored refresh token once VBC rejected it under a
	// keeper's lease ("rejected"): VBC never revives one, so later runs declare re-consent
	// without sending it again.
	rejected string
	// unanswered is the short hash of the stored refresh token once a refresh with it got
	// no usable answer ("unanswered"): VBC may have rotated it, so the next run refreshes at
	// once, however fresh the pair's times look.
	unanswered string

	// extra keeps fields written by other versions, so a rewrite preserves them.
	extra map[string]json.RawMessage
}

// UsedNonce is a consent link nonce that has been spent, kept until the link expires.
type UsedNonce struct {
	Nonce     string    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
	// Claim is random per callback: two callbacks replaying one link write different
	// records, so compare-and-swap lets only one of them spend the nonce (identical
	// content would look like one retried, idempotent write and both would win).
	Claim string `json:"claim,omitempty"`
}

// Connected reports whether the pair holds a refresh token that has not expired at now.
func (p *Pair) Connected(now time.Time) bool {
	return p != nil && !p.RefreshToken.IsZero() && now.Before(p.RefreshExpiresAt)
}

// Access derives the app-facing access token.
func (p *Pair) Access() AccessToken {
	return AccessToken{AccessToken: p.AccessToken, TokenType: p.TokenType, ExpiresAt: p.ExpiresAt}
}

// Clone returns a deep copy.
func (p *Pair) Clone() *Pair {
	if p == nil {
		return nil
	}
	c := *p
	c.ConsentNonces = append([]UsedNonce(nil), p.ConsentNonces...)
	c.retired = append([]string(nil), p.retired...)
	c.kept = make([]*Pair, 0, len(p.kept))
	for _, k := range p.kept {
		c.kept = append(c.kept, k.Clone())
	}
	if len(c.kept) == 0 {
		c.kept = nil
	}
	if p.lease != nil {
		l := *p.lease
		c.lease = &l
	}
	if p.loginLock != nil {
		l := *p.loginLock
		c.loginLock = &l
	}
	if p.selfHeal != nil {
		h := *p.selfHeal
		c.selfHeal = &h
	}
	if p.extra != nil {
		c.extra = make(map[string]json.RawMessage, len(p.extra))
		for k, v := range p.extra {
			c.extra[k] = v
		}
	}
	return &c
}

// WithTokens returns a copy of p carrying the tokens of fresh, keeping p's bookkeeping
// (consent nonces, unknown fields). It is how a new pair is rebased onto the stored one.
// The chain's bookkeeping (lease, retired and kept tokens, estimated expiry) is fresh's.
func (p *Pair) WithTokens(fresh *Pair) *Pair {
	out := p.Clone()
	if out == nil {
		out = &Pair{}
	}
	f := fresh.Clone()
	out.lease, out.retired, out.kept, out.estimated = f.lease, f.retired, f.kept, f.estimated
	out.rejected, out.unanswered = "", "" // marks on the tokens replaced
	out.AccessToken = fresh.AccessToken
	out.RefreshToken = fresh.RefreshToken
	out.TokenType = fresh.TokenType
	out.Scope = fresh.Scope
	out.IDToken = fresh.IDToken
	out.ExpiresAt = fresh.ExpiresAt
	out.RefreshExpiresAt = fresh.RefreshExpiresAt
	out.ObtainedAt = fresh.ObtainedAt
	out.Grant = fresh.Grant
	return out
}

// SameTokens reports whether p and q hold the same refresh and access tokens.
func (p *Pair) SameTokens(q *Pair) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.RefreshToken == q.RefreshToken && p.AccessToken == q.AccessToken
}

// String describes the pair without any token.
func (p *Pair) String() string {
	if p == nil || p.RefreshToken.IsZero() {
		return "vbctoken.Pair{not connected}"
	}
	return fmt.Sprintf("vbctoken.Pair{grant=%s access_expires=%s refresh_expires=%s obtained=%s}",
		p.Grant, p.ExpiresAt.UTC().Format(time.RFC3339), p.RefreshExpiresAt.UTC().Format(time.RFC3339),
		p.ObtainedAt.UTC().Format(time.RFC3339))
}

// GoString is String, so %#v cannot print a token either.
func (p *Pair) GoString() string { return p.String() }

// LogValue logs the pair's times and grant, never a token.
func (p *Pair) LogValue() slog.Value {
	if p == nil || p.RefreshToken.IsZero() {
		return slog.GroupValue(slog.Bool("connected", false))
	}
	return slog.GroupValue(
		slog.String("grant", string(p.Grant)),
		slog.Time("access_expires_at", p.ExpiresAt),
		slog.Time("refresh_expires_at", p.RefreshExpiresAt),
		slog.Time("obtained_at", p.ObtainedAt),
	)
}

// MarshalJSON redacts like String: the stored form comes only from EncodePair.
func (p *Pair) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// pairWire is the stored JSON of a pair (schema version 1). Unknown fields live in Pair.extra.
type pairWire struct {
	Version          int         `json:"version"`
	AccessToken      string      `json:"access_token,omitempty"`
	RefreshToken     string      `json:"refresh_token,omitempty"`
	TokenType        string      `json:"token_type,omitempty"`
	Scope            string      `json:"scope,omitempty"`
	IDToken          string      `json:"id_token,omitempty"`
	ExpiresAt        *time.Time  `json:"expires_at,omitempty"`
	RefreshExpiresAt *time.Time  `json:"refresh_expires_at,omitempty"`
	ObtainedAt       *time.Time  `json:"obtained_at,omitempty"`
	Grant            Grant       `json:"grant,omitempty"`
	ConsentNonces    []UsedNonce `json:"consent_nonces,omitempty"`
	Lease            *leaseWire  `json:"lease,omitempty"`
	Retired          []string    `json:"retired,omitempty"`
	Kept             []keptWire  `json:"kept,omitempty"`
	Estimated        bool        `json:"refresh_expiry_estimated,omitempty"`
	LoginLock        *lockWire   `json:"login_lock,omitempty"`
	SelfHeal         *healWire   `json:"self_heal,omitempty"`
	Rejected         string      `json:"rejected,omitempty"`
	Unanswered       string      `json:"unanswered,omitempty"`
}

// healWire is the stored form of the self-heal record.
type healWire struct {
	At     *time.Time `json:"at"`
	Halted bool       `json:"halted,omitempty"`
}

// lockWire is the stored form of a login lock.
type lockWire struct {
	User  string     `json:"user"`
	Until *time.Time `json:"until"`
}

// leaseWire is the stored form of a lease.
type leaseWire struct {
	Holder    string     `json:"holder"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// keptWire is the stored form of a kept pair: its tokens and times, no bookkeeping but the
// refresh tokens it retired.
type keptWire struct {
	AccessToken      string     `json:"access_token"`
	RefreshToken     string     `json:"refresh_token"`
	TokenType        string     `json:"token_type,omitempty"`
	Scope            string     `json:"scope,omitempty"`
	IDToken          string     `json:"id_token,omitempty"`
	ExpiresAt        *time.Time `json:"expires_at,omitempty"`
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
	ObtainedAt       *time.Time `json:"obtained_at,omitempty"`
	Grant            Grant      `json:"grant,omitempty"`
	Retired          []string   `json:"retired,omitempty"`
	Estimated        bool       `json:"refresh_expiry_estimated,omitempty"`
}

// knownPairFields lists pairWire's JSON names, so everything else is kept as extra.
var knownPairFields = map[string]bool{
	"version": true, "access_token": true, "refresh_token": true, "token_type": true,
	"scope": true, "id_token": true, "expires_at": true, "refresh_expires_at": true,
	"obtained_at": true, "grant": true, "consent_nonces": true,
	"lease": true, "retired": true, "kept": true, "refresh_expiry_estimated": true, "login_lock": true, "self_heal": true, "rejected": true,
	"unanswered": true,
}

func utcPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Second)
	return &u
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// EncodePair returns the stored JSON of p (schema version 1), unknown fields included.
// Only stores call it: its output holds every token in clear.
func EncodePair(p *Pair) ([]byte, error) {
	if p == nil {
		p = &Pair{}
	}
	w := pairWire{
		Version:          SchemaVersion,
		AccessToken:      p.AccessToken.Reveal(),
		RefreshToken:     p.RefreshToken.Reveal(),
		TokenType:        p.TokenType,
		Scope:            p.Scope,
		IDToken:          p.IDToken.Reveal(),
		ExpiresAt:        utcPtr(p.ExpiresAt),
		RefreshExpiresAt: utcPtr(p.RefreshExpiresAt),
		ObtainedAt:       utcPtr(p.ObtainedAt),
		Grant:            p.Grant,
		ConsentNonces:    p.ConsentNonces,
		Retired:          p.retired,
		Estimated:        p.estimated,
		Rejected:         p.rejected,
		Unanswered:       p.unanswered,
	}
	if p.lease != nil {
		w.Lease = &leaseWire{Holder: p.lease.Holder, ExpiresAt: utcPtr(p.lease.ExpiresAt)}
	}
	if p.loginLock != nil {
		w.LoginLock = &lockWire{User: p.loginLock.User, Until: utcPtr(p.loginLock.Until)}
	}
	if p.selfHeal != nil {
		w.SelfHeal = &healWire{At: utcPtr(p.selfHeal.At), Halted: p.selfHeal.Halted}
	}
	for _, k := range p.kept {
		w.Kept = append(w.Kept, keptWire{
			AccessToken: k.AccessToken.Reveal(), RefreshToken: k.RefreshToken.Reveal(),
			TokenType: k.TokenType, Scope: k.Scope, IDToken: k.IDToken.Reveal(),
			ExpiresAt: utcPtr(k.ExpiresAt), RefreshExpiresAt: utcPtr(k.RefreshExpiresAt),
			ObtainedAt: utcPtr(k.ObtainedAt), Grant: k.Grant, Retired: k.retired, Estimated: k.estimated,
		})
	}
	known, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode pair: %w", err)
	}
	if len(p.extra) == 0 {
		return known, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(known, &fields); err != nil {
		return nil, fmt.Errorf("encode pair: %w", err)
	}
	for k, v := range p.extra {
		if !knownPairFields[k] {
			fields[k] = v
		}
	}
	return json.Marshal(fields) // map keys are sorted: the encoding is deterministic
}

// DecodePair parses the stored JSON of a pair. It refuses a newer schema version with a
// *SchemaError and anything that is not a JSON object of the right shape with
// ErrMalformedSecret; errors never quote the input.
func DecodePair(data []byte) (*Pair, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("decode pair: %w: not a JSON object", ErrMalformedSecret)
	}
	version, err := decodeVersion(fields, "pair")
	if err != nil {
		return nil, err
	}
	// Only exact names are schema fields: encoding/json would also read "Id_Token" as
	// id_token, while such a key is kept below as an unknown field, and after a rewrite
	// that omits the real field its stale value would come back.
	known := make(map[string]json.RawMessage, len(fields))
	for k, v := range fields {
		if knownPairFields[k] {
			known[k] = v
		}
	}
	exact, err := json.Marshal(known)
	if err != nil {
		return nil, fmt.Errorf("decode pair: %w: not a JSON object", ErrMalformedSecret)
	}
	var w pairWire
	if err := strictUnmarshal(exact, &w); err != nil {
		return nil, fmt.Errorf("decode pair: %w: %s", ErrMalformedSecret, err)
	}
	w.Version = version
	p := &Pair{
		AccessToken:      Secret(w.AccessToken),
		RefreshToken:     Secret(w.RefreshToken),
		TokenType:        w.TokenType,
		Scope:            w.Scope,
		IDToken:          Secret(w.IDToken),
		ExpiresAt:        timeOf(w.ExpiresAt),
		RefreshExpiresAt: timeOf(w.RefreshExpiresAt),
		ObtainedAt:       timeOf(w.ObtainedAt),
		Grant:            w.Grant,
		ConsentNonces:    w.ConsentNonces,
		retired:          w.Retired,
		estimated:        w.Estimated,
		rejected:         w.Rejected,
		unanswered:       w.Unanswered,
	}
	times := []time.Time{p.ExpiresAt, p.RefreshExpiresAt, p.ObtainedAt}
	if w.Lease != nil {
		if w.Lease.Holder == "" || w.Lease.ExpiresAt == nil {
			return nil, fmt.Errorf("decode pair: %w: lease without holder or expires_at", ErrMalformedSecret)
		}
		p.lease = &lease{Holder: w.Lease.Holder, ExpiresAt: timeOf(w.Lease.ExpiresAt)}
		times = append(times, p.lease.ExpiresAt)
	}
	if w.LoginLock != nil {
		if w.LoginLock.User == "" || w.LoginLock.Until == nil {
			return nil, fmt.Errorf("decode pair: %w: login_lock without user or until", ErrMalformedSecret)
		}
		p.loginLock = &loginLock{User: w.LoginLock.User, Until: timeOf(w.LoginLock.Until)}
		times = append(times, p.loginLock.Until)
	}
	if w.SelfHeal != nil {
		if w.SelfHeal.At == nil {
			return nil, fmt.Errorf("decode pair: %w: self_heal without at", ErrMalformedSecret)
		}
		p.selfHeal = &selfHeal{At: timeOf(w.SelfHeal.At), Halted: w.SelfHeal.Halted}
		times = append(times, p.selfHeal.At)
	}
	for _, k := range w.Kept {
		kp := &Pair{
			AccessToken: Secret(k.AccessToken), RefreshToken: Secret(k.RefreshToken),
			TokenType: k.TokenType, Scope: k.Scope, IDToken: Secret(k.IDToken),
			ExpiresAt: timeOf(k.ExpiresAt), RefreshExpiresAt: timeOf(k.RefreshExpiresAt),
			ObtainedAt: timeOf(k.ObtainedAt), Grant: k.Grant, retired: k.Retired, estimated: k.Estimated,
		}
		if kp.RefreshToken.IsZero() || kp.RefreshExpiresAt.IsZero() {
			return nil, fmt.Errorf("decode pair: %w: kept pair without refresh_token or refresh_expires_at", ErrMalformedSecret)
		}
		p.kept = append(p.kept, kp)
		times = append(times, kp.ExpiresAt, kp.RefreshExpiresAt, kp.ObtainedAt)
	}
	for _, t := range times {
		if y := t.Year(); !t.IsZero() && (y < 0 || y > 9999) {
			// A time JSON allows whose UTC year EncodePair could not write back.
			return nil, fmt.Errorf("decode pair: %w: invalid JSON or time value", ErrMalformedSecret)
		}
	}
	if !p.RefreshToken.IsZero() && p.RefreshExpiresAt.IsZero() {
		return nil, fmt.Errorf("decode pair: %w: refresh_token without refresh_expires_at", ErrMalformedSecret)
	}
	for k, v := range fields {
		if !knownPairFields[k] {
			if p.extra == nil {
				p.extra = map[string]json.RawMessage{}
			}
			p.extra[k] = v
		}
	}
	return p, nil
}

// decodeVersion reads "version": absent means 1 (a hand-written placeholder such as {}),
// a newer one is a *SchemaError.
func decodeVersion(fields map[string]json.RawMessage, what string) (int, error) {
	raw, ok := fields["version"]
	if !ok {
		return SchemaVersion, nil
	}
	var v int
	if err := json.Unmarshal(raw, &v); err != nil || v < 1 {
		return 0, fmt.Errorf("decode %s: %w: version is not a positive integer", what, ErrMalformedSecret)
	}
	if v > SchemaVersion {
		return 0, &SchemaError{What: what, Version: v}
	}
	return v, nil
}

// strictUnmarshal decodes into v and reports type mismatches without echoing values.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if ok := asTypeError(err, &te); ok {
			return fmt.Errorf("field %q has the wrong type", te.Field)
		}
		return fmt.Errorf("invalid JSON or time value")
	}
	return nil
}

func asTypeError(err error, target **json.UnmarshalTypeError) bool {
	te, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*target = te
	}
	return ok
}

// AccessToken is what apps read from the access secret: a bearer token, its expiry and
// when the keeper plans to replace it. Apps never see the refresh token.
type AccessToken struct {
	AccessToken Secret
	TokenType   string
	ExpiresAt   time.Time
	// RefreshAt is the keeper's hint: the time of the scheduled refresher run that will
	// replace this token (VBC kills the old access token the moment a refresh succeeds, see
	// README "Apps"). Readers cache the token until shortly after it (Source). Zero means no hint (a
	// keeper that predates the field, or a hand-written secret); an operator's forced
	// refresh or a new consent may replace the token earlier. Stored as "refresh_at".
	RefreshAt time.Time
}

// Valid reports whether the token is present and not expired at now.
func (a AccessToken) Valid(now time.Time) bool {
	return !a.AccessToken.IsZero() && now.Before(a.ExpiresAt)
}

// String describes the token without its value.
func (a AccessToken) String() string {
	if a.AccessToken.IsZero() {
		return "vbctoken.AccessToken{none}"
	}
	s := fmt.Sprintf("vbctoken.AccessToken{type=%s expires=%s", a.TokenType, a.ExpiresAt.UTC().Format(time.RFC3339))
	if !a.RefreshAt.IsZero() {
		s += " refresh_at=" + a.RefreshAt.UTC().Format(time.RFC3339)
	}
	return s + "}"
}

// GoString is String.
func (a AccessToken) GoString() string { return a.String() }

// LogValue logs the times only.
func (a AccessToken) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("token_type", a.TokenType), slog.Time("expires_at", a.ExpiresAt)}
	if !a.RefreshAt.IsZero() {
		attrs = append(attrs, slog.Time("refresh_at", a.RefreshAt))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON redacts like String: the stored form comes only from EncodeAccess.
func (a AccessToken) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

// accessWire is the stored JSON of the access secret (schema version 1). refresh_at is
// optional: readers of schema 1 ignore fields they do not know, so adding it needs no new
// version.
type accessWire struct {
	Version     int        `json:"version"`
	AccessToken string     `json:"access_token,omitempty"`
	TokenType   string     `json:"token_type,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RefreshAt   *time.Time `json:"refresh_at,omitempty"`
}

// EncodeAccess returns the stored JSON of the app-facing access secret. Times are written
// in RFC 3339 UTC, to the second.
func EncodeAccess(a AccessToken) ([]byte, error) {
	data, err := json.Marshal(accessWire{
		Version:     SchemaVersion,
		AccessToken: a.AccessToken.Reveal(),
		TokenType:   a.TokenType,
		ExpiresAt:   utcPtr(a.ExpiresAt),
		RefreshAt:   utcPtr(a.RefreshAt),
	})
	if err != nil {
		return nil, fmt.Errorf("encode access token: %w", err)
	}
	return data, nil
}

// DecodeAccess parses the access secret. A placeholder such as {"version":1} decodes to a
// zero AccessToken (not connected yet). Field names are matched exactly and unknown fields
// are ignored; a known field of the wrong type, or a time EncodeAccess could not write
// back, is ErrMalformedSecret.
func DecodeAccess(data []byte) (AccessToken, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return AccessToken{}, fmt.Errorf("decode access token: %w: not a JSON object", ErrMalformedSecret)
	}
	if _, err := decodeVersion(fields, "access token"); err != nil {
		return AccessToken{}, err
	}
	// Only exact names are schema fields, as in DecodePair: encoding/json alone would also
	// read "Refresh_At", which the Python and Node readers (examples/) would not.
	known := make(map[string]json.RawMessage, len(fields))
	for _, k := range []string{"access_token", "token_type", "expires_at", "refresh_at"} {
		if v, ok := fields[k]; ok {
			known[k] = v
		}
	}
	exact, err := json.Marshal(known)
	if err != nil {
		return AccessToken{}, fmt.Errorf("decode access token: %w: not a JSON object", ErrMalformedSecret)
	}
	var w accessWire
	if err := strictUnmarshal(exact, &w); err != nil {
		return AccessToken{}, fmt.Errorf("decode access token: %w: %s", ErrMalformedSecret, err)
	}
	a := AccessToken{
		AccessToken: Secret(w.AccessToken),
		TokenType:   w.TokenType,
		ExpiresAt:   timeOf(w.ExpiresAt),
		RefreshAt:   timeOf(w.RefreshAt),
	}
	for _, t := range []time.Time{a.ExpiresAt, a.RefreshAt} {
		if y := t.Year(); !t.IsZero() && (y < 0 || y > 9999) {
			return AccessToken{}, fmt.Errorf("decode access token: %w: invalid JSON or time value", ErrMalformedSecret)
		}
	}
	if !a.AccessToken.IsZero() && a.ExpiresAt.IsZero() {
		return AccessToken{}, fmt.Errorf("decode access token: %w: access_token without expires_at", ErrMalformedSecret)
	}
	return a, nil
}
