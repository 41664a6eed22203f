package fleetsim

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

// directAPI calls the Secrets Manager model without latency, quota or faults.
type directAPI struct{ m *smModel }

func (d directAPI) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	out, err := d.m.get(in)
	return out, wrap(opGet, err)
}

func (d directAPI) PutSecretValue(_ context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	out, err := d.m.put(in)
	return out, wrap(opPut, err)
}

func (d directAPI) UpdateSecretVersionStage(_ context.Context, in *secretsmanager.UpdateSecretVersionStageInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	out, err := d.m.stage(in)
	return out, wrap(opStage, err)
}

func (d directAPI) CreateSecret(_ context.Context, in *secretsmanager.CreateSecretInput) (*secretsmanager.CreateSecretOutput, error) {
	out, err := d.m.create(in)
	return out, wrap(opCreate, err)
}

func wrap(op smOp, err error) error {
	if err == nil {
		return nil
	}
	return opError(op, err)
}

// TestAccountStoreConformance: one account's store of the simulated fleet — smstore over
// the Secrets Manager model, creating the account's index entry and secrets on its first
// write — passes the conformance suite every store passes. This is what makes the
// model's versions, staging labels and ClientRequestToken idempotency trustworthy.
func TestAccountStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		m := newSMModel()
		for shard := range indexShards {
			m.seed(indexID(shard), `{"version":1,"accounts":[]}`)
		}
		f := &fleet{api: directAPI{m}, prefix: accountPrefix, credentialsID: credentialsSecretID, kmsKeyID: kmsKeyID}
		store, err := f.Open("acme")
		if err != nil {
			t.Fatal(err)
		}
		names := map[storetest.Secret]string{
			storetest.Credentials: credentialsSecretID,
			storetest.Pair:        pairID("acme"),
			storetest.Access:      accessID("acme"),
		}
		return storetest.Harness{
			Store:      store,
			Seed:       func(t *testing.T, s storetest.Secret, data []byte) { m.seed(names[s], string(data)) },
			PairWrites: func(t *testing.T) int { return m.writes(pairID("acme")) },
		}
	})
}

// TestFleetListsAccountsBeforeCreatingSecrets: the first write of an account lists it in
// its index shard, then creates both secrets with the KMS key and the account tag; the
// fleet's Accounts reads the shards.
func TestFleetListsAccountsBeforeCreatingSecrets(t *testing.T) {
	m := newSMModel()
	for shard := range indexShards {
		m.seed(indexID(shard), `{"version":1,"accounts":[]}`)
	}
	f := &fleet{api: directAPI{m}, prefix: accountPrefix, credentialsID: credentialsSecretID, kmsKeyID: kmsKeyID}
	ctx := context.Background()
	for _, acct := range []string{"globex", "acme", "initech"} {
		s, err := f.Open(acct)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CommitPair(ctx, storetest.NewPair(), ""); err != nil {
			t.Fatalf("first commit of %s: %v", acct, err)
		}
		sec := m.secrets[pairID(acct)]
		if sec == nil || sec.kms != kmsKeyID || sec.tags["vbctoken:account"] != acct {
			t.Errorf("pair secret of %s: %+v, want KMS key and account tag", acct, sec)
		}
		if m.secrets[accessID(acct)] == nil {
			t.Errorf("access secret of %s not created", acct)
		}
	}
	got, err := f.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"acme", "globex", "initech"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("Accounts = %v, want %v", got, want)
	}
	if _, err := f.Open("Bad_ID"); err == nil {
		t.Error("Open accepted an invalid account id")
	}
}
