package vbcsandbox

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FaultKind names a failure the token endpoint can be told to produce.
type FaultKind int

// Fault kinds. All but Delay and ProcessedButLost answer before the grant is processed,
// so nothing changes on the sandbox side (no code burnt, no refresh token rotated).
const (
	// NoFault lets the request through.
	NoFault FaultKind = iota
	// Status500 answers 500 with a load balancer's text/html error page.
	Status500
	// Status502 answers 502 with a load balancer's text/html error page.
	Status502
	// Status503 answers 503 with a load balancer's text/html error page.
	Status503
	// Status429 answers 429 with Retry-After (whole seconds, Fault.RetryAfter, default 1)
	// and an API gateway's JSON throttling body that is not an OAuth error.
	Status429
	// Delay sleeps (Fault.Delay, default Options.FaultDelay) and then processes the request
	// normally. If the request's context ends first (the client gave up), the request is
	// not processed at all; use ProcessedButLost for "processed, answer lost".
	Delay
	// MalformedJSON answers 200 application/json with a complete but invalid JSON body.
	MalformedJSON
	// HTML200 answers 200 text/html with a maintenance page.
	HTML200
	// MissingAccessToken answers 200 with a well-formed token response lacking
	// access_token. Its refresh_token is a made-up value the sandbox never accepts.
	MissingAccessToken
	// Truncated answers 200 application/json declaring the full Content-Length, sends half
	// of a token response and closes the connection: the client sees an unexpected EOF.
	Truncated
	// ProcessedButLost processes the grant (a refresh token IS rotated, a code IS burnt)
	// and then answers 502 with a load balancer's page instead of the result. The pair is
	// in Issued with Lost set. This is the case no client can recover from by retrying.
	ProcessedButLost
)

var faultNames = [...]string{
	NoFault:            "NoFault",
	Status500:          "Status500",
	Status502:          "Status502",
	Status503:          "Status503",
	Status429:          "Status429",
	Delay:              "Delay",
	MalformedJSON:      "MalformedJSON",
	HTML200:            "HTML200",
	MissingAccessToken: "MissingAccessToken",
	Truncated:          "Truncated",
	ProcessedButLost:   "ProcessedButLost",
}

// String returns the constant's name.
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText encodes the kind by name, so Stats.Faults reads well as JSON.
func (k FaultKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Fault is one injected failure. Only Kind is required.
type Fault struct {
	Kind FaultKind
	// Delay is how long a Delay fault sleeps; zero means Options.FaultDelay.
	Delay time.Duration
	// RetryAfter is sent by Status429, rounded up to whole seconds; zero means 1s.
	RetryAfter time.Duration
}

// FaultFunc decides, for each POST /token request, whether to inject a fault. grant is the
// request's grant_type ("" if missing). It may be called concurrently and must not block;
// it may call the Sandbox's methods.
type FaultFunc func(r *http.Request, grant string) Fault

// SetFaults installs f (nil removes it). Faults queued by InjectNext are used first.
func (s *Sandbox) SetFaults(f FaultFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultFn = f
}

// InjectNext queues faults for the next token requests, one per request, in order,
// whatever their grant type. NoFault in the queue lets one request through.
func (s *Sandbox) InjectNext(kinds ...FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range kinds {
		s.queue = append(s.queue, Fault{Kind: k})
	}
}

// nextFault pops the queue or asks the FaultFunc, and counts what it returns.
func (s *Sandbox) nextFault(r *http.Request, grant string) Fault {
	s.mu.Lock()
	fn := s.faultFn
	var f Fault
	queued := len(s.queue) > 0
	if queued {
		f = s.queue[0]
		s.queue = s.queue[1:]
	}
	s.mu.Unlock()
	if !queued && fn != nil {
		f = fn(r, grant) // outside the lock: fn may call back into the sandbox
	}
	if f.Kind != NoFault {
		s.mu.Lock()
		s.stats.Faults[f.Kind]++
		s.mu.Unlock()
	}
	return f
}

// Bodies of injected faults. The token values in them are well-formed but never issued.
const (
	fakeAccessToken  = "0badfa17-0000-3000-8000-000000000001"
	fakeRefreshToken = "0badfa17-0000-3000-8000-000000000002"

	throttledBody = `{"fault":{"code":900802,"message":"Message throttled out",` +
		`"description":"You have exceeded your quota. Retry later."}}`
	malformedBody = `{"access_token":"` + fakeAccessToken + `","refresh_token":"` + fakeRefreshToken +
		`","scope":"default",,"token_type":"Bearer" "expires_in":86400`
	missingAccessBody = `{"refresh_token":"` + fakeRefreshToken +
		`","scope":"default","token_type":"Bearer","expires_in":86400}`
	fullBody = `{"access_token":"` + fakeAccessToken + `","refresh_token":"` + fakeRefreshToken +
		`","scope":"default","token_type":"Bearer","expires_in":86400}`
	maintenanceBody = "<!DOCTYPE html>\n<html><head><title>Scheduled maintenance</title></head>\n" +
		"<body><h1>We&rsquo;ll be back soon</h1><p>The service is undergoing scheduled maintenance.</p></body></html>\n"
)

func lbPage(status int) string {
	t := fmt.Sprintf("%d %s", status, http.StatusText(status))
	return "<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t +
		"</h1></center>\r\n<hr><center>sandbox-lb</center>\r\n</body>\r\n</html>\r\n"
}

func (s *Sandbox) writeFault(w http.ResponseWriter, f Fault) {
	h := w.Header()
	raw := func(status int, ctype, body string) {
		h.Set("Content-Type", ctype)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
	switch f.Kind {
	case Status500:
		raw(http.StatusInternalServerError, "text/html", lbPage(http.StatusInternalServerError))
	case Status502, ProcessedButLost:
		raw(http.StatusBadGateway, "text/html", lbPage(http.StatusBadGateway))
	case Status503:
		raw(http.StatusServiceUnavailable, "text/html", lbPage(http.StatusServiceUnavailable))
	case Status429:
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		if secs <= 0 {
			secs = 1
		}
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		raw(http.StatusTooManyRequests, "application/json", throttledBody)
	case MalformedJSON:
		raw(http.StatusOK, "application/json", malformedBody)
	case HTML200:
		raw(http.StatusOK, "text/html; charset=utf-8", maintenanceBody)
	case MissingAccessToken:
		raw(http.StatusOK, "application/json", missingAccessBody)
	case Truncated:
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(fullBody)))
		w.WriteHeader(http.StatusOK)
		// Writing less than the declared length makes net/http close the connection.
		_, _ = w.Write([]byte(fullBody[:len(fullBody)/2]))
	default:
		raw(http.StatusInternalServerError, "text/html", lbPage(http.StatusInternalServerError))
	}
}
