package smstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/internal/awserr"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Staging labels used by Store.
const (
	// stageCurrent is the label Secrets Manager readers (apps, the SDK caches) follow.
	stageCurrent = "AWSCURRENT"
	// stagePending labels a pair version written by CommitPair but not yet made current, so
	// that PutSecretValue does not move AWSCURRENT by itself. The label stays on the version
	// once it is current; on any other version it marks a write LoadPair reports as Pending.
	stagePending = "VBCTOKEN_PENDING"
)

// SecretIDs names the secrets (name or ARN) of docs/design.md: VBC_CREDENTIALS_SECRET_ID,
// VBC_TOKEN_SECRET_ID and VBC_ACCESS_SECRET_ID, and the optional self-heal login
// (VBC_SELF_HEAL_SECRET_ID).
type SecretIDs struct {
	Credentials, Pair, Access string
	Login                     string // "" when self-heal is off
}

// API is the part of the Secrets Manager API the store calls;
// *secretsmanager.Client implements it.
type API interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error)
}

var _ API = (*secretsmanager.Client)(nil)

// Store keeps the secrets in AWS Secrets Manager. A Store from New never creates or
// deletes a secret: the CDK stack creates them. A store opened by a Fleet creates its
// account's secrets on their first write, after registering the account (fleet.go).
//
// The pair is written with versioning as compare-and-swap (docs/design.md "Writing the pair: compare-and-swap"): PutSecretValue with
// a ClientRequestToken derived from prev and the new content, under the stagePending label so
// that AWSCURRENT does not move, then UpdateSecretVersionStage moving AWSCURRENT from prev to
// the new version, which fails when another writer moved it first. A pair's Version is the
// Secrets Manager VersionId.
//
// Errors are *Error values (wrapped with what was being done). Throttling,
// 5xx and timeouts, once the SDK's standard retryer has given up, match vbctoken.ErrTransient; a
// secret or value that does not exist matches vbctoken.ErrNotFound. No error carries a secret value.
type Store struct {
	api    API
	ids    SecretIDs
	create *creator // nil: never create a secret
}

var _ vbctoken.Store = (*Store)(nil)

// New returns a store calling api (a *secretsmanager.Client in
// production) on the secrets ids.
func New(api API, ids SecretIDs) *Store {
	return &Store{api: api, ids: ids}
}

// NewFromConfig builds the SDK client from cfg, keeping the SDK's
// standard retryer and endpoint resolution (AWS_ENDPOINT_URL_SECRETS_MANAGER, as loaded by
// config.LoadDefaultConfig, points it at a local emulator).
func NewFromConfig(cfg aws.Config, ids SecretIDs) *Store {
	return New(secretsmanager.NewFromConfig(cfg), ids)
}

// NewSource is vbctoken.NewSource over the access secret accessSecretID (name or ARN,
// usually from VBC_ACCESS_SECRET_ID) in AWS Secrets Manager, with the app's SDK
// configuration (typically config.LoadDefaultConfig: environment, shared config, IAM role).
// The app needs only secretsmanager:GetSecretValue on that one secret (and kms:Decrypt on
// its key). Nothing is read until the first Token call.
//
// It takes an aws.Config rather than loading one, so that this package does not link the
// SDK's config package (SSO, STS, profiles) into the Lambda functions, which do not use it.
func NewSource(cfg aws.Config, accessSecretID string, opts ...vbctoken.SourceOption) (*vbctoken.Source, error) {
	if accessSecretID == "" {
		return nil, fmt.Errorf("new secrets manager source: %w: empty access secret id", vbctoken.ErrBadInput)
	}
	return vbctoken.NewSource(NewFromConfig(cfg, SecretIDs{Access: accessSecretID}), opts...), nil
}

// IDs returns the secrets the store uses.
func (s *Store) IDs() SecretIDs { return s.ids }

// getCurrent reads the AWSCURRENT version of id. A secret that does not exist or has no
// value yet matches vbctoken.ErrNotFound; a binary secret is vbctoken.ErrMalformedSecret.
func (s *Store) getCurrent(ctx context.Context, id string) (*secretsmanager.GetSecretValueOutput, error) {
	out, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(id),
		VersionStage: aws.String(stageCurrent),
	})
	if err != nil {
		return nil, smError("GetSecretValue", id, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("secret %s: %w: no SecretString (binary secrets are not used)", id, vbctoken.ErrMalformedSecret)
	}
	return out, nil
}

// LoadCredentials reads the credentials secret; a missing secret, one without a value and a
// placeholder are vbctoken.ErrNoCredentials.
func (s *Store) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	out, err := s.getCurrent(ctx, s.ids.Credentials)
	if errors.Is(err, vbctoken.ErrNotFound) {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials: %w: %w", vbctoken.ErrNoCredentials, err)
	}
	if err != nil {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials: %w", err)
	}
	c, err := vbctoken.DecodeCredentials([]byte(*out.SecretString))
	if err != nil {
		return vbctoken.Credentials{}, fmt.Errorf("load credentials from %s: %w", s.ids.Credentials, err)
	}
	return c, nil
}

// LoadLogin reads the self-heal login secret {"username","password"} (a vbctoken.LoginSource).
func (s *Store) LoadLogin(ctx context.Context) (string, vbctoken.Secret, error) {
	if s.ids.Login == "" {
		return "", "", fmt.Errorf("load login: %w: no self-heal secret configured", vbctoken.ErrNoCredentials)
	}
	out, err := s.getCurrent(ctx, s.ids.Login)
	if err != nil {
		return "", "", fmt.Errorf("load login: %w", err)
	}
	user, pw, err := vbctoken.DecodeLogin([]byte(*out.SecretString))
	if err != nil {
		return "", "", fmt.Errorf("load login from %s: %w", s.ids.Login, err)
	}
	return user, pw, nil
}

// LoadPair reads the AWSCURRENT version of the pair secret. A secret that does not exist or
// has no value yet is a not-connected pair with Version "".
//
// Every commit labels its new version stagePending before making it current, so the
// current version normally carries stagePending too, and LoadPair makes one call. When it
// does not, a later write reached the store without becoming current (its writer died
// between the two calls, or the move kept failing): LoadPair reads that version as well and
// returns it as Pending.
func (s *Store) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	out, err := s.getCurrent(ctx, s.ids.Pair)
	if errors.Is(err, vbctoken.ErrNotFound) {
		return vbctoken.Versioned{Pair: &vbctoken.Pair{}}, nil
	}
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair: %w", err)
	}
	p, err := vbctoken.DecodePair([]byte(*out.SecretString))
	if err != nil {
		return vbctoken.Versioned{}, fmt.Errorf("load pair from %s: %w", s.ids.Pair, err)
	}
	v := vbctoken.Versioned{Pair: p, Version: aws.ToString(out.VersionId)}
	if slices.Contains(out.VersionStages, stagePending) {
		return v, nil
	}
	pending, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(s.ids.Pair),
		VersionStage: aws.String(stagePending),
	})
	switch {
	case isCode(err, "ResourceNotFoundException"):
		return v, nil // no version carries the label (the secret's placeholder, never committed)
	case err != nil:
		return vbctoken.Versioned{}, fmt.Errorf("load pair: pending version: %w", smError("GetSecretValue", s.ids.Pair, err))
	case aws.ToString(pending.VersionId) == v.Version || pending.SecretString == nil:
		return v, nil
	}
	// A pending version this build cannot read is left alone: it never becomes current.
	if pp, err := vbctoken.DecodePair([]byte(*pending.SecretString)); err == nil {
		v.Pending = pp
	}
	return v, nil
}

// pairToken derives the ClientRequestToken (and so the VersionId) of a pair write from the
// version it replaces and its content: the same commit retried reuses the token, which
// Secrets Manager treats as the same request.
func pairToken(prev string, content []byte) string { return writeToken("vbctoken pair", prev, content) }

// accessToken derives the ClientRequestToken of an access secret write from its content
// (and salt, "" unless that content was stored before).
func accessToken(salt string, content []byte) string {
	return writeToken("vbctoken access", salt, content)
}

// writeToken hashes a label naming the kind of secret, salt and content into a
// ClientRequestToken: 64 hex characters, the longest token allowed.
func writeToken(label, salt string, content []byte) string {
	h := sha256.New()
	h.Write([]byte(label + "\x00" + salt + "\x00"))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// CommitPair stores p as the current pair if the current version is still prev, and returns
// the new VersionId. prev must come from a successful LoadPair: that is how a pair written
// by a newer vbctoken is protected (LoadPair refuses it, so no caller holds its version, and
// moving AWSCURRENT away from a version not named is impossible).
//
// Calls: PutSecretValue (token from prev and content, label stagePending), then
// UpdateSecretVersionStage (AWSCURRENT to the new version, RemoveFromVersionId prev). When
// the put created the secret's first version, Secrets Manager has already made it current and
// the move is skipped; when the move is refused, one GetSecretValue tells a lost race
// (vbctoken.ErrConflict) from a retry of a commit that had landed (success).
//
// Retrying the same call after any failure is safe: the put is idempotent by its token, and
// a pair that is already current byte for byte is reported as success. The flip side: two
// writers committing byte-identical pairs from the same prev both succeed, exactly as one
// call and its retry would.
func (s *Store) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	if p == nil {
		return "", fmt.Errorf("commit pair: %w: nil pair", vbctoken.ErrBadInput)
	}
	content, err := vbctoken.EncodePair(p)
	if err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	version, err := s.commit(ctx, s.ids.Pair, content, pairToken(prev, content), prev)
	if err != nil {
		return "", fmt.Errorf("commit pair: %w", err)
	}
	return version, nil
}

// commit is CommitPair's compare-and-swap on any secret id the store writes: content
// becomes the current version of id if the current version is still prev, under the
// ClientRequestToken token. A fleet store first tries to create a secret that does not
// exist yet (fleet.go) when prev is "".
func (s *Store) commit(ctx context.Context, id string, content []byte, token, prev string) (string, error) {
	if s.create != nil && prev == "" {
		version, done, err := s.create.first(ctx, s, id, content, token)
		if done {
			return version, err
		}
		// The secret exists without a current version: put its first one below.
	}
	put, err := s.api.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(id),
		SecretString:       aws.String(string(content)),
		ClientRequestToken: aws.String(token),
		VersionStages:      []string{stagePending},
	})
	if err != nil {
		return "", smError("PutSecretValue", id, err)
	}
	version := aws.ToString(put.VersionId)
	if slices.Contains(put.VersionStages, stageCurrent) {
		// The secret's first version (Secrets Manager makes it current by itself), or a
		// retry of a commit whose move had already happened.
		return version, nil
	}
	in := &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:        aws.String(id),
		VersionStage:    aws.String(stageCurrent),
		MoveToVersionId: aws.String(version),
	}
	if prev != "" {
		in.RemoveFromVersionId = aws.String(prev)
	}
	_, err = s.api.UpdateSecretVersionStage(ctx, in)
	if err == nil {
		return version, nil
	}
	moveErr := smError("UpdateSecretVersionStage", id, err)
	if !isCode(err, "InvalidParameterException") {
		return "", moveErr
	}
	// Refused: AWSCURRENT is not on prev (or, with prev "", is already attached somewhere).
	// Either someone else won, or an earlier attempt of this very commit already moved it.
	cur, err := s.getCurrent(ctx, id)
	if err != nil {
		return "", fmt.Errorf("version stage move refused, then: %w", err)
	}
	if isOurs(cur, version, content) {
		return aws.ToString(cur.VersionId), nil
	}
	moveErr.Kind = vbctoken.ErrConflict
	return "", moveErr
}

// isOurs reports whether the current version cur is the write of version with content: an
// earlier attempt of the same write landed (or another writer stored the very same bytes,
// which cannot be told from it).
func isOurs(cur *secretsmanager.GetSecretValueOutput, version string, content []byte) bool {
	return aws.ToString(cur.VersionId) == version || aws.ToString(cur.SecretString) == string(content)
}

// PutAccess writes the access secret as its new AWSCURRENT version: one PutSecretValue
// without labels (so AWSCURRENT moves to it) and a token derived from the content, so a retry
// is idempotent.
//
// If that exact content was stored before and is no longer current, Secrets Manager treats
// the put as a repeat and does nothing; the store then reads the current version
// (GetSecretValue) and puts again with a token derived from the content and that version.
func (s *Store) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	content, err := vbctoken.EncodeAccess(a)
	if err != nil {
		return fmt.Errorf("put access token: %w", err)
	}
	current, err := s.putAccess(ctx, content, "")
	if err != nil || current {
		return err
	}
	cur, err := s.getCurrent(ctx, s.ids.Access)
	if err != nil {
		return fmt.Errorf("put access token: %w", err)
	}
	if aws.ToString(cur.SecretString) == string(content) {
		return nil
	}
	current, err = s.putAccess(ctx, content, aws.ToString(cur.VersionId))
	if err == nil && !current {
		err = fmt.Errorf("put access token: %s did not become current", s.ids.Access)
	}
	return err
}

// putAccess puts content with a token derived from it and salt, and reports whether the
// version it names is current.
func (s *Store) putAccess(ctx context.Context, content []byte, salt string) (bool, error) {
	id := s.ids.Access
	in := &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(id),
		SecretString:       aws.String(string(content)),
		ClientRequestToken: aws.String(accessToken(salt, content)),
	}
	put, err := s.api.PutSecretValue(ctx, in)
	if err != nil && s.create != nil && isCode(err, "ResourceNotFoundException") {
		// A fleet account's first access token: create the secret with it.
		_, created, cerr := s.create.secret(ctx, id, content, aws.ToString(in.ClientRequestToken))
		if cerr != nil {
			return false, fmt.Errorf("put access token: %w", cerr)
		}
		if created {
			return true, nil
		}
		put, err = s.api.PutSecretValue(ctx, in) // another writer created it meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("put access token: %w", smError("PutSecretValue", id, err))
	}
	return slices.Contains(put.VersionStages, stageCurrent), nil
}

// LoadAccess reads the access secret (one GetSecretValue): a missing secret or one without a
// value is vbctoken.ErrNotFound, the placeholder {"version":1} a zero vbctoken.AccessToken.
func (s *Store) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	out, err := s.getCurrent(ctx, s.ids.Access)
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token: %w", err)
	}
	a, err := vbctoken.DecodeAccess([]byte(*out.SecretString))
	if err != nil {
		return vbctoken.AccessToken{}, fmt.Errorf("load access token from %s: %w", s.ids.Access, err)
	}
	return a, nil
}

// Error is a failed Secrets Manager call. It matches vbctoken.ErrTransient,
// vbctoken.ErrNotFound or vbctoken.ErrConflict through Is, as Kind says; Kind nil means a permanent failure
// (AccessDeniedException, DecryptionFailure, …) that retrying will not fix. Its message names
// the operation, secret and AWS error code, never a secret value.
type Error struct {
	Op       string // "GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "CreateSecret"
	SecretID string
	Code     string // AWS error code, "" when no response arrived
	Kind     error  // vbctoken.ErrTransient, vbctoken.ErrNotFound, vbctoken.ErrConflict or nil
	Err      error  // the SDK's error
}

// hints says what to check for the permanent failures an operator can fix.
var hints = map[string]string{
	"AccessDeniedException": "access denied (check the IAM policy and the KMS key policy)",
}

func (e *Error) Error() string {
	return awserr.Message("secrets manager "+e.Op+" "+e.SecretID, e.Kind, e.Code, hints, e.Err)
}

// Unwrap exposes the SDK's error.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the error's Kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// smError classifies an SDK error.
func smError(op, id string, err error) *Error {
	c := awserr.Classify(err, "InternalServiceError")
	e := &Error{Op: op, SecretID: id, Code: c.Code, Err: err}
	switch {
	case c.Canceled:
	case c.Code == "ResourceNotFoundException":
		e.Kind = vbctoken.ErrNotFound
	case c.Transient:
		e.Kind = vbctoken.ErrTransient
	}
	return e
}

// isCode reports whether err carries the AWS error code.
func isCode(err error, code string) bool { return awserr.IsCode(err, code) }
