package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/dynamostore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/smstore"
)

// Accounts mode in the CLI (docs/design.md "Accounts mode"): the store keeps many accounts,
// each a chain of its own. The commands that act on one chain take --account ID there and
// refuse it elsewhere; `vbctoken accounts` lists them all.

// statusWorkers bounds the accounts whose status `vbctoken accounts` reads at once: one
// read each (GetSecretValue allows 10,000 a second; a local store has no limit), so 10,000
// accounts take seconds, not minutes.
const statusWorkers = 16

// overdueAfter is how long past its due time a refresh counts as overdue: the refresher
// runs hourly, so two missed runs mean it is not running or keeps failing.
const overdueAfter = 2 * time.Hour

// switchHint says how accounts mode is switched on.
const switchHint = "Accounts mode is on when " + config.EnvAccountSecretPrefix + " is set (a deployed stack in accounts mode), " +
	"or for a local store made by `vbctoken serve --accounts` (it keeps <store>/accounts/)."

// modeError is a command used in the wrong mode (exit 2): --account on a store that keeps
// one account, none on one that keeps many, or `accounts` in single-account mode.
type modeError struct{ Msg, Hint string }

func (e *modeError) Error() string { return e.Msg }

// Is matches vbctoken.ErrBadInput.
func (e *modeError) Is(target error) bool { return target == vbctoken.ErrBadInput }

// checkAccountUse refuses a use of --account that does not fit the store's mode.
func checkAccountUse(cmd string, c common, use accountUse, accounts bool, where string) error {
	switch {
	case use == accountOne && c.account != "" && !accounts:
		return &modeError{
			Msg:  fmt.Sprintf("--account works only in accounts mode, and this store keeps one account (%s)", where),
			Hint: switchHint + " Leave out --account here.",
		}
	case use == accountOne && c.account == "" && accounts:
		return &modeError{
			Msg:  fmt.Sprintf("this store keeps many accounts (accounts mode, %s): name one with --account ID", where),
			Hint: "`vbctoken accounts` lists them; `vbctoken consent-url --account ID` connects a new one.",
		}
	case use == accountFleet && !accounts:
		return &modeError{
			Msg:  fmt.Sprintf("%s works only in accounts mode, and this store keeps one account (%s)", cmd, where),
			Hint: switchHint + " `vbctoken status` shows this store's one account.",
		}
	}
	return nil
}

// openFleet opens the accounts of accounts mode: the file fleet in dir (created only when
// create is set: serve), or, when VBC_ACCOUNT_SECRET_PREFIX is set, the AWS backend the
// environment names.
//
// The SDK configuration comes from loadAWS (missing credentials and regions are
// *awsSetupError): smstore's Fleet (prefix, KMS key, the shared credentials secret) or, when
// s.TableName is set, dynamostore's, whose accounts read the same credentials secret.
func openFleet(ctx context.Context, s config.Settings, dir string, create bool) (vbctoken.Fleet, error) {
	if s.AccountsMode() {
		cfg, err := loadAWS(ctx, s)
		if err != nil {
			return nil, err
		}
		if s.TableName != "" {
			return dynamostore.NewFleetFromConfig(cfg, s.TableName, smstore.NewFromConfig(cfg, smstore.SecretIDs{Credentials: s.CredentialsSecretID}))
		}
		return smstore.NewFleetFromConfig(cfg, smstore.FleetConfig{Prefix: s.AccountSecretPrefix, KMSKeyID: s.AccountKMSKeyID, CredentialsSecretID: s.CredentialsSecretID})
	}
	if dir == "" {
		dir = config.DefaultStoreDir
	}
	if !create {
		if err := storeExists(dir); err != nil {
			return nil, err
		}
	}
	return filestore.NewFleet(dir)
}

// hasAccounts reports whether the local store in dir keeps accounts (<dir>/accounts/).
func hasAccounts(dir string) bool {
	info, err := os.Stat(filepath.Join(dir, filestore.AccountsDir))
	return err == nil && info.IsDir()
}

// fleetWhere says where an AWS fleet keeps its accounts, for people.
func fleetWhere(s config.Settings) string {
	if s.TableName != "" {
		return "DynamoDB table " + s.TableName + " (accounts mode)"
	}
	return "AWS Secrets Manager, secrets " + s.AccountSecretPrefix + "<account>/… (accounts mode)"
}

// accountState is one account in `vbctoken accounts --json` (and serve's /status.json):
// the keeper's Status with the account, what follows from it, and never a token.
type accountState struct {
	Account string `json:"account"`
	vbctoken.Status
	// RefreshExpiresInSeconds is the refresh token's time left (negative once expired).
	RefreshExpiresInSeconds *int64 `json:"refresh_expires_in_seconds,omitempty"`
	// Problem says in a few words what needs attention, derived from the state.
	Problem string `json:"problem,omitempty"`
	// Error is why the account's pair could not be read (then Status is empty).
	Error string `json:"error,omitempty"`
	// LastRefresh is what serve's scheduler last did for the account (serve only).
	LastRefresh *lastJSON `json:"last_refresh,omitempty"`

	readErr error
}

// accountsReport is `vbctoken accounts --json`.
type accountsReport struct {
	Now      time.Time      `json:"now"`
	Store    string         `json:"store"`
	Accounts []accountState `json:"accounts"`
	Counts   accountCounts  `json:"counts"`
}

type accountCounts struct {
	Total        int `json:"total"`
	Connected    int `json:"connected"`
	NotConnected int `json:"not_connected"`
	Unreadable   int `json:"unreadable"`
	// Attention counts the accounts with a problem, the unreadable ones included.
	Attention int `json:"attention"`
}

// accountKeepers is the part of vbctoken.Accounts the listing needs.
type accountKeepers interface {
	List(ctx context.Context) ([]string, error)
	Keeper(account string) (*vbctoken.Keeper, error)
}

// listAccounts reads every account's status, statusWorkers at a time. An account whose
// pair cannot be read is reported as such; it never stops the others.
func listAccounts(ctx context.Context, accts accountKeepers, now func() time.Time) ([]accountState, error) {
	ids, err := accts.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]accountState, len(ids))
	var g errgroup.Group
	g.SetLimit(statusWorkers)
	for i, id := range ids {
		g.Go(func() error {
			out[i] = accountState{Account: id}
			k, err := accts.Keeper(id)
			if err == nil {
				out[i].Status, err = k.Status(ctx)
			}
			if err != nil {
				out[i].Status = vbctoken.Status{Now: now()}
				out[i].readErr, out[i].Error = err, err.Error()
			}
			return nil
		})
	}
	_ = g.Wait()
	for i := range out {
		out[i].derive()
	}
	return out, nil
}

// derive fills the fields that follow from the status.
func (s *accountState) derive() {
	st := s.Status
	if !st.RefreshExpiresAt.IsZero() {
		left := int64(st.RefreshExpiresAt.Sub(st.Now) / time.Second)
		s.RefreshExpiresInSeconds = &left
	}
	s.Problem = s.problem()
}

// problem says what needs attention about the account, "" when nothing does.
func (s *accountState) problem() string {
	st, now := s.Status, s.Status.Now
	var p []string
	switch {
	case s.Error != "" && errors.Is(s.readErr, vbctoken.ErrNewerSchema):
		p = append(p, "pair written by a newer vbctoken: upgrade")
	case s.Error != "" && errors.Is(s.readErr, vbctoken.ErrMalformedSecret):
		p = append(p, "damaged pair: set it aside with `vbctoken reset --account "+s.Account+"` (local) or restore AWSPREVIOUS")
	case s.Error != "" && (errors.Is(s.readErr, vbctoken.ErrTransient) || errors.Is(s.readErr, context.DeadlineExceeded)):
		p = append(p, "the store did not answer: try again")
	case s.Error != "":
		p = append(p, "cannot read the pair (see error)")
	case !st.Connected && st.Reason == vbctoken.ReasonRefreshExpired:
		p = append(p, "re-consent needed: the refresh token expired "+web.Relative(st.RefreshExpiresAt, now))
	case !st.Connected && st.Reason == vbctoken.ReasonRejected:
		p = append(p, "re-consent needed: VBC rejected the stored refresh token")
	case !st.Connected:
		p = append(p, "not connected: no admin has consented yet")
	case !st.NextRefresh.IsZero() && now.Sub(st.NextRefresh) > overdueAfter:
		p = append(p, "refresh overdue since "+web.Relative(st.NextRefresh, now)+": is the refresher running?")
	}
	if l := s.LastRefresh; l != nil && st.Connected && !l.At.Before(st.ObtainedAt) {
		// What serve's scheduler met since the current pair was stored.
		switch {
		case l.Summary == "re-consent required":
			p = append(p, "re-consent needed: VBC rejected the stored refresh token")
		case strings.HasPrefix(l.Summary, "failed"):
			p = append(p, "last refresh "+l.Summary)
		}
	}
	if st.SelfHealHalted {
		p = append(p, "self-heal halted: VBC rejected its login")
	}
	if !st.LoginLockedUntil.IsZero() {
		p = append(p, "VBC user locked until "+fmtTime(st.LoginLockedUntil)+" (password login)")
	}
	return strings.Join(p, "; ")
}

// report counts the states.
func report(states []accountState, now time.Time, where string) accountsReport {
	r := accountsReport{Now: now.UTC(), Store: where, Accounts: states}
	if r.Accounts == nil {
		r.Accounts = []accountState{}
	}
	for _, s := range states {
		r.Counts.Total++
		switch {
		case s.Error != "":
			r.Counts.Unreadable++
		case s.Connected:
			r.Counts.Connected++
		default:
			r.Counts.NotConnected++
		}
		if s.Problem != "" {
			r.Counts.Attention++
		}
	}
	return r
}

// accounts lists every account's state: the runbook's first command for a fleet.
func (a *app) accounts(ctx context.Context, args []string) int {
	var c common
	fs := flag.NewFlagSet("accounts", flag.ContinueOnError)
	c.register(fs, true)
	if done, code := a.parse(fs, args, "accounts [flags]",
		"Accounts mode only. Lists every account that has a stored pair, one line each: connected or\n"+
			"not, the last grant, when the refresh token expires, when the next refresh is due, the\n"+
			"keeper refreshing it right now (its lease), the pairs kept after a lost race, and what\n"+
			"needs attention (re-consent, a damaged pair, an overdue refresh, a locked VBC user).\n"+
			"Never prints a token. Exits 0 when the list was read, whatever the accounts' state (a\n"+
			"fleet always has customers who have not consented yet); the problems are in the table.\n"+
			"With --json: {\"now\",\"store\",\"accounts\":[{\"account\", the status fields,\n"+
			"\"refresh_expires_in_seconds\",\"problem\",\"error\"}],\"counts\"}.\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{account: accountFleet}, nil, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		var states []accountState
		now := a.now()
		if t.serve != nil {
			r, err := t.serve.call(ctx, http.MethodGet, apiAccounts, "")
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
			states, now = r.Accounts, r.Now
		} else {
			accts, err := a.accountsFor(s, t.fleet, c)
			if err == nil {
				states, err = listAccounts(ctx, accts, a.now)
			}
			if err != nil {
				return a.fail(fs.Name(), c, err, nil)
			}
		}
		r := report(states, now, t.where)
		if c.json {
			a.writeJSON(r)
			return ExitOK
		}
		writeAccounts(a.stdout, r)
		return ExitOK
	})
}

// writeAccounts prints the accounts as a table and a summary.
func writeAccounts(w io.Writer, r accountsReport) {
	if len(r.Accounts) == 0 {
		fmt.Fprintf(w, "No accounts yet in %s.\nConnect one: vbctoken consent-url --account ID, and open the link as that account's VBC admin.\n", r.Store)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tCONNECTED\tGRANT\tREFRESH TOKEN EXPIRES\tNEXT REFRESH\tREFRESHING\tKEPT\tPROBLEM")
	for _, s := range r.Accounts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Account, connectedText(s), orDash(string(s.Grant)),
			expiresText(s.Status), nextText(s.Status), refreshingText(s.Status), keptText(s), orDash(s.Problem))
	}
	_ = tw.Flush()
	c := r.Counts
	fmt.Fprintf(w, "\n%d accounts: %d connected, %d not connected", c.Total, c.Connected, c.NotConnected)
	if c.Unreadable > 0 {
		fmt.Fprintf(w, ", %d unreadable", c.Unreadable)
	}
	fmt.Fprintf(w, "; %d need attention. Store: %s. Clock: %s.\n", c.Attention, r.Store, fmtTime(r.Now))
}

func connectedText(s accountState) string {
	switch {
	case s.Error != "":
		return "?"
	case s.Connected:
		return "yes"
	}
	return "no"
}

func expiresText(st vbctoken.Status) string {
	if st.RefreshExpiresAt.IsZero() {
		return "-"
	}
	if !st.Now.Before(st.RefreshExpiresAt) {
		return "expired " + web.Relative(st.RefreshExpiresAt, st.Now)
	}
	return web.Relative(st.RefreshExpiresAt, st.Now)
}

func nextText(st vbctoken.Status) string {
	switch {
	case st.NextRefresh.IsZero():
		return "-"
	case !st.NextRefresh.After(st.Now):
		return "due (" + web.Relative(st.NextRefresh, st.Now) + ")"
	}
	return web.Relative(st.NextRefresh, st.Now)
}

func refreshingText(st vbctoken.Status) string {
	if st.RefreshingBy == "" {
		return "-"
	}
	return st.RefreshingBy + ", lease ends " + web.Relative(st.RefreshingUntil, st.Now)
}

func keptText(s accountState) string {
	if s.Error != "" {
		return "-"
	}
	return strconv.Itoa(s.KeptPairs)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
