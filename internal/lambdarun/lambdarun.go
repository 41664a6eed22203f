package lambdarun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Defaults applied to a zero Config field; they are Lambda's own.
const (
	// DefaultTimeout is Lambda's default function timeout.
	DefaultTimeout = 3 * time.Second
	// DefaultInitTimeout is Lambda's limit on the init phase.
	DefaultInitTimeout = 10 * time.Second
	// DefaultMemoryMB is Lambda's default memory size.
	DefaultMemoryMB = 128
	// DefaultRegion is the region given to the function when Config.Region is empty.
	DefaultRegion = "us-east-1"
	// DefaultShutdownGrace is how long Close waits after SIGTERM before SIGKILL, the
	// time Lambda gives a runtime with an internal extension.
	DefaultShutdownGrace = 500 * time.Millisecond
)

// maxPayload is Lambda's limit on a synchronous event and on a response (6 MB).
const maxPayload = 6 << 20

// accountID is the account in the function ARN; moto uses the same default.
const accountID = "123456789012"

var (
	// ErrClosed is returned by Invoke after Close.
	ErrClosed = errors.New("lambdarun: function closed")
	// ErrInvalidEvent is returned by Invoke for an event that is not JSON, which the
	// Lambda Invoke API refuses too.
	ErrInvalidEvent = errors.New("lambdarun: event is not valid JSON")
	// ErrEventTooLarge is returned by Invoke for an event over Lambda's 6 MB limit.
	ErrEventTooLarge = errors.New("lambdarun: event exceeds 6 MB")
)

// Config describes the function to run. Only Binary is required.
type Config struct {
	// Binary is the path of the bootstrap executable. Its directory becomes the
	// working directory and LAMBDA_TASK_ROOT, as /var/task is on Lambda.
	Binary string
	// Env holds the function's environment variables (the template's Environment),
	// merged over Lambda's own; AWS_LAMBDA_RUNTIME_API cannot be overridden.
	Env map[string]string
	// InheritEnv starts the process from this process's environment instead of an
	// empty one with PATH=/usr/bin:/bin. Leave it false to measure or test what runs on
	// Lambda: this machine's AWS_CA_BUNDLE and the like must not leak in.
	InheritEnv bool
	// FunctionName is AWS_LAMBDA_FUNCTION_NAME and part of the function ARN. Empty
	// means the name of Binary's directory (dist/callback/bootstrap gives "callback").
	FunctionName string
	// MemoryMB is AWS_LAMBDA_FUNCTION_MEMORY_SIZE; it is reported, not enforced.
	MemoryMB int
	// Region is AWS_REGION and AWS_DEFAULT_REGION; empty means DefaultRegion.
	Region string
	// Timeout is the function timeout; zero means DefaultTimeout.
	Timeout time.Duration
	// InitTimeout bounds the init phase (exec to the first request for an event);
	// zero means DefaultInitTimeout.
	InitTimeout time.Duration
	// ShutdownGrace is the time between SIGTERM and SIGKILL when Close stops the
	// process; zero means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Output, when set, receives a copy of what the process writes to stdout and
	// stderr, within about 20 ms and completely by the time the process has exited.
	// Like Lambda's log stream, it is one stream for both. Logs keeps a copy either way.
	Output io.Writer
}

// FunctionError is an error the function returned, or that Lambda reports for it: the
// errorType and errorMessage of Lambda's error payload. Runtime.ExitError means the
// process exited during the invocation and Sandbox.Timedout that it ran out of time.
type FunctionError struct {
	// Type is errorType: the Go error's type name for a handler error.
	Type string `json:"errorType"`
	// Message is errorMessage.
	Message string `json:"errorMessage"`
}

// Error returns the type and message.
func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// InitError reports a failed init phase: the runtime posted to
// /2018-06-01/runtime/init/error, exited before asking for an event (Runtime.ExitError)
// or did not ask within Config.InitTimeout (Sandbox.Timedout).
type InitError struct {
	// Type is the reported errorType, or Runtime.ExitError or Sandbox.Timedout.
	Type string `json:"errorType"`
	// Message is the reported errorMessage, or what happened.
	Message string `json:"errorMessage"`
}

// Error returns the type and message.
func (e *InitError) Error() string { return "lambdarun: init failed: " + e.Type + ": " + e.Message }

// Result is the outcome of one invocation.
type Result struct {
	// RequestID is the Lambda-Runtime-Aws-Request-Id the runtime was given.
	RequestID string
	// Payload is the response body, or the error payload when Err is set.
	Payload []byte
	// Err is the function error, or nil when the function succeeded.
	Err *FunctionError
	// Duration runs from handing the event to the runtime to receiving its answer.
	Duration time.Duration
	// ColdStart is true for the first invocation of an execution environment.
	ColdStart bool
	// InitDuration is the environment's init duration when ColdStart is true.
	InitDuration time.Duration
}

// Stats describes a Function. Starts and Invocations count over its whole life; the
// other fields describe its latest execution environment (process).
type Stats struct {
	// Starts is the number of processes started, that is of cold starts.
	Starts int
	// Invocations is the number of events handed to a runtime.
	Invocations int
	// PID is the latest process's id.
	PID int
	// Running reports whether the latest process is still alive.
	Running bool
	// InitDuration runs from exec to the runtime's first GET .../invocation/next.
	InitDuration time.Duration
	// FirstResponse runs from exec to the runtime's first response or error, so it
	// includes any wait between Start and the first Invoke.
	FirstResponse time.Duration
	// PeakRSS is the process's peak resident set size in bytes (VmHWM), sampled while
	// invocations run and just before the process is stopped. Zero where /proc is
	// missing.
	PeakRSS int64
	// CPUTime is user plus system CPU time of the process.
	CPUTime time.Duration
}

// Function is one execution environment for a bootstrap executable. Its methods are
// safe for concurrent use; invocations run one at a time, as in a Lambda environment.
type Function struct {
	cfg      Config
	env      []string // without AWS_LAMBDA_RUNTIME_API
	arn      string
	taskRoot string
	logs     *logFile

	sem    chan struct{}    // held by the running Invoke
	queue  chan *invocation // events waiting for GET .../next
	closed chan struct{}

	closeOnce sync.Once
	closeErr  error

	mu          sync.Mutex
	proc        *process // latest process, nil before the first start
	isClosed    bool
	starts      int
	invocations int
	inflight    map[string]*invocation
}

type invocation struct {
	id       string
	event    []byte
	deadline time.Time
	traceID  string
	taken    chan time.Time // buffered: when GET .../next took the event
	done     chan outcome   // buffered: one answer

	// guarded by Function.mu
	proc      *process
	responded bool
}

type outcome struct {
	payload []byte
	err     *FunctionError
	at      time.Time
}

// Start starts the executable described by cfg and waits until its runtime asks for
// the first event. An init failure is returned as an *InitError. ctx bounds only the
// wait; the process lives until Close.
func Start(ctx context.Context, cfg Config) (*Function, error) {
	f, err := newFunction(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := f.ensureRunning(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func newFunction(cfg Config) (*Function, error) {
	if cfg.Binary == "" {
		return nil, errors.New("lambdarun: Config.Binary is empty")
	}
	bin, err := filepath.Abs(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("lambdarun: resolve binary: %w", err)
	}
	if st, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("lambdarun: binary: %w", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("lambdarun: binary %s is not an executable file", bin)
	}
	cfg.Binary = bin
	if cfg.FunctionName == "" {
		cfg.FunctionName = filepath.Base(filepath.Dir(bin))
	}
	if cfg.MemoryMB <= 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.InitTimeout <= 0 {
		cfg.InitTimeout = DefaultInitTimeout
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	logs, err := newLogFile()
	if err != nil {
		return nil, err
	}
	f := &Function{
		cfg:      cfg,
		arn:      fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", cfg.Region, accountID, cfg.FunctionName),
		taskRoot: filepath.Dir(bin),
		logs:     logs,
		sem:      make(chan struct{}, 1),
		queue:    make(chan *invocation),
		closed:   make(chan struct{}),
		inflight: make(map[string]*invocation),
	}
	f.env = buildEnv(cfg, f.taskRoot, os.Environ())
	return f, nil
}

// Invoke hands event to the function and waits for its answer, starting a new process
// first if the previous one has exited or was stopped. An empty event is sent as {}.
// Function errors, timeouts and crashes come back in Result.Err with a nil error; the
// error is for an invocation that could not be made (init failure, bad event, closed
// Function, cancelled ctx). Cancelling ctx while the function runs stops the process,
// since a running invocation cannot be taken back.
func (f *Function) Invoke(ctx context.Context, event []byte) (Result, error) {
	if len(event) == 0 {
		event = []byte("{}")
	}
	if len(event) > maxPayload {
		return Result{}, ErrEventTooLarge
	}
	if !json.Valid(event) {
		return Result{}, ErrInvalidEvent
	}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-f.closed:
		return Result{}, ErrClosed
	}
	defer func() { <-f.sem }()
	if f.isClosing() {
		// select picks at random among ready cases: a free sem must not hide Close.
		return Result{}, ErrClosed
	}

	for attempt := 0; ; attempt++ {
		p, err := f.ensureRunning(ctx)
		if err != nil {
			return Result{}, err
		}
		res, undelivered, err := f.invokeOn(ctx, p, event)
		if undelivered && attempt == 0 {
			// The runtime exited between invocations (a panic does that right after
			// posting its error): Lambda starts a new one, and so do we.
			continue
		}
		return res, err
	}
}

// invokeOn runs one invocation on p. undelivered reports that p exited before taking
// the event (res then holds a Runtime.ExitError), so the caller may retry on a new
// process.
func (f *Function) invokeOn(ctx context.Context, p *process, event []byte) (res Result, undelivered bool, err error) {
	inv := &invocation{
		id:       newRequestID(),
		event:    event,
		deadline: time.Now().Add(f.cfg.Timeout),
		traceID:  newTraceID(),
		taken:    make(chan time.Time, 1),
		done:     make(chan outcome, 1),
	}
	res.RequestID = inv.id
	f.mu.Lock()
	f.inflight[inv.id] = inv
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.inflight, inv.id)
		f.mu.Unlock()
	}()

	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()

	select {
	case f.queue <- inv:
	case <-p.exited:
		if f.isClosing() {
			return res, false, ErrClosed // Close stopped the process
		}
		res.Err, res.Payload = f.exitError(inv.id, p)
		return res, true, nil
	case <-timer.C:
		if f.isClosing() {
			return res, false, ErrClosed
		}
		p.stop(0)
		res.Err, res.Payload = f.timeoutError(inv.id)
		return res, false, nil
	case <-ctx.Done():
		return res, false, ctx.Err()
	case <-f.closed:
		return res, false, ErrClosed
	}
	delivered := <-inv.taken // sent at once by the receiver; the answer may precede this line
	f.mu.Lock()
	f.invocations++
	f.mu.Unlock()
	res.ColdStart, res.InitDuration = p.beginInvocation()

	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
	for {
		select {
		case out := <-inv.done:
			return f.finish(p, res, delivered, out), false, nil
		case <-p.exited:
			select {
			case out := <-inv.done: // answered, then exited (a panic does that)
				return f.finish(p, res, delivered, out), false, nil
			default:
			}
			if f.isClosing() {
				// Close stopped the process: both channels are ready by the time this
				// goroutine runs on a loaded machine, and select would pick either.
				return res, false, ErrClosed
			}
			res.Duration = time.Since(delivered)
			res.Err, res.Payload = f.exitError(inv.id, p)
			return res, false, nil
		case <-timer.C:
			if f.isClosing() {
				return res, false, ErrClosed
			}
			p.stop(0)
			res.Duration = time.Since(delivered)
			res.Err, res.Payload = f.timeoutError(inv.id)
			return res, false, nil
		case <-ctx.Done():
			p.stop(0)
			return res, false, ctx.Err()
		case <-f.closed:
			return res, false, ErrClosed
		case <-sample.C:
			p.sampleRSS()
		}
	}
}

func (f *Function) finish(p *process, res Result, delivered time.Time, out outcome) Result {
	p.sampleRSS()
	res.Duration = out.at.Sub(delivered)
	res.Payload = out.payload
	res.Err = out.err
	return res
}

func (f *Function) exitError(id string, p *process) (*FunctionError, []byte) {
	e := &FunctionError{
		Type:    "Runtime.ExitError",
		Message: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", id, p.exitDescription()),
	}
	return e, mustJSON(e)
}

func (f *Function) timeoutError(id string) (*FunctionError, []byte) {
	e := &FunctionError{
		Type:    "Sandbox.Timedout",
		Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", id, f.cfg.Timeout.Seconds()),
	}
	return e, mustJSON(e)
}

// isClosing reports whether Close has begun. Invoke checks it wherever Close's own
// effects (the process exiting, a timer firing while Close waits out the grace) could
// otherwise be reported as the function's failure: a running Invoke returns ErrClosed.
func (f *Function) isClosing() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// ensureRunning returns a live process whose runtime has asked for an event, starting
// one if there is none or the last one has exited.
func (f *Function) ensureRunning(ctx context.Context) (*process, error) {
	f.mu.Lock()
	if f.isClosed {
		f.mu.Unlock()
		return nil, ErrClosed
	}
	old := f.proc
	if old != nil && !old.hasExited() {
		f.mu.Unlock()
		if err := old.awaitInit(ctx, f.cfg.InitTimeout, f.closed); err != nil {
			if f.isClosing() {
				return nil, ErrClosed
			}
			return nil, err
		}
		return old, nil
	}
	if old != nil {
		<-old.finished // it exited; this waits for its server and handlers to be gone
	}
	p, err := f.startProcess()
	if err != nil {
		f.mu.Unlock()
		return nil, err
	}
	f.proc = p
	f.starts++
	f.mu.Unlock()

	if err := p.awaitInit(ctx, f.cfg.InitTimeout, f.closed); err != nil {
		p.stop(0)
		if f.isClosing() {
			return nil, ErrClosed
		}
		return nil, err
	}
	return p, nil
}

// Close stops the process (SIGTERM, then SIGKILL after Config.ShutdownGrace) and its
// Runtime API server, and waits for both. A running Invoke returns ErrClosed.
func (f *Function) Close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.isClosed = true
		p := f.proc
		f.mu.Unlock()
		close(f.closed)
		if p != nil {
			p.stop(f.cfg.ShutdownGrace)
		}
		f.closeErr = f.logs.close()
	})
	return f.closeErr
}

// Logs returns everything the function's processes wrote to stdout and stderr so far,
// in order. The output goes to a file, not a pipe, so whatever the runtime wrote before
// answering an invocation is there when Invoke returns.
func (f *Function) Logs() []byte { return f.logs.bytes() }

// Stats returns the Function's counters and its latest process's measurements. After
// Close they are final.
func (f *Function) Stats() Stats {
	f.mu.Lock()
	s := Stats{Starts: f.starts, Invocations: f.invocations}
	p := f.proc
	f.mu.Unlock()
	if p != nil {
		p.fillStats(&s)
	}
	return s
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newTraceID() string {
	var b [20]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), h[:24], h[24:40])
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with *FunctionError and *InitError
	}
	return b
}
