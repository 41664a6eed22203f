package motoserver

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill moto_server when the test binary dies, so a test
// binary that never calls Stop (or crashes) leaves no server behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
