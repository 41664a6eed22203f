package lambdarun_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/lambdarun"
	"github.com/vbctoken/vbctoken/internal/testutil"
)

// testfn is the built testdata/testfn; TESTFN picks its behaviour.
var testfn string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lambdarun-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// About 2 s when the build cache is warm; the first build with these flags on a
	// fresh machine compiles the standard library too (about 100 s on 2 CPUs).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if testfn, err = lambdarun.Build(ctx, "./testdata/testfn", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 && !goroutinesSettle(before) {
		buf := make([]byte, 1<<20)
		fmt.Fprintf(os.Stderr, "goroutines leaked: %d before the tests, %d after\n%s\n",
			before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		return 1
	}
	return code
}

// goroutinesSettle waits up to 30 s for the goroutines the tests started to end. The
// bound is only reached when something leaked; a loaded machine merely takes longer.
func goroutinesSettle(limit int) bool {
	for range 1500 {
		if runtime.NumGoroutine() <= limit {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// config returns cfg for testfn with behaviour name.
func config(name string, cfg lambdarun.Config) lambdarun.Config {
	cfg.Binary = testfn
	env := map[string]string{"TESTFN": name}
	for k, v := range cfg.Env {
		env[k] = v
	}
	cfg.Env = env
	return cfg
}

// start starts testfn as function name and closes it, checking its process is gone,
// when the test ends.
func start(t *testing.T, name string, cfg lambdarun.Config) *lambdarun.Function {
	t.Helper()
	cfg = config(name, cfg)
	f, err := lambdarun.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	t.Cleanup(func() {
		f.Close()
		assertGone(t, f.Stats().PID)
	})
	return f
}

func invoke(t *testing.T, f *lambdarun.Function, event string) lambdarun.Result {
	t.Helper()
	res, err := f.Invoke(t.Context(), []byte(event))
	if err != nil {
		t.Fatalf("Invoke(%s): %v", event, err)
	}
	return res
}

// assertGone checks that no process has pid any more: it was stopped and reaped.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Errorf("pid %d: no process recorded", pid)
		return
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists (kill -0: %v)", pid, err)
	}
}

type echoReply struct {
	Event        json.RawMessage `json:"event"`
	RequestID    string          `json:"requestId"`
	FunctionArn  string          `json:"functionArn"`
	FunctionName string          `json:"functionName"`
	MemoryMB     int             `json:"memoryMB"`
	DeadlineMs   int64           `json:"deadlineMs"`
	TraceID      string          `json:"traceId"`
	PID          int             `json:"pid"`
	Count        int             `json:"count"`
	AnsweredMs   int64           `json:"answeredMs"`
}

func decodeEcho(t *testing.T, res lambdarun.Result) echoReply {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("function error: %v", res.Err)
	}
	var r echoReply
	if err := json.Unmarshal(res.Payload, &r); err != nil {
		t.Fatalf("decode %s: %v", res.Payload, err)
	}
	return r
}

func TestInvokeDeliversEventAndMetadata(t *testing.T) {
	// GIVEN a started echo function with a 2 s timeout
	f := start(t, "echo", lambdarun.Config{FunctionName: "callback", MemoryMB: 256, Region: "eu-west-1", Timeout: 2 * time.Second})

	// WHEN it is invoked twice
	before := time.Now()
	first := invoke(t, f, `{"hello":"world"}`)
	second := invoke(t, f, `{"n":2}`)

	// THEN the runtime received the event and Lambda's headers
	r1, r2 := decodeEcho(t, first), decodeEcho(t, second)
	if string(r1.Event) != `{"hello":"world"}` {
		t.Errorf("event = %s", r1.Event)
	}
	if r1.RequestID != first.RequestID || len(first.RequestID) != 36 || first.RequestID == second.RequestID {
		t.Errorf("request ids: runtime saw %q, result %q, second %q", r1.RequestID, first.RequestID, second.RequestID)
	}
	if want := "arn:aws:lambda:eu-west-1:123456789012:function:callback"; r1.FunctionArn != want {
		t.Errorf("function ARN = %q, want %q", r1.FunctionArn, want)
	}
	if r1.FunctionName != "callback" || r1.MemoryMB != 256 {
		t.Errorf("lambdacontext saw name %q memory %d", r1.FunctionName, r1.MemoryMB)
	}
	if lo, hi := before.Add(2*time.Second).UnixMilli(), time.Now().Add(2*time.Second).UnixMilli(); r1.DeadlineMs < lo || r1.DeadlineMs > hi {
		t.Errorf("deadline %d not within [%d, %d]", r1.DeadlineMs, lo, hi)
	}
	if !strings.HasPrefix(r1.TraceID, "Root=1-") {
		t.Errorf("trace id = %q", r1.TraceID)
	}
	// AND the second invocation reused the warm environment
	if r2.PID != r1.PID || r2.Count != 2 {
		t.Errorf("second invocation: pid %d count %d, want pid %d count 2", r2.PID, r2.Count, r1.PID)
	}
	if !first.ColdStart || first.InitDuration <= 0 || second.ColdStart || second.InitDuration != 0 {
		t.Errorf("cold start flags: first %v/%v, second %v/%v", first.ColdStart, first.InitDuration, second.ColdStart, second.InitDuration)
	}
	if first.Duration <= 0 || second.Duration <= 0 {
		t.Errorf("durations %v, %v", first.Duration, second.Duration)
	}

	// AND the measurements are positive and ordered
	s := f.Stats()
	if s.Starts != 1 || s.Invocations != 2 || !s.Running || s.PID != r1.PID {
		t.Errorf("stats = %+v", s)
	}
	if s.InitDuration <= 0 || s.FirstResponse <= s.InitDuration || s.InitDuration != first.InitDuration {
		t.Errorf("init %v, first response %v (result init %v)", s.InitDuration, s.FirstResponse, first.InitDuration)
	}
	if s.PeakRSS < 1<<20 || s.PeakRSS > 1<<30 {
		t.Errorf("peak RSS = %d bytes", s.PeakRSS)
	}
	f.Close()
	final := f.Stats()
	if final.Running || final.CPUTime <= 0 || final.PeakRSS < s.PeakRSS {
		t.Errorf("after Close: %+v", final)
	}
	// AND the function's own output was captured
	if got := bytes.Count(f.Logs(), []byte(`"msg":"echo"`)); got != 2 {
		t.Errorf("logs hold %d echo lines:\n%s", got, f.Logs())
	}
}

func TestFunctionErrorKeepsEnvironment(t *testing.T) {
	f := start(t, "fail", lambdarun.Config{})
	pid := f.Stats().PID

	res := invoke(t, f, `{}`)

	if res.Err == nil || res.Err.Type != "notFoundError" || res.Err.Message != "pair not found" {
		t.Fatalf("Err = %#v", res.Err)
	}
	var payload map[string]any
	if err := json.Unmarshal(res.Payload, &payload); err != nil || payload["errorType"] != "notFoundError" {
		t.Errorf("payload = %s (%v)", res.Payload, err)
	}
	invoke(t, f, `{}`)
	if s := f.Stats(); s.Starts != 1 || s.PID != pid || !s.Running {
		t.Errorf("a handler error must not restart the environment: %+v", s)
	}
	if !bytes.Contains(f.Logs(), []byte("pair not found")) {
		t.Errorf("aws-lambda-go logs the error payload; logs:\n%s", f.Logs())
	}
}

func TestTimeoutKillsAndNextInvokeColdStarts(t *testing.T) {
	f := start(t, "sleep", lambdarun.Config{Timeout: 300 * time.Millisecond})
	oldPID := f.Stats().PID

	res := invoke(t, f, `{"sleep":"30s"}`)

	// The event sleeps 100 times the timeout, so only the timeout can end it. (How long
	// that took is not asserted: on a loaded machine it is anything above 300 ms.)
	if res.Err == nil || res.Err.Type != "Sandbox.Timedout" || !strings.Contains(res.Err.Message, "Task timed out after 0.30 seconds") {
		t.Fatalf("Err = %#v", res.Err)
	}
	assertGone(t, oldPID)

	next := invoke(t, f, `{"sleep":"0s"}`)
	if next.Err != nil || !next.ColdStart {
		t.Fatalf("invoke after timeout: err %v, cold %v", next.Err, next.ColdStart)
	}
	if s := f.Stats(); s.Starts != 2 || s.PID == oldPID || string(next.Payload) != fmt.Sprint(s.PID) {
		t.Errorf("stats %+v, payload %s", s, next.Payload)
	}
}

func TestRuntimeExitMidInvoke(t *testing.T) {
	tests := []struct {
		name, bin, wantType, wantMessage string
	}{
		// os.Exit in the handler: nothing is posted, Lambda reports the exit.
		{"crash", "crash", "Runtime.ExitError", "Runtime exited with error: exit status 3"},
		// panic: aws-lambda-go posts the panic, then exits.
		{"panic", "panic", "string", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, tt.bin, lambdarun.Config{})
			firstPID := f.Stats().PID

			for i := 1; i <= 2; i++ {
				res := invoke(t, f, `{}`)
				if res.Err == nil || res.Err.Type != tt.wantType || !strings.Contains(res.Err.Message, tt.wantMessage) {
					t.Fatalf("invoke %d: Err = %#v", i, res.Err)
				}
				if !res.ColdStart {
					t.Errorf("invoke %d: want a cold start after the exit", i)
				}
			}
			if s := f.Stats(); s.Starts != 2 || s.PID == firstPID {
				t.Errorf("stats = %+v", s)
			}
			assertGone(t, firstPID)
		})
	}
}

func TestInitFailure(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantType    string
		wantMessage string
	}{
		{"exits", nil, "Runtime.ExitError", "exit status 1"},
		{"reports init/error", map[string]string{"REPORT_INIT_ERROR": "1"}, "Config.Missing", "configuration missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var output syncBuffer
			f, err := lambdarun.Start(t.Context(), config("initfail", lambdarun.Config{Env: tt.env, Output: &output}))

			var ie *lambdarun.InitError
			if !errors.As(err, &ie) || ie.Type != tt.wantType || !strings.Contains(ie.Message, tt.wantMessage) {
				t.Fatalf("Start: f=%v err=%v, want InitError %s", f, err, tt.wantType)
			}
			// The process is gone once Start returns, so Output has all it wrote.
			if !strings.Contains(output.String(), "initfail: configuration missing") {
				t.Errorf("output = %q", output.String())
			}
		})
	}
	t.Run("succeeds when configured", func(t *testing.T) {
		f := start(t, "initfail", lambdarun.Config{Env: map[string]string{"REQUIRED_SETTING": "x", "REPORT_INIT_ERROR": "1"}})
		if res := invoke(t, f, `{}`); res.Err != nil || string(res.Payload) != `"ok"` {
			t.Errorf("result = %s %v", res.Payload, res.Err)
		}
	})
	t.Run("Invoke reports a failed re-init", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "fail-next-init")
		f := start(t, "initfail", lambdarun.Config{Env: map[string]string{
			"REQUIRED_SETTING": "x", "REPORT_INIT_ERROR": "1", "FAIL_IF_EXISTS": marker,
		}})
		if res := invoke(t, f, `{"exit":true}`); res.Err == nil || res.Err.Type != "Runtime.ExitError" {
			t.Fatalf("exit: %+v", res.Err)
		}
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			t.Fatal(err)
		}

		_, err := f.Invoke(t.Context(), []byte(`{}`))

		var ie *lambdarun.InitError
		if !errors.As(err, &ie) || ie.Type != "Config.Missing" || ie.Message != "configuration missing" {
			t.Fatalf("Invoke = %v, want the InitError", err)
		}
		os.Remove(marker)
		if res := invoke(t, f, `{}`); res.Err != nil || !res.ColdStart || f.Stats().Starts != 3 {
			t.Errorf("after the cause is gone: %+v, stats %+v", res, f.Stats())
		}
	})
	t.Run("init timeout", func(t *testing.T) {
		// A runtime that never asks for an event: only InitTimeout can end Start. The
		// context's far deadline is a backstop that turns a broken InitTimeout into a
		// context error rather than a hung test.
		script := filepath.Join(t.TempDir(), "bootstrap")
		if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 3600\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		_, err := lambdarun.Start(ctx, lambdarun.Config{Binary: script, InitTimeout: 200 * time.Millisecond})
		var ie *lambdarun.InitError
		if !errors.As(err, &ie) || ie.Type != "Sandbox.Timedout" {
			t.Fatalf("Start: %v", err)
		}
	})
}

func TestLambdaLikeEnvironment(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/host-only.pem")
	t.Setenv("LAMBDARUN_HOST_ONLY", "1")
	lambdaNames := []string{
		"AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
		"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_LOG_FORMAT",
		"AWS_LAMBDA_RUNTIME_API", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"LAMBDA_TASK_ROOT", "PATH", "TZ", "_HANDLER", "VBC_SECRET_ARN",
	}
	tests := []struct {
		name       string
		inherit    bool
		wantAbsent []string
		wantExtra  []string
	}{
		{"lambda-like by default", false, []string{"AWS_CA_BUNDLE", "LAMBDARUN_HOST_ONLY", "HOME"}, nil},
		{"inherit", true, nil, []string{"AWS_CA_BUNDLE", "LAMBDARUN_HOST_ONLY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, "env", lambdarun.Config{InheritEnv: tt.inherit, Env: map[string]string{"VBC_SECRET_ARN": "arn:x"}})
			var names []string
			if err := json.Unmarshal(invoke(t, f, `{}`).Payload, &names); err != nil {
				t.Fatal(err)
			}
			for _, n := range append(lambdaNames, tt.wantExtra...) {
				if !slices.Contains(names, n) {
					t.Errorf("missing %s in %v", n, names)
				}
			}
			for _, n := range tt.wantAbsent {
				if slices.Contains(names, n) {
					t.Errorf("%s leaked into the function's environment", n)
				}
			}
			if !bytes.Contains(f.Logs(), []byte("env: AWS_LAMBDA_RUNTIME_API\n")) {
				t.Errorf("logs:\n%s", f.Logs())
			}
		})
	}
}

func TestInvocationsSerialiseWithinAFunction(t *testing.T) {
	// GIVEN one environment with a 10 s timeout
	const timeout = 10 * time.Second
	f := start(t, "echo", lambdarun.Config{Timeout: timeout})

	// WHEN three callers invoke it at once, each event taking 50 ms
	const n = 3
	results := make([]lambdarun.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = f.Invoke(t.Context(), []byte(`{"sleep":"50ms"}`)) })
	}
	wg.Wait()

	// THEN one process served them in turn, and each invocation's deadline (its timeout
	// clock) started only after the previous one answered. The order is causal, so no
	// amount of load changes it; overlapping invocations would share the first clock.
	replies := make([]echoReply, n)
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("invoke %d: %v", i, errs[i])
		}
		replies[i] = decodeEcho(t, r)
	}
	slices.SortFunc(replies, func(a, b echoReply) int { return a.Count - b.Count })
	for i, r := range replies {
		if r.Count != i+1 || r.PID != replies[0].PID {
			t.Errorf("reply %d: count %d pid %d, want count %d pid %d", i, r.Count, r.PID, i+1, replies[0].PID)
		}
		if i > 0 && r.DeadlineMs-timeout.Milliseconds() < replies[i-1].AnsweredMs {
			t.Errorf("invocation %d was handed over (deadline %d) before invocation %d answered (%d)",
				i+1, r.DeadlineMs, i, replies[i-1].AnsweredMs)
		}
	}
	if s := f.Stats(); s.Starts != 1 || s.Invocations != n {
		t.Errorf("stats = %+v", s)
	}
}

func TestTwoFunctionsRunAtTheSameMoment(t *testing.T) {
	// GIVEN two environments whose handlers each wait for the other to have started
	a := start(t, "meet", lambdarun.Config{FunctionName: "refresher-a", Timeout: time.Minute})
	b := start(t, "meet", lambdarun.Config{FunctionName: "refresher-b", Timeout: time.Minute})
	dir := t.TempDir()
	markA, markB := filepath.Join(dir, "a"), filepath.Join(dir, "b")

	// WHEN both are invoked at once
	var ra, rb lambdarun.Result
	var errA, errB error
	var wg sync.WaitGroup
	wg.Go(func() { ra, errA = a.Invoke(t.Context(), meetEvent(t, markA, markB)) })
	wg.Go(func() { rb, errB = b.Invoke(t.Context(), meetEvent(t, markB, markA)) })
	wg.Wait()

	// THEN both answer: had one waited for the other, it would have timed out.
	if errA != nil || errB != nil || ra.Err != nil || rb.Err != nil || bytes.Equal(ra.Payload, rb.Payload) {
		t.Errorf("results: %s %v %v / %s %v %v", ra.Payload, ra.Err, errA, rb.Payload, rb.Err, errB)
	}
}

func meetEvent(t *testing.T, mark, await string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"mark": mark, "await": await})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInvokeContextCancelStopsEnvironment(t *testing.T) {
	// GIVEN an invocation under way
	started, output := watchFor("sleep: started")
	f := start(t, "sleep", lambdarun.Config{Timeout: time.Minute, Output: output})
	pid := f.Stats().PID
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		select {
		case <-started:
			cancel()
		case <-ctx.Done():
		}
	}()

	// WHEN its context is cancelled
	_, err := f.Invoke(ctx, []byte(`{"sleep":"1h"}`))

	// THEN Invoke returns the context's error and the environment is stopped
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Invoke = %v, want context.Canceled", err)
	}
	assertGone(t, pid)
	if res := invoke(t, f, `{"sleep":"0s"}`); res.Err != nil || !res.ColdStart {
		t.Errorf("next invoke: %v cold=%v", res.Err, res.ColdStart)
	}
}

// watchFor returns a Config.Output writer and a channel closed once marker has appeared
// in what the function wrote: the test's signal that the handler is running.
func watchFor(marker string) (<-chan struct{}, *markerWriter) {
	w := &markerWriter{marker: []byte(marker), seen: make(chan struct{})}
	return w.seen, w
}

type markerWriter struct {
	marker []byte
	seen   chan struct{}

	mu   sync.Mutex
	buf  []byte
	done bool
}

func (w *markerWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.buf = append(w.buf, b...)
		if bytes.Contains(w.buf, w.marker) {
			w.done = true
			close(w.seen)
		}
	}
	return len(b), nil
}

func TestInvalidEvents(t *testing.T) {
	f := start(t, "echo", lambdarun.Config{})
	if _, err := f.Invoke(t.Context(), []byte(`{"a":`)); !errors.Is(err, lambdarun.ErrInvalidEvent) {
		t.Errorf("truncated JSON: %v", err)
	}
	if _, err := f.Invoke(t.Context(), bytes.Repeat([]byte(" "), 6<<20+1)); !errors.Is(err, lambdarun.ErrEventTooLarge) {
		t.Errorf("7 MB event: %v", err)
	}
	if r := decodeEcho(t, invoke(t, f, "")); string(r.Event) != "{}" {
		t.Errorf("empty event reached the handler as %s", r.Event)
	}
}

func TestClose(t *testing.T) {
	t.Run("SIGTERM reaches a function that asked for it", func(t *testing.T) {
		// The function exits on SIGTERM, so the long grace costs nothing.
		f := start(t, "echo", lambdarun.Config{Env: map[string]string{"ECHO_SIGTERM": "exit"}, ShutdownGrace: time.Minute})
		invoke(t, f, `{}`)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		logs := string(f.Logs())
		if !strings.Contains(logs, "echo: SIGTERM received") || strings.Contains(logs, "WARNING") || strings.Contains(logs, "error") {
			t.Errorf("logs:\n%s", logs)
		}
	})
	t.Run("SIGKILL once the grace has passed", func(t *testing.T) {
		// The function outlives SIGTERM: only SIGKILL ends it, and not before the grace.
		// (A timer never fires early, so the lower bound holds under any load.)
		const grace = 300 * time.Millisecond
		f := start(t, "echo", lambdarun.Config{Env: map[string]string{"ECHO_SIGTERM": "stay"}, ShutdownGrace: grace})
		invoke(t, f, `{}`)
		pid := f.Stats().PID
		begin := time.Now()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(begin); d < grace {
			t.Errorf("Close took %v, less than the %v grace", d, grace)
		}
		assertGone(t, pid)
	})
	t.Run("Invoke after Close", func(t *testing.T) {
		f := start(t, "echo", lambdarun.Config{})
		f.Close()
		f.Close()
		if _, err := f.Invoke(t.Context(), nil); !errors.Is(err, lambdarun.ErrClosed) {
			t.Errorf("Invoke = %v, want ErrClosed", err)
		}
	})
	t.Run("Close during Invoke", func(t *testing.T) {
		// GIVEN an invocation the function has started on
		started, output := watchFor("sleep: started")
		f := start(t, "sleep", lambdarun.Config{Timeout: time.Minute, Output: output})
		closed, returned := make(chan error, 1), make(chan struct{})
		go func() {
			select {
			case <-started:
			case <-returned: // Invoke failed early; its error says why
			}
			closed <- f.Close()
		}()

		// WHEN the Function is closed, THEN Invoke returns ErrClosed, not the exit
		// Close caused
		_, err := f.Invoke(t.Context(), []byte(`{"sleep":"1h"}`))
		close(returned)
		if !errors.Is(err, lambdarun.ErrClosed) {
			t.Errorf("Invoke = %v, want ErrClosed", err)
		}
		if err := <-closed; err != nil {
			t.Errorf("Close = %v", err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the process's output goroutines.
type syncBuffer = testutil.Buffer

func BenchmarkWarmInvoke(b *testing.B) {
	f, err := lambdarun.Start(b.Context(), config("echo", lambdarun.Config{}))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for b.Loop() {
		if _, err := f.Invoke(b.Context(), []byte(`{}`)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkColdStart(b *testing.B) {
	var init, rss float64
	for b.Loop() {
		f, err := lambdarun.Start(b.Context(), config("echo", lambdarun.Config{}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Invoke(b.Context(), []byte(`{}`)); err != nil {
			b.Fatal(err)
		}
		f.Close()
		s := f.Stats()
		init += float64(s.InitDuration.Microseconds())
		rss += float64(s.PeakRSS)
	}
	b.ReportMetric(init/float64(b.N), "init-µs/op")
	b.ReportMetric(rss/float64(b.N)/(1<<20), "peak-MB")
}
