package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// wrongPassword is a password the sandbox's user does not have; distinctive, so a leak
// scan finds it.
const wrongPassword = "wrong-staple-battery-horse"

// newWSO2Harness is newHarness with the sandbox behaving like VBC's WSO2 token server: a
// user is locked after vbcsandbox.DefaultLockAfter (3) failed password grants in a row, for
// 30 minutes from the last attempt, and every attempt during the lock restarts it.
func newWSO2Harness(t *testing.T) *harness {
	t.Helper()
	return newHarnessMode(t, vbcsandbox.ModeWSO2)
}

// passwordGrants counts the password grants the sandbox received.
func (h *harness) passwordGrants() int { return h.sb.Stats().Requests["password"] }

// loginJSON is `login --json`'s error object.
type loginJSON struct {
	Error       string    `json:"error"`
	Hint        string    `json:"hint"`
	ExitCode    int       `json:"exit_code"`
	Username    string    `json:"username"`
	LockedUntil time.Time `json:"locked_until"`
	KnownLock   bool      `json:"known_lock"`
}

// The lock-out path of VBC's password grant, step by step: each login sends the password
// exactly once (or not at all inside a known lock), a rejected password says what a few
// more failures do, the lock gets its own exit code, wait and --force, status shows it, and
// no output ever holds a password.
func TestLoginLockout(t *testing.T) {
	h := newWSO2Harness(t)
	var outputs []string
	login := func(password string, extra ...string) result {
		t.Helper()
		h.env[EnvPassword] = password
		before := h.passwordGrants()
		r := h.run("", append([]string{"login", "--username", testUser}, extra...)...)
		outputs = append(outputs, r.all())
		if sent := h.passwordGrants() - before; sent > 1 {
			t.Fatalf("login sent the password %d times:\n%s", sent, r.all())
		}
		return r
	}
	sent := func(r result, before int, want int) {
		t.Helper()
		if got := h.passwordGrants() - before; got != want {
			t.Errorf("password sent %d times, want %d:\n%s", got, want, r.all())
		}
	}

	// Two wrong passwords: rejected, each sent once, and the operator is told that a few
	// failures lock the user; nothing suggests trying again soon.
	for i := range 2 {
		n := h.passwordGrants()
		r := login(wrongPassword)
		sent(r, n, 1)
		if r.code != ExitFailure {
			t.Fatalf("wrong password %d: exit %d, want %d:\n%s", i+1, r.code, ExitFailure, r.all())
		}
		for _, want := range []string{"VBC rejected the user name or password of alice@vbc.prod", "locks a user for 30 minutes after a few failed logins",
			"Never retry a rejected login in a loop"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("wrong password: stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "Try again in a few minutes") {
			t.Errorf("a rejected password is called transient:\n%s", r.stderr)
		}
	}

	// The third failure locks the user: exit 6, the lock named, when it ends and why
	// waiting is the only way.
	n := h.passwordGrants()
	r := login(wrongPassword)
	sent(r, n, 1)
	if r.code != ExitLocked {
		t.Fatalf("third wrong password: exit %d, want %d:\n%s", r.code, ExitLocked, r.all())
	}
	for _, want := range []string{"VBC has locked the user alice@vbc.prod", "17003", "30 minutes after the last attempt",
		"at 2026-03-01 10:30:01 UTC (in 30m 1s)", "Every attempt during the lock", "starts the 30 minutes again", "--force"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("locked: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if h.sb.LockedUntil(testUser).IsZero() {
		t.Fatal("the sandbox did not lock the user")
	}

	// status shows the lock while it lasts, in text and JSON.
	st := h.run("", "status")
	if !strings.Contains(st.stdout, "password login") || !strings.Contains(st.stdout, "VBC user locked until 2026-03-01 10:30:01 UTC (in 30m 1s)") {
		t.Errorf("status does not show the lock:\n%s", st.stdout)
	}
	st = h.run("", "status", "--json")
	var status vbctoken.Status
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || !status.LoginLockedUntil.Equal(start.Add(30*time.Minute+time.Second)) {
		t.Errorf("status --json: %v %s", err, st.stdout)
	}

	// Ten minutes later, with the right password: refused without sending it, so the lock
	// is not extended.
	h.clock.Advance(10 * time.Minute)
	lockedUntil := h.sb.LockedUntil(testUser)
	n = h.passwordGrants()
	r = login(testPassword, "--json")
	sent(r, n, 0)
	if r.code != ExitLocked || !strings.Contains(r.stderr, "the password was not sent") || !strings.Contains(r.stderr, "(in 20m 1s)") {
		t.Errorf("login inside a known lock: exit %d:\n%s", r.code, r.all())
	}
	var got loginJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("login --json: %v: %q", err, r.stdout)
	}
	if got.ExitCode != ExitLocked || !got.KnownLock || got.Username != "alice@vbc.prod" || !got.LockedUntil.Equal(start.Add(30*time.Minute+time.Second)) ||
		!strings.Contains(got.Error, "not sent") || !strings.Contains(got.Hint, "30 minutes after the last attempt") {
		t.Errorf("login --json inside a known lock: %+v", got)
	}
	if !h.sb.LockedUntil(testUser).Equal(lockedUntil) {
		t.Errorf("the lock was extended by a login that sent nothing")
	}

	// --force sends it once: VBC's lock is still on, so it is extended, and reported.
	n = h.passwordGrants()
	r = login(testPassword, "--force", "--json")
	sent(r, n, 1)
	got = loginJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitLocked || got.KnownLock ||
		!got.LockedUntil.Equal(h.clock.Now().Add(30*time.Minute+time.Second)) {
		t.Errorf("login --force inside the lock: exit %d, %v, %+v", r.code, err, got)
	}
	if !h.sb.LockedUntil(testUser).Equal(h.clock.Now().Add(30 * time.Minute)) {
		t.Errorf("VBC's lock after the forced attempt ends %v", h.sb.LockedUntil(testUser))
	}

	// After the lock: the right password connects, sent once, and status shows no lock.
	h.clock.Advance(31 * time.Minute)
	n = h.passwordGrants()
	r = login(testPassword)
	sent(r, n, 1)
	if r.code != ExitOK || !strings.Contains(r.stdout, "Connected with the password grant as alice@vbc.prod") {
		t.Fatalf("login after the lock: exit %d:\n%s", r.code, r.all())
	}
	if st := h.run("", "status"); st.code != ExitOK || strings.Contains(st.stdout, "locked") {
		t.Errorf("status after the lock: exit %d:\n%s", st.code, st.stdout)
	}

	for i, out := range outputs {
		for _, secret := range []string{testPassword, wrongPassword, testClientSecret} {
			if strings.Contains(out, secret) {
				t.Errorf("output %d holds a secret:\n%s", i, out)
			}
		}
	}
}

// A lock recorded for one user does not stop another user's login.
func TestLoginLockIsPerUser(t *testing.T) {
	h := newWSO2Harness(t)
	h.env[EnvPassword] = wrongPassword
	for range vbcsandbox.DefaultLockAfter {
		h.run("", "login", "--username", testUser)
	}
	if st := h.run("", "status", "--json"); !strings.Contains(st.stdout, "login_locked_until") {
		t.Fatalf("no lock recorded: %s", st.stdout)
	}
	n := h.passwordGrants()
	r := h.run("", "login", "--username", "bob")
	if r.code != ExitFailure || h.passwordGrants()-n != 1 {
		t.Errorf("another user's login: exit %d, %d grants sent:\n%s", r.code, h.passwordGrants()-n, r.all())
	}
}

// The exit code of a lock holds whether the keeper ran here or in a serve that reported it.
func TestExitCodeOfLocks(t *testing.T) {
	for _, err := range []error{
		&vbctoken.LockedError{User: "alice@vbc.prod", Until: start},
		&vbctoken.UpstreamError{Op: "password", Kind: vbctoken.ErrInvalidGrant, Locked: true},
		&remoteError{Msg: "locked", Code: ExitLocked},
	} {
		if got := exitCode(err); got != ExitLocked {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitLocked)
		}
	}
	if got := exitCode(&vbctoken.UpstreamError{Op: "password", Kind: vbctoken.ErrInvalidGrant}); got != ExitFailure {
		t.Errorf("a rejected password: exit %d, want %d", got, ExitFailure)
	}
}
