package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/flock"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// Files serve keeps in the file store's directory, next to the store's own.
const (
	// serveFile is a running serve's claim on its store (an flock held while it runs) and
	// how the other commands find it: serveInfo as JSON, mode 0600.
	serveFile = "serve.json"
	// sandboxFile keeps the local VBC sandbox's live chains and its clock across restarts.
	sandboxFile = "sandbox.json"
	// pairFile is the file store's pair (filestore.Store's name; the README lists it).
	pairFile = "pair.json"
	// serveInfoVersion is the schema version of serve.json.
	serveInfoVersion = 1
	// maxServeInfo bounds what a reader takes from serve.json.
	maxServeInfo = 64 << 10
)

// serveInfo is what a running serve publishes in <store>/serve.json:
//
//	{"version":1,"pid":4242,"url":"http://127.0.0.1:8080","started_at":"2026-03-01T10:00:00Z",
//	 "clock_speed":3600,"sandbox":true,"accounts":true,"token":"…"}
//
// Token authenticates the other commands' requests to serve's /api/ routes, so only those
// who can read the store directory (mode 0700) can ask serve to act. It is never logged.
type serveInfo struct {
	Version    int       `json:"version"`
	PID        int       `json:"pid"`
	URL        string    `json:"url"`
	StartedAt  time.Time `json:"started_at"`
	ClockSpeed float64   `json:"clock_speed"`
	Sandbox    bool      `json:"sandbox"`
	// Accounts says the store keeps many accounts (serve --accounts).
	Accounts bool   `json:"accounts,omitempty"`
	Token    string `json:"token"`
}

// LogValue leaves the token out.
func (i serveInfo) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("pid", i.PID), slog.String("url", i.URL), slog.Bool("sandbox", i.Sandbox))
}

// String names the serve for messages: "vbctoken serve (pid 4242, http://127.0.0.1:8080)".
func (i serveInfo) String() string {
	if i.URL == "" {
		return fmt.Sprintf("vbctoken serve (pid %d, starting)", i.PID)
	}
	return fmt.Sprintf("vbctoken serve (pid %d, %s)", i.PID, i.URL)
}

// storeBusyError means another serve holds the store.
type storeBusyError struct {
	Dir   string
	Other serveInfo
}

func (e *storeBusyError) Error() string {
	return fmt.Sprintf("the store %s is in use by another %s", e.Dir, e.Other)
}

// storeClaim is a serve's exclusive hold on its store directory: an flock on serve.json that
// the kernel releases when serve stops or dies. Only the holder writes the store, so two
// serves never keep one chain (the second one refuses to start), and the other commands
// find the holder there and ask it to act instead of writing behind its back.
type storeClaim struct {
	dir string

	mu   sync.Mutex
	f    *os.File
	info serveInfo
}

// claimTries bounds the attempts to take the lock: a reader (findServe) holds a shared lock
// for the few microseconds it needs to read the file.
const claimTries = 50

// claimStore creates dir when needed (mode 0700) and claims it. It fails with a
// *storeBusyError when another serve holds the store.
func claimStore(dir string) (*storeClaim, error) {
	c := &storeClaim{dir: dir}
	f, err := c.lock()
	if err != nil {
		return nil, err
	}
	c.f = f
	return c, nil
}

func (c *storeClaim) path() string { return filepath.Join(c.dir, serveFile) }

func (c *storeClaim) lock() (*os.File, error) {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the store directory: %w", err)
	}
	f, err := os.OpenFile(c.path(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("claim the store: %w", err)
	}
	for try := 0; ; try++ {
		ok, err := flock.TryLock(f, true)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("claim the store: lock %s: %w", c.path(), err)
		}
		if ok {
			return f, nil
		}
		if try == claimTries {
			break
		}
		time.Sleep(time.Millisecond)
	}
	other, _ := readServeInfo(f)
	f.Close()
	return nil, &storeBusyError{Dir: c.dir, Other: other}
}

// publish writes info into serve.json for the other commands.
func (c *storeClaim) publish(info serveInfo) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.info = info
	return c.writeLocked()
}

func (c *storeClaim) writeLocked() error {
	if c.info.URL == "" {
		return nil
	}
	data, err := json.Marshal(c.info)
	if err != nil {
		return err
	}
	if err := c.f.Truncate(0); err != nil {
		return fmt.Errorf("write %s: %w", c.path(), err)
	}
	if _, err := c.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write %s: %w", c.path(), err)
	}
	return c.f.Sync()
}

// intact reports whether serve.json is still the file this claim locked: false once the
// store directory was deleted (`rm -rf .vbctoken`, `make clean`) or the file replaced.
func (c *storeClaim) intact() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	held, err := c.f.Stat()
	if err != nil {
		return false
	}
	onDisk, err := os.Stat(c.path())
	return err == nil && os.SameFile(held, onDisk)
}

// reclaim claims the store again after its directory was deleted, recreating it.
func (c *storeClaim) reclaim() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.lock()
	if err != nil {
		return err
	}
	c.f.Close()
	c.f = f
	return c.writeLocked()
}

// release gives the store up: serve.json is removed and its lock dropped.
func (c *storeClaim) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if held, err := c.f.Stat(); err == nil {
		if onDisk, err := os.Stat(c.path()); err == nil && os.SameFile(held, onDisk) {
			_ = os.Remove(c.path())
		}
	}
	c.f.Close()
}

// findServe returns the serve that holds the store in dir, or nil when none does (no
// serve.json, or one left by a serve that has stopped).
func findServe(dir string) (*serveInfo, error) {
	f, err := os.Open(filepath.Join(dir, serveFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for a running vbctoken serve: %w", err)
	}
	defer f.Close()
	free, err := flock.TryLock(f, false)
	if err != nil {
		return nil, fmt.Errorf("look for a running vbctoken serve: %w", err)
	}
	if free {
		return nil, nil // closing f drops the shared lock at once
	}
	info, err := readServeInfo(f)
	if err != nil || info.URL == "" || info.Token == "" {
		// The holder writes the file right after taking the lock: it is starting.
		return nil, fmt.Errorf("a vbctoken serve is starting on %s: %w: try again in a moment", dir, vbctoken.ErrTransient)
	}
	return &info, nil
}

func readServeInfo(f *os.File) (serveInfo, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, maxServeInfo))
	if err != nil {
		return serveInfo{}, err
	}
	var info serveInfo
	err = json.Unmarshal(data, &info)
	return info, err
}

// newToken returns a random hex token for serve's /api/ routes.
func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// serve's routes for the other commands; each needs the token of serve.json.
const (
	apiStatus     = "/api/status"      // GET: {"status"}
	apiConsentURL = "/api/consent-url" // POST: {"url","redirect_url"}
	apiRefresh    = "/api/refresh"     // POST ?force=true|false: {"result","now"}
	apiReset      = "/api/reset"       // POST ?force=true|false: {"reset"}
	apiAccounts   = "/api/accounts"    // GET: {"accounts"} (accounts mode)
)

// The /api/ routes but apiAccounts take ?account=ID in accounts mode, and refuse it in
// single-account mode, as the commands do.

// apiReply is the JSON of serve's /api/ routes: what the command got, or its error with
// the exit code and next step the command prints, exactly as if it had run itself.
type apiReply struct {
	URL         string           `json:"url,omitempty"`
	RedirectURL string           `json:"redirect_url,omitempty"`
	Status      *vbctoken.Status `json:"status,omitempty"`
	Result      *vbctoken.Result `json:"result,omitempty"`
	Reset       *resetOutcome    `json:"reset,omitempty"`
	Accounts    []accountState   `json:"accounts,omitempty"`
	Now         time.Time        `json:"now,omitzero"` // serve's clock
	Error       string           `json:"error,omitempty"`
	ExitCode    int              `json:"exit_code,omitempty"`
	Hint        string           `json:"hint,omitempty"`
}

// remoteError is a command's error as the serve that ran it reported it.
type remoteError struct {
	Msg  string
	Code int
	Hint string
}

func (e *remoteError) Error() string { return e.Msg }

// serveClient asks the running serve that holds a store to act for a command: the serve
// keeps the sandbox, the clock and the only writer of that store.
type serveClient struct {
	info serveInfo
	http *http.Client
}

func newServeClient(info serveInfo) *serveClient {
	// No proxy: serve listens on this machine, and its token must not travel elsewhere.
	return &serveClient{info: info, http: &http.Client{Transport: &http.Transport{}}}
}

// call sends method to serve's path and decodes the reply.
func (c *serveClient) call(ctx context.Context, method, path string, query string) (apiReply, error) {
	u := strings.TrimRight(c.info.URL, "/") + path
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return apiReply{}, fmt.Errorf("ask %s: %w", c.info, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.info.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return apiReply{}, fmt.Errorf("%s did not answer: %w: %w", c.info, vbctoken.ErrTransient, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return apiReply{}, fmt.Errorf("read the answer of %s: %w: %w", c.info, vbctoken.ErrTransient, err)
	}
	var r apiReply
	if err := json.Unmarshal(data, &r); err != nil {
		return apiReply{}, fmt.Errorf("%s answered HTTP %d without its JSON: %s", c.info, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
	}
	if r.Error != "" || resp.StatusCode != http.StatusOK {
		if r.ExitCode == 0 {
			r.ExitCode = ExitFailure
		}
		return r, &remoteError{Msg: r.Error, Code: r.ExitCode, Hint: r.Hint}
	}
	return r, nil
}
