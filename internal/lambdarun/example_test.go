package lambdarun_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/vbctoken/vbctoken/internal/lambdarun"
)

// A test of a function package builds its bootstrap once, starts it with the settings
// its template gives it, invokes it with a SAM event and checks the answer, the
// measurements and the logs.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "callback-")
	defer os.RemoveAll(dir)
	bin, err := lambdarun.Build(ctx, "./functions/callback", dir)
	if err != nil {
		log.Fatal(err)
	}
	f, err := lambdarun.Start(ctx, lambdarun.Config{
		Binary: bin,
		Env:    map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:5000"},
	})
	if err != nil {
		log.Fatal(err) // an *lambdarun.InitError when init failed
	}
	defer f.Close()

	event, _ := os.ReadFile("events/callback.json")
	res, err := f.Invoke(ctx, event)
	if err != nil {
		log.Fatal(err)
	}
	if res.Err != nil {
		log.Fatalf("function error %s: %s", res.Err.Type, res.Err.Message)
	}
	s := f.Stats()
	fmt.Printf("%s\ninit %v, first response %v, peak RSS %d MB\n", res.Payload, s.InitDuration, s.FirstResponse, s.PeakRSS>>20)
}
