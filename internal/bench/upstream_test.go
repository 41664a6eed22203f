package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// The warm benchmarks keep VBC and Secrets Manager out of the measured process: this test
// binary re-runs itself as the upstream server (upstreamEnv set), so that the benchmark's
// CPU time (cpu-ns/op) is the function's alone, as on Lambda, where the upstreams are
// remote. The child exits when its stdin closes, that is when this process ends.
const upstreamEnv = "VBCBENCH_UPSTREAM"

func TestMain(m *testing.M) {
	if os.Getenv(upstreamEnv) == "1" {
		if err := serveUpstream(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "upstream:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	upstream.stop()
	os.Exit(code)
}

// upstreamInfo is what the child announces on its stdout.
type upstreamInfo struct {
	URLs
	Control string `json:"control"`
}

// serveUpstream runs a Deployment plus a control endpoint until stdin reaches EOF.
func serveUpstream(stdin io.Reader, stdout io.Writer) error {
	d, err := NewDeployment()
	if err != nil {
		return err
	}
	defer d.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /approve", func(w http.ResponseWriter, r *http.Request) {
		authURL, _ := io.ReadAll(r.Body)
		cb, err := d.VBC.Approve(string(authURL))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, cb)
	})
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "pong")
	})
	mux.HandleFunc("PUT /secret/{name...}", func(w http.ResponseWriter, r *http.Request) {
		value, _ := io.ReadAll(r.Body)
		d.SM.SetSecret(r.PathValue("name"), string(value))
	})
	ctl := httptest.NewServer(mux)
	defer ctl.Close()
	if err := json.NewEncoder(stdout).Encode(upstreamInfo{URLs: d.URLs, Control: ctl.URL}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}

// remote is the benchmark's handle on the child.
type remote struct {
	upstreamInfo
	cmd   *exec.Cmd
	stdin io.Closer
}

// upstreamProc is the child, started once per test binary.
type upstreamProc struct {
	once sync.Once
	r    *remote
	err  error
}

var upstream upstreamProc

// startUpstream returns the shared upstream child, starting it on first use.
func startUpstream(tb testing.TB) *remote {
	tb.Helper()
	upstream.once.Do(func() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), upstreamEnv+"=1")
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			upstream.err = err
			return
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			upstream.err = err
			return
		}
		if err := cmd.Start(); err != nil {
			upstream.err = err
			return
		}
		r := &remote{cmd: cmd, stdin: stdin}
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &r.upstreamInfo)
		}
		if err != nil {
			stdin.Close()
			_ = cmd.Wait()
			upstream.err = fmt.Errorf("start upstream: %w", err)
			return
		}
		upstream.r = r
	})
	if upstream.err != nil {
		tb.Fatal(upstream.err)
	}
	return upstream.r
}

func (u *upstreamProc) stop() {
	if u.r != nil {
		u.r.stdin.Close()
		_ = u.r.cmd.Wait()
	}
}

// Approve implements Approver through the child.
func (r *remote) Approve(authorizeURL string) (string, error) {
	resp, err := http.Post(r.Control+"/approve", "text/plain", strings.NewReader(authorizeURL))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("approve: %s: %s", resp.Status, body)
	}
	return string(body), err
}

// setSecret stores value as the current version of name, bypassing the counters.
func (r *remote) setSecret(name string, value []byte) error {
	req, _ := http.NewRequest(http.MethodPut, r.Control+"/secret/"+name, strings.NewReader(string(value)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("set secret %s: %s", name, resp.Status)
	}
	return nil
}
