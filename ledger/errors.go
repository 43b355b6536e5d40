package ledger

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these where it
// applies; test with errors.Is.
var (
	// ErrMalformed: bytes that do not decode as the expected structure
	// (truncated, trailing bytes, bad lengths, out-of-range values).
	ErrMalformed = errors.New("malformed input")
	// ErrBadSignature: a signature does not verify under the claimed key.
	ErrBadSignature = errors.New("bad signature")
	// ErrInvalid: a well-formed transaction that breaks a structural rule
	// (non-positive amount, payer == payee, seq 0, first entry with a
	// non-zero prev hash...).
	ErrInvalid = errors.New("invalid transaction")
	// ErrWrongPrev: a transaction does not extend the chain head it must
	// extend (stale or forged previous hash / sequence number).
	ErrWrongPrev = errors.New("wrong previous chain head")
	// ErrLimit: the transaction would take a balance outside the member's
	// credit limits.
	ErrLimit = errors.New("credit limit exceeded")
	// ErrExpired: a proposal is past its expiry time.
	ErrExpired = errors.New("proposal expired")
	// ErrQuarantined: the member has a proven fork; no countersigning.
	ErrQuarantined = errors.New("member quarantined")
	// ErrChainLocked: this node has an outstanding proposal and will not sign
	// anything else until it completes or expires.
	ErrChainLocked = errors.New("chain locked by an outstanding proposal")
	// ErrRejected: the counterparty refused to countersign (its reason is in
	// the wrapped message).
	ErrRejected = errors.New("proposal rejected by counterparty")
	// ErrPrice: the amount of a service transaction does not match the
	// community's pricing rule.
	ErrPrice = errors.New("price does not match pricing rule")
	// ErrNotApproved: a payment proposed by the payee that no policy of the
	// payer approved (see WithPolicy and Approvals).
	ErrNotApproved = errors.New("payment not approved by the payer")
	// ErrNotParty: the node is neither payer nor payee of the transaction.
	ErrNotParty = errors.New("node is not a party to the transaction")
	// ErrTooLarge: a stream message exceeds the size bound.
	ErrTooLarge = errors.New("message too large")
	// ErrProtocol: an unexpected message on a stream.
	ErrProtocol = errors.New("protocol violation")
	// ErrNotFound: no such transaction or entry.
	ErrNotFound = errors.New("not found")
	// ErrNoFork: a claimed fork proof does not show a fork.
	ErrNoFork = errors.New("not a fork")
	// ErrClosed: the node has been closed.
	ErrClosed = errors.New("ledger closed")
	// ErrCorrupt: the store failed a consistency check.
	ErrCorrupt = errors.New("store inconsistent")
)
