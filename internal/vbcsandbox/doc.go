// Package vbcsandbox is an in-memory stand-in for the OAuth server of Vonage Business
// Communications (VBC): its authorize and token endpoints, speaking the wire protocol VBC
// documents, plus the inspection and fault injection tests need. It is the test double for
// the client, the store and refresher, the Lambda functions and the long chaos soak, and it
// serves the browser consent page of `make local`.
//
// # What it models
//
// In every mode, except where the ModeWSO2 section below says otherwise:
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
// # Modes
//
// Options.Mode picks a whole behaviour; the soak, the tests and `vbctoken serve` choose one
// with a single field (ParseMode reads the names):
//
//   - ModeLenient (zero value, "lenient"): everything above, refined by the boolean knobs.
//     Where VBC's behaviour was unknown, the lenient choice.
//   - ModeStrict ("strict"): ModeLenient with RevokeOnConsent and RefreshRevokesAccess.
//   - ModeWSO2 ("wso2"): what VBC's real token server does. VBC runs WSO2 API Manager with
//     the WSO2 Identity Server key manager (the vbc.prod tenant in user names, the hex x5t,
//     expires_in below 86400 from token reuse, scope "default"), so its source is the spec:
//     wso2-extensions/identity-inbound-auth-oauth (RefreshGrantHandler,
//     DefaultRefreshTokenGrantProcessor, AbstractAuthorizationGrantHandler,
//     AuthorizationCodeGrantHandler, PasswordGrantHandler, BasicAuthClientAuthenticator,
//     OAuth2Service) and the wso2/product-is issues cited below. New panics if ModeWSO2 is
//     combined with NoTokenReuse, RevokeOnConsent, RevokeOnCodeReuse or
//     RefreshRevokesAccess: WSO2's rules fix them.
//
// # ModeWSO2
//
//   - Refresh: the old access AND refresh token die the moment the new pair is issued (the
//     old row goes INACTIVE in the transaction that inserts the new one); no grace.
//   - One active token per client, user and scope, reused: a code exchange or password
//     grant while that token's access and refresh token are both unexpired answers the
//     SAME pair with the remaining expires_in (recorded in IssuedPair.Reuses, nothing added
//     to Issued). If only the access token expired, a new access token comes back with the
//     same refresh token, which keeps its original issue time and expiry
//     (IssuedPair.RenewedAccess, RefreshIssuedAt). Reuse hands out whatever pair is active
//     now, so after a refresh it is the refreshed pair.
//   - Authorization codes: any exchange attempt spends the code (state REVOKED), even one
//     failing on redirect_uri ("Callback url mismatch") or PKCE ("PKCE validation
//     failed"); a spent code is "Expired or Revoked authorization code received from token
//     request". Exchanging an already-exchanged code (INACTIVE) revokes the pair that
//     exchange was answered with — with reuse that can be the live chain — and is
//     "Inactive authorization code received from token request" (RFC 6749 §4.1.2). A pair
//     already rotated away is not revived or harmed.
//   - Refresh races: a refresh presenting a token another refresh consumed less than
//     Options.ClusterLag ago (default 2 s on the sandbox clock), or whose consuming request
//     is still being answered, is settled by Options.Race (FixedRace, RandomRace or your
//     own RaceFunc; Sandbox.SetRace): RaceInvalidGrant (400, what one WSO2 node does),
//     RaceServerError (500 server_error "Server Error", nothing changes) or RaceBothSucceed
//     (200 with another new pair, whose issue expires the pair the chain held: the first
//     answer is dead on arrival; product-is #5081, #18890, #24206). The default is
//     RaceInvalidGrant. Outside the window a consumed token is plain invalid_grant.
//   - Client authentication, for every grant and /revoke: HTTP Basic (base64-decoded, split
//     on ":", not URL-decoded) or client_id and client_secret in the body; both at once is
//     400 invalid_request "Request body and headers contain authorization information"; a
//     bad client is 401 invalid_client "Client Authentication failed." with
//     WWW-Authenticate: Basic.
//   - Password lock-out (the account-lock handler): Options.LockAfter failures in a row
//     (default 3: WSO2 ships 5, VBC is reported to lock after "a few", and the strictest
//     plausible value keeps callers honest) lock the user for Options.LockFor (default
//     30 min) counted from the LAST attempt: every attempt during the lock, right password
//     or wrong, restarts it. The locking attempt and every locked one are 400
//     invalid_grant "17003 User account is locked for user : <name>. cannot login until
//     the account is unlocked " (Identity Server 5.2's wording, product-is #3694; newer
//     versions say "17003:MaxAttemptsExceeded …", product-is #20266: match the 17003
//     prefix, DescLockedPrefix). A wrong password is "Authentication failed for <user>";
//     unknown users and other tenants never lock. A success resets the count; so does a
//     lock running out. Sandbox.LockedUntil and FailedLogins expose the state.
//   - POST /revoke (RFC 7009, served only in this mode): form token and optional
//     token_type_hint; revoking a chain's live access or refresh token revokes the chain;
//     200 with an empty body, also for unknown or dead tokens; another client's live token
//     is 400 unauthorized_client.
//   - Error bodies are WSO2's, word for word (the Desc constants): a dead refresh token is
//     400 invalid_grant with "Persisted access token data not found" (unknown, or another
//     client's), "Invalid refresh token state" (consumed or revoked), "Invalid refresh
//     token value in the request" (expired by a race) or "Refresh token is expired.".
//     WSO2's wording differs between versions and with its token clean-up: branch on the
//     error code, never on the description.
//   - id_tokens carry WSO2's x5t quirk: base64url of the hex string of a SHA-1 thumbprint.
//
// # Bookkeeping
//
// Issued lists every pair minted, with its chain, the request that issued it (Request and
// the TagHeader the request carried), the pair it followed (Prev, Replaces), whether it
// came from a race (Race), and, updated later, why it died early (Killed: race,
// code_replay, revoked, consent; KilledBy names the pair whose issue killed it) and every
// reuse of it (Reuses, each with its own Lost flag). Stats counts reuses, renewed access
// tokens, races by outcome, code replays and the kills they caused, revocations, lock-outs
// and locked attempts.
//
// # What it deliberately does not model
//
// Real user log-in (the consent page acts as Options.ConsentSubject), SSO, TLS, the
// developer portal, introspection, revocation outside ModeWSO2 (VBC documents none; use
// Sandbox.Revoke), WSO2's gateway cache keeping a dead access token alive a little longer,
// the VBC business APIs, scopes beyond openid/default, JWKS discovery,
// CSRF protection on the consent form, PKCE "plain", and fault injection on /authorize.
// State lives in memory and grows with every issued token; nothing is persisted. Where
// VBC's behaviour is unknown (PKCE support, whether a refresh kills the old access token,
// whether a new consent kills older chains, what a reused code does), ModeLenient takes the
// lenient choice and an Option selects the strict one; ModeWSO2 answers these questions
// the way WSO2's source does.
//
// # Concurrency and secrets
//
// A Sandbox has no global state and every method is safe for concurrent use; outside
// ModeWSO2's RaceBothSucceed, concurrent refreshes of one token succeed exactly once. It never logs; token values appear only in
// responses and in Issued (whose String redacts them).
package vbcsandbox
