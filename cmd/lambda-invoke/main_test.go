package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/lambdarun"
)

var testfn string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambda-invoke-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	testfn, err = lambdarun.Build(ctx, "../../internal/lambdarun/testdata/testfn", filepath.Join(dir, "callback"))
	cancel()
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

var reportLine = regexp.MustCompile(`(?m)^REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d\d ms\tMemory Size: 256 MB\tMax Memory Used: [1-9]\d* MB\tCPU Time: \d+\.\d\d ms\tInit Duration: \d+\.\d\d ms$`)

func TestInvokePrintsPayloadLogsAndReport(t *testing.T) {
	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(`{"queryStringParameters":{"state":"s"}}`), 0o644); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCLI(t, "", "-bin", testfn, "-event", event, "-env", "TESTFN=echo", "-memory", "256", "-timeout", "1m")

	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var reply struct {
		Event        json.RawMessage `json:"event"`
		FunctionName string          `json:"functionName"`
		MemoryMB     int             `json:"memoryMB"`
	}
	if err := json.Unmarshal([]byte(stdout), &reply); err != nil {
		t.Fatalf("stdout is not the payload: %q", stdout)
	}
	if string(reply.Event) != `{"queryStringParameters":{"state":"s"}}` || reply.FunctionName != "callback" || reply.MemoryMB != 256 {
		t.Errorf("payload = %s", stdout)
	}
	if !strings.Contains(stderr, `{"msg":"echo","count":1}`) || !reportLine.MatchString(stderr) {
		t.Errorf("stderr lacks the function's log or the REPORT line:\n%s", stderr)
	}
	if strings.Index(stderr, `"msg":"echo"`) > strings.Index(stderr, "REPORT") {
		t.Errorf("REPORT must come last:\n%s", stderr)
	}
}

func TestInvokeFailures(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantType string // errorType of the JSON on stdout; "" for success
	}{
		// Timeouts are a minute where the function should answer, so a loaded machine
		// cannot turn an answer into Sandbox.Timedout, and far below the sleep where it
		// should time out.
		{"function error", []string{"-env", "TESTFN=fail", "-timeout", "1m"}, "", 1, "notFoundError"},
		{"timeout", []string{"-env", "TESTFN=sleep", "-event", "-", "-timeout", "200ms"}, `{"sleep":"1h"}`, 1, "Sandbox.Timedout"},
		{"init failure", []string{"-env", "TESTFN=initfail"}, "", 1, "Runtime.ExitError"},
		{"stdin event", []string{"-env", "TESTFN=sleep", "-event", "-", "-timeout", "1m"}, `{"sleep":"1ms"}`, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.stdin, append([]string{"-bin", testfn}, tt.args...)...)

			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			if tt.wantType == "" {
				if !regexp.MustCompile(`^\d+\n$`).MatchString(stdout) {
					t.Errorf("stdout = %q, want the sleeper's pid", stdout)
				}
				return
			}
			var e struct {
				Type string `json:"errorType"`
			}
			if err := json.Unmarshal([]byte(stdout), &e); err != nil || e.Type != tt.wantType {
				t.Errorf("stdout = %q, want errorType %q", stdout, tt.wantType)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{"no -bin", []string{"-event", "x.json"}, 2},
		{"bad -env", []string{"-bin", testfn, "-env", "NOEQUALS"}, 2},
		{"stray argument", []string{"-bin", testfn, "extra"}, 2},
		{"missing event file", []string{"-bin", testfn, "-event", "does-not-exist.json"}, 1},
		{"missing binary", []string{"-bin", "does-not-exist/bootstrap"}, 1},
		{"event is not JSON", []string{"-bin", testfn, "-env", "TESTFN=echo", "-event", "-"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "not json", tt.args...)
			if code != tt.wantCode || stdout != "" || stderr == "" {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q", code, tt.wantCode, stdout, stderr)
			}
		})
	}
}
