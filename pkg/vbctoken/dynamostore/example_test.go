package dynamostore_test

import (
	"context"
	"log"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
)

// An app of the account "acme" calls VBC with the access token the keeper keeps in the
// table named by VBC_TABLE_NAME. Its role needs dynamodb:GetItem on that table with the
// condition dynamodb:LeadingKeys = access#acme, and nothing else.
func ExampleNewSource() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	src, err := dynamostore.NewSource(cfg, os.Getenv("VBC_TABLE_NAME"), "acme")
	if err != nil {
		log.Fatal(err)
	}
	client := src.Client() // the token on every request; a 401 re-reads the item and retries once
	_ = client             // call VBC's APIs (https://api.vonage.com/t/vbc.prod/…) with it
}
