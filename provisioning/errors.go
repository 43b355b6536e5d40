package provisioning

import "errors"

// Sentinel errors of the provisioning package. Every error returned by this
// package that falls into one of these classes wraps the sentinel, so callers
// test with errors.Is; the wrapping message names the input and what was wrong.
var (
	// ErrMalformed: bytes that do not decode (bad JSON, bad base64, bad PSK
	// header, wrong key length, unknown fields, ...).
	ErrMalformed = errors.New("malformed input")
	// ErrInvalid: a manifest or invite that decodes but breaks a rule
	// (missing name, threshold larger than the steward set, n < k, ...).
	ErrInvalid = errors.New("invalid content")
	// ErrUnsupportedVersion: a schema version this build does not know.
	ErrUnsupportedVersion = errors.New("unsupported version")
	// ErrBadSignature: a signature does not verify, or comes from a key that
	// is not a steward of the manifest it claims to authorise.
	ErrBadSignature = errors.New("bad signature")
	// ErrNotEnoughSignatures: fewer valid steward signatures than the
	// threshold the manifest requires.
	ErrNotEnoughSignatures = errors.New("not enough steward signatures")
	// ErrStale: a manifest update whose serial is not newer than the
	// manifest it would replace (replayed or rolled-back update).
	ErrStale = errors.New("stale manifest")
	// ErrWrongCommunity: a manifest or invite of another community.
	ErrWrongCommunity = errors.New("wrong community")
	// ErrExpired: an invite used after its expiry (or before its issue time).
	ErrExpired = errors.New("invite expired")
	// ErrBadPassword: the steward password does not match its hash.
	ErrBadPassword = errors.New("wrong steward password")
	// ErrExists: init would overwrite an existing community directory.
	ErrExists = errors.New("already exists")
	// ErrNotProvisioned: /perm holds no community (a blank box). hyphad
	// should show the LAN page in "not provisioned" mode rather than crash.
	ErrNotProvisioned = errors.New("no community provisioned")
	// ErrKeyEncrypted: the steward key file is encrypted and no
	// passphrase was given.
	ErrKeyEncrypted = errors.New("steward key is encrypted: passphrase needed")
	// ErrBadPassphrase: the passphrase does not open the steward key.
	ErrBadPassphrase = errors.New("wrong steward key passphrase")
	// ErrReplayed: an invite that was already redeemed on this box.
	ErrReplayed = errors.New("invite already used")
	// ErrNoPending: sign was asked for but no update is waiting.
	ErrNoPending = errors.New("no pending manifest update")
)
