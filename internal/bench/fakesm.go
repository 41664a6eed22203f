package bench

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Operations the fake Secrets Manager serves, as named in X-Amz-Target.
const (
	OpGetSecretValue           = "GetSecretValue"
	OpPutSecretValue           = "PutSecretValue"
	OpUpdateSecretVersionStage = "UpdateSecretVersionStage"
)

const (
	stageCurrent  = "AWSCURRENT"
	stagePrevious = "AWSPREVIOUS"
	arnPrefix     = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
)

// FakeSecretsManager is a Secrets Manager endpoint in this process, speaking the AWS JSON 1.1
// protocol for the three operations vbctoken's store calls (GetSecretValue, PutSecretValue,
// UpdateSecretVersionStage) with the semantics the store relies on: ClientRequestToken
// idempotency, staging labels, AWSCURRENT attached to a secret's first version, and
// UpdateSecretVersionStage refusing a stale RemoveFromVersionId. The store's conformance
// suite runs against it (fakesm_test.go).
//
// The benchmark uses it instead of moto_server for two reasons: it answers in microseconds,
// so exec-to-first-response measures the function rather than a Python emulator, and it
// counts every request per operation, which is how calls per refresh are measured. It does
// not check signatures. Every request counts, failed or retried: now and then the SDK
// retries a read whose 200 answer it had already received, when its HTTP client closes the
// connection in a race with a fast server (aws/aws-sdk-go-v2#2737); a check that made 2
// calls then shows 3.
type FakeSecretsManager struct {
	mu      sync.Mutex
	secrets map[string]*fakeSecret
	calls   map[string]int
	log     []string // "Operation secret" since the last ResetCalls
}

type fakeSecret struct {
	name     string
	versions map[string]*fakeVersion
	tokens   map[string]string // ClientRequestToken → version id
}

type fakeVersion struct {
	id      string
	value   string
	stages  []string
	created time.Time
}

// NewFakeSecretsManager returns a fake with no secrets.
func NewFakeSecretsManager() *FakeSecretsManager {
	return &FakeSecretsManager{secrets: map[string]*fakeSecret{}, calls: map[string]int{}}
}

// CreateSecret creates name, with a first version holding value unless value is nil, as the
// CDK stack does. It bypasses the counters.
func (f *FakeSecretsManager) CreateSecret(name string, value *string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeSecret{name: name, versions: map[string]*fakeVersion{}, tokens: map[string]string{}}
	f.secrets[name] = s
	if value != nil {
		s.put(newVersionID(), *value, []string{stageCurrent})
	}
}

// SetSecret stores value as the new AWSCURRENT version of name (which must exist), as an
// admin would. It bypasses the counters.
func (f *FakeSecretsManager) SetSecret(name, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[name].put(newVersionID(), value, []string{stageCurrent})
}

// Secret returns the AWSCURRENT value of name, bypassing the counters.
func (f *FakeSecretsManager) Secret(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.secrets[name]
	if !ok {
		return "", false
	}
	v := s.withStage(stageCurrent)
	if v == nil {
		return "", false
	}
	return v.value, true
}

// VersionCount returns how many versions name has.
func (f *FakeSecretsManager) VersionCount(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.secrets[name]; ok {
		return len(s.versions)
	}
	return 0
}

// Calls returns a copy of the call counters by operation name.
func (f *FakeSecretsManager) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

// CallLog returns the calls since the last ResetCalls, in order, as "Operation secret",
// followed by " → ErrorCode" for a call that failed.
func (f *FakeSecretsManager) CallLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// ResetCalls zeroes the counters and the call log.
func (f *FakeSecretsManager) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.calls)
	f.log = nil
}

// ServeHTTP implements the AWS JSON 1.1 protocol: POST / with X-Amz-Target
// "secretsmanager.<Operation>".
func (f *FakeSecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	if r.Method != http.MethodPost || !ok {
		writeAWSError(w, http.StatusBadRequest, "UnknownOperationException", "unsupported request")
		return
	}
	var in struct {
		SecretID            string   `json:"SecretId"`
		VersionID           string   `json:"VersionId"`
		VersionStage        string   `json:"VersionStage"`
		SecretString        *string  `json:"SecretString"`
		ClientRequestToken  string   `json:"ClientRequestToken"`
		VersionStages       []string `json:"VersionStages"`
		MoveToVersionID     string   `json:"MoveToVersionId"`
		RemoveFromVersionID string   `json:"RemoveFromVersionId"`
	}
	// Read the whole body before answering, as AWS does: net/http may close a connection
	// whose request body was left unread under a streamed answer.
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &in)
	}
	if err != nil {
		writeAWSError(w, http.StatusBadRequest, "SerializationException", "body is not JSON")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	entry := len(f.log)
	f.log = append(f.log, op+" "+strings.TrimPrefix(in.SecretID, arnPrefix))
	defer func() {
		if code := w.Header().Get("X-Amzn-ErrorType"); code != "" {
			f.log[entry] += " → " + code
		}
	}()
	s, ok := f.secrets[strings.TrimPrefix(in.SecretID, arnPrefix)]
	if !ok {
		writeAWSError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	switch op {
	case OpGetSecretValue:
		var v *fakeVersion
		switch {
		case in.VersionID != "":
			v = s.versions[in.VersionID]
		default:
			v = s.withStage(cmp.Or(in.VersionStage, stageCurrent))
		}
		if v == nil {
			writeAWSError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value.")
			return
		}
		writeJSON(w, map[string]any{"ARN": arnPrefix + s.name, "Name": s.name, "VersionId": v.id,
			"SecretString": v.value, "VersionStages": v.stages, "CreatedDate": float64(v.created.UnixMilli()) / 1000})
	case OpPutSecretValue:
		if in.SecretString == nil {
			writeAWSError(w, http.StatusBadRequest, "InvalidParameterException", "SecretString is required here.")
			return
		}
		if id, ok := s.tokens[in.ClientRequestToken]; ok && in.ClientRequestToken != "" {
			v := s.versions[id]
			if v.value != *in.SecretString {
				writeAWSError(w, http.StatusBadRequest, "ResourceExistsException", "A resource with the ID you requested already exists.")
				return
			}
			writeJSON(w, map[string]any{"ARN": arnPrefix + s.name, "Name": s.name, "VersionId": v.id, "VersionStages": v.stages})
			return
		}
		id := cmp.Or(in.ClientRequestToken, newVersionID())
		stages := in.VersionStages
		if len(stages) == 0 || len(s.versions) == 0 {
			// No labels means AWSCURRENT; a secret's first version always gets it.
			stages = append(slices.Clone(stages), stageCurrent)
		}
		v := s.put(id, *in.SecretString, stages)
		if in.ClientRequestToken != "" {
			s.tokens[in.ClientRequestToken] = id
		}
		writeJSON(w, map[string]any{"ARN": arnPrefix + s.name, "Name": s.name, "VersionId": v.id, "VersionStages": v.stages})
	case OpUpdateSecretVersionStage:
		holder := s.withStage(in.VersionStage)
		if holder != nil && holder.id != in.RemoveFromVersionID && holder.id != in.MoveToVersionID {
			writeAWSError(w, http.StatusBadRequest, "InvalidParameterException",
				fmt.Sprintf("The parameter RemoveFromVersionId can't be empty or wrong: staging label %s is currently attached to version %s", in.VersionStage, holder.id))
			return
		}
		if in.MoveToVersionID != "" && s.versions[in.MoveToVersionID] == nil {
			writeAWSError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret version.")
			return
		}
		if in.MoveToVersionID != "" {
			s.attach(in.MoveToVersionID, in.VersionStage)
		} else if holder != nil {
			holder.stages = slices.DeleteFunc(holder.stages, func(l string) bool { return l == in.VersionStage })
		}
		writeJSON(w, map[string]any{"ARN": arnPrefix + s.name, "Name": s.name})
	default:
		writeAWSError(w, http.StatusBadRequest, "UnknownOperationException", "the fake serves only what vbctoken calls")
	}
}

// put adds a version with stages, moving each label from the version that held it.
func (s *fakeSecret) put(id, value string, stages []string) *fakeVersion {
	v := &fakeVersion{id: id, value: value, created: time.Now()}
	s.versions[id] = v
	for _, l := range stages {
		s.attach(id, l)
	}
	return v
}

// attach moves label to version id; moving AWSCURRENT labels the old holder AWSPREVIOUS.
func (s *fakeSecret) attach(id, label string) {
	old := s.withStage(label)
	if old != nil && old.id == id {
		return
	}
	if old != nil {
		old.stages = slices.DeleteFunc(old.stages, func(l string) bool { return l == label })
		if label == stageCurrent {
			s.attach(old.id, stagePrevious)
		}
	}
	v := s.versions[id]
	v.stages = append(v.stages, label)
}

func (s *fakeSecret) withStage(label string) *fakeVersion {
	for _, v := range s.versions {
		if slices.Contains(v.stages, label) {
			return v
		}
	}
	return nil
}

func newVersionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}

func writeAWSError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
