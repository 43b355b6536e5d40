package clove

import "errors"

// Sentinel errors of the package. Callers test them with errors.Is; every
// error returned by this package that concerns bad input wraps one of them
// and names the input and what was wrong with it.
var (
	// ErrParams: a Params field is out of range.
	ErrParams = errors.New("invalid clove parameters")
	// ErrMalformed: bytes that claim to be a clove, packet, frame or reply
	// are not well formed (bad version, length, field value).
	ErrMalformed = errors.New("malformed")
	// ErrNotEnough: fewer than k usable cloves were given to Combine.
	ErrNotEnough = errors.New("not enough cloves")
	// ErrTampered: authentication failed (AEAD tag, inconsistent cloves):
	// the bytes were modified or do not belong together.
	ErrTampered = errors.New("authentication failed")
	// ErrReplay: a packet whose replay tag was already seen.
	ErrReplay = errors.New("replayed packet")
	// ErrExpired: a packet or reply arrived after its deadline.
	ErrExpired = errors.New("expired")
	// ErrUnknownSession: a reply arrived for a session this node does not
	// hold (never existed, expired or already answered).
	ErrUnknownSession = errors.New("unknown session")
	// ErrNoPaths: the membership view has too few relays for n disjoint
	// paths of L hops.
	ErrNoPaths = errors.New("not enough relays for disjoint paths")
	// ErrUnknownPeer: the destination or a relay is not in the membership
	// view, or its key signature does not verify.
	ErrUnknownPeer = errors.New("unknown or unverified peer")
	// ErrTooLarge: a message does not fit in the largest packet.
	ErrTooLarge = errors.New("message too large")
	// ErrBusy: a table (sessions, replay tags) is full; the packet is dropped.
	ErrBusy = errors.New("too many sessions")
	// ErrRemote: the serving node's handler returned an error; its text follows.
	ErrRemote = errors.New("remote handler error")
	// ErrNotServing: a request was delivered to a node without a Handler.
	ErrNotServing = errors.New("this node serves no requests")
	// ErrClosed: the Node was closed.
	ErrClosed = errors.New("clove node closed")
)
