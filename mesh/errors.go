package mesh

import "errors"

// Sentinel errors of package mesh. Callers compare with errors.Is; the
// returned errors wrap these with the operation and the offending input.
var (
	// ErrClosed is returned by methods of a Node after Close.
	ErrClosed = errors.New("mesh: node closed")
	// ErrBadConfig reports an invalid Config field.
	ErrBadConfig = errors.New("mesh: bad config")
	// ErrBadMessage reports bytes from the network that do not decode to a
	// valid mesh message (announcement, envelope or sync message).
	ErrBadMessage = errors.New("mesh: bad message")
	// ErrBadSignature reports an announcement whose signature does not
	// verify against the key of the peer that claims to have sent it.
	ErrBadSignature = errors.New("mesh: bad signature")
	// ErrTooLarge reports a message over the size limit of its kind.
	ErrTooLarge = errors.New("mesh: message too large")
)
