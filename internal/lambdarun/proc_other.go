//go:build !linux

package lambdarun

import (
	"os"
	"syscall"
	"time"
)

// sysProcAttr returns nil: process groups and /proc are Linux-only here, so on other
// systems stop signals the process alone and Stats has no PeakRSS.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Signal(sig)
	}
}

func readPeakRSS(int) int64 { return 0 }

func readCPUTime(int) time.Duration { return 0 }
