// Package vbcsandbox is an in-memory stand-in for the OAuth server of Vonage Business
// Communications (VBC): its authorize and token endpoints, speaking the wire protocol VBC
// documents, plus the inspection and fault injection tests need. It is the test double for
// the client, the store and refresher, the Lambda functions and the long chaos soak, and it
// serves the browser consent page of `make local`.
//
// # What it models
//
//   - GET /authorize (scope, response_type=code, redirect_uri, client_id, state, optional
//     PKCE S256): an unknown client_id or a redirect_uri that is not exactly a registered
//     one shows an error page and never redirects; other invalid requests redirect with
//     error=…; a valid one shows a consent page (#approve, #decline) that POSTs back to
//     /authorize. Approve redirects with code and state, Decline with
//     error=access_denied. Sandbox.Approve and Sandbox.Decline do the same without HTML.
//   - Authorization codes: random, single use (any redemption attempt burns the code),
//     valid CodeTTL (10 min) on the sandbox clock, bound to the client, the redirect_uri
//     and the PKCE challenge.
//   - POST /token with the three grants VBC documents, each with VBC's client
//     authentication style, enforced so a client sending the other style fails:
//     authorization_code takes HTTP Basic only (a client_secret in the body is 401
//     invalid_client); refresh_token and password take client_id and client_secret in the
//     body only (an Authorization header is 401 invalid_client). Password user names must
//     end in @vbc.prod (else invalid_grant).
//   - Responses: access_token and refresh_token as UUID-shaped opaque values (like VBC's),
//     scope "openid" when asked for, else "default", token_type Bearer, expires_in in
//     seconds, and with openid an id_token: an RS256 JWT signed with a key made at New
//     (Sandbox.PublicKey verifies it; claims in IDTokenClaims).
//   - Lifetimes on the injectable clock: access 24 h, each refresh token 7 days from its
//     issue. A refresh rotates: the used refresh token is dead, a new pair comes back. A
//     dead, unknown, expired, revoked or other client's refresh token is 400 invalid_grant.
//   - VBC's repeated-grant quirk: a password grant for a client, user and scope whose
//     newest access token is still active answers with that same pair (access AND refresh
//     token, as WSO2-style servers do) and the remaining expires_in, which is then below
//     86400. Options.NoTokenReuse turns it off.
//   - Chains: every consent (code exchange) and every non-reused password grant starts a
//     chain; refreshes continue it. Older chains of the same client stay valid until they
//     expire (Options.RevokeOnConsent changes that). Old access tokens survive a refresh
//     until their own expiry (Options.RefreshRevokesAccess changes that).
//   - GET /api/whoami with a bearer access token, so apps and tests can prove a token
//     works: 200 {"sub","client_id","expires_at"} or 401 with
//     WWW-Authenticate: Bearer error="invalid_token".
//   - Faults on the token endpoint (SetFaults, InjectNext): load balancer 5xx pages,
//     throttling, delays, broken or truncated bodies, HTML where JSON was expected, and
//     ProcessedButLost, where the refresh token was rotated but the answer never arrives.
//
// # What it deliberately does not model
//
// Real user log-in (the consent page acts as Options.ConsentSubject), SSO, TLS, the
// developer portal, revocation or introspection endpoints (VBC documents none; use
// Sandbox.Revoke), the VBC business APIs, scopes beyond openid/default, JWKS discovery,
// CSRF protection on the consent form, PKCE "plain", and fault injection on /authorize.
// State lives in memory and grows with every issued token; nothing is persisted. Where
// VBC's behaviour is unknown (PKCE support, whether a refresh kills the old access token,
// whether a new consent kills older chains, what a reused code does), the default is the
// lenient choice and an Option selects the strict one, so callers can be tested against
// both.
//
// # Concurrency and secrets
//
// A Sandbox has no global state and every method is safe for concurrent use; concurrent
// refreshes of one token succeed exactly once. It never logs; token values appear only in
// responses and in Issued (whose String redacts them).
package vbcsandbox
