package lambdaaws

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"golang.org/x/time/rate"

	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// writesAPI counts the writes that reach it.
type writesAPI struct {
	smstore.FleetAPI
	writes int
}

func (w *writesAPI) PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	w.writes++
	return &secretsmanager.PutSecretValueOutput{}, nil
}

func (w *writesAPI) UpdateSecretVersionStage(context.Context, *secretsmanager.UpdateSecretVersionStageInput, ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error) {
	w.writes++
	return &secretsmanager.UpdateSecretVersionStageOutput{}, nil
}

func (w *writesAPI) CreateSecret(context.Context, *secretsmanager.CreateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	w.writes++
	return &secretsmanager.CreateSecretOutput{}, nil
}

// Every write waits for the pacer's slot; a caller whose time is up gets its context's error
// and the write is not sent.
func TestPacedWrites(t *testing.T) {
	inner := &writesAPI{}
	// One slot now, the next in a day: the first write goes, the next must wait.
	p := &pacedWrites{FleetAPI: inner, limit: rate.NewLimiter(rate.Limit(1.0/86400), 1)}
	ctx := context.Background()
	if _, err := p.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{}); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.UpdateSecretVersionStage(done, &secretsmanager.UpdateSecretVersionStageInput{}); !errors.Is(err, context.Canceled) {
		t.Errorf("stage move without a slot: %v", err)
	}
	if _, err := p.CreateSecret(done, &secretsmanager.CreateSecretInput{}); err == nil {
		t.Error("create without a slot went through")
	}
	if inner.writes != 1 {
		t.Errorf("%d writes reached Secrets Manager, want 1", inner.writes)
	}
}
