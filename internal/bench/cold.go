package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/vbctoken/vbctoken/internal/lambdarun"
)

// Target is a function under measurement: its bootstrap and how to make the event of one
// cold invoke and check the answer.
type Target struct {
	Name   string
	Binary string
	// Event returns the event for the next invoke; it runs before the process starts.
	Event func(ctx context.Context) ([]byte, error)
	// Check reports a wrong answer; nil accepts any successful invoke.
	Check func(lambdarun.Result) error
}

// Sample is one cold start: a fresh execution environment and its first invoke.
type Sample struct {
	Init          time.Duration // exec → first GET .../invocation/next
	FirstResponse time.Duration // exec → first response
	PeakRSS       int64         // VmHWM, bytes
	CPU           time.Duration // user+system CPU of the process, init and first invoke
	AWSCalls      int           // Secrets Manager calls the invoke made
	AWSCallsByOp  map[string]int
	AWSCallLog    []string
	TokenCalls    int // VBC token endpoint calls the invoke made
}

// ColdStart starts t in a Lambda-like environment (lambdarun's empty environment plus env),
// invokes it once, stops it and returns its measurements. Calls are counted on d, which
// must not be used by anything else meanwhile.
func ColdStart(ctx context.Context, d *Deployment, t Target, env map[string]string) (Sample, error) {
	ev, err := t.Event(ctx)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: event: %w", t.Name, err)
	}
	d.SM.ResetCalls()
	tok0 := d.tokenCalls()
	fn, err := lambdarun.Start(ctx, lambdarun.Config{Binary: t.Binary, Env: env, FunctionName: t.Name, Timeout: 30 * time.Second})
	if err != nil {
		return Sample{}, fmt.Errorf("%s: start: %w", t.Name, err)
	}
	res, err := fn.Invoke(ctx, ev)
	cerr := fn.Close()
	if err != nil {
		return Sample{}, fmt.Errorf("%s: invoke: %w", t.Name, err)
	}
	if res.Err != nil {
		return Sample{}, fmt.Errorf("%s: function error: %v\n%s", t.Name, res.Err, fn.Logs())
	}
	if t.Check != nil {
		if err := t.Check(res); err != nil {
			return Sample{}, fmt.Errorf("%s: %w\n%s", t.Name, err, fn.Logs())
		}
	}
	if cerr != nil {
		return Sample{}, fmt.Errorf("%s: close: %w", t.Name, cerr)
	}
	st := fn.Stats()
	calls := d.SM.Calls()
	return Sample{
		Init:          st.InitDuration,
		FirstResponse: st.FirstResponse,
		PeakRSS:       st.PeakRSS,
		CPU:           st.CPUTime,
		AWSCalls:      total(calls),
		AWSCallsByOp:  calls,
		AWSCallLog:    d.SM.CallLog(),
		TokenCalls:    d.tokenCalls() - tok0,
	}, nil
}

// tokenCalls is the number of POST /token requests VBC has received.
func (d *Deployment) tokenCalls() int { return total(d.VBC.Stats().Requests) }

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Check is one run of the refresher in a daily cycle.
type Check struct {
	Hour         int            `json:"hour"`
	Outcome      string         `json:"outcome"`
	AWSCalls     int            `json:"aws_calls"`
	AWSCallsByOp map[string]int `json:"aws_calls_by_op"`
	// AWSCallLog lists the calls in order (FakeSecretsManager.CallLog).
	AWSCallLog []string `json:"aws_call_log"`
	TokenCalls int      `json:"token_calls"`
}

// DailyCycle runs the refresher binary through one day of its hourly schedule with the
// shipped policy: 24 scheduled events, the pair found due (obtained 23 h earlier) at hour
// 12 and fresh otherwise. With warm false every run is a new execution environment (the
// worst case: credentials read again); with warm true one environment serves all 24.
// The deployment must be connected.
func DailyCycle(ctx context.Context, d *Deployment, refresher string, env map[string]string, event []byte, warm bool) ([]Check, error) {
	cfg := lambdarun.Config{Binary: refresher, Env: env, FunctionName: "refresher", Timeout: 30 * time.Second}
	var fn *lambdarun.Function
	defer func() {
		if fn != nil {
			fn.Close()
		}
	}()
	var out []Check
	for hour := range 24 {
		if hour == 12 {
			if err := d.Backdate(ctx, 23*time.Hour); err != nil {
				return nil, err
			}
		}
		d.SM.ResetCalls()
		tok0 := d.tokenCalls()
		if fn == nil {
			var err error
			if fn, err = lambdarun.Start(ctx, cfg); err != nil {
				return nil, fmt.Errorf("hour %d: start refresher: %w", hour, err)
			}
		}
		res, err := fn.Invoke(ctx, event)
		if err != nil {
			return nil, fmt.Errorf("hour %d: invoke refresher: %w", hour, err)
		}
		if res.Err != nil {
			return nil, fmt.Errorf("hour %d: refresher: %v\n%s", hour, res.Err, fn.Logs())
		}
		if !warm {
			fn.Close()
			fn = nil
		}
		calls := d.SM.Calls()
		out = append(out, Check{Hour: hour, Outcome: outcomeOf(res.Payload), AWSCalls: total(calls), AWSCallsByOp: calls, AWSCallLog: d.SM.CallLog(), TokenCalls: d.tokenCalls() - tok0})
	}
	return out, nil
}

// outcomeOf returns the "outcome" of a refresher summary.
func outcomeOf(payload []byte) string {
	var s struct {
		Outcome string `json:"outcome"`
	}
	_ = json.Unmarshal(payload, &s)
	return s.Outcome
}
