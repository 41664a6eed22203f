package bench

import (
	"testing"

	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/storetest"
)

// The fake must behave like Secrets Manager (and moto) where the store depends on it, or
// the calls it counts would not be the calls made on AWS.
func TestFakeSecretsManagerConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		d, err := NewDeployment()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		names := map[storetest.Secret]string{
			storetest.Credentials: secretIDs.Credentials,
			storetest.Pair:        secretIDs.Pair,
			storetest.Access:      secretIDs.Access,
		}
		for _, name := range names {
			d.SM.CreateSecret(name, nil) // exist with no value, as the suite expects
		}
		return storetest.Harness{
			Store:      smstore.New(d.SMClient(), secretIDs),
			Seed:       func(t *testing.T, s storetest.Secret, data []byte) { d.SM.SetSecret(names[s], string(data)) },
			PairWrites: func(t *testing.T) int { return d.SM.VersionCount(names[storetest.Pair]) },
		}
	})
}
