// Command testfn is the Lambda function the tests of package lambdarun run. TESTFN
// picks its behaviour, each in the file of that name: echo, fail, sleep, panic, crash,
// initfail, env. One program with seven behaviours links once instead of seven times.
package main

import (
	"fmt"
	"os"
)

func main() {
	behaviours := map[string]func(){
		"echo":     startEcho,
		"fail":     startFail,
		"sleep":    startSleep,
		"panic":    startPanic,
		"crash":    startCrash,
		"initfail": startInitfail,
		"env":      startEnv,
	}
	start, ok := behaviours[os.Getenv("TESTFN")]
	if !ok {
		fmt.Fprintf(os.Stderr, "testfn: TESTFN=%q is none of echo, fail, sleep, panic, crash, initfail, env\n", os.Getenv("TESTFN"))
		os.Exit(2)
	}
	start()
}
