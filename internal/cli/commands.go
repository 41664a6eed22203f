package cli

import (
	"bufio"
	"context"
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
	if done, code := a.parse(fs, args, "consent-url [flags]",
		"Prints a signed, single-use consent link (the VBC authorize URL) as the last line of stdout.\n"+
			"An admin opens it in a browser and approves; VBC then redirects to VBC_REDIRECT_URL\n"+
			"(required), whose callback stores the new token pair. The link expires after 15 minutes.\n"+
			"On a local store that `vbctoken serve` holds, that serve mints the link (for its sandbox\n"+
			"and its callback; VBC_REDIRECT_URL is not needed). With --json: {\"url\",\"expires_at\"}.\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{}, nil, config.Need{RedirectURL: true}, func(ctx context.Context, s config.Settings, t target) int {
		// The state's expiry is minted inside ConsentURL from the same clock: reading the
		// clock first gives a time at or just before it. A serve with a sped-up clock keeps
		// its links valid for the same 15 minutes of real time.
		expires := a.now().Add(vbctoken.DefaultStateTTL).UTC().Truncate(time.Second)
		var u, redirect string
		if t.serve != nil {
			r, err := t.serve.call(ctx, http.MethodPost, apiConsentURL, "")
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			u, redirect = r.URL, r.RedirectURL
		} else {
			k, err := a.keeperFor(s, t.store, c)
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
			}{u, expires})
			return ExitOK
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
	if done, code := a.parse(fs, args, "status [flags]",
		"Shows whether vbctoken is connected to VBC, the last grant, the pair's age, when the access\n"+
			"and refresh tokens expire and when the next refresh is due. Never prints a token.\n"+
			"Exits 3 when re-consent is needed, 5 when there is no store. With --json: the keeper's\n"+
			"Status object.\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{}, nil, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		var st vbctoken.Status
		if t.serve != nil {
			r, err := t.serve.call(ctx, http.MethodGet, apiStatus, "")
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			if r.Status != nil {
				st = *r.Status
			}
		} else {
			k, err := a.keeperFor(s, t.store, c)
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
			a.writeJSON(st)
			return code
		}
		writeStatus(a.stdout, st, t.where)
		return code
	})
}

func writeStatus(w io.Writer, st vbctoken.Status, where string) {
	now := st.Now
	switch {
	case st.Connected:
		fmt.Fprintln(w, "Connected to VBC: yes")
	case st.Reason == vbctoken.ReasonRefreshExpired:
		fmt.Fprintf(w, "Connected to VBC: no — the refresh token expired %s; the chain is gone\n", web.Relative(st.RefreshExpiresAt, now))
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
	facts = append(facts, [2]string{"store", where})
	writeFacts(w, facts)
	if !st.Connected {
		fmt.Fprintln(w)
		fmt.Fprintln(w, nextStepConsent)
	}
}

// refresh runs Keeper.Refresh once.
func (a *app) refresh(ctx context.Context, args []string) int {
	var c common
	var force bool
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	c.register(fs, true)
	fs.BoolVar(&force, "force", false, "refresh even when the policy says the pair is fresh")
	if done, code := a.parse(fs, args, "refresh [--force] [flags]",
		"Runs the refresher's logic once: refreshes the pair when the policy says so (or always\n"+
			"with --force), stores the new pair with compare-and-swap and updates the access secret.\n"+
			"Safe to run while the scheduled refresher runs; on a local store that `vbctoken serve`\n"+
			"holds, that serve refreshes (with its sandbox and clock). With --json: the keeper's Result.\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{}, nil, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		var res vbctoken.Result
		now := a.now()
		var err error
		if t.serve != nil {
			var r apiReply
			r, err = t.serve.call(ctx, http.MethodPost, apiRefresh, url.Values{"force": {strconv.FormatBool(force)}}.Encode())
			if r.Result != nil {
				res = *r.Result
			}
			if !r.Now.IsZero() {
				now = r.Now
			}
		} else {
			var k *vbctoken.Keeper
			if k, err = a.keeperFor(s, t.store, c); err == nil {
				res, err = k.Refresh(ctx, force)
				now = a.now()
			}
		}
		if err != nil {
			return a.fail(fs.Name(), c, err, res)
		}
		if c.json {
			a.writeJSON(res)
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

// login bootstraps the chain with the password grant.
func (a *app) login(ctx context.Context, args []string) int {
	var c common
	var username string
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	c.register(fs, true)
	fs.StringVar(&username, "username", "", "VBC user `NAME`; @vbc.prod is appended when it has no domain (required)")
	if done, code := a.parse(fs, args, "login --username NAME [flags]",
		"Connects with the password grant (server-to-server bootstrap, no browser). The password\n"+
			"comes from "+EnvPassword+" or, when that is unset, from the first line of stdin. Input\n"+
			"typed at a terminal is echoed: prefer "+EnvPassword+" or a pipe. There is no --password flag.\n"+
			"With --json: the keeper's Result and the user name.\n"); done {
		return code
	}
	var problems []string
	if strings.TrimSpace(username) == "" {
		problems = append(problems, "--username is required")
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{}, problems, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
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
		k, err := a.keeperFor(s, t.store, c)
		if err != nil {
			return a.fail(fs.Name(), c, err, nil)
		}
		res, err := k.Login(ctx, user, password, false)
		if err != nil {
			return a.fail(fs.Name(), c, err, nil)
		}
		if c.json {
			a.writeJSON(struct {
				vbctoken.Result
				Username string `json:"username"`
			}{res, user})
			return ExitOK
		}
		fmt.Fprintf(a.stdout, "Connected with the password grant as %s.\n", user)
		writeResult(a.stdout, res, a.now())
		return ExitOK
	})
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
