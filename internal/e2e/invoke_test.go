package e2e

import (
	"flag"
	"os"
	"testing"
)

// `make invoke-callback` / `make invoke-refresher` run TestInvoke with these flags: the
// built function, invoked once through the local Lambda Runtime API with an events/ file,
// against moto and the VBC sandbox — what `sam local invoke -e` does, without SAM or Docker.
var (
	invokeFunction = flag.String("invoke.function", "", "callback or refresher: run TestInvoke with this function")
	invokeEvent    = flag.String("invoke.event", "", "event file (default: events/callback-success.json or events/scheduled-force.json)")
)

func TestInvoke(t *testing.T) {
	if *invokeFunction == "" {
		t.Skip("run with -invoke.function=callback|refresher (make invoke-callback / make invoke-refresher)")
	}
	cb, rf := build(t)
	e := newEnv(t)
	// Every invocation starts from a connected deployment, as after the admin's consent.
	callbackStatus(t, invoke(t, e.start(cb, nil), e.consent()))
	var bin, path string
	switch *invokeFunction {
	case "callback":
		bin, path = cb, "../../events/callback-success.json"
	case "refresher":
		bin, path = rf, "../../events/scheduled-force.json"
	default:
		t.Fatalf("-invoke.function must be callback or refresher, not %q", *invokeFunction)
	}
	if *invokeEvent != "" {
		path = *invokeEvent
	}
	ev, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ev = e.fill(ev)
	fn := e.start(bin, nil)
	res := invoke(t, fn, ev)
	st := fn.Stats()
	t.Logf("function logs:\n%s", fn.Logs())
	t.Logf("response:\n%s", res.Payload)
	if res.Err != nil {
		t.Logf("function error: %v", res.Err)
	}
	t.Logf("REPORT init %v, duration %v, peak RSS %d KiB", res.InitDuration, res.Duration, st.PeakRSS/1024)
}
