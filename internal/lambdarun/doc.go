// Package lambdarun runs a Lambda function's bootstrap executable on this machine the
// way AWS Lambda runs it on provided.al2023, so tests and benchmarks can invoke the very
// binary that ships, without SAM CLI, Docker or the Runtime Interface Emulator.
//
// Start launches the executable with AWS_LAMBDA_RUNTIME_API pointing at a Runtime API
// served on 127.0.0.1 and with Lambda's environment (function name, memory, region, fake
// credentials, TZ=:UTC, ...). By default that environment starts empty, like `env -i`, so
// variables of this machine such as AWS_CA_BUNDLE cannot change what the function does.
// Start returns once the runtime asks for its first event, or with an *InitError when
// it reports an init error, exits or stays silent past Config.InitTimeout.
//
// A Function is one execution environment: Invoke hands it one event at a time through
// GET /2018-06-01/runtime/invocation/next and waits for the runtime to post to
// .../{id}/response or .../{id}/error. Like Lambda, Invoke stops the process when the
// function times out or the context is cancelled, reports a runtime that exits mid-invoke
// as a Runtime.ExitError, and starts a fresh process (a new cold start) on the next
// Invoke. Function errors are results (Result.Err), not Go errors; a Go error from Invoke
// means the invocation could not be made. Two Functions are two environments and may be
// invoked at the same moment.
//
// Stats reports what a benchmark needs: init duration (exec to the first request for an
// event), time to first response, peak resident memory (VmHWM of the process itself;
// rusage's Maxrss is not used because after vfork+exec it reports the parent's peak) and
// CPU time. Logs returns everything the process wrote, so tests can scan it for secrets.
//
// Build compiles a function's main package the way it ships (CGO_ENABLED=0,
// -tags lambda.norpc, -trimpath, stripped) for this machine.
package lambdarun
