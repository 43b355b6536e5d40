package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Pay runs the countersigning exchange as proposer over a fresh stream to
// the counterparty (the other party named in terms), which runs
// ServeCountersign:
//
//	proposer -> hello{countersign, id, head}
//	          <- hello{countersign, id, head}     (the counterparty's head)
//	proposer -> proposal (signed by the proposer)
//	          <- signed tx | reject{code, reason}
//
// The counterparty appends before answering; Pay appends the countersigned
// transaction and returns it. On a rejection the proposal is cancelled and
// the error wraps ErrRejected and the reason's sentinel (ErrLimit,
// ErrPrice, ErrWrongPrev, ErrChainLocked...). If the stream fails after the
// proposal was sent, the chain stays locked until the proposal expires (plus
// grace) or the completed transaction arrives by sync. A node runs one
// exchange at a time as proposer: a concurrent Pay fails fast with
// ErrChainLocked (retry or queue). ctx bounds the
// exchange (its deadline is applied to rw if rw has SetDeadline; on
// cancellation rw is closed if it is an io.Closer).
func (n *Node) Pay(ctx context.Context, rw io.ReadWriter, terms Terms) (*Tx, error) {
	stop := watchStream(ctx, rw)
	defer stop()
	cp := terms.Payee
	if cp == n.id {
		cp = terms.Payer
	}
	myHead, err := n.Head(n.id)
	if err != nil {
		return nil, fmt.Errorf("pay: %w", err)
	}
	if err := writeMsg(rw, msgHello, hello{Kind: kindCountersign, Member: n.id, Head: myHead}.encode()); err != nil {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), err)
	}
	typ, payload, err := readMsg(rw)
	if err != nil {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), ctxErr(ctx, err))
	}
	if typ == msgError {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), decodeRemoteError(payload))
	}
	if typ != msgHello {
		return nil, fmt.Errorf("pay %s: got message %q, want hello: %w", cp.Short(), typ, ErrProtocol)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), err)
	}
	if h.Member != cp {
		return nil, fmt.Errorf("pay %s: stream reaches member %s: %w", cp.Short(), h.Member.Short(), ErrProtocol)
	}
	p, err := n.Propose(terms, h.Head)
	if err != nil {
		_ = writeMsg(rw, msgError, encodeRemoteError(err))
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), err)
	}
	raw, _ := p.MarshalBinary()
	if err := writeMsg(rw, msgProposal, raw); err != nil {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), err)
	}
	typ, payload, err = readMsg(rw)
	if err != nil {
		return nil, fmt.Errorf("pay %s: proposal %s outstanding: %w", cp.Short(), p.Body.ID().String()[:8], ctxErr(ctx, err))
	}
	switch typ {
	case msgReject, msgError:
		rerr := decodeRemoteError(payload)
		if cerr := n.CancelPending(); cerr != nil {
			return nil, fmt.Errorf("pay %s: %w: %w (and cancel: %v)", cp.Short(), ErrRejected, rerr, cerr)
		}
		return nil, fmt.Errorf("pay %s: %w: %w", cp.Short(), ErrRejected, rerr)
	case msgSigned:
	default:
		return nil, fmt.Errorf("pay %s: got message %q, want signed tx: %w", cp.Short(), typ, ErrProtocol)
	}
	t, err := DecodeTx(payload)
	if err != nil {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), err)
	}
	if t.ID() != p.Body.ID() {
		return nil, fmt.Errorf("pay %s: countersigned tx %s is not proposal %s: %w", cp.Short(), t.ID().String()[:8], p.Body.ID().String()[:8], ErrProtocol)
	}
	if err := n.Complete(t); err != nil {
		return nil, fmt.Errorf("pay %s: %w", cp.Short(), err)
	}
	return t, nil
}

// ServeCountersign answers one countersigning exchange on rw (see Pay): it
// countersigns the proposal if the community rules, this node's limits and
// policy allow, appends it and sends it back; otherwise it sends the reason.
// The returned error is nil when a transaction was countersigned, and wraps
// the reason for a refusal. The caller closes rw.
func (n *Node) ServeCountersign(ctx context.Context, rw io.ReadWriter) (*Tx, error) {
	stop := watchStream(ctx, rw)
	defer stop()
	typ, payload, err := readMsg(rw)
	if err != nil {
		return nil, fmt.Errorf("serve countersign: %w", ctxErr(ctx, err))
	}
	if typ != msgHello {
		return nil, fmt.Errorf("serve countersign: got message %q, want hello: %w", typ, ErrProtocol)
	}
	h, err := decodeHello(payload)
	if err == nil && h.Kind != kindCountersign {
		err = fmt.Errorf("hello kind %d on countersign stream: %w", h.Kind, ErrProtocol)
	}
	if err != nil {
		_ = writeMsg(rw, msgError, encodeRemoteError(err))
		return nil, fmt.Errorf("serve countersign: %w", err)
	}
	head, err := n.Head(n.id)
	if err != nil {
		return nil, fmt.Errorf("serve countersign: %w", err)
	}
	if err := writeMsg(rw, msgHello, hello{Kind: kindCountersign, Member: n.id, Head: head}.encode()); err != nil {
		return nil, fmt.Errorf("serve countersign: %w", err)
	}
	typ, payload, err = readMsg(rw)
	if err != nil {
		return nil, fmt.Errorf("serve countersign %s: %w", h.Member.Short(), ctxErr(ctx, err))
	}
	if typ == msgError {
		return nil, fmt.Errorf("serve countersign %s: %w", h.Member.Short(), decodeRemoteError(payload))
	}
	if typ != msgProposal {
		return nil, fmt.Errorf("serve countersign %s: got message %q, want proposal: %w", h.Member.Short(), typ, ErrProtocol)
	}
	p, err := DecodeProposal(payload)
	if err == nil && p.Proposer != h.Member {
		err = fmt.Errorf("proposal signed by %s on a stream from %s: %w", p.Proposer.Short(), h.Member.Short(), ErrProtocol)
	}
	var t *Tx
	if err == nil {
		t, err = n.Countersign(p)
	}
	if err != nil {
		_ = writeMsg(rw, msgReject, encodeRemoteError(err))
		return nil, fmt.Errorf("serve countersign %s: %w", h.Member.Short(), err)
	}
	raw, _ := t.MarshalBinary()
	if err := writeMsg(rw, msgSigned, raw); err != nil {
		// Appended here; the proposer learns it by sync.
		return t, fmt.Errorf("serve countersign %s: tx %s appended, reply lost: %w", h.Member.Short(), t.ID().String()[:8], err)
	}
	return t, nil
}

// ctxErr prefers the context's error when the stream failed because the
// context ended.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
