package ledger

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Canonical encoding. Every field has a fixed order and a fixed-width or
// explicitly length-prefixed representation, so one value has exactly one
// encoding: hashes and signatures are deterministic. Decoders are strict:
// they reject truncation, trailing bytes, over-long strings, invalid UTF-8,
// non-finite floats and booleans other than 0/1, so a decoded value
// re-encodes to the same bytes.

const (
	encVersion = 1

	tagBody     = 'B'
	tagTx       = 'T'
	tagProposal = 'P'
	tagEntry    = 'E'
	tagProof    = 'F'

	// MaxStringLen bounds every string field (bytes).
	MaxStringLen = 256
	// MaxObservations bounds the observations attached to one transaction.
	MaxObservations = 64
	// MaxTxSize bounds the encoding of one transaction.
	MaxTxSize = 64 << 10

	sigSize = 64
)

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)  { e.u64(uint64(v)) }
func (e *encoder) raw(v []byte) { e.b = append(e.b, v...) }
func (e *encoder) str(s string) {
	if len(s) > MaxStringLen {
		s = s[:MaxStringLen] // Validate rejects these before signing; never reached for decoded values
	}
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) sig(s []byte) {
	var buf [sigSize]byte
	copy(buf[:], s)
	e.raw(buf[:])
}
func (e *encoder) ms(t time.Time) { e.i64(t.UnixMilli()) }
func (e *encoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

type decoder struct {
	what string // what is being decoded, for errors
	b    []byte
	off  int
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s at byte %d: %s: %w", d.what, d.off, fmt.Sprintf(format, args...), ErrMalformed)
	}
}

func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("%s: truncated (need %d bytes, have %d)", field, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8(field string) uint8 {
	v := d.take(1, field)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) u16(field string) uint16 {
	v := d.take(2, field)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (d *decoder) u64(field string) uint64 {
	v := d.take(8, field)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (d *decoder) i64(field string) int64 { return int64(d.u64(field)) }

func (d *decoder) id32(field string) (out [32]byte) {
	copy(out[:], d.take(32, field))
	return out
}

func (d *decoder) sig(field string) []byte {
	v := d.take(sigSize, field)
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) str(field string) string {
	n := int(d.u16(field + " length"))
	if d.err == nil && n > MaxStringLen {
		d.fail("%s: length %d above %d", field, n, MaxStringLen)
		return ""
	}
	v := d.take(n, field)
	if d.err == nil && !utf8.Valid(v) {
		d.fail("%s: invalid UTF-8", field)
		return ""
	}
	return string(v)
}

func (d *decoder) boolean(field string) bool {
	v := d.u8(field)
	if d.err == nil && v > 1 {
		d.fail("%s: boolean byte %d", field, v)
	}
	return v == 1
}

func (d *decoder) ms(field string) time.Time {
	v := d.i64(field)
	return time.UnixMilli(v).UTC()
}

func (d *decoder) expectTag(tag byte) {
	if got := d.u8("tag"); d.err == nil && got != tag {
		d.fail("tag %q, want %q", got, tag)
	}
	if v := d.u8("version"); d.err == nil && v != encVersion {
		d.fail("version %d, want %d", v, encVersion)
	}
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}

// encode appends the canonical encoding of b.
func (b *Body) encode(dst []byte) []byte {
	e := encoder{dst}
	e.u8(tagBody)
	e.u8(encVersion)
	e.raw(b.Payer[:])
	e.raw(b.Payee[:])
	e.u64(b.PayerPos.Seq)
	e.raw(b.PayerPos.Prev[:])
	e.u64(b.PayeePos.Seq)
	e.raw(b.PayeePos.Prev[:])
	e.i64(b.Amount)
	e.i64(b.Fee)
	e.raw(b.Commons[:])
	e.str(b.Unit)
	e.str(b.Purpose)
	e.str(b.Bioregion)
	e.ms(b.Created)
	e.ms(b.Expires)
	e.raw(b.Corrects[:])
	n := len(b.Observations)
	if n > MaxObservations {
		n = MaxObservations
	}
	e.u16(uint16(n))
	for _, o := range b.Observations[:n] {
		e.str(o.Property)
		e.u64(math.Float64bits(o.Value))
		e.str(o.Unit)
		e.ms(o.Time)
		e.str(o.SensorID)
		e.boolean(o.Simulated)
	}
	if b.Receipt == nil {
		e.u8(0)
	} else {
		e.u8(1)
		e.str(b.Receipt.ModelHash)
		e.u64(b.Receipt.TokensIn)
		e.u64(b.Receipt.TokensOut)
		e.u64(b.Receipt.MilliJoules)
	}
	return e.b
}

func (d *decoder) body() Body {
	var b Body
	d.expectTag(tagBody)
	b.Payer = d.id32("payer")
	b.Payee = d.id32("payee")
	b.PayerPos.Seq = d.u64("payer seq")
	b.PayerPos.Prev = d.id32("payer prev")
	b.PayeePos.Seq = d.u64("payee seq")
	b.PayeePos.Prev = d.id32("payee prev")
	b.Amount = d.i64("amount")
	b.Fee = d.i64("fee")
	b.Commons = d.id32("commons")
	b.Unit = d.str("unit")
	b.Purpose = d.str("purpose")
	b.Bioregion = d.str("bioregion")
	b.Created = d.ms("created")
	b.Expires = d.ms("expires")
	b.Corrects = d.id32("corrects")
	n := int(d.u16("observation count"))
	if d.err == nil && n > MaxObservations {
		d.fail("observation count %d above %d", n, MaxObservations)
	}
	if d.err == nil && n > 0 {
		b.Observations = make([]Observation, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var o Observation
		o.Property = d.str("observation property")
		o.Value = math.Float64frombits(d.u64("observation value"))
		if d.err == nil && (math.IsNaN(o.Value) || math.IsInf(o.Value, 0)) {
			d.fail("observation %d value is not finite", i)
		}
		o.Unit = d.str("observation unit")
		o.Time = d.ms("observation time")
		o.SensorID = d.str("observation sensor")
		o.Simulated = d.boolean("observation simulated")
		b.Observations = append(b.Observations, o)
	}
	switch d.u8("receipt flag") {
	case 0:
	case 1:
		r := &Receipt{}
		r.ModelHash = d.str("receipt model hash")
		r.TokensIn = d.u64("receipt tokens in")
		r.TokensOut = d.u64("receipt tokens out")
		r.MilliJoules = d.u64("receipt millijoules")
		b.Receipt = r
	default:
		d.fail("receipt flag not 0 or 1")
	}
	return b
}

// checkEncodable reports fields the canonical encoding cannot represent
// (they would be truncated), so a body is rejected before it is signed.
func (b *Body) checkEncodable() error {
	strs := []struct{ name, v string }{{"unit", b.Unit}, {"purpose", b.Purpose}, {"bioregion", b.Bioregion}}
	for _, o := range b.Observations {
		strs = append(strs, struct{ name, v string }{"observation property", o.Property},
			struct{ name, v string }{"observation unit", o.Unit}, struct{ name, v string }{"observation sensor", o.SensorID})
		if math.IsNaN(o.Value) || math.IsInf(o.Value, 0) {
			return fmt.Errorf("encode tx: observation %q value %v is not finite: %w", o.Property, o.Value, ErrInvalid)
		}
	}
	if b.Receipt != nil {
		strs = append(strs, struct{ name, v string }{"receipt model hash", b.Receipt.ModelHash})
	}
	for _, s := range strs {
		if len(s.v) > MaxStringLen {
			return fmt.Errorf("encode tx: %s is %d bytes, above %d: %w", s.name, len(s.v), MaxStringLen, ErrInvalid)
		}
		if !utf8.ValidString(s.v) {
			return fmt.Errorf("encode tx: %s is not valid UTF-8: %w", s.name, ErrInvalid)
		}
	}
	if len(b.Observations) > MaxObservations {
		return fmt.Errorf("encode tx: %d observations, above %d: %w", len(b.Observations), MaxObservations, ErrInvalid)
	}
	return nil
}

// normalize truncates times to the millisecond in UTC, the precision the
// canonical encoding keeps, so a body compares equal to its decoded copy.
func (b *Body) normalize() {
	b.Created = time.UnixMilli(b.Created.UnixMilli()).UTC()
	b.Expires = time.UnixMilli(b.Expires.UnixMilli()).UTC()
	for i := range b.Observations {
		b.Observations[i].Time = time.UnixMilli(b.Observations[i].Time.UnixMilli()).UTC()
	}
}

// MarshalBinary returns the canonical encoding of the body.
func (b *Body) MarshalBinary() ([]byte, error) { return b.encode(nil), nil }

// MarshalBinary returns the canonical encoding of the transaction.
func (t *Tx) MarshalBinary() ([]byte, error) { return t.appendTo(nil), nil }

func (t *Tx) appendTo(dst []byte) []byte {
	e := encoder{dst}
	e.u8(tagTx)
	e.u8(encVersion)
	e.b = t.Body.encode(e.b)
	e.sig(t.PayerSig)
	e.sig(t.PayeeSig)
	return e.b
}

func (d *decoder) tx() *Tx {
	d.expectTag(tagTx)
	t := &Tx{Body: d.body()}
	t.PayerSig = d.sig("payer signature")
	t.PayeeSig = d.sig("payee signature")
	return t
}

// DecodeTx decodes a canonically encoded transaction. It does not verify
// signatures: call Verify.
func DecodeTx(b []byte) (*Tx, error) {
	if len(b) > MaxTxSize {
		return nil, fmt.Errorf("decode tx: %d bytes above %d: %w", len(b), MaxTxSize, ErrTooLarge)
	}
	d := decoder{what: "tx", b: b}
	t := d.tx()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return t, nil
}

// MarshalBinary returns the canonical encoding of the proposal.
func (p *Proposal) MarshalBinary() ([]byte, error) {
	e := encoder{}
	e.u8(tagProposal)
	e.u8(encVersion)
	e.b = p.Body.encode(e.b)
	e.raw(p.Proposer[:])
	e.sig(p.Sig)
	return e.b, nil
}

// DecodeProposal decodes a proposal. It does not verify the signature: call
// Verify.
func DecodeProposal(b []byte) (*Proposal, error) {
	if len(b) > MaxTxSize {
		return nil, fmt.Errorf("decode proposal: %d bytes above %d: %w", len(b), MaxTxSize, ErrTooLarge)
	}
	d := decoder{what: "proposal", b: b}
	d.expectTag(tagProposal)
	p := &Proposal{Body: d.body()}
	p.Proposer = d.id32("proposer")
	p.Sig = d.sig("proposer signature")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return p, nil
}

// MarshalBinary returns the canonical encoding of the entry: its author and
// the transaction (the position is the transaction's position for author).
func (e Entry) MarshalBinary() ([]byte, error) {
	if e.Tx == nil {
		return nil, fmt.Errorf("encode entry: no transaction: %w", ErrMalformed)
	}
	return e.appendTo(nil), nil
}

func (e Entry) appendTo(dst []byte) []byte {
	enc := encoder{dst}
	enc.u8(tagEntry)
	enc.u8(encVersion)
	enc.raw(e.Author[:])
	enc.b = e.Tx.appendTo(enc.b)
	return enc.b
}

func (d *decoder) entry() Entry {
	d.expectTag(tagEntry)
	author := MemberID(d.id32("author"))
	t := d.tx()
	if d.err != nil {
		return Entry{}
	}
	pos, ok := t.Body.PosOf(author)
	if !ok {
		d.fail("author %s is neither payer nor payee", author.Short())
		return Entry{}
	}
	return Entry{Author: author, Seq: pos.Seq, Prev: pos.Prev, Tx: t}
}

// DecodeEntry decodes an entry. It does not verify signatures: call Verify.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) > MaxTxSize+64 {
		return Entry{}, fmt.Errorf("decode entry: %d bytes: %w", len(b), ErrTooLarge)
	}
	d := decoder{what: "entry", b: b}
	e := d.entry()
	if err := d.finish(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

func validUTF8(s string) bool { return utf8.ValidString(s) }
