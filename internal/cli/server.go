package cli

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/config"
	"github.com/vbctoken/vbctoken/internal/vbcsandbox"
	"github.com/vbctoken/vbctoken/internal/web"
	"github.com/vbctoken/vbctoken/pkg/vbctoken"
	"github.com/vbctoken/vbctoken/pkg/vbctoken/filestore"
)

// server holds serve's HTTP handlers.
type server struct {
	keeper   *vbctoken.Keeper
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
	// the keeper uses, for reset.
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
	last, lastCheck, n := s.sched.snapshot()
	return web.StatusView{Status: st, Last: last, LastCheck: lastCheck, Refreshes: n,
		ConnectURL: "/consent", Mode: s.mode, Store: s.store, Location: s.loc}, nil
}

func (s *server) statusPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.view(r.Context())
	if err != nil {
		s.readFailed("status page", err)
		web.Respond(web.StoreErrorPage(err, s.resetCommand())).Write(w)
		return
	}
	web.Respond(web.StatusPage(v)).Write(w)
}

// resetCommand is the command that sets this store's pair aside; "" on Secrets Manager.
func (s *server) resetCommand() string {
	switch s.dir {
	case "":
		return ""
	case config.DefaultStoreDir:
		return "vbctoken reset"
	}
	return "vbctoken reset --store " + s.dir
}

// statusJSONBody is GET /status.json: the keeper's Status and what the scheduler did.
type statusJSONBody struct {
	Status      vbctoken.Status `json:"status"`
	Refreshes   int             `json:"refreshes"`
	LastCheck   time.Time       `json:"last_check,omitzero"`
	LastRefresh *lastJSON       `json:"last_refresh,omitempty"`
	Mode        string          `json:"mode"`
}

type lastJSON struct {
	At      time.Time        `json:"at"`
	Outcome vbctoken.Outcome `json:"outcome,omitempty"`
	Reason  vbctoken.Reason  `json:"reason,omitempty"`
	Summary string           `json:"summary"`
}

func (s *server) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	v, err := s.view(r.Context())
	if err != nil {
		s.readFailed("status.json", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"cannot read the stored pair"}` + "\n"))
		return
	}
	body := statusJSONBody{Status: v.Status, Refreshes: v.Refreshes, LastCheck: v.LastCheck, Mode: v.Mode}
	if v.Last != nil {
		body.LastRefresh = &lastJSON{At: v.Last.At, Outcome: v.Last.Result.Outcome, Reason: v.Last.Result.Reason, Summary: v.Last.Summary()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body)
}

// consent redirects to a freshly minted consent link. A deployed callback never does
// this: only an admin with access to the state key mints links (docs/design.md "Consent state").
// serve may, because it is a local admin tool bound to 127.0.0.1 by default: whoever can
// reach its port already holds the store.
func (s *server) consent(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	u, err := s.keeper.ConsentURL(ctx)
	if err != nil {
		s.log.Error("consent: cannot mint a consent link", "error", err)
		p := web.Page{Status: http.StatusServiceUnavailable, Tone: web.ToneBad, Title: "Cannot create a consent link",
			Lead: "vbctoken could not create a consent link. The details are in the logs.", LinkURL: "/", LinkText: "Status page"}
		if errors.Is(err, vbctoken.ErrNoCredentials) {
			p.Lead = "The client credentials are not configured. Store the VBC consumer key and secret first."
		}
		web.Respond(p).Write(w)
		return
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
			reply.Error, reply.ExitCode, reply.Hint = err.Error(), exitCode(err), hintFor(err, s.dir)
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

func (s *server) apiStatus(ctx context.Context, _ *http.Request) (apiReply, error) {
	st, err := s.keeper.Status(ctx)
	if err != nil {
		return apiReply{}, err
	}
	return apiReply{Status: &st}, nil
}

func (s *server) apiConsentURL(ctx context.Context, _ *http.Request) (apiReply, error) {
	u, err := s.keeper.ConsentURL(ctx)
	if err != nil {
		return apiReply{}, err
	}
	s.log.Info("api: minted a consent link for `vbctoken consent-url`")
	return apiReply{URL: u, RedirectURL: s.redirectURL}, nil
}

func (s *server) apiRefresh(ctx context.Context, r *http.Request) (apiReply, error) {
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	s.log.Info("api: refresh asked by `vbctoken refresh`", "force", force)
	res, err := s.keeper.Refresh(ctx, force)
	if err == nil || res.Outcome != "" {
		s.sched.record(web.LastRefresh{At: s.clock.Now(), Result: res, Err: err}, err == nil && res.Outcome == vbctoken.OutcomeRefreshed)
	}
	return apiReply{Result: &res}, err
}

func (s *server) apiReset(ctx context.Context, r *http.Request) (apiReply, error) {
	if s.dir == "" {
		return apiReply{}, errResetAWS
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	out, err := resetPair(ctx, s.fileStore, s.dir, s.clock.Now, force)
	if err != nil {
		return apiReply{}, err
	}
	if out.HadPair {
		s.log.Warn("api: `vbctoken reset` set the stored pair aside; not connected now", "kept_as", out.KeptAs)
	}
	return apiReply{Reset: &out}, nil
}

// storeGuard keeps serve's file store usable when its directory is deleted under it
// (`rm -rf .vbctoken`, `make clean`): before each store operation it checks that serve's
// claim (serve.json) is still in place, and if not, recreates the directory, claims it again
// and, in sandbox mode, writes back the sandbox's client credentials and chains. The pair
// is not brought back: whoever deleted the store meant to drop it; a new consent works at
// once.
type storeGuard struct {
	claim   *storeClaim
	dir     string
	files   *filestore.Store
	creds   *vbctoken.Credentials // the sandbox's; nil when talking to VBC
	sandbox *localSandbox
	log     *slog.Logger

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

// recoveringStore is the file store under a storeGuard.
type recoveringStore struct {
	*filestore.Store
	guard *storeGuard
}

var _ vbctoken.Store = (*recoveringStore)(nil)

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
