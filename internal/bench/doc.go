// Package bench measures vbctoken's cost against the floor aws-lambda-go sets (issue 7):
// the pieces `make bench` (cmd/vbcbench) is made of, and the Go benchmarks of the warm
// handlers.
//
// A Deployment is one installation on 127.0.0.1: the three secrets in a
// FakeSecretsManager (AWS JSON 1.1 in this process, counting every call) and VBC as a
// vbcsandbox. ColdStart runs a function's bootstrap through internal/lambdarun with
// Lambda's empty environment, so this machine's AWS_CA_BUNDLE and the like cannot change
// what is measured, invokes it once and returns its init duration, time to first response,
// peak RSS, CPU and the upstream calls it made. DailyCycle runs the refresher through a day
// of hourly checks. BuildShipped and ZipSize build and size a function as `make build` ships
// it; testdata/hello is the hello-world function every ratio is taken against.
//
// The benchmarks (warm_test.go) time one warm invoke of each handler through
// lambda.NewHandler, over memstore and over the SDK's Secrets Manager client, with the
// upstreams in a child process so that the reported CPU is the function's own.
//
// Speed is measured, not asserted: nothing here fails on a slow machine. Ratios are taken
// within one run, whose rounds interleave the functions.
package bench
