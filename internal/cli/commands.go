package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// EnvPassword names the variable `login` reads the password from.
const EnvPassword = "VBC_PASSWORD"

// maxPasswordBytes bounds the line `login` reads from stdin.
const maxPasswordBytes = 4096

// consentURL mints a one-time consent link. The URL is the last line of stdout (docs/design.md "Admin CLI");
// the explanation goes to stderr so that `$(vbctoken consent-url)` is the bare URL.
func (a *app) consentURL(ctx context.Context, args []string) int {
	var c common
	fs := flag.NewFlagSet("consent-url", flag.ContinueOnError)
	c.register(fs, true)
	c.registerAccount(fs)
	if done, code := a.parse(fs, args, "consent-url [--account ID] [flags]",
		"Prints a signed, single-use consent link (the VBC authorize URL) as the last line of stdout.\n"+
			"An admin opens it in a browser and approves; VBC then redirects to VBC_REDIRECT_URL\n"+
			"(required), whose callback stores the new token pair. The link expires after 15 minutes.\n"+
			"On a local store that `vbctoken serve` holds, that serve mints the link (for its sandbox\n"+
			"and its callback; VBC_REDIRECT_URL is not needed). In accounts mode --account names the\n"+
			"account the link connects: it is signed into the link, and the callback stores the\n"+
			"consent there (the account is created then). With --json: {\"url\",\"expires_at\"}\n"+
			"and \"account\" in accounts mode.\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{account: accountOne}, nil, config.Need{RedirectURL: true}, func(ctx context.Context, s config.Settings, t target) int {
		// The state's expiry is minted inside ConsentURL from the same clock: reading the
		// clock first gives a time at or just before it. A serve with a sped-up clock keeps
		// its links valid for the same 15 minutes of real time.
		expires := a.now().Add(vbctoken.DefaultStateTTL).UTC().Truncate(time.Second)
		var u, redirect string
		if t.serve != nil {
			r, err := t.serve.call(ctx, http.MethodPost, apiConsentURL, apiQuery(c, nil))
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			u, redirect = r.URL, r.RedirectURL
		} else {
			k, err := a.keeperFor(s, t, c)
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			if u, err = k.ConsentURL(ctx); err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			redirect = s.RedirectURL
		}
		if c.json {
			a.writeJSON(struct {
				URL       string    `json:"url"`
				ExpiresAt time.Time `json:"expires_at"`
				Account   string    `json:"account,omitempty"`
			}{u, expires, c.account})
			return ExitOK
		}
		if c.account != "" {
			fmt.Fprintf(a.stderr, "This link connects the account %s: open it signed in as that account's VBC admin.\n", c.account)
		}
		fmt.Fprintf(a.stderr, "Open this link in a browser signed in as a VBC admin and approve access.\n"+
			"It works once and expires at %s (in %s). VBC then sends you to %s.\n",
			fmtTime(expires), web.HumanDuration(vbctoken.DefaultStateTTL), redirect)
		fmt.Fprintln(a.stdout, u)
		return ExitOK
	})
}

// status reports the stored pair; exit 3 when re-consent is needed.
func (a *app) status(ctx context.Context, args []string) int {
	var c common
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	c.register(fs, true)
	c.registerAccount(fs)
	if done, code := a.parse(fs, args, "status [--account ID] [flags]",
		"Shows whether vbctoken is connected to VBC, the last grant, the pair's age, when the access\n"+
			"and refresh tokens expire and when the next refresh is due. Never prints a token.\n"+
			"Shows a lock VBC put on the password-grant user while it lasts. Exits 3 when re-consent\n"+
			"is needed, 5 when there is no store. In accounts mode --account names the account.\n"+
			"With --json: the keeper's Status object (and \"account\" in accounts mode).\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{account: accountOne}, nil, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		var st vbctoken.Status
		if t.serve != nil {
			r, err := t.serve.call(ctx, http.MethodGet, apiStatus, apiQuery(c, nil))
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			if r.Status != nil {
				st = *r.Status
			}
		} else {
			k, err := a.keeperFor(s, t, c)
			if err == nil {
				st, err = k.Status(ctx)
			}
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
		}
		code := ExitOK
		if !st.Connected {
			code = ExitReconsent
		}
		if c.json {
			a.writeJSON(withAccount(c.account, st))
			return code
		}
		writeStatus(a.stdout, st, t.where, c.account)
		return code
	})
}

func writeStatus(w io.Writer, st vbctoken.Status, where, account string) {
	now := st.Now
	switch {
	case st.Connected:
		fmt.Fprintln(w, "Connected to VBC: yes")
	case st.Reason == vbctoken.ReasonRefreshExpired:
		fmt.Fprintf(w, "Connected to VBC: no — the refresh token expired %s; the chain is gone\n", web.Relative(st.RefreshExpiresAt, now))
	case st.Reason == vbctoken.ReasonRejected && !st.SelfHealAt.IsZero() && !st.SelfHealHalted:
		fmt.Fprintln(w, "Connected to VBC: no — VBC rejected the stored refresh token; self-heal is restoring the chain")
	case st.Reason == vbctoken.ReasonRejected:
		fmt.Fprintln(w, "Connected to VBC: no — VBC rejected the stored refresh token; the chain is gone")
	default:
		fmt.Fprintln(w, "Connected to VBC: no — no admin has consented yet")
	}
	var facts [][2]string
	if !st.RefreshExpiresAt.IsZero() {
		facts = append(facts,
			[2]string{"grant", web.GrantText(st.Grant)},
			[2]string{"obtained", at(st.ObtainedAt, now)},
			[2]string{validLabel("access token", st.AccessExpiresAt, now), at(st.AccessExpiresAt, now)},
			[2]string{validLabel("refresh token", st.RefreshExpiresAt, now), at(st.RefreshExpiresAt, now)},
		)
	}
	if st.Connected {
		next := at(st.NextRefresh, now) + ", at the refresher's first run after it"
		if !st.NextRefresh.After(now) {
			next = "due now (" + web.ReasonText(st.Reason) + "): at the refresher's next run, or run `vbctoken refresh`"
		}
		facts = append(facts, [2]string{"next refresh", next})
	}
	switch {
	case st.SelfHealHalted:
		facts = append(facts, [2]string{"self-heal", "halted: VBC rejected its login; fix the self-heal secret, then consent or run `vbctoken login`"})
	case !st.SelfHealAt.IsZero():
		facts = append(facts, [2]string{"self-heal", "last attempt " + at(st.SelfHealAt, now) + " got no usable answer; the refresher tries again from " +
			at(st.SelfHealAt.Add(vbctoken.SelfHealInterval), now)})
	}
	if !st.LoginLockedUntil.IsZero() {
		facts = append(facts, [2]string{"password login", "VBC user locked until " + at(st.LoginLockedUntil, now) +
			"; `vbctoken login` does not send the password before then (every attempt extends the lock by 30 minutes)"})
	}
	facts = append(facts, [2]string{"store", where})
	writeFacts(w, facts)
	if !st.Connected {
		fmt.Fprintln(w)
		fmt.Fprintln(w, nextStep(account))
	}
}

// refresh runs Keeper.Refresh once.
func (a *app) refresh(ctx context.Context, args []string) int {
	var c common
	var force bool
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	c.register(fs, true)
	c.registerAccount(fs)
	fs.BoolVar(&force, "force", false, "refresh even when the policy says the pair is fresh")
	if done, code := a.parse(fs, args, "refresh [--account ID] [--force] [flags]",
		"Runs the refresher's logic once: refreshes the pair when the policy says so (or always\n"+
			"with --force), stores the new pair with compare-and-swap and updates the access secret.\n"+
			"Safe to run while the scheduled refresher runs; on a local store that `vbctoken serve`\n"+
			"holds, that serve refreshes (with its sandbox and clock). In accounts mode --account names\n"+
			"the account. With --json: the keeper's Result (and \"account\" in accounts mode).\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{account: accountOne}, nil, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		var res vbctoken.Result
		now := a.now()
		var err error
		if t.serve != nil {
			var r apiReply
			r, err = t.serve.call(ctx, http.MethodPost, apiRefresh, apiQuery(c, url.Values{"force": {strconv.FormatBool(force)}}))
			if r.Result != nil {
				res = *r.Result
			}
			if !r.Now.IsZero() {
				now = r.Now
			}
		} else {
			var k *vbctoken.Keeper
			if k, err = a.keeperFor(s, t, c); err == nil {
				res, err = k.Refresh(ctx, force)
				now = a.now()
			}
		}
		if err != nil {
			return a.fail(fs.Name(), c, err, withAccount(c.account, res))
		}
		if c.json {
			a.writeJSON(withAccount(c.account, res))
			return ExitOK
		}
		switch res.Outcome {
		case vbctoken.OutcomeRefreshed:
			fmt.Fprintf(a.stdout, "Refreshed (%s).\n", web.ReasonText(res.Reason))
		case vbctoken.OutcomeSkipped:
			fmt.Fprintln(a.stdout, "Nothing to do: the pair is fresh (use --force to refresh anyway).")
		case vbctoken.OutcomeSuperseded:
			fmt.Fprintln(a.stdout, "Another writer stored a newer pair first; it is kept.")
		default:
			fmt.Fprintf(a.stdout, "Done: %s.\n", res.Outcome)
		}
		writeResult(a.stdout, res, now)
		return ExitOK
	})
}

func writeResult(w io.Writer, res vbctoken.Result, now time.Time) {
	writeFacts(w, [][2]string{
		{"grant", web.GrantText(res.Grant)},
		{validLabel("access token", res.AccessExpiresAt, now), at(res.AccessExpiresAt, now)},
		{validLabel("refresh token", res.RefreshExpiresAt, now), at(res.RefreshExpiresAt, now)},
	})
}

// login bootstraps the chain with the password grant. The password is sent at most once: a
// rejected one is never sent again, and a user VBC has locked is not tried again before the
// lock ends unless --force (docs/vbc.md: VBC locks a user for 30 minutes from the last
// attempt, so a retry loop keeps it locked).
func (a *app) login(ctx context.Context, args []string) int {
	var c common
	var username string
	var force bool
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	c.register(fs, true)
	c.registerAccount(fs)
	fs.StringVar(&username, "username", "", "VBC user `NAME`; @vbc.prod is appended when it has no domain (required)")
	fs.BoolVar(&force, "force", false, "send the password even though an earlier login found the user locked (every attempt during the lock restarts its 30 minutes)")
	if done, code := a.parse(fs, args, "login --username NAME [--account ID] [--force] [flags]",
		"Connects with the password grant (server-to-server bootstrap, no browser). The password\n"+
			"comes from "+EnvPassword+" or, when that is unset, from the first line of stdin. Input\n"+
			"typed at a terminal is echoed: prefer "+EnvPassword+" or a pipe. There is no --password flag.\n\n"+
			"The password is sent once and never retried. VBC locks a user after a few failed logins,\n"+
			"for 30 minutes from the last attempt, and every attempt during the lock (right password or\n"+
			"not) starts the 30 minutes again. A login that meets the lock exits 6 and records it in the\n"+
			"store: until it ends, login refuses to send the password for that user (exit 6, nothing\n"+
			"sent) unless --force. `vbctoken status` shows a lock that is still on.\n"+
			"In accounts mode --account names the account (created by its first login).\n"+
			"With --json: the keeper's Result and the user name; for a lock, the error object has\n"+
			"\"locked_until\" and \"known_lock\" (true: an earlier login met it, nothing was sent).\n"); done {
		return code
	}
	var problems []string
	if strings.TrimSpace(username) == "" {
		problems = append(problems, "--username is required")
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{account: accountOne}, problems, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		if t.serve != nil {
			// The serve's keeper and sandbox own that store; a second writer beside it is what
			// the claim exists to prevent.
			return a.fail(fs.Name(), c, &storeBusyError{Dir: c.dir(), Other: t.serve.info}, nil)
		}
		user, err := vbctoken.NormalizeUsername(username)
		if err != nil {
			return a.fail(fs.Name(), c, err, nil)
		}
		password, err := a.password(user)
		if err != nil {
			return a.fail(fs.Name(), c, err, nil)
		}
		k, err := a.keeperFor(s, t, c)
		if err != nil {
			return a.fail(fs.Name(), c, err, nil)
		}
		res, err := k.Login(ctx, user, password, force)
		if err != nil {
			return a.loginFailed(fs.Name(), c, user, err)
		}
		if c.json {
			a.writeJSON(struct {
				vbctoken.Result
				Username string `json:"username"`
				Account  string `json:"account,omitempty"`
			}{res, user, c.account})
			return ExitOK
		}
		if c.account != "" {
			fmt.Fprintf(a.stdout, "Connected the account %s with the password grant as %s.\n", c.account, user)
		} else {
			fmt.Fprintf(a.stdout, "Connected with the password grant as %s.\n", user)
		}
		writeResult(a.stdout, res, a.now())
		return ExitOK
	})
}

// loginErrorJSON is what `login --json` adds to its error object.
type loginErrorJSON struct {
	Username string `json:"username"`
	Account  string `json:"account,omitempty"`
	// LockedUntil is when VBC's lock on the user ends if nobody tries before.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// KnownLock says an earlier login recorded the lock and nothing was sent now.
	KnownLock bool `json:"known_lock,omitempty"`
}

// loginFailed reports a failed login with what the operator must know before trying again:
// a locked user's wait, and for a rejected password that failures lead to a lock.
func (a *app) loginFailed(cmd string, c common, user string, err error) int {
	var locked *vbctoken.LockedError
	out := loginErrorJSON{Username: user, Account: c.account}
	switch {
	case errors.As(err, &locked):
		out.LockedUntil, out.KnownLock = locked.Until.UTC(), locked.Known
		msg := fmt.Sprintf("VBC has locked the user %s after failed password attempts (WSO2 error 17003); nothing was stored", user)
		if locked.Known {
			msg = fmt.Sprintf("the password was not sent: VBC's lock on the user %s, which an earlier login met, has not ended", user)
		}
		return a.report(cmd, c, ExitLocked, msg, lockHint(user, locked.Until, a.now()), out)
	case errors.Is(err, vbctoken.ErrInvalidGrant):
		msg := fmt.Sprintf("VBC rejected the user name or password of %s (%s); nothing was stored", user, message(cmd, err))
		return a.report(cmd, c, ExitFailure, msg, passwordHint, out)
	case errors.Is(err, vbctoken.ErrOutcomeUnknown):
		return a.report(cmd, c, exitCode(err), message(cmd, err),
			"The password was sent once and VBC did not answer clearly; it is not sent again. Run `vbctoken status`: if it is not connected, try again later.", out)
	}
	return a.fail(cmd, c, err, out)
}

// passwordHint follows a rejected password.
const passwordHint = "Check the user name and the password before you try again: VBC locks a user for 30 minutes after a few failed logins, " +
	"and every attempt during the lock starts the 30 minutes again. Never retry a rejected login in a loop."

// lockHint says how long a locked user must wait, and why waiting is the only way.
func lockHint(user string, until, now time.Time) string {
	return fmt.Sprintf("VBC unlocks a user 30 minutes after the last attempt: at %s if nobody tries before then. "+
		"Every attempt during the lock, even with the right password and from anywhere (this command, a script, an app), "+
		"starts the 30 minutes again: wait, do not retry in a loop. Until then `vbctoken login` does not send the password for %s; --force sends it anyway.",
		at(until, now), user)
}

// apiQuery is the query of a request to serve's /api/: extra and, in accounts mode, the
// account.
func apiQuery(c common, extra url.Values) string {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if c.account != "" {
		q.Set("account", c.account)
	}
	return q.Encode()
}

// withAccount adds "account" to the JSON object of v in accounts mode; v as it is otherwise.
func withAccount(account string, v any) any {
	if account == "" {
		return v
	}
	data, err := json.Marshal(v)
	var fields map[string]any
	if err != nil || json.Unmarshal(data, &fields) != nil || fields == nil {
		fields = map[string]any{}
	}
	fields["account"] = account
	return fields
}

// password reads VBC_PASSWORD or, when unset, one line of stdin.
func (a *app) password(user string) (vbctoken.Secret, error) {
	if p := a.getenv(EnvPassword); p != "" {
		return vbctoken.Secret(p), nil
	}
	if f, ok := a.stdin.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(a.stderr, "Password for %s (input is echoed; prefer %s or a pipe): ", user, EnvPassword)
		}
	}
	line, err := bufio.NewReader(io.LimitReader(a.stdin, maxPasswordBytes+1)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if len(line) > maxPasswordBytes {
		return "", fmt.Errorf("read password from stdin: %w: longer than %d bytes", vbctoken.ErrBadInput, maxPasswordBytes)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("%w: no password: set %s or write the password on stdin", vbctoken.ErrBadInput, EnvPassword)
	}
	return vbctoken.Secret(line), nil
}

// fmtTime is the CLI's time format: UTC, to the second.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// at formats t with its distance from now: "2026-03-01 10:00:00 UTC (in 3h 0m)".
func at(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return fmtTime(t) + " (" + web.Relative(t, now) + ")"
}

// validLabel is "<what> valid until", or "<what> expired" once expires has passed.
func validLabel(what string, expires, now time.Time) string {
	if !expires.IsZero() && !now.Before(expires) {
		return what + " expired"
	}
	return what + " valid until"
}

func writeFacts(w io.Writer, facts [][2]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range facts {
		fmt.Fprintf(tw, "  %s\t%s\n", f[0], f[1])
	}
	_ = tw.Flush()
}
