package vbctoken

// The OAuth client is the keeper's own; its tests drive it directly.
type (
	// Client is the keeper's VBC OAuth client, for tests.
	Client = client
)

// NewClient builds the keeper's VBC OAuth client, for tests.
var NewClient = newClient

// The consent-state signer is the keeper's own; its tests drive it directly.
type (
	StateSigner = stateSigner
	StateClaims = stateClaims
)

var (
	NewStateSigner           = newStateSigner
	StateKeyFromClientSecret = stateKeyFromClientSecret
	ErrStateMalformed        = errStateMalformed
	ErrStateTampered         = errStateTampered
)

// MaxStateLen is the longest state Verify decodes.
const MaxStateLen = maxStateLen
