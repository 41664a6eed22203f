// Package vbctoken keeps a Vonage Business Communications (VBC) OAuth token pair alive and
// hands apps a valid access token.
//
// # The token lifecycle
//
// An admin consents once in the browser (Keeper.ConsentURL, then the callback runs
// Keeper.CompleteConsent) or bootstraps with the password grant (Keeper.Login). VBC answers
// with a Pair: an access token that lives about 24 hours and a refresh token that lives 7
// days and rotates: once used it is dead, and only the new one works. Whoever refreshes must
// durably store the new pair before anything else, or the chain is broken and the admin has
// to consent again.
//
// The refresher runs Keeper.Refresh on a schedule (hourly). Policy.Decide says whether the
// pair needs refreshing (the access token is inside the margin, or the pair is older than
// the max age); most runs read the pair, check that the access secret is in step with it
// (rewriting it when a writer died between the two writes) and stop.
//
// # Storage
//
// A Store holds three secrets: the client credentials, the pair (the source of truth) and
// the app-facing AccessToken derived from it. Writes of the pair are compare-and-swap
// (Store.CommitPair with the version read): two writers can never both win, and the loser
// re-reads instead of overwriting. SecretsManagerStore uses Secrets Manager version stages
// for this; FileStore is the embedded default for local runs.
//
// # Apps
//
// Apps never hold the refresh token (an app that refreshes on a 401 would rotate the token
// behind the keeper's back). They read the access secret through a Source
// (smstore.NewSource) and call VBC through its Client: VBC kills the old access token
// the moment the keeper refreshes, so the client re-reads the secret and retries once on a
// 401, and the Source caches a read only until shortly after the keeper's planned refresh
// (the secret's refresh_at), at most an hour.
//
// # Secrets never print
//
// Every value that grants access is a Secret, and every type holding one redacts itself in
// String, GoString, LogValue and MarshalJSON. Only the stores' codecs (EncodePair,
// EncodeAccess, EncodeCredentials) write raw values.
package vbctoken
