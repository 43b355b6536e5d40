package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Stream messages: a 4-byte big-endian length n, then n bytes: one type byte
// and the payload. n is bounded by MaxMessageSize; a larger length is
// refused before anything is allocated.

// MaxMessageSize bounds one stream message (type byte + payload).
const MaxMessageSize = 1 << 20

// ProtocolID names the stream protocols, for libp2p stream handlers.
const (
	SyncProtocolID        = "/hypha/ledger/sync/1"
	CountersignProtocolID = "/hypha/ledger/countersign/1"
)

const protoName = "hypha-ledger/1"

// Message types.
const (
	msgHello      byte = 'h'
	msgSummary    byte = 's'
	msgSummaryEnd byte = 'S'
	msgTxs        byte = 't'
	msgProofs     byte = 'f'
	msgDone       byte = 'd'
	msgError      byte = 'x'
	msgProposal   byte = 'p'
	msgSigned     byte = 'g'
	msgReject     byte = 'r'
)

// Hello kinds.
const (
	kindSync        byte = 1
	kindCountersign byte = 2
)

func writeMsg(w io.Writer, typ byte, payload []byte) error {
	if len(payload)+1 > MaxMessageSize {
		return fmt.Errorf("write message %q: %d bytes: %w", typ, len(payload)+1, ErrTooLarge)
	}
	buf := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)+1))
	buf[4] = typ
	buf = append(buf, payload...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write message %q: %w", typ, err)
	}
	return nil
}

func readMsg(r io.Reader) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("read message: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return 0, nil, fmt.Errorf("read message: empty: %w", ErrMalformed)
	}
	if n > MaxMessageSize {
		return 0, nil, fmt.Errorf("read message: length %d above %d: %w", n, MaxMessageSize, ErrTooLarge)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("read message: %w", err)
	}
	return buf[0], buf[1:], nil
}

// hello opens both protocols: protocol name, kind, sender id and the
// sender's own chain head.
type hello struct {
	Kind   byte
	Member MemberID
	Head   Head
}

func (h hello) encode() []byte {
	e := encoder{}
	e.str(protoName)
	e.u8(h.Kind)
	e.raw(h.Member[:])
	e.u64(h.Head.Seq)
	e.raw(h.Head.Hash[:])
	return e.b
}

func decodeHello(b []byte) (hello, error) {
	d := decoder{what: "hello", b: b}
	var h hello
	if p := d.str("protocol"); d.err == nil && p != protoName {
		d.fail("protocol %q, want %q", p, protoName)
	}
	h.Kind = d.u8("kind")
	if d.err == nil && h.Kind != kindSync && h.Kind != kindCountersign {
		d.fail("unknown kind %d", h.Kind)
	}
	h.Member = d.id32("member")
	h.Head.Seq = d.u64("head seq")
	h.Head.Hash = d.id32("head hash")
	return h, d.finish()
}

// remote error codes, so the other side can errors.Is them.
var errCodes = []error{ErrMalformed, ErrBadSignature, ErrInvalid, ErrWrongPrev, ErrLimit, ErrExpired,
	ErrQuarantined, ErrChainLocked, ErrPrice, ErrNotParty, ErrTooLarge, ErrProtocol, ErrClosed, ErrNotApproved}

func encodeRemoteError(err error) []byte {
	code := byte(0)
	for i, s := range errCodes {
		if errors.Is(err, s) {
			code = byte(i + 1)
			break
		}
	}
	e := encoder{}
	e.u8(code)
	msg := err.Error()
	if len(msg) > MaxStringLen {
		msg = msg[:MaxStringLen]
	}
	for len(msg) > 0 && !validUTF8(msg) {
		msg = msg[:len(msg)-1]
	}
	e.str(msg)
	return e.b
}

// remoteError is an error reported by the other side of a stream.
type remoteError struct {
	code error
	msg  string
}

func (r *remoteError) Error() string { return "peer: " + r.msg }
func (r *remoteError) Unwrap() error { return r.code }

func decodeRemoteError(b []byte) error {
	d := decoder{what: "error message", b: b}
	code := d.u8("code")
	msg := d.str("text")
	if err := d.finish(); err != nil {
		return err
	}
	re := &remoteError{msg: msg, code: ErrProtocol}
	if code >= 1 && int(code) <= len(errCodes) {
		re.code = errCodes[code-1]
	}
	return re
}

// watchStream applies ctx to rw: its deadline (if rw has SetDeadline) and,
// on cancellation, closing rw (if it is an io.Closer) so blocked reads and
// writes return. The returned stop function must be called.
func watchStream(ctx context.Context, rw io.ReadWriter) (stop func()) {
	type deadliner interface{ SetDeadline(time.Time) error }
	d, hasDeadline := rw.(deadliner)
	if dl, ok := ctx.Deadline(); ok && hasDeadline {
		_ = d.SetDeadline(dl)
	} else {
		hasDeadline = false
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			if c, ok := rw.(io.Closer); ok {
				_ = c.Close()
			}
		case <-done:
		}
	}()
	return func() {
		close(done)
		if hasDeadline {
			_ = d.SetDeadline(time.Time{})
		}
	}
}
