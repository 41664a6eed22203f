package fleetsim

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
)

// Secrets Manager quotas (docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html):
// PutSecretValue and UpdateSecretVersionStage share one 50 requests/s quota (with
// UpdateSecret and the replication calls); the brief counts CreateSecret into it too,
// which is the conservative reading. GetSecretValue allows 10,000 requests/s.
const (
	smWriteQuota = 50
	smReadQuota  = 10000
)

// Staging labels, as AWS and pkg/vbctoken/smstore use them.
const (
	stageCurrent  = "AWSCURRENT"
	stagePrevious = "AWSPREVIOUS"
)

// maxDeprecated bounds the unlabelled versions kept per secret (AWS keeps up to 100; the
// model only needs recent ones for ClientRequestToken idempotency).
const maxDeprecated = 8

// smOp names a Secrets Manager call.
type smOp int

const (
	opGet smOp = iota
	opPut
	opStage
	opCreate
	numOps
)

var opNames = [numOps]string{"GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "CreateSecret"}

func (o smOp) String() string { return opNames[o] }

func (o smOp) write() bool { return o != opGet }

// smModel is an in-memory Secrets Manager: secrets with versions, staging labels and
// ClientRequestToken idempotency as AWS (and moto, README "moto 5.2") implement them,
// behind the account-wide request quotas. It is what every simulated process calls
// through its own envAPI (latency, faults, the SDK retryer); the checker reads it
// directly with peek.
type smModel struct {
	mu      sync.Mutex
	secrets map[string]*secret
	quota   quotaMeter
	calls   [numOps]int64 // accepted calls (effects applied or answered)
	kinds   map[string]int64
	seq     int
}

type secret struct {
	writes   int // versions ever created
	versions map[string]*version
	order    []string // version ids, oldest first
	stages   map[string]string
	kms      string
	tags     map[string]string
}

type version struct {
	id     string
	value  string
	stages []string
}

func newSMModel() *smModel {
	return &smModel{secrets: map[string]*secret{}, kinds: map[string]int64{}}
}

// apiErr is what the SDK returns for an AWS error answer.
func apiErr(op smOp, code, msg string) error {
	fault := smithy.FaultClient
	if code == "InternalServiceError" {
		fault = smithy.FaultServer
	}
	return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: op.String(),
		Err: &smithy.GenericAPIError{Code: code, Message: msg, Fault: fault}}
}

// admit counts a call against the quotas at virtual time now; false means throttled.
func (m *smModel) admit(op smOp, now time.Time, role int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.quota.admit(op.write(), now, role)
}

// create is CreateSecret without a value (the account's secrets are created empty; the
// keeper's first write makes the first version current).
func (m *smModel) create(in *secretsmanager.CreateSecretInput) (*secretsmanager.CreateSecretOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[opCreate]++
	name := aws.ToString(in.Name)
	if _, ok := m.secrets[name]; ok {
		return nil, apiErr(opCreate, "ResourceExistsException", "the secret already exists")
	}
	s := &secret{versions: map[string]*version{}, stages: map[string]string{}, kms: aws.ToString(in.KmsKeyId), tags: map[string]string{}}
	for _, t := range in.Tags {
		s.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	m.secrets[name] = s
	if in.SecretString != nil {
		m.putLocked(s, aws.ToString(in.ClientRequestToken), *in.SecretString, nil)
	}
	return &secretsmanager.CreateSecretOutput{Name: in.Name, ARN: aws.String("arn:aws:secretsmanager:us-east-1:000000000000:secret:" + name)}, nil
}

func (m *smModel) get(in *secretsmanager.GetSecretValueInput) (*secretsmanager.GetSecretValueOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[opGet]++
	s, ok := m.secrets[aws.ToString(in.SecretId)]
	if !ok {
		return nil, apiErr(opGet, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	}
	id := aws.ToString(in.VersionId)
	if id == "" {
		stage := aws.ToString(in.VersionStage)
		if stage == "" {
			stage = stageCurrent
		}
		id = s.stages[stage]
	}
	v, ok := s.versions[id]
	if !ok {
		return nil, apiErr(opGet, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for the staging label or version")
	}
	return &secretsmanager.GetSecretValueOutput{
		Name: in.SecretId, SecretString: aws.String(v.value), VersionId: aws.String(v.id),
		VersionStages: slices.Clone(v.stages),
	}, nil
}

func (m *smModel) put(in *secretsmanager.PutSecretValueInput) (*secretsmanager.PutSecretValueOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[opPut]++
	s, ok := m.secrets[aws.ToString(in.SecretId)]
	if !ok {
		return nil, apiErr(opPut, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	}
	token := aws.ToString(in.ClientRequestToken)
	value := aws.ToString(in.SecretString)
	if v, ok := s.versions[token]; ok && token != "" {
		if v.value != value {
			return nil, apiErr(opPut, "ResourceExistsException", "You can't modify an existing version, you can only create a new version.")
		}
		return &secretsmanager.PutSecretValueOutput{Name: in.SecretId, VersionId: aws.String(v.id), VersionStages: slices.Clone(v.stages)}, nil
	}
	v := m.putLocked(s, token, value, in.VersionStages)
	return &secretsmanager.PutSecretValueOutput{Name: in.SecretId, VersionId: aws.String(v.id), VersionStages: slices.Clone(v.stages)}, nil
}

func (m *smModel) putLocked(s *secret, token, value string, stages []string) *version {
	if token == "" {
		m.seq++
		token = fmt.Sprintf("v-%d", m.seq)
	}
	v := &version{id: token, value: value}
	s.writes++
	s.versions[token] = v
	s.order = append(s.order, token)
	if len(stages) == 0 || len(s.stages) == 0 {
		// No labels asked, or the secret's first version: it becomes AWSCURRENT (AWS attaches
		// AWSCURRENT to a secret's first version whatever labels were asked).
		stages = append(slices.Clone(stages), stageCurrent)
	}
	for _, st := range stages {
		m.labelLocked(s, st, v)
	}
	m.pruneLocked(s)
	return v
}

// labelLocked moves stage to v; moving AWSCURRENT labels the old current AWSPREVIOUS.
func (m *smModel) labelLocked(s *secret, stage string, v *version) {
	if old, ok := s.stages[stage]; ok {
		if old == v.id {
			return
		}
		if ov := s.versions[old]; ov != nil {
			ov.stages = slices.DeleteFunc(ov.stages, func(x string) bool { return x == stage })
			if stage == stageCurrent {
				m.labelLocked(s, stagePrevious, ov)
			}
		}
	}
	s.stages[stage] = v.id
	if !slices.Contains(v.stages, stage) {
		v.stages = append(v.stages, stage)
	}
}

// pruneLocked drops the oldest unlabelled versions beyond maxDeprecated.
func (m *smModel) pruneLocked(s *secret) {
	unlabelled := 0
	for _, id := range s.order {
		if len(s.versions[id].stages) == 0 {
			unlabelled++
		}
	}
	for i := 0; unlabelled > maxDeprecated && i < len(s.order); {
		id := s.order[i]
		if len(s.versions[id].stages) == 0 {
			delete(s.versions, id)
			s.order = append(s.order[:i], s.order[i+1:]...)
			unlabelled--
			continue
		}
		i++
	}
}

func (m *smModel) stage(in *secretsmanager.UpdateSecretVersionStageInput) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[opStage]++
	s, ok := m.secrets[aws.ToString(in.SecretId)]
	if !ok {
		return nil, apiErr(opStage, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	}
	stage := aws.ToString(in.VersionStage)
	to, ok := s.versions[aws.ToString(in.MoveToVersionId)]
	if !ok {
		return nil, apiErr(opStage, "InvalidParameterException", "the version to move the label to does not exist")
	}
	if cur, attached := s.stages[stage]; attached && cur != aws.ToString(in.RemoveFromVersionId) {
		// AWS refuses to move a label that is attached to a version other than the one
		// named in RemoveFromVersionId: this is the compare-and-swap smstore relies on.
		return nil, apiErr(opStage, "InvalidParameterException", "the staging label is attached to a version other than RemoveFromVersionId")
	}
	m.labelLocked(s, stage, to)
	m.pruneLocked(s)
	return &secretsmanager.UpdateSecretVersionStageOutput{Name: in.SecretId}, nil
}

// peek returns the AWSCURRENT value of id, and the value carrying stage, for the checker
// (no quota, no latency, no count).
func (m *smModel) peek(id, stage string) (current string, staged string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.secrets[id]
	if !ok {
		return "", "", false
	}
	if v := s.versions[s.stages[stageCurrent]]; v != nil {
		current = v.value
	}
	if stage != "" {
		if v := s.versions[s.stages[stage]]; v != nil {
			staged = v.value
		}
	}
	return current, staged, true
}

// seed stores value as the current version of id, creating the secret if needed (what
// an admin or the CDK stack does).
func (m *smModel) seed(id, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.secrets[id]
	if !ok {
		s = &secret{versions: map[string]*version{}, stages: map[string]string{}, tags: map[string]string{}}
		m.secrets[id] = s
	}
	m.putLocked(s, "", value, nil)
}

// writes returns how many versions id has had.
func (m *smModel) writes(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.secrets[id]; ok {
		return s.writes
	}
	return 0
}

// corrupt stores value as the new AWSCURRENT version of id (an operator's bad hand edit).
func (m *smModel) corrupt(id, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.secrets[id]; ok {
		m.putLocked(s, "", value, nil)
	}
}

// count records an event under key (faults, throttles by caller).
func (m *smModel) count(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kinds[key]++
}

// quotaMeter enforces the quotas per virtual second, as fixed one-second windows, and
// keeps the per-second history the report needs: peak accepted and attempted writes, in
// all and per caller role.
type quotaMeter struct {
	sec              int64 // current window (unix seconds)
	writes, reads    int   // accepted in the window
	attempted        int   // write attempts in the window
	byRole           [4]int
	attemptedByRole  [4]int
	peakWrites       int
	peakAttempted    int
	peakReads        int
	peakAt           time.Time
	peakByRole       [4]int // the roles' writes in the peak second
	rolePeak         [4]int // each role's own peak accepted writes in a second
	rolePeakAttempt  [4]int
	throttledWrites  int64
	throttledReads   int64
	writeSecondsOver int64 // windows where attempts exceeded the quota
	hist             [smWriteQuota + 1]int64
}

func (q *quotaMeter) admit(write bool, now time.Time, role int) bool {
	sec := now.Unix()
	if sec != q.sec {
		q.closeWindow()
		q.sec = sec
	}
	if !write {
		if q.reads >= smReadQuota {
			q.throttledReads++
			return false
		}
		q.reads++
		q.peakReads = max(q.peakReads, q.reads)
		return true
	}
	q.attempted++
	q.attemptedByRole[role]++
	q.peakAttempted = max(q.peakAttempted, q.attempted)
	q.rolePeakAttempt[role] = max(q.rolePeakAttempt[role], q.attemptedByRole[role])
	if q.writes >= smWriteQuota {
		q.throttledWrites++
		return false
	}
	q.writes++
	q.byRole[role]++
	q.rolePeak[role] = max(q.rolePeak[role], q.byRole[role])
	if q.writes > q.peakWrites {
		q.peakWrites, q.peakAt, q.peakByRole = q.writes, time.Unix(sec, 0).UTC(), q.byRole
	}
	return true
}

func (q *quotaMeter) closeWindow() {
	if q.writes > 0 {
		q.hist[min(q.writes, smWriteQuota)]++
	}
	if q.attempted > smWriteQuota {
		q.writeSecondsOver++
	}
	q.writes, q.reads, q.attempted = 0, 0, 0
	q.byRole, q.attemptedByRole = [4]int{}, [4]int{}
}
