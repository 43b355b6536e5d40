package ledger

import (
	"fmt"
)

// Fork is a portable proof that a member signed two incompatible entries of
// its own chain: two different entries at the same sequence number, or an
// entry whose prev hash does not match the member's entry just before it
// (which implies a second entry at that sequence number). Both entries carry
// complete, doubly signed transactions, so anyone can check the proof with
// nothing but the member's public key. A Fork is immutable once built.
type Fork struct {
	A Entry `json:"a"`
	B Entry `json:"b"`
}

// Fork kinds.
const (
	ForkSameSeq    = "same-seq"
	ForkBrokenLink = "broken-link"
)

// Author is the member the proof is against.
func (f *Fork) Author() MemberID { return f.A.Author }

// Seq is the sequence number of the first entry.
func (f *Fork) Seq() uint64 { return min(f.A.Seq, f.B.Seq) }

// Kind is ForkSameSeq or ForkBrokenLink (empty if the proof is invalid).
func (f *Fork) Kind() string {
	switch {
	case f.A.Author != f.B.Author || f.A.Tx == nil || f.B.Tx == nil:
		return ""
	case f.A.Seq == f.B.Seq && f.A.Hash() != f.B.Hash():
		return ForkSameSeq
	case f.B.Seq == f.A.Seq+1 && f.B.Prev != f.A.Hash():
		return ForkBrokenLink
	case f.A.Seq == f.B.Seq+1 && f.A.Prev != f.B.Hash():
		return ForkBrokenLink
	}
	return ""
}

// Verify checks that both entries are by the same author, fully signed, and
// incompatible. A nil error means the author double-spent.
func (f *Fork) Verify() error {
	if f.A.Tx == nil || f.B.Tx == nil {
		return fmt.Errorf("verify fork proof: missing entry: %w", ErrMalformed)
	}
	if f.A.Author != f.B.Author {
		return fmt.Errorf("verify fork proof: entries by %s and %s: %w", f.A.Author.Short(), f.B.Author.Short(), ErrNoFork)
	}
	for i, e := range []Entry{f.A, f.B} {
		if err := e.Verify(); err != nil {
			return fmt.Errorf("verify fork proof against %s: entry %d: %w", f.A.Author.Short(), i+1, err)
		}
	}
	if f.Kind() == "" {
		return fmt.Errorf("verify fork proof against %s: entries at seq %d and %d are compatible: %w", f.A.Author.Short(), f.A.Seq, f.B.Seq, ErrNoFork)
	}
	return nil
}

// MarshalBinary returns the canonical encoding of the proof.
func (f *Fork) MarshalBinary() ([]byte, error) {
	if f.A.Tx == nil || f.B.Tx == nil {
		return nil, fmt.Errorf("encode fork proof: missing entry: %w", ErrMalformed)
	}
	e := encoder{}
	e.u8(tagProof)
	e.u8(encVersion)
	e.b = f.A.appendTo(e.b)
	e.b = f.B.appendTo(e.b)
	return e.b, nil
}

// DecodeFork decodes a fork proof. It does not verify it: call Verify.
func DecodeFork(b []byte) (*Fork, error) {
	if len(b) > 2*MaxTxSize+256 {
		return nil, fmt.Errorf("decode fork proof: %d bytes: %w", len(b), ErrTooLarge)
	}
	d := decoder{what: "fork proof", b: b}
	d.expectTag(tagProof)
	f := &Fork{A: d.entry()}
	if d.err == nil {
		f.B = d.entry()
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return f, nil
}
