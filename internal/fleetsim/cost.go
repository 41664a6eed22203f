package fleetsim

import (
	"fmt"
	"io"
	"math"
)

// Prices are AWS list prices in us-east-1, without free tiers (a fleet of thousands of
// accounts uses them up). Sources, as read through the stored copies available to this
// project on the date docs/fleet.md gives:
//   - Secrets Manager: aws.amazon.com/secrets-manager/pricing — $0.40 per secret-month,
//     $0.05 per 10,000 API calls.
//   - KMS: aws.amazon.com/kms/pricing — $1 per customer managed key-month, $0.03 per
//     10,000 requests.
//   - DynamoDB on-demand: aws.amazon.com/dynamodb/pricing/on-demand — $0.625 per million
//     write request units, $0.125 per million read request units, $0.25 per GB-month.
//   - SQS standard: aws.amazon.com/sqs/pricing — $0.40 per million requests (each 64 KB
//     chunk is a request).
//   - Lambda arm64: aws.amazon.com/lambda/pricing — $0.0000133334 per GB-second, $0.20 per
//     million requests.
//   - EventBridge Scheduler: aws.amazon.com/eventbridge/pricing — $1.00 per million
//     scheduled invocations.
//   - Step Functions: aws.amazon.com/step-functions/pricing — Standard $0.025 per 1,000
//     state transitions; Express $1.00 per million requests and $0.00001667 per GB-second
//     (64 MB chunks, 100 ms rounding).
//   - CloudWatch Logs: $0.50 per GB ingested.
type Prices struct {
	SMSecretMonth, SMPerCall            float64
	KMSKeyMonth, KMSPerRequest          float64
	DDBPerWRU, DDBPerRRU, DDBGBMonth    float64
	SQSPerRequest                       float64
	LambdaPerGBs, LambdaPerRequest      float64
	SchedulerPerInvocation              float64
	SFNPerTransition, SFNExpressRequest float64
	SFNExpressPerGBs                    float64
	LogsPerGB                           float64
}

// DefaultPrices are the prices of the Prices doc comment.
func DefaultPrices() Prices {
	return Prices{
		SMSecretMonth: 0.40, SMPerCall: 0.05 / 10000,
		KMSKeyMonth: 1, KMSPerRequest: 0.03 / 10000,
		DDBPerWRU: 0.625 / 1e6, DDBPerRRU: 0.125 / 1e6, DDBGBMonth: 0.25,
		SQSPerRequest:          0.40 / 1e6,
		LambdaPerGBs:           0.0000133334,
		LambdaPerRequest:       0.20 / 1e6,
		SchedulerPerInvocation: 1.00 / 1e6,
		SFNPerTransition:       0.025 / 1000, SFNExpressRequest: 1.00 / 1e6, SFNExpressPerGBs: 0.00001667,
		LogsPerGB: 0.50,
	}
}

// Model constants of the cost table (docs/fleet.md "Cost model").
const (
	refresherGB = 0.125 // template.yaml: MemorySize 128
	callbackGB  = 0.25  // template.yaml: MemorySize 256
	// idlePollsPerMonth: the event source mapping long-polls (20 s) with 5 pollers while
	// idle (the scale-down to 2 is off with maximum concurrency set).
	idlePollsPerMonth = 5 * 3 * 60 * 24 * 30
	// idTokenBytes is the size of a VBC id_token (an RS256 JWT with a 2048-bit key) that
	// the simulation does not ask for (env.go scope) but a real pair stores.
	idTokenBytes = 700
	// logBytesPerRun is one EMF line per account run (RefreshTokenSecondsLeft with the
	// account as a property, no per-account dimension: docs/fleet.md "The model and its limits");
	// logBytesPerLine the keeper's own lines.
	logBytesPerRun  = 260
	logBytesPerLine = 420
	ddbItemOverhead = 100 // attribute names, pk, version
	monthDays       = 30
)

// CostRow is one fan-out and backend's cost per account-month, by component (USD).
type CostRow struct {
	FanOut  string  `json:"fan_out"`
	Backend string  `json:"backend"`
	Storage float64 `json:"secrets_or_storage"`
	API     float64 `json:"store_api_calls"`
	KMS     float64 `json:"kms"`
	Lambda  float64 `json:"lambda"`
	Queue   float64 `json:"queue_schedule_or_workflow"`
	Logs    float64 `json:"logs"`
	Total   float64 `json:"total_per_account_month"`
	// Fixed is the deployment's monthly cost that does not grow with accounts.
	Fixed float64 `json:"fixed_per_month"`
	Note  string  `json:"note,omitempty"`
}

// CostTable is the comparison the report carries.
type CostTable struct {
	Rows []CostRow `json:"rows"`
	// Onboarding is the one-off cost of connecting one account (consent, index, secrets).
	Onboarding float64 `json:"onboarding_per_account"`
	// PerAccountMonth usage of the measured fan-out, for docs/fleet.md.
	RunsPerAccountMonth      float64 `json:"runs_per_account_month"`
	RefreshesPerAccountMonth float64 `json:"refreshes_per_account_month"`
	SMCallsPerAccountMonth   float64 `json:"sm_calls_per_account_month"`
	PairItemKB               int     `json:"pair_item_kb"`
}

func costTable(r *Report, p Prices) CostTable {
	c := r.Config
	n := float64(c.Accounts)
	month := monthDays / float64(c.Days) // scale the run to a 30-day month
	per := func(x float64) float64 { return x * month / n }
	u := r.Usage
	steady := []string{roleRefresher, roleSweeper}
	calls := func(roles []string, ops ...smOp) float64 {
		t := 0.0
		for _, role := range roles {
			for _, op := range ops {
				t += float64(u.SMCalls[role][op.String()+"Attempts"])
			}
		}
		return t
	}
	storeOps := func(roles []string, op int) float64 {
		t := 0.0
		for _, role := range roles {
			t += float64(u.StoreOps[role][storeOpNames[op]])
		}
		return t
	}
	allOps := []smOp{opGet, opPut, opStage, opCreate}
	smCalls := calls(steady, allOps...)
	kmsCalls := calls(steady, opGet, opPut)
	runs := float64(r.Runs)
	refreshes := float64(r.Outcomes["refreshed"])
	skipped := float64(r.Outcomes["skipped"])

	lambdaA := per(float64(u.RefresherInvocations+u.SweeperInvocations))*p.LambdaPerRequest +
		per(float64(u.RefresherBilledMs+u.SweeperBilledMs)/1000*refresherGB)*p.LambdaPerGBs
	sqsA := per(float64(u.SQSSendBatches+u.SQSReceives+u.SQSDeleteBatches)) * p.SQSPerRequest
	logs := per((runs*logBytesPerRun+float64(r.LogLines)*logBytesPerLine)/1e9) * p.LogsPerGB

	// Secrets Manager backend: two secrets per account, plus the shared credentials secret
	// and the 16 index shards, and a customer managed KMS key.
	smFixed := (1+indexShards)*p.SMSecretMonth + p.KMSKeyMonth
	smStorage := 2 * p.SMSecretMonth
	smAPI := per(smCalls) * p.SMPerCall
	smKMS := per(kmsCalls) * p.KMSPerRequest

	// DynamoDB backend: the same store operations as conditional writes and strongly
	// consistent reads; credentials stay one Secrets Manager secret; the sweep lists the
	// accounts with a Scan (eventually consistent) instead of reading the index.
	pairKB := int(math.Ceil(float64(r.PairBytes+idTokenBytes+ddbItemOverhead) / 1024))
	itemBytes := float64(r.PairBytes + idTokenBytes + r.AccessBytes + 2*ddbItemOverhead)
	ddbFixed := p.SMSecretMonth + p.KMSKeyMonth
	ddbStorage := itemBytes / 1e9 * p.DDBGBMonth
	rru := storeOps(steady, stLoadPair) + storeOps(steady, stLoadAccess)
	wru := storeOps(steady, stCommitPair)*float64(pairKB) + storeOps(steady, stPutAccess)
	scanRRU := float64(r.Config.Days*24) * math.Ceil(itemBytes*n/4096) * 0.5
	ddbAPI := per(rru)*p.DDBPerRRU + per(wru)*p.DDBPerWRU + per(scanRRU)*p.DDBPerRRU +
		per(storeOps(steady, stLoadCredentials))*p.SMPerCall
	ddbKMS := per(storeOps(steady, stLoadCredentials)) * p.KMSPerRequest

	mk := func(fan, backend string, storage, api, kms, lambda, queue, fixed float64, note string) CostRow {
		return CostRow{FanOut: fan, Backend: backend, Storage: storage, API: api, KMS: kms, Lambda: lambda,
			Queue: queue, Logs: logs, Total: storage + api + kms + lambda + queue + logs, Fixed: fixed, Note: note}
	}
	idle := idlePollsPerMonth * p.SQSPerRequest
	rows := []CostRow{
		mk("sqs-sweep", "secretsmanager", smStorage, smAPI, smKMS, lambdaA, sqsA, smFixed+idle, "measured"),
		mk("sqs-sweep", "dynamodb", ddbStorage, ddbAPI, ddbKMS, lambdaA, sqsA, ddbFixed+idle, "measured store operations, DynamoDB requests"),
	}

	// (b) EventBridge Scheduler: one one-time schedule per account, re-armed after each
	// refresh (UpdateSchedule is not billed); one invocation per refresh and per retry, no
	// hourly check, no queue. Store calls: the measured ones minus the skipped runs' two
	// reads each.
	work := math.Max(runs-skipped, refreshes)
	perRefreshMs := 0.0
	if refreshes > 0 {
		perRefreshMs = float64(r.RefreshRunMs) / refreshes
	}
	lambdaB := per(work)*p.LambdaPerRequest + per(work*perRefreshMs/1000*refresherGB)*p.LambdaPerGBs
	schedB := per(work) * p.SchedulerPerInvocation
	smAPIB := per(math.Max(smCalls-2*skipped, 0)) * p.SMPerCall
	smKMSB := per(math.Max(kmsCalls-2*skipped, 0)) * p.KMSPerRequest
	skipFrac := 0.0
	if runs > 0 {
		skipFrac = skipped / runs
	}
	ddbAPIB := ddbAPI * (1 - skipFrac)
	rows = append(rows,
		mk("scheduler", "secretsmanager", smStorage, smAPIB, smKMSB, lambdaB, schedB, smFixed, "computed: refresh runs only"),
		mk("scheduler", "dynamodb", ddbStorage, ddbAPIB, ddbKMS, lambdaB, schedB, ddbFixed, "computed: refresh runs only"),
	)

	// (c) Step Functions Distributed Map, hourly over the account list (S3 ItemReader),
	// ItemBatcher of 10, Express child workflows each invoking the refresher with its
	// batch: the same Lambda work in batches of exactly 10, one Express request per batch
	// with its duration (64 MB, 100 ms rounding), one parent state transition per child.
	children := math.Ceil(runs / 10)
	workMs := float64(u.RefresherBilledMs)
	childMs := 0.0
	if children > 0 {
		childMs = workMs / children
	}
	childGBs := children * math.Ceil(childMs/100) * 0.1 * 0.0625
	sfnC := per(children)*(p.SFNExpressRequest+p.SFNPerTransition) + per(childGBs)*p.SFNExpressPerGBs
	lambdaC := per(children+float64(u.SweeperInvocations))*p.LambdaPerRequest +
		per((workMs+float64(u.SweeperBilledMs))/1000*refresherGB)*p.LambdaPerGBs
	rows = append(rows,
		mk("stepfunctions-map", "secretsmanager", smStorage, smAPI, smKMS, lambdaC, sfnC, smFixed, "computed: Express children"),
		mk("stepfunctions-map", "dynamodb", ddbStorage, ddbAPI, ddbKMS, lambdaC, sfnC, ddbFixed, "computed: Express children"),
	)
	// Standard children would pay state transitions per item (about 3 per account and
	// hour) instead.
	stdC := per(runs*3) * p.SFNPerTransition
	rows = append(rows, mk("stepfunctions-map-standard", "secretsmanager", smStorage, smAPI, smKMS, lambdaC, stdC, smFixed, "computed: Standard children, 3 transitions per item"))

	onboard := 0.0
	for _, role := range []string{roleCallback, roleAdmin} {
		for _, op := range allOps {
			onboard += float64(u.SMCalls[role][op.String()+"Attempts"]) * p.SMPerCall
		}
	}
	onboard += float64(u.CallbackInvocations)*p.LambdaPerRequest + float64(u.CallbackBilledMs)/1000*callbackGB*p.LambdaPerGBs
	return CostTable{
		Rows:                     rows,
		Onboarding:               onboard / n,
		RunsPerAccountMonth:      per(runs),
		RefreshesPerAccountMonth: per(refreshes),
		SMCallsPerAccountMonth:   per(smCalls),
		PairItemKB:               pairKB,
	}
}

func (t CostTable) write(w io.Writer) {
	fmt.Fprintf(w, "  cost per account-month (USD, us-east-1): runs %.0f, refreshes %.1f, SM calls %.0f per account-month; DynamoDB pair item %d KB\n",
		t.RunsPerAccountMonth, t.RefreshesPerAccountMonth, t.SMCallsPerAccountMonth, t.PairItemKB)
	fmt.Fprintf(w, "    %-27s %-15s %9s %9s %9s %9s %9s %9s %9s %8s\n", "fan-out", "backend", "storage", "api", "kms", "lambda", "queue", "logs", "TOTAL", "fixed/mo")
	for _, r := range t.Rows {
		fmt.Fprintf(w, "    %-27s %-15s %9.5f %9.5f %9.5f %9.5f %9.5f %9.5f %9.5f %8.2f\n",
			r.FanOut, r.Backend, r.Storage, r.API, r.KMS, r.Lambda, r.Queue, r.Logs, r.Total, r.Fixed)
	}
	fmt.Fprintf(w, "    onboarding (one-off) per account: %.5f\n", t.Onboarding)
}
