package lambdarun

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// logFile holds the output of all of a Function's processes. It is an unlinked
// temporary file opened for appending: a write(2) by the process is visible to Logs as
// soon as it returns, which a pipe and a copying goroutine cannot promise.
type logFile struct {
	file *os.File

	mu      sync.Mutex
	closed  []byte // the content, once closed
	isClose bool
	teeOff  int64 // how much tail has copied to Config.Output
}

func newLogFile() (*logFile, error) {
	var b [8]byte
	rand.Read(b[:])
	name := filepath.Join(os.TempDir(), "lambdarun-"+hex.EncodeToString(b[:])+".log")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lambdarun: create log file: %w", err)
	}
	os.Remove(name) // the open file lives on; nothing to clean up later
	return &logFile{file: f}, nil
}

func (l *logFile) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClose {
		return append([]byte(nil), l.closed...)
	}
	b, _ := l.readFromLocked(0)
	return b
}

func (l *logFile) readFromLocked(off int64) ([]byte, error) {
	st, err := l.file.Stat()
	if err != nil || st.Size() <= off {
		return nil, err
	}
	b := make([]byte, st.Size()-off)
	n, err := l.file.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return b[:n], err
}

// tail copies new output to w every 20 ms until exited is closed, then copies the rest.
func (l *logFile) tail(w io.Writer, exited <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-exited:
			l.copyNew(w)
			return
		case <-t.C:
			l.copyNew(w)
		}
	}
}

func (l *logFile) copyNew(w io.Writer) {
	l.mu.Lock()
	if l.isClose {
		l.mu.Unlock()
		return
	}
	b, _ := l.readFromLocked(l.teeOff)
	l.teeOff += int64(len(b))
	l.mu.Unlock()
	if len(b) > 0 {
		w.Write(b)
	}
}

// close keeps the content in memory and releases the file. Processes must be gone.
func (l *logFile) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClose {
		return nil
	}
	b, err := l.readFromLocked(0)
	l.closed, l.isClose = b, true
	if cerr := l.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lambdarun: close log file: %w", err)
	}
	return nil
}
