// Command testfn is the Lambda function the tests of package lambdarun run. TESTFN
// picks its behaviour, each in the file of that name: echo, fail, sleep, panic, crash,
// initfail, env, meet. One program with eight behaviours links once instead of eight times.
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
		"meet":     startMeet,
	}
	start, ok := behaviours[os.Getenv("TESTFN")]
	if !ok {
		fmt.Fprintf(os.Stderr, "testfn: TESTFN=%q is none of echo, fail, sleep, panic, crash, initfail, env, meet\n", os.Getenv("TESTFN"))
		os.Exit(2)
	}
	start()
}
