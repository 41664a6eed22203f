package vbctoken

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/vbctoken/vbctoken/internal/contract"
)

// Accounts mode (docs/design.md "Accounts mode"): one deployment keeps the chains of many
// VBC accounts, an ISV's customers who each consent once. Every account is a chain of its
// own, in a store of its own, kept by a Keeper of its own exactly as in a single-account
// deployment: leases, compare-and-swap and recovery are per account, and one account's
// trouble never touches another's. Only the client credentials are shared.

// accountID is the rule account ids follow (internal/contract holds it for the stack too).
var accountID = regexp.MustCompile(`^` + contract.AccountIDPattern + `$`)

// CheckAccount refuses an account id that is not [a-z0-9][a-z0-9-]{0,62}, with ErrBadInput
// and without quoting the input.
func CheckAccount(id string) error {
	if id == "" || len(id) > 63 {
		return fmt.Errorf("%w: an account id has 1 to 63 characters", ErrBadInput)
	}
	if !accountID.MatchString(id) {
		return fmt.Errorf("%w: an account id is lower-case letters, digits and hyphens, starting with a letter or digit", ErrBadInput)
	}
	return nil
}

// Fleet opens the stores of many accounts. Its stores share the client credentials (an ISV
// has one VBC app) and create an account's secrets on its first write.
type Fleet interface {
	// Open returns the store of account, a valid account id. Nothing is read or created
	// until the store is used.
	Open(account string) (Store, error)
	// Accounts lists the accounts the fleet knows, sorted: every account with a stored
	// pair, and possibly accounts whose first consent has not completed (not connected).
	Accounts(ctx context.Context) ([]string, error)
	// LoadCredentials returns the shared client credentials, ErrNoCredentials when unset.
	LoadCredentials(ctx context.Context) (Credentials, error)
}

// Accounts builds and caches one Keeper per account over a Fleet, all with the same
// configuration. It is safe for concurrent use.
type Accounts struct {
	fleet Fleet
	cfg   KeeperConfig

	mu      sync.Mutex
	keepers map[string]*Keeper
}

// NewAccounts returns the keepers of fleet. cfg configures each of them as in NewKeeper;
// its Store and Account are set per account.
func NewAccounts(fleet Fleet, cfg KeeperConfig) (*Accounts, error) {
	if fleet == nil {
		return nil, fmt.Errorf("new accounts: %w: no fleet", ErrBadInput)
	}
	probe := cfg
	probe.Store, probe.Account = emptyStore{}, ""
	if _, err := NewKeeper(probe); err != nil {
		return nil, fmt.Errorf("new accounts: %w", err)
	}
	cfg.shared = &sharedCredentials{load0: fleet.LoadCredentials}
	return &Accounts{fleet: fleet, cfg: cfg, keepers: map[string]*Keeper{}}, nil
}

// sharedCredentials caches the client credentials for every keeper of a fleet: a refresher
// environment reads them once, not once per account. A keeper whose client VBC rejects
// forgets them, so the next load reads the secret again (an admin rotated it).
type sharedCredentials struct {
	load0 func(context.Context) (Credentials, error)

	mu    sync.Mutex
	creds Credentials
	ok    bool
}

func (s *sharedCredentials) load(ctx context.Context) (Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok {
		return s.creds, nil
	}
	c, err := s.load0(ctx)
	if err != nil {
		return Credentials{}, err
	}
	s.creds, s.ok = c, true
	return c, nil
}

// forget drops the cached credentials if they are still old.
func (s *sharedCredentials) forget(old Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok && s.creds.ClientID == old.ClientID && s.creds.ClientSecret == old.ClientSecret {
		s.ok = false
	}
}

// Keeper returns the keeper of account, refusing an invalid account id with ErrBadInput.
func (a *Accounts) Keeper(account string) (*Keeper, error) {
	if err := CheckAccount(account); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.keepers[account]; ok {
		return k, nil
	}
	store, err := a.fleet.Open(account)
	if err != nil {
		return nil, fmt.Errorf("open the store of account %s: %w", account, err)
	}
	cfg := a.cfg
	cfg.Store, cfg.Account = store, account
	k, err := NewKeeper(cfg)
	if err != nil {
		return nil, err
	}
	a.keepers[account] = k
	return k, nil
}

// List returns the accounts the fleet knows, sorted (see Fleet.Accounts).
func (a *Accounts) List(ctx context.Context) ([]string, error) {
	ids, err := a.fleet.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return ids, nil
}

// CompleteConsent is the accounts-mode callback: it verifies the state with the shared
// credentials, takes the account from it (signed, never from an unsigned parameter) and
// completes the consent with that account's keeper. It returns the account, "" when the
// state did not verify.
func (a *Accounts) CompleteConsent(ctx context.Context, state string, code Secret) (string, Result, error) {
	if err := checkCode(code); err != nil {
		return "", Result{}, fmt.Errorf("consent: %w", err)
	}
	creds, err := a.cfg.shared.load(ctx)
	if err != nil {
		return "", Result{}, fmt.Errorf("consent: load credentials: %w", err)
	}
	ttl := a.cfg.StateTTL
	now := time.Now
	if a.cfg.Now != nil {
		now = a.cfg.Now
	}
	claims, err := newStateSigner(stateKeyFromClientSecret(creds.ClientSecret), ttl).Verify(state, now())
	if err != nil {
		return "", Result{}, fmt.Errorf("consent: %w", err)
	}
	if claims.Account == "" {
		return "", Result{}, fmt.Errorf("consent: %w: the link was minted for a single-account deployment", errStateMalformed)
	}
	k, err := a.Keeper(claims.Account)
	if err != nil {
		return "", Result{}, fmt.Errorf("consent: %w", err)
	}
	res, err := k.CompleteConsent(ctx, state, code)
	return claims.Account, res, err
}

// emptyStore lets NewAccounts check a configuration before any account exists.
type emptyStore struct{}

func (emptyStore) LoadCredentials(context.Context) (Credentials, error) {
	return Credentials{}, ErrNoCredentials
}
func (emptyStore) LoadPair(context.Context) (Versioned, error) {
	return Versioned{Pair: &Pair{}}, nil
}
func (emptyStore) CommitPair(context.Context, *Pair, string) (string, error) {
	return "", ErrConflict
}
func (emptyStore) PutAccess(context.Context, AccessToken) error { return nil }
func (emptyStore) LoadAccess(context.Context) (AccessToken, error) {
	return AccessToken{}, ErrNotFound
}
