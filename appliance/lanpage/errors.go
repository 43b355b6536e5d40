package lanpage

import "errors"

// Sentinel errors of the package; test with errors.Is.
var (
	// ErrNoNodeSource: Sources.Node is nil; the overview cannot work without it.
	ErrNoNodeSource = errors.New("lanpage: Sources.Node is required")
	// ErrBadPasswordHash: the steward password hash is not bcrypt or argon2id PHC.
	ErrBadPasswordHash = errors.New("lanpage: bad steward password hash")
	// ErrBadInput: a form or JSON body was malformed or invalid; the message names the field.
	ErrBadInput = errors.New("bad input")
	// ErrNotRunning: a subsystem's source is nil.
	ErrNotRunning = errors.New("subsystem not running")
	// ErrBadOption: an option value is out of range.
	ErrBadOption = errors.New("lanpage: bad option")
)
