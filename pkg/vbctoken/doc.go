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
// The refresher runs Keeper.Refresh on a schedule (hourly). The Policy says whether the pair
// needs refreshing (the access token is inside the margin, or the pair is older than the max
// age); most runs read the pair, check that the access secret is in step with it and stop.
//
// # Chain safety against VBC's token server
//
// VBC's token endpoint is WSO2 API Manager: a refresh kills the old refresh and access token
// at once, two racing refreshes may both be answered while only one pair lives, a re-grant
// hands back the active token, a replayed code revokes what it issued (docs/vbc.md). So a
// keeper spends the refresh token only under a lease it wrote into the pair secret with
// compare-and-swap; a write that reached the store but never became current is finished
// before anything is spent; a pair VBC issued that lost a race is kept and tried before
// re-consent is ever declared; a code or password is never sent twice when the first may
// have reached VBC; and once a grant is sent, the commit ignores cancellation until the
// deadline (docs/chain-safety.md). Any number of keepers may run at once.
//
// # Storage
//
// A Store holds the client credentials, the pair (the source of truth) and the app-facing
// AccessToken derived from it. Writes of the pair are compare-and-swap (Store.CommitPair
// with the version read): two writers can never both win, and the loser re-reads instead of
// overwriting. The stores are adapters beside this package: smstore (AWS Secrets Manager,
// version stages), filestore (local runs), dynamostore (DynamoDB, for large fleets). Every
// one passes the conformance suite in storetest.
//
// # Many accounts
//
// One deployment may keep the chains of many VBC accounts (an ISV's customers): a Fleet
// opens each account's store, and Accounts builds a Keeper per account; consent links bind
// the account into their signed state (docs/design.md "Accounts mode").
//
// # Apps
//
// Apps never hold the refresh token (an app that refreshes on a 401 would rotate the token
// behind the keeper's back). They read the access secret through a Source (smstore.NewSource
// on AWS) and call VBC through its Client: VBC kills the old access token the moment the
// keeper refreshes, so the client's Transport re-reads the secret on a 401 and sends the
// request once more. A Source caches the token until the keeper's refresh hint (refresh_at),
// bounded by a maximum cache age.
//
// # Secrets never print
//
// Every value that grants access is a Secret, and every type holding one redacts itself in
// String, GoString, LogValue and MarshalJSON. Only the stores' codecs (EncodePair,
// EncodeAccess, EncodeCredentials) write raw values.
package vbctoken
