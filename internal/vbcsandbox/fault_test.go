package vbcsandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawReply keeps what a client would see, including a body read error.
type rawReply struct {
	status  int
	header  http.Header
	body    string
	readErr error
}

func (e *env) rawToken(t *testing.T, ctx context.Context, rt string) (rawReply, error) {
	t.Helper()
	req := e.tokenRequest(t, refreshForm(rt), basic{}).WithContext(ctx)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		return rawReply{}, err
	}
	defer res.Body.Close()
	b, rerr := io.ReadAll(res.Body)
	return rawReply{status: res.StatusCode, header: res.Header, body: string(b), readErr: rerr}, nil
}

func TestFaultsBeforeProcessing(t *testing.T) {
	isHTML := func(r rawReply) bool {
		return strings.HasPrefix(r.header.Get("Content-Type"), "text/html") && strings.Contains(r.body, "<html")
	}
	tests := []struct {
		kind  FaultKind
		check func(t *testing.T, r rawReply)
	}{
		{Status500, func(t *testing.T, r rawReply) {
			if r.status != 500 || !isHTML(r) {
				t.Errorf("got %d %q", r.status, r.header.Get("Content-Type"))
			}
		}},
		{Status502, func(t *testing.T, r rawReply) {
			if r.status != 502 || !isHTML(r) || !strings.Contains(r.body, "502 Bad Gateway") {
				t.Errorf("got %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
			}
		}},
		{Status503, func(t *testing.T, r rawReply) {
			if r.status != 503 || !isHTML(r) {
				t.Errorf("got %d %q", r.status, r.header.Get("Content-Type"))
			}
		}},
		{Status429, func(t *testing.T, r rawReply) {
			var v map[string]any
			if r.status != 429 || r.header.Get("Retry-After") != "1" || json.Unmarshal([]byte(r.body), &v) != nil || v["error"] != nil {
				t.Errorf("got %d Retry-After %q body %q", r.status, r.header.Get("Retry-After"), r.body)
			}
		}},
		{MalformedJSON, func(t *testing.T, r rawReply) {
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || json.Valid([]byte(r.body)) {
				t.Errorf("got %d %q valid=%v", r.status, r.header.Get("Content-Type"), json.Valid([]byte(r.body)))
			}
		}},
		{HTML200, func(t *testing.T, r rawReply) {
			if r.status != 200 || !isHTML(r) {
				t.Errorf("got %d %q", r.status, r.header.Get("Content-Type"))
			}
		}},
		{MissingAccessToken, func(t *testing.T, r rawReply) {
			var v map[string]any
			if r.status != 200 || json.Unmarshal([]byte(r.body), &v) != nil || v["access_token"] != nil || v["refresh_token"] == nil {
				t.Errorf("got %d %q", r.status, r.body)
			}
		}},
		{Truncated, func(t *testing.T, r rawReply) {
			if r.status != 200 || !errors.Is(r.readErr, io.ErrUnexpectedEOF) || json.Valid([]byte(r.body)) || r.body == "" {
				t.Errorf("got %d readErr=%v body=%q", r.status, r.readErr, r.body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			e := newEnv(t, nil)
			rt := e.consent(t).str("refresh_token")
			issuedBefore := len(e.sb.Issued())

			e.sb.InjectNext(tt.kind)
			r, err := e.rawToken(t, t.Context(), rt)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)

			if !e.sb.IsLiveRefreshToken(rt) || len(e.sb.Issued()) != issuedBefore {
				t.Fatal("a fault before processing rotated the refresh token")
			}
			if fake := e.sb.IsLiveRefreshToken(fakeRefreshToken); fake {
				t.Fatal("the fault body's refresh token is accepted")
			}
			st := e.sb.Stats()
			if st.Faults[tt.kind] != 1 || st.Requests[GrantRefreshToken] != 1 || st.Successes[GrantRefreshToken] != 0 {
				t.Errorf("Stats %+v", st)
			}
			// The queue is empty again: the same token still works.
			if n := e.token(t, refreshForm(rt), basic{}); n.status != http.StatusOK {
				t.Fatalf("refresh after the fault: %d %s", n.status, n.raw)
			}
		})
	}
}

func TestFaultProcessedButLost(t *testing.T) {
	e := newEnv(t, nil)
	rt := e.consent(t).str("refresh_token")
	e.sb.InjectNext(ProcessedButLost)
	r, err := e.rawToken(t, t.Context(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusBadGateway || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("got %d %q", r.status, r.header.Get("Content-Type"))
	}
	if e.sb.IsLiveRefreshToken(rt) {
		t.Fatal("ProcessedButLost did not rotate the refresh token")
	}
	issued := e.sb.Issued()
	last := issued[len(issued)-1]
	if !last.Lost || last.Replaces != rt || !e.sb.IsLiveRefreshToken(last.RefreshToken) || issued[0].Lost {
		t.Fatalf("Issued: %v", issued)
	}
	if e.sb.LiveChains() != 1 {
		t.Errorf("LiveChains = %d: the chain lives on, out of the client's reach", e.sb.LiveChains())
	}
	wantOAuthError(t, e.token(t, refreshForm(rt), basic{}), http.StatusBadRequest, "invalid_grant")
	if st := e.sb.Stats(); st.Faults[ProcessedButLost] != 1 || st.Successes[GrantRefreshToken] != 1 || st.Errors["invalid_grant"] != 1 {
		t.Errorf("Stats %+v", st)
	}

	t.Run("code exchange", func(t *testing.T) {
		code := e.approveCode(t, nil)
		e.sb.InjectNext(ProcessedButLost)
		if r := e.token(t, exchangeForm(code), appBasic); r.status != http.StatusBadGateway {
			t.Fatalf("got %d", r.status)
		}
		wantOAuthError(t, e.token(t, exchangeForm(code), appBasic), http.StatusBadRequest, "invalid_grant")
	})
}

func TestFaultDelay(t *testing.T) {
	t.Run("slow but processed", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.FaultDelay = 50 * time.Millisecond })
		rt := e.consent(t).str("refresh_token")
		e.sb.InjectNext(Delay)
		start := time.Now()
		r, err := e.rawToken(t, t.Context(), rt)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 50*time.Millisecond || r.status != http.StatusOK {
			t.Fatalf("got %d after %v", r.status, took)
		}
		if e.sb.IsLiveRefreshToken(rt) {
			t.Fatal("delayed refresh was not processed")
		}
	})
	t.Run("client gives up: not processed", func(t *testing.T) {
		e := newEnv(t, nil)
		rt := e.consent(t).str("refresh_token")
		// The client gives up the moment the sandbox has taken the request (not after a
		// timer that a loaded machine could outrun).
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		e.sb.SetFaults(func(_ *http.Request, grant string) Fault {
			cancel()
			return Fault{Kind: Delay, Delay: 10 * time.Second}
		})
		start := time.Now()
		if _, err := e.rawToken(t, ctx, rt); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want canceled", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("client waited for the whole delay")
		}
		e.sb.SetFaults(nil)
		if n := e.token(t, refreshForm(rt), basic{}); n.status != http.StatusOK {
			t.Fatalf("refresh after abandoned delay: %d %s", n.status, n.raw)
		}
		if got := e.sb.Stats().Faults[Delay]; got != 1 {
			t.Errorf("Faults[Delay] = %d", got)
		}
	})
}

func TestFaultFuncAndQueue(t *testing.T) {
	e := newEnv(t, nil)
	var seen []string
	e.sb.SetFaults(func(r *http.Request, grant string) Fault {
		seen = append(seen, grant) // requests below are sequential
		if grant == GrantPassword {
			return Fault{Kind: Status429, RetryAfter: 2500 * time.Millisecond}
		}
		return Fault{}
	})
	r := e.token(t, passwordForm(userName, userPass, "openid"), basic{})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" {
		t.Fatalf("password: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	p := e.consent(t) // code grant: no fault
	// The queue comes first; NoFault lets one request through.
	e.sb.InjectNext(NoFault, Status503)
	first := e.token(t, refreshForm(p.str("refresh_token")), basic{})
	second := e.token(t, refreshForm(first.str("refresh_token")), basic{})
	third := e.token(t, refreshForm(first.str("refresh_token")), basic{})
	if first.status != 200 || second.status != 503 || third.status != 200 {
		t.Fatalf("statuses %d %d %d, want 200 503 200", first.status, second.status, third.status)
	}
	if strings.Join(seen, ",") != "password,authorization_code,refresh_token" {
		t.Errorf("FaultFunc saw %v", seen)
	}
	if st := e.sb.Stats(); st.Faults[Status429] != 1 || st.Faults[Status503] != 1 || st.Faults[NoFault] != 0 {
		t.Errorf("Faults %v", st.Faults)
	}
}

func TestFaultKindNames(t *testing.T) {
	if ProcessedButLost.String() != "ProcessedButLost" || FaultKind(99).String() != "FaultKind(99)" {
		t.Fatal("FaultKind.String")
	}
	b, err := json.Marshal(Stats{Faults: map[FaultKind]int{Status502: 2}}.Faults)
	if err != nil || string(b) != `{"Status502":2}` {
		t.Fatalf("Faults as JSON: %s %v", b, err)
	}
}
