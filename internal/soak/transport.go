package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
)

// faultHeader carries the fault a process drew to the sandbox's FaultFunc.
const faultHeader = "X-Soak-Fault"

// httpTimeout is what one token request may take: the keeper's production client's
// default (15 s per request, pkg/vbctoken's ClientConfig.HTTPClient).
const httpTimeout = 15 * time.Second

// tokenTransport sits between one process's OAuth client and the sandbox. It draws the
// process's token endpoint faults, spends virtual time for slow and hanging requests (so a
// Delay becomes a timeout without anyone waiting), records every genuine pair that reaches
// the process, and kills the process right when a genuine token response arrives when the
// plan says so — the pair is then issued by VBC but lost, as when a Lambda dies between the
// token response and the store write.
type tokenTransport struct {
	p    *process
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p, s := t.p, t.p.sim
	fail := func(err error) (*http.Response, error) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	if err := p.alive(); err != nil {
		return fail(err)
	}
	now := s.clock.Now()
	limit := now.Add(httpTimeout)
	if d, ok := p.requestDeadline(req.Context(), now); ok && d.Before(limit) {
		limit = d
	}
	if !now.Before(limit) {
		return fail(fmt.Errorf("soak: token request after its deadline: %w", context.DeadlineExceeded))
	}

	// Every request names its process, so the sandbox's records (IssuedPair.Tag) and the
	// races it settles say who sent what.
	req = req.Clone(req.Context())
	req.Header.Set(vbcsandbox.TagHeader, strconv.Itoa(p.id))

	// The round trip's own time, half each way, within the request's limit.
	latency := p.between(s.plan.TokenLatencyMin, s.plan.TokenLatencyMax)
	if !now.Add(latency).Before(limit) {
		latency = 0
	}

	kind := p.tokenFault()
	header := kind
	switch kind {
	case TokenDelayTimeout:
		s.count(&s.rep.TokenFaults, kind)
		return fail(t.hang(req.Context(), now, limit))
	case TokenTimeoutProcessed:
		// VBC takes the request at some point before the client gives up, processes it,
		// and its answer never arrives: the client sees a timeout.
		s.count(&s.rep.TokenFaults, kind)
		if err := s.clock.Sleep(req.Context(), p.between(0, limit.Sub(now))); err != nil {
			return fail(err)
		}
		req.Header.Set(faultHeader, vbcsandbox.ProcessedButLost.String())
		if resp, err := t.base.RoundTrip(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil, t.hang(req.Context(), s.clock.Now(), limit)
	case TokenDelaySlow:
		d := p.between(time.Second, 12*time.Second)
		if !now.Add(d).Before(limit) {
			s.count(&s.rep.TokenFaults, TokenDelayTimeout)
			return fail(t.hang(req.Context(), now, limit))
		}
		if err := s.clock.Sleep(req.Context(), d); err != nil {
			return fail(err)
		}
		header = "Delay" // the sandbox counts it; its own delay is a microsecond
	}
	if kind == TokenMalformedJSON || kind == TokenMissingAccessToken {
		p.mu.Lock()
		p.malformed = true
		p.mu.Unlock()
	}
	if kind != "" {
		s.count(&s.rep.TokenFaults, kind)
		req.Header.Set(faultHeader, header)
	}
	if err := t.travel(req.Context(), latency/2); err != nil {
		return fail(err)
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		if terr := t.travel(req.Context(), latency/2); terr != nil {
			resp.Body.Close()
			return nil, terr
		}
	}
	if err != nil || resp.StatusCode != http.StatusOK || (kind != "" && kind != TokenDelaySlow) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		IDToken      string `json:"id_token"`
	}
	if json.Unmarshal(body, &tok) != nil || tok.RefreshToken == "" {
		return resp, nil
	}
	s.guard.add(tok.AccessToken, tok.RefreshToken, tok.IDToken)
	if p.role != roleApp && p.chance(s.plan.DeathAtTokenResponse) {
		s.markDied(tok.RefreshToken)
		p.kill(DeathAtTokenResponse, true)
		return nil, errKilled
	}
	p.deliver(tok.RefreshToken)
	if p.interruptible && p.chance(s.plan.Interrupt) {
		p.interrupt() // Ctrl-C, right after VBC issued the pair
	}
	return resp, nil
}

// travel spends the virtual time a request or its answer takes on the wire.
func (t *tokenTransport) travel(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return t.p.sim.clock.Sleep(ctx, d)
}

// hang spends the virtual time a request hangs before the client gives up.
func (t *tokenTransport) hang(ctx context.Context, now, limit time.Time) error {
	if err := t.p.sim.clock.Sleep(ctx, limit.Sub(now)); err != nil {
		return err
	}
	return fmt.Errorf("soak: no answer from the token endpoint within %s: %w", limit.Sub(now), os.ErrDeadlineExceeded)
}

// requestDeadline returns the virtual deadline of a token request. The keeper derives the
// token call's context from the process's with context.WithDeadline, whose real deadline
// is fixed when it is made: the virtual deadline is remembered from the first request that
// carries it (made right after, with no virtual time in between).
func (p *process) requestDeadline(ctx context.Context, now time.Time) (time.Time, bool) {
	real, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deadlines == nil {
		p.deadlines = map[time.Time]time.Time{}
	}
	v, seen := p.deadlines[real]
	if !seen {
		v = now.Add(time.Until(real))
		p.deadlines[real] = v
	}
	return v, true
}

// tokenFault draws the fault of one token request ("" for none).
func (p *process) tokenFault() string {
	plan := p.sim.plan
	if !p.chance(plan.TokenFault) {
		return ""
	}
	kinds, total := p.sim.tokenKinds, p.sim.tokenTotal
	r := p.float() * total
	for _, k := range kinds {
		r -= plan.TokenWeights[k]
		if r < 0 {
			return k
		}
	}
	return kinds[len(kinds)-1]
}
