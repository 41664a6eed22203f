package cli

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// server holds serve's HTTP handlers.
type server struct {
	keeper *vbctoken.Keeper // single-account mode
	// accounts and fleet are accounts mode's keepers and stores (fleet for reset).
	accounts *vbctoken.Accounts
	fleet    vbctoken.Fleet
	sched    *scheduler
	clock    *clock
	callback *web.Callback
	sandbox  *localSandbox // nil when talking to VBC
	timeout  time.Duration
	log      *slog.Logger
	mode     string
	store    string
	loc      *time.Location
	// dir is the file store's directory ("" on Secrets Manager); fileStore is the store
	// the keeper uses, for reset (single-account mode).
	dir       string
	fileStore vbctoken.Store
	// redirectURL is where VBC (or the sandbox) sends the admin after a consent.
	redirectURL string
	// token authenticates /api/ requests (serve.json holds it).
	token string
	// failures rate-limits the log of an unreadable store, shared with the scheduler.
	failures *failureLog
}

func (s *server) routes(callbackPath string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.HandleFunc("GET /consent", s.consent)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET "+apiStatus, s.api(s.apiStatus))
	mux.Handle("POST "+apiConsentURL, s.api(s.apiConsentURL))
	mux.Handle("POST "+apiRefresh, s.api(s.apiRefresh))
	mux.Handle("POST "+apiReset, s.api(s.apiReset))
	mux.Handle("GET "+apiAccounts, s.api(s.apiAccounts))
	mux.Handle(callbackPath, s.withTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The code is exchanged by now: the sped-up clock may run again.
		defer s.clock.release()
		s.callback.ServeHTTP(w, r)
	})))
	if s.sandbox != nil {
		sb := http.StripPrefix(SandboxPrefix, s.sandbox)
		mux.Handle(SandboxPrefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == SandboxPrefix+vbcsandbox.AuthorizePath {
				// An approval mints a code that lives 10 sandbox minutes: run the clock at real
				// speed until the callback has exchanged it.
				s.clock.hold(consentHold)
			}
			sb.ServeHTTP(w, r)
		}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.Respond(web.Page{Status: http.StatusNotFound, Tone: web.ToneBad, Title: "Not found",
			Lead: "There is nothing at this address.", LinkURL: "/", LinkText: "Status page"}).Write(w)
	})
	return s.logRequests(mux)
}

// withTimeout bounds a request by the operation timeout and detaches it from the client:
// a browser that goes away mid-callback must not cancel the store's write of a new pair.
func (s *server) withTimeout(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// logRequests logs method, path and status; never the query, which carries code and state.
func (s *server) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration_ms", time.Since(start).Milliseconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// readFailed logs, rate-limited, that a page could not read the store.
func (s *server) readFailed(what string, err error) {
	s.failures.fail(slog.LevelError, what+": cannot read the pair", err)
}

func (s *server) view(ctx context.Context) (web.StatusView, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	st, err := s.keeper.Status(ctx)
	if err != nil {
		return web.StatusView{}, err
	}
	last, lastCheck, n := s.sched.snapshot("")
	return web.StatusView{Status: st, Last: last, LastCheck: lastCheck, Refreshes: n,
		ConnectURL: "/consent", Mode: s.mode, Store: s.store, Location: s.loc}, nil
}

// accountStates reads every account's state with what the scheduler last did for it.
func (s *server) accountStates(ctx context.Context) ([]accountState, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	states, err := listAccounts(ctx, s.accounts, s.clock.Now)
	if err != nil {
		return nil, err
	}
	for i := range states {
		if last, _, _ := s.sched.snapshot(states[i].Account); last != nil {
			states[i].LastRefresh = lastOf(last)
			states[i].Problem = states[i].problem()
		}
	}
	return states, nil
}

func (s *server) statusPage(w http.ResponseWriter, r *http.Request) {
	if s.accounts != nil {
		s.accountsPage(w, r)
		return
	}
	v, err := s.view(r.Context())
	if err != nil {
		s.readFailed("status page", err)
		web.Respond(web.StoreErrorPage(err, s.resetCommand(""))).Write(w)
		return
	}
	web.Respond(web.StatusPage(v)).Write(w)
}

// accountsPage is the status page in accounts mode: every account and the connect form.
func (s *server) accountsPage(w http.ResponseWriter, r *http.Request) {
	states, err := s.accountStates(r.Context())
	if err != nil {
		s.failures.fail(slog.LevelError, "status page: cannot list the accounts", err)
		web.Respond(web.StoreErrorPage(err, "")).Write(w)
		return
	}
	_, lastCheck, n := s.sched.snapshot("")
	v := web.AccountsView{LastCheck: lastCheck, Refreshes: n, Mode: s.mode, Store: s.store, Now: s.clock.Now(), Location: s.loc}
	for _, st := range states {
		row := web.AccountRow{Account: st.Account, Status: st.Status, Unreadable: st.readErr, Problem: st.Problem}
		if last, _, _ := s.sched.snapshot(st.Account); last != nil {
			row.Last = last
		}
		v.Accounts = append(v.Accounts, row)
	}
	web.Respond(web.AccountsPage(v)).Write(w)
}

// resetCommand is the command that sets the pair of account aside; "" on Secrets Manager.
func (s *server) resetCommand(account string) string {
	if s.dir == "" {
		return ""
	}
	return resetCommand(s.dir, account)
}

// statusJSONBody is GET /status.json: the keeper's Status (or in accounts mode every
// account's) and what the scheduler did.
type statusJSONBody struct {
	Status      *vbctoken.Status `json:"status,omitempty"`
	Accounts    []accountState   `json:"accounts,omitempty"`
	Refreshes   int              `json:"refreshes"`
	LastCheck   time.Time        `json:"last_check,omitzero"`
	LastRefresh *lastJSON        `json:"last_refresh,omitempty"`
	Mode        string           `json:"mode"`
}

type lastJSON struct {
	At      time.Time        `json:"at"`
	Outcome vbctoken.Outcome `json:"outcome,omitempty"`
	Reason  vbctoken.Reason  `json:"reason,omitempty"`
	Summary string           `json:"summary"`
}

func lastOf(l *web.LastRefresh) *lastJSON {
	if l == nil {
		return nil
	}
	return &lastJSON{At: l.At, Outcome: l.Result.Outcome, Reason: l.Result.Reason, Summary: l.Summary()}
}

func (s *server) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	var body statusJSONBody
	if s.accounts != nil {
		states, err := s.accountStates(r.Context())
		if err != nil {
			s.failures.fail(slog.LevelError, "status.json: cannot list the accounts", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"cannot list the accounts"}` + "\n"))
			return
		}
		_, lastCheck, n := s.sched.snapshot("")
		body = statusJSONBody{Accounts: states, Refreshes: n, LastCheck: lastCheck, Mode: s.mode}
		if body.Accounts == nil {
			body.Accounts = []accountState{}
		}
	} else {
		v, err := s.view(r.Context())
		if err != nil {
			s.readFailed("status.json", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"cannot read the stored pair"}` + "\n"))
			return
		}
		body = statusJSONBody{Status: &v.Status, Refreshes: v.Refreshes, LastCheck: v.LastCheck, Mode: v.Mode, LastRefresh: lastOf(v.Last)}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body)
}

// keeperOf returns the keeper a request names: in accounts mode the one of ?account=ID
// (required), else the one keeper (an account is refused), as the commands do.
func (s *server) keeperOf(r *http.Request) (*vbctoken.Keeper, string, error) {
	account := r.URL.Query().Get("account")
	if account != "" {
		if err := vbctoken.CheckAccount(account); err != nil {
			return nil, "", err
		}
	}
	if err := checkAccountUse("", common{account: account}, accountOne, s.accounts != nil, s.store); err != nil {
		return nil, "", err
	}
	if s.accounts == nil {
		return s.keeper, "", nil
	}
	k, err := s.accounts.Keeper(account)
	return k, account, err
}

// consent redirects to a freshly minted consent link. A deployed callback never does
// this: only an admin with access to the state key mints links (docs/design.md "Consent state").
// serve may, because it is a local admin tool bound to 127.0.0.1 by default: whoever can
// reach its port already holds the store.
func (s *server) consent(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	k, account, err := s.keeperOf(r)
	if err != nil {
		p := web.Page{Status: http.StatusBadRequest, Tone: web.ToneBad, Title: "Cannot create a consent link",
			Lead: "This serve keeps one account: open the status page and click Connect.", LinkURL: "/", LinkText: "Status page"}
		if s.accounts != nil {
			// The id is not echoed: the form's pattern and this rule are the same.
			p.Lead = "Name the account to connect: an account id is 1 to 63 lower-case letters, digits and hyphens, starting with a letter or digit (for example acme)."
		}
		web.Respond(p).Write(w)
		return
	}
	u, err := k.ConsentURL(ctx)
	if err != nil {
		s.log.Error("consent: cannot mint a consent link", "account", account, "error", err)
		p := web.Page{Status: http.StatusServiceUnavailable, Tone: web.ToneBad, Title: "Cannot create a consent link",
			Lead: "vbctoken could not create a consent link. The details are in the logs.", LinkURL: "/", LinkText: "Status page"}
		if errors.Is(err, vbctoken.ErrNoCredentials) {
			p.Lead = "The client credentials are not configured. Store the VBC consumer key and secret first."
		}
		web.Respond(p).Write(w)
		return
	}
	if account != "" {
		s.log.Info("consent: minted a consent link", "account", account)
	}
	for k, v := range web.SecurityHeaders() {
		w.Header().Set(k, v)
	}
	http.Redirect(w, r, u, http.StatusFound)
}

// api serves one /api/ route: the bearer token of serve.json or 401, the operation bounded
// by the timeout and detached from the client (a refresh must not stop between VBC's
// answer and the store's write because the CLI gave up), and its reply as JSON with the
// exit code the command will return.
func (s *server) api(op func(ctx context.Context, r *http.Request) (apiReply, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(apiReply{Error: "this route needs the token in the store's serve.json", ExitCode: ExitUsage})
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
		defer cancel()
		reply, err := op(ctx, r)
		reply.Now = s.clock.Now()
		status := http.StatusOK
		if err != nil {
			reply.Error, reply.ExitCode, reply.Hint = err.Error(), exitCode(err), hintFor(err, s.dir, r.URL.Query().Get("account"))
			status = apiStatusOf(reply.ExitCode)
		}
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(reply)
	})
}

// apiStatusOf is the HTTP status of a failed /api/ call with the given exit code.
func apiStatusOf(code int) int {
	switch code {
	case ExitUsage:
		return http.StatusBadRequest
	case ExitReconsent:
		return http.StatusConflict
	case ExitTransient:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *server) apiStatus(ctx context.Context, r *http.Request) (apiReply, error) {
	k, _, err := s.keeperOf(r)
	if err != nil {
		return apiReply{}, err
	}
	st, err := k.Status(ctx)
	if err != nil {
		return apiReply{}, err
	}
	return apiReply{Status: &st}, nil
}

func (s *server) apiConsentURL(ctx context.Context, r *http.Request) (apiReply, error) {
	k, account, err := s.keeperOf(r)
	if err != nil {
		return apiReply{}, err
	}
	u, err := k.ConsentURL(ctx)
	if err != nil {
		return apiReply{}, err
	}
	s.log.Info("api: minted a consent link for `vbctoken consent-url`", "account", account)
	return apiReply{URL: u, RedirectURL: s.redirectURL}, nil
}

func (s *server) apiRefresh(ctx context.Context, r *http.Request) (apiReply, error) {
	k, account, err := s.keeperOf(r)
	if err != nil {
		return apiReply{}, err
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	s.log.Info("api: refresh asked by `vbctoken refresh`", "account", account, "force", force)
	res, err := k.Refresh(ctx, force)
	if err == nil || res.Outcome != "" {
		s.sched.record(account, web.LastRefresh{At: s.clock.Now(), Result: res, Err: err}, err == nil && res.Outcome == vbctoken.OutcomeRefreshed)
	}
	return apiReply{Result: &res}, err
}

func (s *server) apiReset(ctx context.Context, r *http.Request) (apiReply, error) {
	if s.dir == "" {
		return apiReply{}, errResetAWS
	}
	if _, _, err := s.keeperOf(r); err != nil {
		return apiReply{}, err
	}
	store, dir := s.fileStore, s.dir
	account := r.URL.Query().Get("account")
	if account != "" {
		var err error
		if store, err = s.fleet.Open(account); err != nil {
			return apiReply{}, err
		}
		dir = filepath.Join(s.dir, filestore.AccountsDir, account)
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	out, err := resetPair(ctx, store, dir, s.clock.Now, force)
	if err != nil {
		return apiReply{}, err
	}
	if out.HadPair {
		s.log.Warn("api: `vbctoken reset` set the stored pair aside; not connected now", "account", account, "kept_as", out.KeptAs)
	}
	return apiReply{Reset: &out}, nil
}

func (s *server) apiAccounts(ctx context.Context, _ *http.Request) (apiReply, error) {
	if s.accounts == nil {
		return apiReply{}, checkAccountUse("accounts", common{}, accountFleet, false, s.store)
	}
	states, err := s.accountStates(ctx)
	if err != nil {
		return apiReply{}, err
	}
	return apiReply{Accounts: states}, nil
}

// storeGuard keeps serve's file store usable when its directory is deleted under it
// (`rm -rf .vbctoken`, `make clean`): before each store operation it checks that serve's
// claim (serve.json) is still in place, and if not, recreates the directory, claims it again
// and, in sandbox mode, writes back the sandbox's client credentials and chains. The pair
// is not brought back: whoever deleted the store meant to drop it; a new consent works at
// once.
type storeGuard struct {
	claim *storeClaim
	dir   string
	// files saves the client credentials (the store's, or in accounts mode the shared ones).
	files credentialsSaver
	// accounts says the store keeps accounts: <dir>/accounts/ is recreated too, so the
	// other commands still find the mode.
	accounts bool
	creds    *vbctoken.Credentials // the sandbox's; nil when talking to VBC
	sandbox  *localSandbox
	log      *slog.Logger

	mu sync.Mutex
}

func (g *storeGuard) ensure(ctx context.Context) error {
	if g.claim.intact() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.claim.intact() {
		return nil
	}
	if err := g.claim.reclaim(); err != nil {
		g.log.Error("the store directory was deleted while serving and cannot be recreated", "dir", g.dir, "error", err)
		return err
	}
	if g.accounts {
		if err := os.MkdirAll(filepath.Join(g.dir, filestore.AccountsDir), 0o700); err != nil {
			return err
		}
	}
	if g.creds != nil {
		if err := g.files.SaveCredentials(ctx, *g.creds); err != nil {
			return err
		}
	}
	if g.sandbox != nil {
		if err := g.sandbox.save(); err != nil {
			g.log.Error("sandbox mode: cannot save the sandbox's chains", "error", err)
		}
	}
	g.log.Warn("the store directory was deleted while serving (make clean?): recreated it; connect again",
		"dir", g.dir, "sandbox_credentials_restored", g.creds != nil)
	return nil
}

// recoveringStore is a file store under a storeGuard.
type recoveringStore struct {
	vbctoken.Store
	guard *storeGuard
}

var _ vbctoken.Store = (*recoveringStore)(nil)

// recoveringFleet is a file fleet under a storeGuard: its stores are recoveringStores.
type recoveringFleet struct {
	vbctoken.Fleet
	guard *storeGuard
}

var _ vbctoken.Fleet = (*recoveringFleet)(nil)

func (f *recoveringFleet) Open(account string) (vbctoken.Store, error) {
	st, err := f.Fleet.Open(account)
	if err != nil {
		return nil, err
	}
	return &recoveringStore{Store: st, guard: f.guard}, nil
}

func (f *recoveringFleet) Accounts(ctx context.Context) ([]string, error) {
	if err := f.guard.ensure(ctx); err != nil {
		return nil, err
	}
	return f.Fleet.Accounts(ctx)
}

func (f *recoveringFleet) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	if err := f.guard.ensure(ctx); err != nil {
		return vbctoken.Credentials{}, err
	}
	return f.Fleet.LoadCredentials(ctx)
}

func (s *recoveringStore) LoadCredentials(ctx context.Context) (vbctoken.Credentials, error) {
	if err := s.guard.ensure(ctx); err != nil {
		return vbctoken.Credentials{}, err
	}
	return s.Store.LoadCredentials(ctx)
}

func (s *recoveringStore) LoadPair(ctx context.Context) (vbctoken.Versioned, error) {
	if err := s.guard.ensure(ctx); err != nil {
		return vbctoken.Versioned{}, err
	}
	return s.Store.LoadPair(ctx)
}

func (s *recoveringStore) CommitPair(ctx context.Context, p *vbctoken.Pair, prev string) (string, error) {
	if err := s.guard.ensure(ctx); err != nil {
		return "", err
	}
	return s.Store.CommitPair(ctx, p, prev)
}

func (s *recoveringStore) PutAccess(ctx context.Context, a vbctoken.AccessToken) error {
	if err := s.guard.ensure(ctx); err != nil {
		return err
	}
	return s.Store.PutAccess(ctx, a)
}

func (s *recoveringStore) LoadAccess(ctx context.Context) (vbctoken.AccessToken, error) {
	if err := s.guard.ensure(ctx); err != nil {
		return vbctoken.AccessToken{}, err
	}
	return s.Store.LoadAccess(ctx)
}
