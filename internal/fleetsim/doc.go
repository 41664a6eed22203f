// Package fleetsim simulates accounts mode at fleet scale: 10,000 VBC accounts kept by one
// deployment for a month, on a virtual clock, with faults (docs/fleet.md has the numbers
// and how to reproduce them).
//
// # What runs for real
//
// The keepers (vbctoken.NewAccounts: one Keeper per account and Lambda environment, with
// their leases, compare-and-swap and recovery), the Secrets Manager store
// (pkg/vbctoken/smstore) with the account secrets and the sharded account index of
// docs/design.md "Accounts mode", the AWS SDK's standard retryer (its classification,
// backoff and retry-token bucket), and the VBC sandbox in ModeWSO2 (internal/vbcsandbox),
// where each account's admin approves the consent as their own VBC user so that every
// account has a chain of its own.
//
// # What is modelled
//
//   - Secrets Manager (sm.go): secrets, versions, staging labels and ClientRequestToken
//     idempotency in memory, behind the account's quotas — PutSecretValue,
//     UpdateSecretVersionStage and CreateSecret share 50 requests per second,
//     GetSecretValue has 10,000 — with request latencies and injected faults. A throttled
//     request is a ThrottlingException the SDK retryer and the keeper retry; the report
//     counts throttles seen and throttles that surfaced as a failed refresh or consent.
//   - The fan-out (sqs.go): an hourly sweep lists the accounts and sends one SQS message
//     per account, spread with DelaySeconds; an event source mapping with maximum
//     concurrency N invokes the refresher with batches of up to 10 records, each record on
//     its own actor with its own deadline; failed records come back after the visibility
//     timeout, and after maxReceiveCount receives go to the dead-letter queue. Each
//     refresher environment paces its Secrets Manager writes so that N environments stay
//     within a write budget by construction (env.go pacer).
//   - Processes (env.go): Lambda execution environments, cold and warm, that may be killed
//     mid-batch; whatever they had in flight dies with them.
//   - Time (clock.go): a discrete-event scheduler in the spirit of internal/soak's clock;
//     wake-ups are rounded to a millisecond and everything due at one instant runs at once,
//     so a month of 7 million account runs takes minutes.
//
// # Invariants
//
// TestFleet fails unless: no chain is lost by the keeper (a chain lost because VBC
// processed a refresh whose new pair never reached a live process is attributed to that
// fault, and an admin consents again); no throttle surfaces as a failure; no refresh comes
// later than its due time by more than the bound (the refresh margin); the refreshers stay
// within their write budget; no secret appears in a log line or error; and only the
// revoked and the malformed account (and accounts awaiting their admin after such a
// loss) end without a live chain.
//
// The report carries peak writes per second, lateness and sweep duration distributions,
// fault and failure counts, and the cost per account-month of each fan-out and backend
// (cost.go).
package fleetsim
