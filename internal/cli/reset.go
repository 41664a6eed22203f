package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
)

// resetOutcome is what reset did.
type resetOutcome struct {
	// HadPair is false when no pair was stored: nothing was done.
	HadPair bool `json:"had_pair"`
	// KeptAs is the copy the pair was moved to, e.g. .vbctoken/pair.json.reset-20260301T100000Z.
	KeptAs string `json:"kept_as,omitempty"`
}

// errResetAWS: reset works on local file stores only.
var errResetAWS = fmt.Errorf("%w: reset works on a local file store only; on AWS restore the previous version of the pair secret (AWSPREVIOUS) as the README's runbook says", vbctoken.ErrBadInput)

// liveResetError refuses to set a connected pair aside without --force.
type liveResetError struct{ RefreshExpiresAt time.Time }

func (e *liveResetError) Error() string {
	return fmt.Sprintf("%v: the stored pair is connected (refresh token valid until %s); reset would disconnect vbctoken: add --force to set it aside anyway",
		vbctoken.ErrBadInput, fmtTime(e.RefreshExpiresAt))
}

func (e *liveResetError) Is(target error) bool { return target == vbctoken.ErrBadInput }

// reset sets the local pair aside so that the next consent starts a fresh chain.
func (a *app) reset(ctx context.Context, args []string) int {
	var c common
	var force bool
	fs := flag.NewFlagSet("reset", flag.ContinueOnError)
	c.register(fs, true)
	c.registerAccount(fs)
	fs.BoolVar(&force, "force", false, "also set aside a pair that is readable and connected")
	if done, code := a.parse(fs, args, "reset [--account ID] [--force] [flags]",
		"Moves the local store's pair.json aside as pair.json.reset-<UTC time> (a copy: nothing is\n"+
			"deleted) and empties the access token, so vbctoken is not connected and a new consent\n"+
			"starts a fresh chain. For a damaged pair (the status page says so), or a pair the local\n"+
			"sandbox issued in a store you now point at VBC. A readable, connected pair needs --force.\n"+
			"On a store that `vbctoken serve` holds, that serve does it. Secrets Manager stores are\n"+
			"not reset here: restore the previous version (AWSPREVIOUS), see the README's runbook.\n"+
			"In a local store with accounts, --account names the account (<store>/accounts/ID/).\n"+
			"With --json: {\"had_pair\",\"kept_as\"}.\n"); done {
		return code
	}
	return a.oneShot(ctx, fs.Name(), c, targetOptions{idleSandbox: true, account: accountOne}, nil, config.Need{}, func(ctx context.Context, s config.Settings, t target) int {
		var out resetOutcome
		var err error
		switch {
		case s.UsesSecretsManager():
			err = errResetAWS
		case t.serve != nil:
			var r apiReply
			r, err = t.serve.call(ctx, http.MethodPost, apiReset, apiQuery(c, url.Values{"force": {strconv.FormatBool(force)}}))
			if r.Reset != nil {
				out = *r.Reset
			}
		default:
			out, err = resetPair(ctx, t.store, storeDir(t.store, c.dir()), a.now, force)
		}
		if err != nil {
			return a.fail(fs.Name(), c, err, nil)
		}
		if c.json {
			a.writeJSON(out)
			return ExitOK
		}
		if !out.HadPair {
			fmt.Fprintln(a.stdout, "Nothing to reset: no pair is stored.")
			return ExitOK
		}
		fmt.Fprintf(a.stdout, "Set the stored pair aside as %s; vbctoken is not connected now.\n%s\n", out.KeptAs, nextStep(c.account))
		return ExitOK
	})
}

// storeDir is the directory of a file store (an account's in accounts mode), dir otherwise.
func storeDir(st vbctoken.Store, dir string) string {
	if d, ok := st.(interface{ Dir() string }); ok {
		return d.Dir()
	}
	return dir
}

// resetPair sets dir/pair.json aside (never overwriting an earlier copy) and leaves the
// store not connected, with an empty access token. A readable pair is copied aside and then
// replaced by an empty one with compare-and-swap, so a keeper that stored a newer pair
// meanwhile wins and nothing is lost; a damaged pair, which no keeper can read or replace,
// is moved aside. A readable pair that is connected at now() is kept unless force.
func resetPair(ctx context.Context, store vbctoken.Store, dir string, now func() time.Time, force bool) (resetOutcome, error) {
	src := filepath.Join(dir, pairFile)
	data, err := os.ReadFile(src)
	if errors.Is(err, fs.ErrNotExist) {
		return resetOutcome{}, nil
	} else if err != nil {
		return resetOutcome{}, fmt.Errorf("reset: %w", err)
	}
	cur, loadErr := store.LoadPair(ctx)
	if loadErr == nil && cur.Pair.Connected(now()) && !force {
		return resetOutcome{}, &liveResetError{RefreshExpiresAt: cur.Pair.RefreshExpiresAt}
	}
	stamp := now().UTC().Format("20060102T150405Z")
	dst := src + ".reset-" + stamp
	for n := 2; ; n++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s.reset-%s-%d", src, stamp, n)
	}
	if loadErr != nil {
		if err := os.Rename(src, dst); err != nil {
			return resetOutcome{}, fmt.Errorf("reset: set the pair aside: %w", err)
		}
	} else {
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return resetOutcome{}, fmt.Errorf("reset: copy the pair aside: %w", err)
		}
		if _, err := store.CommitPair(ctx, cur.Pair.WithTokens(&vbctoken.Pair{}), cur.Version); err != nil {
			return resetOutcome{}, fmt.Errorf("reset: %w (a copy of the pair is in %s)", err, dst)
		}
	}
	if err := store.PutAccess(ctx, vbctoken.AccessToken{}); err != nil {
		return resetOutcome{HadPair: true, KeptAs: dst}, fmt.Errorf("reset: the pair is set aside as %s, but the access token could not be emptied: %w", dst, err)
	}
	return resetOutcome{HadPair: true, KeptAs: dst}, nil
}
