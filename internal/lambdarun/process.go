package lambdarun

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one execution environment: the running executable and the Runtime API
// server it was given. Each process gets its own listener, so a request from a process
// that was stopped can never reach its successor.
type process struct {
	f       *Function
	cmd     *exec.Cmd
	ln      net.Listener
	srv     *http.Server
	started time.Time

	hmu       sync.Mutex
	hclosed   bool // no handler starts any more
	handlers  sync.WaitGroup
	ready     chan struct{} // closed on the first GET .../next
	initFail  chan struct{} // closed on POST .../init/error
	exited    chan struct{} // closed when the process has been reaped
	finished  chan struct{} // closed when, after that, the server and its handlers are gone
	readyOnce sync.Once
	failOnce  sync.Once
	stopOnce  sync.Once

	mu          sync.Mutex
	pid         int
	readyAt     time.Time
	firstAnswer time.Time
	initErr     *InitError
	invocations int
	extensions  int
	peakRSS     int64
	state       *os.ProcessState
	waitErr     error
}

// startProcess serves a new Runtime API and execs the binary against it. f.mu is held.
func (f *Function) startProcess() (*process, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lambdarun: listen for the runtime API: %w", err)
	}
	p := &process{
		f:        f,
		ln:       ln,
		ready:    make(chan struct{}),
		initFail: make(chan struct{}),
		exited:   make(chan struct{}),
		finished: make(chan struct{}),
	}
	cmd := exec.Command(f.cfg.Binary)
	cmd.Dir = f.taskRoot
	cmd.Env = append(append([]string(nil), f.env...), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	cmd.Stdout = f.logs.file // an *os.File: the child writes to it directly
	cmd.Stderr = f.logs.file
	cmd.SysProcAttr = sysProcAttr()
	p.cmd = cmd
	p.srv = &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(discard{}, "", 0),
	}
	serveDone := make(chan struct{})
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("lambdarun: start %s: %w", f.cfg.Binary, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		defer close(serveDone)
		p.srv.Serve(ln)
	}()
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		if f.cfg.Output != nil {
			f.logs.tail(f.cfg.Output, p.exited)
		}
	}()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.state, p.waitErr = cmd.ProcessState, err
		p.mu.Unlock()
		close(p.exited)
		p.srv.Close()
		<-serveDone
		p.hmu.Lock()
		p.hclosed = true
		p.hmu.Unlock()
		p.handlers.Wait()
		<-tailDone
		close(p.finished)
	}()
	return p, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// awaitInit waits for the runtime's first GET .../next and turns every other ending of
// the init phase into an *InitError.
func (p *process) awaitInit(ctx context.Context, limit time.Duration, closed <-chan struct{}) error {
	select {
	case <-p.ready:
		return nil
	default:
	}
	timer := time.NewTimer(limit - time.Since(p.started))
	defer timer.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.initFail:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.initErr
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.initErr != nil {
			return p.initErr
		}
		return &InitError{Type: "Runtime.ExitError", Message: "Runtime exited with error: " + p.exitDescriptionLocked()}
	case <-timer.C:
		if p.readyWithin(limit) {
			return nil // it asked in time; this goroutine woke late (a loaded machine)
		}
		return &InitError{Type: "Sandbox.Timedout", Message: fmt.Sprintf("Init timed out after %.2f seconds", limit.Seconds())}
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return ErrClosed
	}
}

// readyWithin reports whether the runtime asked for its first event within limit of
// the exec.
func (p *process) readyWithin(limit time.Duration) bool {
	select {
	case <-p.ready:
	default:
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyAt.Sub(p.started) <= limit
}

// beginInvocation counts an invocation and reports whether it is the environment's
// first, with the init duration to report for it.
func (p *process) beginInvocation() (cold bool, initDuration time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.invocations++
	if p.invocations == 1 {
		return true, p.readyAt.Sub(p.started)
	}
	return false, 0
}

// stop ends the process and waits until it and its server are gone. With a grace it
// sends SIGTERM first and SIGKILL when the grace has passed; without, SIGKILL at once,
// as Lambda does on a timeout. Signals go to the process group, so helpers die too.
func (p *process) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		if p.hasExited() {
			return
		}
		p.sampleRSS()
		if grace > 0 {
			signalGroup(p.pid, syscall.SIGTERM)
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-p.exited:
				return
			case <-t.C:
			}
		}
		signalGroup(p.pid, syscall.SIGKILL)
	})
	<-p.finished
}

// sampleRSS records the process's VmHWM, which only grows while it lives.
func (p *process) sampleRSS() {
	if p.hasExited() {
		return
	}
	hwm := readPeakRSS(p.pid)
	p.mu.Lock()
	if hwm > p.peakRSS {
		p.peakRSS = hwm
	}
	p.mu.Unlock()
}

func (p *process) exitDescription() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitDescriptionLocked()
}

// exitDescriptionLocked words the exit as Lambda does ("exit status 2", "signal: killed").
func (p *process) exitDescriptionLocked() string {
	var ee *exec.ExitError
	switch {
	case p.state != nil:
		return p.state.String()
	case errors.As(p.waitErr, &ee):
		return ee.String()
	case p.waitErr != nil:
		return p.waitErr.Error()
	}
	return "unknown"
}

func (p *process) fillStats(s *Stats) {
	running := !p.hasExited()
	if running {
		p.sampleRSS()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s.PID = p.pid
	s.Running = running
	if !p.readyAt.IsZero() {
		s.InitDuration = p.readyAt.Sub(p.started)
	}
	if !p.firstAnswer.IsZero() {
		s.FirstResponse = p.firstAnswer.Sub(p.started)
	}
	s.PeakRSS = p.peakRSS
	if p.state != nil {
		s.CPUTime = p.state.UserTime() + p.state.SystemTime()
	} else if running {
		s.CPUTime = readCPUTime(p.pid)
	}
}

func (p *process) markReady() {
	p.readyOnce.Do(func() {
		p.mu.Lock()
		p.readyAt = time.Now()
		p.mu.Unlock()
		close(p.ready)
	})
}

func (p *process) markAnswer(at time.Time) {
	p.mu.Lock()
	if p.firstAnswer.IsZero() {
		p.firstAnswer = at
	}
	p.mu.Unlock()
}
