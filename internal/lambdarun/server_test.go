package lambdarun

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawRuntime starts a Function whose process idles (for an hour: Close ends it), so the
// test itself can play the runtime against the Runtime API, as aws-lambda-go would, and
// check every answer.
func rawRuntime(t *testing.T) (*Function, *process, string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 3600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := newFunction(Config{Binary: script, FunctionName: "raw", Timeout: 30 * time.Second, ShutdownGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	p, err := f.startProcess()
	if err == nil {
		f.proc, f.starts = p, 1
	}
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, p, "http://" + p.ln.Addr().String()
}

// rawClient's timeout is a backstop against a hung test, not a measurement.
var rawClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return do(t, req)
}

func post(t *testing.T, url, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, req)
}

type invokeReturn struct {
	res Result
	err error
}

func goInvoke(f *Function, event string) <-chan invokeReturn {
	ch := make(chan invokeReturn, 1)
	go func() {
		res, err := f.Invoke(context.Background(), []byte(event))
		ch <- invokeReturn{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan invokeReturn) Result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Invoke: %v", r.err)
		}
		return r.res
	case <-time.After(2 * time.Minute): // a backstop against a hung test
		t.Fatal("Invoke did not return")
	}
	return Result{}
}

const api = "/2018-06-01/runtime"

func TestRuntimeAPIContract(t *testing.T) {
	f, _, base := rawRuntime(t)

	// next: the event as body, Lambda's headers, nothing for absent client context.
	before := time.Now()
	done := goInvoke(f, `{"k":"v"}`)
	resp, body := get(t, base+api+"/invocation/next")
	if resp.StatusCode != http.StatusOK || string(body) != `{"k":"v"}` {
		t.Fatalf("next: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("request id %q is not a UUID v4", id)
	}
	deadline, err := strconv.ParseInt(resp.Header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if err != nil || deadline < before.Add(30*time.Second).UnixMilli() || deadline > time.Now().Add(30*time.Second).UnixMilli() {
		t.Errorf("deadline header %q (%v)", resp.Header.Get("Lambda-Runtime-Deadline-Ms"), err)
	}
	if got, want := resp.Header.Get("Lambda-Runtime-Invoked-Function-Arn"), "arn:aws:lambda:us-east-1:123456789012:function:raw"; got != want {
		t.Errorf("ARN %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$`).MatchString(resp.Header.Get("Lambda-Runtime-Trace-Id")) {
		t.Errorf("trace id %q", resp.Header.Get("Lambda-Runtime-Trace-Id"))
	}
	for _, h := range []string{"Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity"} {
		if _, ok := resp.Header[h]; ok {
			t.Errorf("%s sent for an invocation without one", h)
		}
	}

	// response for an id the runtime was not given: 400.
	resp, body = post(t, base+api+"/invocation/not-an-id/response", `{}`, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "InvalidRequestID") {
		t.Errorf("unknown id: %d %s", resp.StatusCode, body)
	}

	// response whose body failed midway: aws-lambda-go sends the error in trailers.
	errBody, _ := json.Marshal(map[string]string{"errorMessage": "disk on fire", "errorType": "readerError"})
	req, _ := http.NewRequest(http.MethodPost, base+api+"/invocation/"+id+"/response", io.MultiReader(strings.NewReader("partial")))
	req.Trailer = http.Header{
		"Lambda-Runtime-Function-Error-Type": {"readerError"},
		"Lambda-Runtime-Function-Error-Body": {base64.StdEncoding.EncodeToString(errBody)},
	}
	if resp, body = do(t, req); resp.StatusCode != http.StatusAccepted || string(body) != `{"status":"OK"}` {
		t.Errorf("response: %d %s", resp.StatusCode, body)
	}
	res := wait(t, done)
	if res.RequestID != id || res.Err == nil || res.Err.Type != "readerError" || res.Err.Message != "disk on fire" {
		t.Errorf("streamed failure: %+v", res)
	}

	// a plain response.
	done = goInvoke(f, `{}`)
	resp, _ = get(t, base+api+"/invocation/next")
	id = resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if resp, body = post(t, base+api+"/invocation/"+id+"/response", `{"ok":true}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("response: %d %s", resp.StatusCode, body)
	}
	if res = wait(t, done); res.Err != nil || string(res.Payload) != `{"ok":true}` || res.ColdStart {
		t.Errorf("response: %+v", res)
	}

	// error: the body's errorType wins; a body that is not JSON falls back to the header.
	for _, tc := range []struct{ body, header, wantType, wantMsg string }{
		{`{"errorMessage":"bad input","errorType":"validationError","stackTrace":[]}`, "Runtime.Unknown", "validationError", "bad input"},
		{`not json`, "Runtime.Custom", "Runtime.Custom", ""},
	} {
		done = goInvoke(f, `{}`)
		resp, _ = get(t, base+api+"/invocation/next")
		id = resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		resp, body = post(t, base+api+"/invocation/"+id+"/error", tc.body, http.Header{"Lambda-Runtime-Function-Error-Type": {tc.header}})
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("error: %d %s", resp.StatusCode, body)
		}
		res = wait(t, done)
		if res.Err == nil || res.Err.Type != tc.wantType || res.Err.Message != tc.wantMsg || !json.Valid(res.Payload) {
			t.Errorf("error %q: %+v payload %s", tc.body, res.Err, res.Payload)
		}
	}

	// a response over 6 MB: 413 to the runtime, Function.ResponseSizeTooLarge to the caller.
	done = goInvoke(f, `{}`)
	resp, _ = get(t, base+api+"/invocation/next")
	id = resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	resp, _ = post(t, base+api+"/invocation/"+id+"/response", `"`+strings.Repeat("x", 6<<20)+`"`, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("large response: %d", resp.StatusCode)
	}
	if res = wait(t, done); res.Err == nil || res.Err.Type != "Function.ResponseSizeTooLarge" {
		t.Errorf("large response: %+v", res.Err)
	}

	// init/error once init is over: 403.
	if resp, body = post(t, base+api+"/init/error", `{"errorMessage":"late","errorType":"X"}`, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("late init/error: %d %s", resp.StatusCode, body)
	}
	// unknown route and wrong method.
	if resp, _ = get(t, base+"/2018-06-01/runtime/invocation"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown route: %d", resp.StatusCode)
	}
	if resp, _ = post(t, base+api+"/invocation/next", "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST next: %d", resp.StatusCode)
	}

	// extensions: register needs a name and returns an identifier.
	if resp, _ = post(t, base+"/2020-01-01/extension/register", `{"events":[]}`, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("register without a name: %d", resp.StatusCode)
	}
	resp, body = post(t, base+"/2020-01-01/extension/register", `{"events":[]}`, http.Header{"Lambda-Extension-Name": {"GoLangEnableSIGTERM"}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Lambda-Extension-Identifier") == "" || !strings.Contains(string(body), `"functionName":"raw"`) {
		t.Errorf("register: %d %s %v", resp.StatusCode, body, resp.Header)
	}

	if s := f.Stats(); s.Invocations != 5 || s.Starts != 1 || s.InitDuration <= 0 || s.FirstResponse < s.InitDuration {
		t.Errorf("stats: %+v", s)
	}
}

func TestInitErrorEndpoint(t *testing.T) {
	_, p, base := rawRuntime(t)

	resp, body := post(t, base+api+"/init/error", `{"errorMessage":"no VBC_SECRET_ARN","errorType":"Config.Missing"}`,
		http.Header{"Lambda-Runtime-Function-Error-Type": {"Runtime.InitError"}})
	if resp.StatusCode != http.StatusAccepted || string(body) != `{"status":"OK"}` {
		t.Fatalf("init/error: %d %s", resp.StatusCode, body)
	}
	// The init error is already in: awaitInit returns it at once, whatever the limit.
	err := p.awaitInit(t.Context(), time.Hour, nil)
	if ie, ok := err.(*InitError); !ok || ie.Type != "Config.Missing" || ie.Message != "no VBC_SECRET_ARN" {
		t.Errorf("awaitInit = %v", err)
	}
}

func TestSecondAnswerIsRefused(t *testing.T) {
	f, p, _ := rawRuntime(t)
	inv := &invocation{id: "id-1", done: make(chan outcome, 1), proc: p}
	f.inflight[inv.id] = inv

	if status, _ := f.answer(p, "id-1", outcome{payload: []byte("1")}); status != http.StatusAccepted {
		t.Errorf("first answer: %d", status)
	}
	if status, code := f.answer(p, "id-1", outcome{payload: []byte("2")}); status != http.StatusForbidden || code != "InvalidStateTransition" {
		t.Errorf("second answer: %d %s", status, code)
	}
	other := &process{}
	if status, _ := f.answer(other, "id-1", outcome{}); status != http.StatusBadRequest {
		t.Errorf("answer from another process: %d", status)
	}
	if out := <-inv.done; string(out.payload) != "1" {
		t.Errorf("kept answer %s", out.payload)
	}
}

func TestBuildEnv(t *testing.T) {
	host := []string{"AWS_CA_BUNDLE=/x.pem", "HOME=/root", "AWS_REGION=us-west-2", "AWS_LAMBDA_RUNTIME_API=1.2.3.4:9"}
	cfg := Config{FunctionName: "fn", MemoryMB: 512, Region: "eu-central-1", Env: map[string]string{
		"VBC_TOKEN_URL": "http://127.0.0.1:1/token", "TZ": "Europe/Paris", "AWS_LAMBDA_RUNTIME_API": "evil",
	}}
	for _, tt := range []struct {
		inherit bool
		want    []string
		absent  []string
	}{
		{false, []string{"PATH=/usr/bin:/bin", "AWS_REGION=eu-central-1", "AWS_DEFAULT_REGION=eu-central-1",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512", "AWS_LAMBDA_FUNCTION_NAME=fn", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
			"AWS_LAMBDA_LOG_FORMAT=JSON", "_HANDLER=bootstrap", "LAMBDA_TASK_ROOT=/var/task",
			"VBC_TOKEN_URL=http://127.0.0.1:1/token", "TZ=Europe/Paris"}, []string{"AWS_CA_BUNDLE", "HOME", "AWS_LAMBDA_RUNTIME_API"}},
		{true, []string{"AWS_CA_BUNDLE=/x.pem", "HOME=/root", "AWS_REGION=eu-central-1"}, []string{"AWS_LAMBDA_RUNTIME_API"}},
	} {
		cfg.InheritEnv = tt.inherit
		env := buildEnv(cfg, "/var/task", host)
		joined := "\n" + strings.Join(env, "\n") + "\n"
		for _, w := range tt.want {
			if !strings.Contains(joined, "\n"+w+"\n") {
				t.Errorf("inherit=%v: missing %s in%s", tt.inherit, w, joined)
			}
		}
		for _, a := range tt.absent {
			if strings.Contains(joined, "\n"+a+"=") {
				t.Errorf("inherit=%v: %s present", tt.inherit, a)
			}
		}
	}
}
