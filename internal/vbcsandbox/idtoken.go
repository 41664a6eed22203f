package vbcsandbox

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1" // WSO2's x5t is a SHA-1 thumbprint; nothing relies on its strength
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"time"
)

// IDTokenClaims are the claims of the sandbox's id_tokens.
type IDTokenClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"` // the client_id
	AZP       string `json:"azp"` // the client_id
	IssuedAt  int64  `json:"iat"` // Unix seconds, sandbox clock
	ExpiresAt int64  `json:"exp"` // the access token's expiry
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
	X5t string `json:"x5t,omitempty"` // ModeWSO2 only
}

// wso2Thumbprint is the x5t WSO2 puts in id_token headers: base64url of the HEX string of
// a SHA-1 thumbprint, not of the thumbprint's bytes (RFC 7515 wants the bytes). WSO2
// hashes its signing certificate; the sandbox has no certificate and hashes the public
// key's PKIX encoding.
func wso2Thumbprint(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha1.Sum(der)
	return base64.RawURLEncoding.EncodeToString([]byte(hex.EncodeToString(sum[:])))
}

// keyID is a stable identifier of the public key (the "kid" header).
func keyID(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// signIDToken returns a compact RS256 JWT.
func (s *Sandbox) signIDToken(sub, aud string, iat, exp time.Time) (string, error) {
	h, err := json.Marshal(jwtHeader{Alg: "RS256", Typ: "JWT", Kid: s.kid, X5t: s.x5t})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(IDTokenClaims{
		Issuer: s.opts.Issuer, Subject: sub, Audience: aud, AZP: aud,
		IssuedAt: iat.Unix(), ExpiresAt: exp.Unix(),
	})
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
