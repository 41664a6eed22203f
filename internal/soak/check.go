package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// raceRecord is one refresh race the sandbox settled (ModeWSO2): the refresh token
// presented again, the process that presented it, and the outcome drawn.
type raceRecord struct {
	rt, tag string
	outcome vbcsandbox.RaceOutcome
}

// settleRace is the sandbox's RaceFunc: it draws the outcome from the plan's weights and
// records who raced. It runs with the sandbox locked and calls nothing of it.
func (s *sim) settleRace(r *http.Request) vbcsandbox.RaceOutcome {
	s.raceMu.Lock()
	defer s.raceMu.Unlock()
	outcomes := []vbcsandbox.RaceOutcome{vbcsandbox.RaceInvalidGrant, vbcsandbox.RaceServerError, vbcsandbox.RaceBothSucceed}
	total := 0.0
	for _, o := range outcomes {
		total += s.plan.RaceWeights[o.String()]
	}
	out := vbcsandbox.RaceInvalidGrant
	if total > 0 {
		x := s.raceRng.Float64() * total
		for _, o := range outcomes {
			if x -= s.plan.RaceWeights[o.String()]; x < 0 {
				out = o
				break
			}
		}
	}
	s.races = append(s.races, raceRecord{rt: r.PostForm.Get("refresh_token"), tag: r.Header.Get(vbcsandbox.TagHeader), outcome: out})
	return out
}

// runsRefresh reports whether a role runs the keeper's Refresh.
func runsRefresh(role string) bool {
	return role == roleRefresher || role == roleCLI || role == roleServe
}

// afterStep checks the invariants once every process of a step has ended.
func (s *sim) afterStep(procs []*process, aliveBefore bool) {
	s.syncIssued()
	s.checkRaces()
	v, err := s.backend.clean.LoadPair(context.Background())
	if err != nil {
		s.violation("the checker cannot read the pair: %v", err)
		return
	}
	s.stored, s.pending = v.Pair, v.Pending
	for rt := range s.awaitPending {
		if s.hist.has(rt) {
			delete(s.awaitPending, rt)
		}
	}

	// (c) every pair delivered to a live process is stored, or lost a race it should lose.
	// A pair whose write a death left pending in the store is awaited: the next keeper run
	// must finish it (if it does not and the chain breaks, (a) names the keeper).
	for _, p := range procs {
		s.logger.Debug("soak: process ended", "process", p.id, "role", p.role, "outcome", p.outcome,
			"died", p.dead(), "interrupted", p.interrupted, "error", p.err, "delivered", len(p.delivered), "writes", p.writes)
		if runsRefresh(p.role) {
			s.tallyOutcome(p)
		}
		for _, rt := range p.delivered {
			switch {
			case s.hist.has(rt):
			case p.outcome == vbctoken.OutcomeSuperseded:
				s.rep.DeliveredSuperseded++
			case s.isStranded(rt):
				s.awaitPending[rt] = true
			default:
				s.violation("a pair VBC delivered to %s process %d (died: %q, interrupted: %t) was never stored nor superseded (outcome %q, error: %v)",
					p.role, p.id, p.dead(), p.interrupted, p.outcome, p.err)
			}
		}
	}

	// (a) the stored refresh token is the newest live one of its chain.
	brokenBefore := s.broken
	s.checkChain()
	s.alarmed(procs)
	if brokenBefore != nil && s.broken == nil && s.consentPending && strings.HasPrefix(s.consentReason, "forced/") && !anyConsent(procs) {
		// A keeper restored the chain (self-heal) before the admin acted: the alarm
		// cleared, and the admin does not consent.
		s.count(&s.rep.HealedBreaks, strings.TrimPrefix(s.consentReason, "forced/"))
		s.consentPending = false
	}

	for _, p := range procs {
		if runsRefresh(p.role) && p.outcome == vbctoken.OutcomeReconsent && errors.Is(p.err, vbctoken.ErrInvalidGrant) && aliveBefore && s.broken == nil {
			if s.rescuedAfter(p.declaredAt) {
				// The chain was lost when the keeper said so; another keeper's refresh of
				// the same token, racing the lost one inside WSO2's cluster lag, got a
				// second 200 later and revived it.
				s.rep.RescuedAfterAlarm++
				continue
			}
			// The keeper said the chain is gone while it lives: an operator is paged and
			// the admin consents for nothing.
			s.rep.FalseAlarms++
			if len(s.rep.FalseAlarmDetails) < 10 {
				s.rep.FalseAlarmDetails = append(s.rep.FalseAlarmDetails, fmt.Sprintf("%s %s process %d: %v", s.clock.Now().Format(time.RFC3339), p.role, p.id, p.err))
			}
			if !s.consentPending {
				s.consentPending, s.consentReason = true, "forced/"+causeFalseAlarm
				s.consentDue = s.clock.Now().Add(s.between(s.plan.AdminDelayMin, s.plan.AdminDelayMax))
			}
		}
	}
	if s.stored != nil && !s.stored.RefreshToken.IsZero() {
		a, err := s.backend.clean.LoadAccess(context.Background())
		inStep := err == nil && a.AccessToken == s.stored.AccessToken
		if !inStep {
			s.rep.AccessLagging++
		}
		diedBetween, ranToEnd := false, false
		for _, p := range procs {
			diedBetween = diedBetween || p.dead() == DeathAfterCommit
			ranToEnd = ranToEnd || (runsRefresh(p.role) && p.dead() == "")
		}
		switch {
		case inStep:
			s.accessRepairPending = false
		case diedBetween:
			s.accessRepairPending = true
		case ranToEnd:
			// The next keeper run has come and gone: from now on a lagging access secret
			// is the keeper's fault.
			s.accessRepairPending = false
		}
	}
}

// rescuedAfter reports whether every live refresh token the store holds came from a pair
// VBC issued after at.
func (s *sim) rescuedAfter(at time.Time) bool {
	live := 0
	for _, rt := range append(heldTokens(s.stored), heldTokens(s.pending)...) {
		ip, issued := s.byRT[rt]
		if !issued || !s.vbc.IsLiveRefreshToken(rt) {
			continue
		}
		if !ip.IssuedAt.After(at) {
			return false
		}
		live++
	}
	return live > 0
}

// anyConsent reports whether procs include a consent (a callback or a login).
func anyConsent(procs []*process) bool {
	for _, p := range procs {
		if p.role == roleCallback || p.role == roleLogin {
			return true
		}
	}
	return false
}

func (s *sim) isStranded(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stranded[rt]
}

func (s *sim) tallyOutcome(p *process) {
	key := string(p.outcome)
	switch {
	case p.outcome == "" && p.dead() != "":
		key = "died"
	case p.outcome == vbctoken.OutcomeInDoubt:
	case p.outcome == "" || (p.err != nil && p.outcome != vbctoken.OutcomeReconsent):
		key = "failed"
	}
	s.rep.RefresherRuns++
	s.count(&s.rep.Outcomes, key)
	s.count(&s.rep.RunsByRole, p.role+"/"+key)
}

// checkRaces judges the refresh races of the step: a race is a refresh token presented
// again while VBC is still consuming it. A process retrying after a lost answer races
// itself, and the next keeper may race it once it gave up and released its lease; but a
// keeper spending a token whose successor VBC delivered to another keeper means the
// refresh lease failed to keep them apart.
func (s *sim) checkRaces() {
	s.raceMu.Lock()
	races := s.races
	s.races = nil
	s.raceMu.Unlock()
	for _, r := range races {
		first, ok := s.consumedBy[r.rt]
		switch {
		case !ok:
			s.count(&s.rep.Races, "unknown/"+r.outcome.String())
		case first.Tag == r.tag:
			s.count(&s.rep.Races, "retry_after_lost_answer/"+r.outcome.String())
		case first.Lost || s.died[first.RefreshToken]:
			// The first keeper never got its answer, gave up and released its lease; the
			// next keeper spends the same token while VBC still counts it as consumed.
			s.count(&s.rep.Races, "next_keeper_after_lost_answer/"+r.outcome.String())
		default:
			s.count(&s.rep.Races, "two_keepers/"+r.outcome.String())
			s.violation("processes %s and %s spent one refresh token within VBC's cluster lag (race answered %s): the refresh lease did not keep them apart",
				first.Tag, r.tag, r.outcome)
		}
	}
}

// syncIssued indexes the pairs the sandbox issued since the last step. (In ModeWSO2 an
// entry's Killed and Reuses change later; whyDead reads them afresh.)
func (s *sim) syncIssued() {
	issued := s.vbc.Issued()
	for _, ip := range issued[s.issuedSeen:] {
		s.byRT[ip.RefreshToken] = ip
		s.byAT[ip.AccessToken] = ip
		if ip.Replaces != "" {
			s.replacedBy[ip.Replaces] = ip
			if _, seen := s.consumedBy[ip.Replaces]; !seen {
				s.consumedBy[ip.Replaces] = ip
			}
		}
		if ip.Grant == vbcsandbox.GrantAuthorizationCode {
			s.consents = append(s.consents, ip)
		}
		s.guard.add(ip.AccessToken, ip.RefreshToken)
	}
	s.issuedSeen = len(issued)
}

// heldTokens returns the refresh tokens a stored pair holds: its own and those of the
// pairs kept beside it (the pair secret's "kept", docs/chain-safety.md).
func heldTokens(p *vbctoken.Pair) []string {
	if p == nil {
		return nil
	}
	var out []string
	if !p.RefreshToken.IsZero() {
		out = append(out, p.RefreshToken.Reveal())
	}
	data, err := vbctoken.EncodePair(p)
	if err != nil {
		return out
	}
	var wire struct {
		Kept []struct {
			RefreshToken string `json:"refresh_token"`
		} `json:"kept"`
	}
	if json.Unmarshal(data, &wire) == nil {
		for _, k := range wire.Kept {
			if k.RefreshToken != "" && !slices.Contains(out, k.RefreshToken) {
				out = append(out, k.RefreshToken)
			}
		}
	}
	return out
}

// checkChain is invariant (a): the stored refresh token is live at VBC and nothing replaced
// it, unless VBC revoked it or it was rotated by a request whose answer never reached a
// live process (ProcessedButLost, a process death): then the chain is broken and the
// admin is asked to consent again. While the stored token is dead but a pair kept beside
// it or left pending in the store is live, the chain is in doubt, not broken: the keeper
// must settle it at its next run.
func (s *sim) checkChain() {
	p := s.stored
	if p == nil || p.RefreshToken.IsZero() {
		if s.everConnected {
			s.violation("the stored pair has no refresh token any more")
		}
		return
	}
	s.everConnected = true
	rt := p.RefreshToken.Reveal()
	info, known := s.byRT[rt]
	if !known {
		s.violation("the stored refresh token was never issued by VBC")
		return
	}
	if s.vbc.IsLiveRefreshToken(rt) {
		if next, used := s.replacedBy[rt]; used {
			s.violation("the stored refresh token is live but was replaced by %v", next)
		}
		s.settled()
		return
	}
	beside := append(heldTokens(p)[1:], heldTokens(s.pending)...)
	for _, h := range beside {
		if _, issued := s.byRT[h]; issued && s.vbc.IsLiveRefreshToken(h) {
			if s.inDoubtSince.IsZero() {
				s.inDoubtSince = s.clock.Now()
				s.rep.InDoubt.Periods++
			}
			s.endBreak()
			return
		}
	}
	s.endDoubt()
	if s.broken != nil && s.broken.rt == rt {
		return
	}
	cause := s.whyDead(rt, info)
	s.broken = &breakage{since: s.clock.Now(), cause: cause, rt: rt}
	s.count(&s.rep.ChainBreaks, cause)
	if s.cfg.AdminOnAlarm {
		return // the admin waits for an alarm (alarmed), or a day of failing apps
	}
	s.forceConsent(cause, s.between(s.plan.AdminDelayMin, s.plan.AdminDelayMax))
}

// forceConsent has the admin consent after delay because the chain broke (cause), unless
// a consent is already due sooner.
func (s *sim) forceConsent(cause string, delay time.Duration) {
	due := s.clock.Now().Add(delay)
	if !s.consentPending || s.consentDue.After(due) {
		s.consentDue = due
	}
	s.consentPending, s.consentReason = true, "forced/"+cause
}

// alarmed is the admin of Config.AdminOnAlarm: paged when a keeper declares re-consent (its
// ERROR raises the alarms) while the chain is broken, or acting anyway once apps have
// failed for a day.
func (s *sim) alarmed(procs []*process) {
	if !s.cfg.AdminOnAlarm || s.broken == nil || s.consentPending && strings.HasPrefix(s.consentReason, "forced/") {
		return
	}
	paged := s.clock.Now().Sub(s.broken.since) >= 24*time.Hour
	for _, p := range procs {
		paged = paged || runsRefresh(p.role) && p.outcome == vbctoken.OutcomeReconsent
	}
	if paged {
		s.forceConsent(s.broken.cause, s.between(s.plan.AdminDelayMin, s.plan.AdminDelayMax))
	}
}

// settled records that the stored refresh token is live.
func (s *sim) settled() {
	s.endDoubt()
	s.endBreak()
}

func (s *sim) endBreak() {
	if s.broken != nil {
		s.rep.OutageHours += s.clock.Now().Sub(s.broken.since).Hours()
		s.broken = nil
	}
}

func (s *sim) endDoubt() {
	if s.inDoubtSince.IsZero() {
		return
	}
	d := s.clock.Now().Sub(s.inDoubtSince)
	s.rep.InDoubt.Hours += d.Hours()
	if d > s.rep.InDoubt.longest {
		s.rep.InDoubt.longest = d
		s.rep.InDoubt.Longest = d.Round(time.Second).String()
	}
	s.inDoubtSince = time.Time{}
}

// Causes of chain breaks and of the re-consents they force.
const (
	causeRevoked     = "revoked"            // VBC's administrator withdrew the grant
	causeLost        = "processed_but_lost" // VBC rotated, the answer was lost in transit
	causeDeath       = "process_death"      // the only copy died with its process
	causeConsentLost = "consent_lost"       // strict VBC: a lost consent revoked the chain
	causeKeeper      = "keeper"             // a live process got the pair; the store lost it
	causeCodeReplay  = "code_replay"        // an authorization code was sent twice
	causeExpired     = "expired"            // nothing refreshed for 7 days
	causeUnknown     = "unknown"
	causeFalseAlarm  = "false_alarm" // the keeper declared re-consent while the chain lived
)

// Classes of forced re-consents.
const (
	classUnavoidable = "unavoidable" // the answer was lost in transit after VBC rotated, or the only copy died with its process
	classDeliberate  = "revoked"     // VBC revoked the grant on purpose
	classAvoidable   = "avoidable"   // everything else: the keeper's doing
)

// classify says which class a cause of a forced re-consent is in.
func classify(cause string) string {
	switch cause {
	case causeLost, causeDeath, causeConsentLost:
		return classUnavoidable
	case causeRevoked:
		return classDeliberate
	}
	return classAvoidable
}

func (s *sim) whyDead(rt string, info vbcsandbox.IssuedPair) string {
	if s.revokedChains[info.Chain] {
		return causeRevoked
	}
	if s.cfg.VBC == vbcsandbox.ModeWSO2 {
		return s.whyDeadWSO2(info)
	}
	if next, ok := s.replacedBy[rt]; ok {
		switch {
		case next.Lost:
			return causeLost
		case s.died[next.RefreshToken]:
			return causeDeath
		}
		s.violation("chain broken by the keeper: the stored refresh token was used and the pair that replaced it (%v) reached a live process but was never stored", next)
		return causeKeeper
	}
	if s.cfg.VBC == vbcsandbox.ModeStrict {
		// A code exchange revokes every older chain; if that consent's own pair never
		// reached a live process, nothing replaced the revoked one.
		for _, c := range s.consents {
			if c.Chain > info.Chain && (c.Lost || s.died[c.RefreshToken]) {
				return causeConsentLost
			}
		}
	}
	return s.expiredOrUnknown(info)
}

// whyDeadWSO2 explains a dead chain by its newest pair: WSO2 keeps one live pair per chain
// (a refresh kills the old one, a racing refresh kills the pair it raced), so the chain
// lives exactly as long as its newest pair does, and the store must hold that pair unless
// its answer was lost or died with its process.
func (s *sim) whyDeadWSO2(info vbcsandbox.IssuedPair) string {
	var head vbcsandbox.IssuedPair
	for _, ip := range s.vbc.Issued() {
		if ip.Chain == info.Chain {
			head = ip
		}
	}
	switch {
	case head.Lost:
		return causeLost
	case s.died[head.RefreshToken]:
		return causeDeath
	case head.Killed == vbcsandbox.KillCodeReplay:
		s.violation("a replayed authorization code revoked the stored chain (%v)", head)
		return causeCodeReplay
	case head.Killed == vbcsandbox.KillRevoked:
		return causeRevoked
	case s.vbc.IsLiveRefreshToken(head.RefreshToken):
		s.violation("chain broken by the keeper: the chain's newest pair (%v, request of process %s) is live at VBC but the store holds no live refresh token", head, head.Tag)
		return causeKeeper
	}
	return s.expiredOrUnknown(head)
}

func (s *sim) expiredOrUnknown(info vbcsandbox.IssuedPair) string {
	issued := info.RefreshIssuedAt
	if issued.IsZero() {
		issued = info.IssuedAt
	}
	if !s.clock.Now().Before(issued.Add(vbctoken.RefreshTokenLifetime)) {
		s.violation("the stored refresh token expired: nothing refreshed it for 7 days")
		return causeExpired
	}
	s.violation("the stored refresh token is dead for no known reason (%v)", info)
	return causeUnknown
}

// finish fills the report's totals.
func (s *sim) finish(elapsed time.Duration) {
	s.syncIssued()
	s.checkRaces()
	now := s.clock.Now()
	s.endBreak()
	s.endDoubt()
	issued := s.vbc.Issued()
	if s.cfg.VBC != vbcsandbox.ModeLenient {
		s.rep.RevokedWindow = s.revokedWindow(issued)
	}
	for _, ip := range issued {
		switch {
		case ip.Lost && ip.Killed == vbcsandbox.KillRace:
			s.count(&s.rep.UnavoidableLosses, "processed_but_lost_then_raced/"+ip.Grant)
		case ip.Lost:
			s.count(&s.rep.UnavoidableLosses, "processed_but_lost/"+ip.Grant)
		case s.died[ip.RefreshToken]:
			s.count(&s.rep.UnavoidableLosses, "process_death/"+ip.Grant)
		}
	}
	st := s.vbc.Stats()
	for k, n := range st.Faults {
		if s.rep.SandboxFaults == nil {
			s.rep.SandboxFaults = map[string]int{}
		}
		s.rep.SandboxFaults[k.String()] = n
	}
	s.rep.TokenRequests = 0
	for _, n := range st.Requests {
		s.rep.TokenRequests += n
	}
	s.rep.VBCStats.Reused, s.rep.VBCStats.RenewedAccess = st.Reused, st.RenewedAccess
	s.rep.VBCStats.CodeReplays, s.rep.VBCStats.CodeReplayKills = st.CodeReplays, st.CodeReplayKills
	s.rep.VBCStats.Lockouts = st.Lockouts
	for o, n := range st.Races {
		if s.rep.VBCStats.Races == nil {
			s.rep.VBCStats.Races = map[string]int{}
		}
		s.rep.VBCStats.Races[o.String()] = n
	}
	if st.CodeReplays > 0 {
		s.violation("VBC saw %d exchanges of an already exchanged authorization code (%d killed a pair in use): a code was sent twice", st.CodeReplays, st.CodeReplayKills)
	}
	for _, rt := range s.strandedNew {
		if s.hist.has(rt) {
			s.rep.StrandedFinished++
		} else {
			s.rep.StrandedNeverCurrent++
		}
	}
	s.rep.Refreshes = s.rep.Outcomes[string(vbctoken.OutcomeRefreshed)]
	s.rep.Superseded = s.rep.Outcomes[string(vbctoken.OutcomeSuperseded)]
	s.rep.Skipped = s.rep.Outcomes[string(vbctoken.OutcomeSkipped)]
	s.rep.InDoubtRuns = s.rep.Outcomes[string(vbctoken.OutcomeInDoubt)]
	for _, r := range []*DeadReads{&s.readers.Direct, &s.readers.Source, &s.readers.Final, &s.readers.Transport} {
		r.close(now)
	}
	s.rep.DeadReads = s.readers
	s.rep.LogLines, s.rep.SecretsTracked = s.guard.stats()
	if n := s.guard.leakCount(); n > 0 {
		s.rep.Violations += n
		s.rep.ViolationDetails = append(s.rep.ViolationDetails, s.guard.leakDetails()...)
	}
	s.rep.SimulatedUntil = now
	s.rep.Elapsed = elapsed.Round(time.Millisecond).String()
	s.rep.total()
}
