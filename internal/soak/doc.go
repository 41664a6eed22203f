// Package soak is vbctoken's chaos soak: a deterministic simulation of months of
// operation on a virtual clock, against the VBC sandbox and a real store (memstore, the
// file store, or Secrets Manager on moto_server), with faults injected at every step.
// docs/soak.md has the latest figures and how to read them.
//
// # What is simulated
//
// The VBC sandbox runs in one of its modes (Config.VBC): lenient, strict, or wso2 — VBC's
// real token server, WSO2 API Manager (docs/chain-safety.md): a refresh kills the old
// access and refresh token at once; a consent or login while a chain is active hands back
// the same pair (reuse); a replayed authorization code revokes what it issued; a refresh
// token presented again within the cluster lag is a race, settled by Plan.RaceWeights as
// invalid_grant, a 500, or a second 200 whose pair kills the first.
//
// Every simulated hour the scheduled refresher runs — sometimes twice or three times at
// once (a duplicate delivery, an overlapping run) — and Lambda retries a failed or crashed
// invocation after one and three minutes (template.yaml: MaximumRetryAttempts 2). Next to
// it run other keepers on the same store, each a process with its own vbctoken.Keeper:
// an operator's `vbctoken refresh --force` (now and then, seconds from the Lambda), and
// for days at a time a local `vbctoken serve` whose hourly checks fall on their own phase,
// often right next to the Lambda's. Operators' machines have clocks a few seconds off.
// The admin consents at the start, now and then on their own schedule (with WSO2 that
// hands back the active pair), and whenever the chain breaks or a keeper says it did
// (after a simulated reaction time); some consents arrive while a refresh is under way,
// some consents use the password grant, some callbacks are submitted twice by the
// browser, and after an error page the admin may reload the callback: the same code again,
// in another callback process. Apps read the access secret every few minutes, straight
// from the store and through vbctoken.NewSource, and "use" the token at the sandbox,
// invalidating it on a 401.
//
// Each process (a Lambda invocation, a CLI run, a serve check) is a fresh vbctoken.Keeper
// with its own seeded random source, which decides its faults:
//   - token endpoint: 500/502/503/429 pages, timeouts (DelayTimeout: no answer before the
//     client's 15 s timeout or its deadline — virtual time, no real waiting), slow answers,
//     truncated, malformed, HTML and access_token-less bodies, ProcessedButLost (VBC
//     rotated the refresh token, the answer was lost) and TimeoutAfterProcessing (VBC
//     processed the request late in the client's timeout, no answer came): after either
//     the client's retry of a refresh may race its own first request at WSO2;
//   - store: throttling, 5xx and timeouts on every call (for Secrets Manager on every
//     GetSecretValue, PutSecretValue and UpdateSecretVersionStage), before the call took
//     effect or after it (the answer was lost);
//   - process death: right when a genuine token response arrives (the pair is issued but
//     lost, as when a Lambda dies before the store write), in the middle of a pair commit
//     (the write reached the store but never became current: Secrets Manager's pending
//     label between its two calls, the file store's pending file, memstore.StrandCommits),
//     right after the pair commit landed (before the access secret write), and at the
//     virtual Lambda timeout;
//   - interruption: an operator's CLI run gets SIGINT right when VBC's answer arrives;
//     its context is cancelled but the process goes on, as the CLI does.
//
// VBC itself revokes the stored chain now and then.
//
// # Invariants, checked after every step
//
//	(a) the stored refresh token is live at the sandbox and nothing replaced it: the chain
//	    is unbroken, unless VBC revoked it or it was rotated by a request whose answer never
//	    reached a live process (ProcessedButLost, a process death) — an unavoidable loss,
//	    counted with the re-consent it forces. While the stored token is dead but a pair
//	    kept beside it or left pending in the store is live, the chain is in doubt, not
//	    broken (counted). Two processes spending one refresh token within WSO2's cluster
//	    lag is a violation: the refresh lease must keep keepers apart;
//	(b) no app read (store or Source, after a 401 and Invalidate) yields an access token
//	    that is dead at that moment (expired or revoked) while the stored pair's access
//	    token is valid — except while a process that died between its pair commit and its
//	    access write has not been followed by any keeper run yet (two secrets cannot be
//	    written atomically); those reads are counted as stale after death. Every read of a
//	    dead token while the chain lives is counted per reader, with its longest streak;
//	(c) every pair VBC delivered to a live process was stored (the commit landed), or the
//	    process reported it superseded by a newer chain; a pair whose writer died in the
//	    middle of its commit must be made current by a later run, or (a) catches the loss;
//	(d) no secret value (every token VBC issued or sent, every code, the client secret, the
//	    password) appears in any log line, error or callback page.
//
// Besides, VBC must never see an authorization code exchanged twice, and every forced
// re-consent is classed by its cause: unavoidable (an answer lost in transit after VBC
// rotated, or the only copy died with its process), revoked (VBC withdrew the grant), or
// avoidable (anything else, a keeper's false alarm included): avoidable must be 0.
//
// # Time and determinism
//
// Clock is a discrete-event scheduler: time moves only when every process is asleep or
// waiting for another, so a backoff of 10 s costs nothing and a keeper that waits for a
// concurrent writer sees that writer finish, as in real time. Deadlines are virtual too
// (opCtx), so vbctoken.RetryPolicy and the keeper's StoreReserve budget in virtual time.
// The schedule and every fault decision come from the seed; the interleaving of processes
// running at the same instant is up to the Go scheduler, so a seed replays the same
// scenario, though not always bit for bit.
package soak
