//go:build !linux

package motoserver

import "os/exec"

// setDeathSignal does nothing outside Linux: call Stop (or Main) from TestMain.
func setDeathSignal(*exec.Cmd) {}
