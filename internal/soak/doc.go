// Package soak is vbctoken's chaos soak: a deterministic simulation of months of
// operation on a virtual clock, against the VBC sandbox and a real store (memstore, the
// file store, or Secrets Manager on moto_server), with faults injected at every step.
//
// # What is simulated
//
// Every simulated hour the scheduled refresher runs — sometimes twice or three times at
// once (a duplicate delivery, an overlapping run, an operator's `vbctoken refresh
// --force`) — and Lambda retries a failed or crashed invocation after one and three minutes
// (template.yaml: MaximumRetryAttempts 2). The admin consents at the start, now and then on their own schedule, and
// whenever the chain breaks (after a simulated reaction time); some consents arrive while a
// refresh is under way, some callbacks are hit twice, some consents use the password grant.
// Apps read the access secret every few minutes, straight from the store and through
// vbctoken.NewSource, and "use" the token at the sandbox, invalidating it on a 401.
//
// Each process (a Lambda invocation, a CLI run) is a fresh vbctoken.Keeper with its own
// seeded random source, which decides its faults:
//   - token endpoint: 500/502/503/429 pages, timeouts (DelayTimeout: no answer before the
//     client's 15 s timeout or its deadline — virtual time, no real waiting), slow answers,
//     truncated, malformed, HTML and access_token-less bodies, and ProcessedButLost (VBC
//     rotated the refresh token, the answer was lost);
//   - store: throttling, 5xx and timeouts on every call (for Secrets Manager on every
//     GetSecretValue, PutSecretValue and UpdateSecretVersionStage), before the call took
//     effect or after it (the answer was lost);
//   - process death: right when a genuine token response arrives (the pair is issued but
//     lost, as when a Lambda dies before the store write), right after the pair commit
//     landed (before the access secret write), and at the virtual Lambda timeout.
//
// VBC itself revokes the stored chain now and then.
//
// # Invariants, checked after every step
//
//	(a) the stored refresh token is live at the sandbox and nothing replaced it: the chain
//	    is unbroken, unless VBC revoked it or it was rotated by a request whose answer never
//	    reached a live process (ProcessedButLost, a process death) — an unavoidable loss,
//	    counted with the re-consent it forces;
//	(b) no app read (store or Source, after a 401 and Invalidate) yields an access token
//	    that is dead at that moment (expired or revoked) while the stored pair's access
//	    token is valid — except while a process that died between its pair commit and its
//	    access write has not been followed by any keeper run yet (two secrets cannot be
//	    written atomically); those reads are counted as stale after death;
//	(c) every pair VBC delivered to a live process was stored (the commit landed), or the
//	    process reported it superseded by a newer chain;
//	(d) no secret value (every token VBC issued or sent, every code, the client secret, the
//	    password) appears in any log line, error or callback page.
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
