package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// MemberID identifies a member: its ed25519 public key.
type MemberID [ed25519.PublicKeySize]byte

// Hash is a SHA-256 digest (transaction ids, entry hashes, chain heads).
type Hash [sha256.Size]byte

// ZeroHash is the previous-hash of a member's first entry.
var ZeroHash Hash

// MemberOf returns the member id of an ed25519 public key.
func MemberOf(pub ed25519.PublicKey) MemberID {
	var m MemberID
	copy(m[:], pub)
	return m
}

// PublicKey returns the member's ed25519 public key.
func (m MemberID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(m[:]) }

// String is the lowercase hex of the key.
func (m MemberID) String() string { return hex.EncodeToString(m[:]) }

// Short is the first 8 hex digits, for logs and tables.
func (m MemberID) Short() string { return hex.EncodeToString(m[:4]) }

// IsZero reports whether m is the zero id (no member).
func (m MemberID) IsZero() bool { return m == MemberID{} }

// MarshalText encodes the id as hex (JSON keys and values).
func (m MemberID) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText decodes a hex id.
func (m *MemberID) UnmarshalText(b []byte) error { return decodeHex32("member id", b, (*[32]byte)(m)) }

// ParseMemberID decodes a hex member id.
func ParseMemberID(s string) (MemberID, error) {
	var m MemberID
	err := m.UnmarshalText([]byte(s))
	return m, err
}

// String is the lowercase hex of the hash.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error { return decodeHex32("hash", b, (*[32]byte)(h)) }

func decodeHex32(what string, b []byte, out *[32]byte) error {
	if len(b) != 64 {
		return fmt.Errorf("decode %s %q: want 64 hex digits, got %d: %w", what, b, len(b), ErrMalformed)
	}
	if _, err := hex.Decode(out[:], b); err != nil {
		return fmt.Errorf("decode %s %q: %v: %w", what, b, err, ErrMalformed)
	}
	return nil
}

// Observation is one sensor reading attached to a transaction (the ecological
// situation of the moment). Units are UCUM codes ("Cel", "%", "W", "hPa",
// "kW.h"). Value must be finite.
type Observation struct {
	Property  string    `json:"property"` // observed property, e.g. "solar_power", "battery_soc"
	Value     float64   `json:"value"`
	Unit      string    `json:"unit"` // UCUM
	Time      time.Time `json:"time"` // phenomenon time, millisecond precision
	SensorID  string    `json:"sensor"`
	Simulated bool      `json:"simulated"`
}

// Receipt is the inference receipt of a served request.
type Receipt struct {
	ModelHash   string `json:"model_hash"` // e.g. "sha256:…" of the GGUF file
	TokensIn    uint64 `json:"tokens_in"`
	TokensOut   uint64 `json:"tokens_out"`
	MilliJoules uint64 `json:"millijoules"` // energy spent serving, in mJ
}

// Position is a member's place in its own chain: the sequence number an
// entry takes and the hash of the entry before it (ZeroHash for seq 1).
type Position struct {
	Seq  uint64 `json:"seq"`
	Prev Hash   `json:"prev"`
}

// Head is the head of a member's chain as seen by a node: the highest
// sequence number up to which the chain is contiguous and the hash of that
// entry. The empty chain has Seq 0 and ZeroHash; its next entry is Seq 1.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash Hash   `json:"hash"`
}

// Next is the position an entry appended after h takes.
func (h Head) Next() Position { return Position{Seq: h.Seq + 1, Prev: h.Hash} }

// Body is the signed content of a transaction. Amounts are integer
// milli-units of Unit. Times are kept with millisecond precision (the
// canonical encoding stores Unix milliseconds).
type Body struct {
	Payer     MemberID  `json:"payer"`
	Payee     MemberID  `json:"payee"`
	PayerPos  Position  `json:"payer_pos"`
	PayeePos  Position  `json:"payee_pos"`
	Amount    int64     `json:"amount"` // milli-units, > 0, from payer to payee
	Fee       int64     `json:"fee"`    // milli-units, >= 0, from payer to Commons
	Commons   MemberID  `json:"commons"`
	Unit      string    `json:"unit"`
	Purpose   string    `json:"purpose"`
	Bioregion string    `json:"bioregion"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"` // a proposal is not countersigned after this
	// Corrects names the transaction this one compensates (ValueFlows
	// `corrects`); zero if none. Nothing is ever deleted.
	Corrects     Hash          `json:"corrects"`
	Observations []Observation `json:"observations,omitempty"`
	Receipt      *Receipt      `json:"receipt,omitempty"`
}

// PosOf returns the chain position the transaction takes in m's chain.
func (b *Body) PosOf(m MemberID) (Position, bool) {
	switch m {
	case b.Payer:
		return b.PayerPos, true
	case b.Payee:
		return b.PayeePos, true
	}
	return Position{}, false
}

// Counterparty returns the other party of the transaction.
func (b *Body) Counterparty(m MemberID) MemberID {
	if m == b.Payer {
		return b.Payee
	}
	return b.Payer
}

// Action is the ValueFlows action of the transaction: "deliverService" when
// it pays for a served inference (it carries a receipt), else "transfer".
func (b *Body) Action() string {
	if b.Receipt != nil {
		return "deliverService"
	}
	return "transfer"
}

// Delta returns how the transaction changes m's balance.
func (b *Body) Delta(m MemberID) int64 {
	var d int64
	if m == b.Payer {
		d -= b.Amount + b.Fee
	}
	if m == b.Payee {
		d += b.Amount
	}
	if b.Fee > 0 && m == b.Commons {
		d += b.Fee
	}
	return d
}

// Tx is a transaction with its signatures. A Tx whose both signatures verify
// is complete; it defines one Entry in each party's chain.
type Tx struct {
	Body     Body   `json:"body"`
	PayerSig []byte `json:"payer_sig"`
	PayeeSig []byte `json:"payee_sig"`
}

// Entry is one link of a member's chain: the entry the transaction takes in
// Author's chain.
type Entry struct {
	Author MemberID `json:"author"`
	Seq    uint64   `json:"seq"`
	Prev   Hash     `json:"prev"`
	Tx     *Tx      `json:"tx"`
}

// Domain separation prefixes for everything that is hashed or signed.
const (
	domainTx    = "hypha-ledger-v1/tx\x00"
	domainSig   = "hypha-ledger-v1/sig\x00"
	domainEntry = "hypha-ledger-v1/entry\x00"
)

// ID is the transaction id: SHA-256 over the canonical encoding of the body.
func (b *Body) ID() Hash {
	h := sha256.New()
	h.Write([]byte(domainTx))
	h.Write(b.encode(nil))
	var out Hash
	h.Sum(out[:0])
	return out
}

// ID is the id of the transaction's body.
func (t *Tx) ID() Hash { return t.Body.ID() }

// signMessage is what both parties sign: a domain prefix and the tx id.
func signMessage(id Hash) []byte {
	return append([]byte(domainSig), id[:]...)
}

// EntryHash computes the hash of the entry that a transaction with id txid
// takes at position pos in author's chain. It commits to the whole chain
// before it through pos.Prev.
func EntryHash(author MemberID, pos Position, txid Hash) Hash {
	var buf [len(domainEntry) + 32 + 8 + 32 + 32]byte
	n := copy(buf[:], domainEntry)
	n += copy(buf[n:], author[:])
	binary.BigEndian.PutUint64(buf[n:], pos.Seq)
	n += 8
	n += copy(buf[n:], pos.Prev[:])
	copy(buf[n:], txid[:])
	return sha256.Sum256(buf[:])
}

// EntryFor returns the entry t takes in m's chain.
func (t *Tx) EntryFor(m MemberID) (Entry, error) {
	pos, ok := t.Body.PosOf(m)
	if !ok {
		return Entry{}, fmt.Errorf("entry for %s in tx %s: %w", m.Short(), t.ID().String()[:8], ErrNotParty)
	}
	return Entry{Author: m, Seq: pos.Seq, Prev: pos.Prev, Tx: t}, nil
}

// Hash is the entry hash.
func (e Entry) Hash() Hash {
	return EntryHash(e.Author, Position{e.Seq, e.Prev}, e.Tx.ID())
}

// Verify checks that the entry is well-formed, that its position matches the
// transaction's, and that both signatures verify.
func (e Entry) Verify() error {
	if e.Tx == nil {
		return fmt.Errorf("verify entry: no transaction: %w", ErrMalformed)
	}
	pos, ok := e.Tx.Body.PosOf(e.Author)
	if !ok {
		return fmt.Errorf("verify entry by %s: %w", e.Author.Short(), ErrNotParty)
	}
	if pos.Seq != e.Seq || pos.Prev != e.Prev {
		return fmt.Errorf("verify entry by %s seq %d: transaction places it at seq %d: %w", e.Author.Short(), e.Seq, pos.Seq, ErrWrongPrev)
	}
	return e.Tx.Verify()
}

// Validate checks the structural rules of a body (no signatures involved).
func (b *Body) Validate() error {
	switch {
	case b.Payer == b.Payee:
		return fmt.Errorf("validate tx: payer and payee are the same member %s: %w", b.Payer.Short(), ErrInvalid)
	case b.Payer.IsZero() || b.Payee.IsZero():
		return fmt.Errorf("validate tx: zero member id: %w", ErrInvalid)
	case b.Amount <= 0:
		return fmt.Errorf("validate tx: amount %d milli-units is not positive: %w", b.Amount, ErrInvalid)
	case b.Fee < 0:
		return fmt.Errorf("validate tx: fee %d is negative: %w", b.Fee, ErrInvalid)
	case b.Fee > 0 && b.Commons.IsZero():
		return fmt.Errorf("validate tx: fee %d without commons account: %w", b.Fee, ErrInvalid)
	case b.Fee > 0 && (b.Commons == b.Payer || b.Commons == b.Payee):
		return fmt.Errorf("validate tx: fee %d to a party of the transaction (commons %s): %w", b.Fee, b.Commons.Short(), ErrInvalid)
	case b.Amount > maxAmount || b.Fee > maxAmount:
		return fmt.Errorf("validate tx: amount %d or fee %d above %d: %w", b.Amount, b.Fee, int64(maxAmount), ErrInvalid)
	case b.Unit == "":
		return fmt.Errorf("validate tx: empty unit: %w", ErrInvalid)
	}
	for _, p := range []struct {
		who string
		pos Position
	}{{"payer", b.PayerPos}, {"payee", b.PayeePos}} {
		if p.pos.Seq == 0 {
			return fmt.Errorf("validate tx: %s seq 0 (chains start at 1): %w", p.who, ErrInvalid)
		}
		if p.pos.Seq == 1 && !p.pos.Prev.IsZero() {
			return fmt.Errorf("validate tx: %s seq 1 with non-zero prev hash: %w", p.who, ErrWrongPrev)
		}
		if p.pos.Seq > 1 && p.pos.Prev.IsZero() {
			return fmt.Errorf("validate tx: %s seq %d with zero prev hash: %w", p.who, p.pos.Seq, ErrWrongPrev)
		}
	}
	if b.Created.UnixMilli() <= 0 {
		return fmt.Errorf("validate tx: created %v is not after 1970: %w", b.Created, ErrInvalid)
	}
	if !b.Expires.After(b.Created) {
		return fmt.Errorf("validate tx: expires %v not after created %v: %w", b.Expires, b.Created, ErrInvalid)
	}
	return nil
}

// maxAmount bounds amounts so sums of many never overflow int64
// (2^52 milli-units, about 4.5e12 units).
const maxAmount = 1 << 52

// Verify checks the body's structure and both signatures. A nil error means
// the transaction is complete and may be appended by anyone who holds it.
func (t *Tx) Verify() error {
	if err := t.Body.Validate(); err != nil {
		return err
	}
	id := t.ID()
	msg := signMessage(id)
	if len(t.PayerSig) != ed25519.SignatureSize || !ed25519.Verify(t.Body.Payer.PublicKey(), msg, t.PayerSig) {
		return fmt.Errorf("verify tx %s: payer %s signature: %w", id.String()[:8], t.Body.Payer.Short(), ErrBadSignature)
	}
	if len(t.PayeeSig) != ed25519.SignatureSize || !ed25519.Verify(t.Body.Payee.PublicKey(), msg, t.PayeeSig) {
		return fmt.Errorf("verify tx %s: payee %s signature: %w", id.String()[:8], t.Body.Payee.Short(), ErrBadSignature)
	}
	return nil
}

// Proposal is a half-signed transaction: the proposer (payer or payee) has
// signed; the counterparty has not. It never changes a balance.
type Proposal struct {
	Body     Body     `json:"body"`
	Proposer MemberID `json:"proposer"`
	Sig      []byte   `json:"sig"`
}

// Verify checks structure and the proposer's signature.
func (p *Proposal) Verify() error {
	if err := p.Body.Validate(); err != nil {
		return err
	}
	if p.Proposer != p.Body.Payer && p.Proposer != p.Body.Payee {
		return fmt.Errorf("verify proposal: proposer %s: %w", p.Proposer.Short(), ErrNotParty)
	}
	id := p.Body.ID()
	if len(p.Sig) != ed25519.SignatureSize || !ed25519.Verify(p.Proposer.PublicKey(), signMessage(id), p.Sig) {
		return fmt.Errorf("verify proposal %s: proposer %s signature: %w", id.String()[:8], p.Proposer.Short(), ErrBadSignature)
	}
	return nil
}

// Sign signs the body with key and returns the signature.
func (b *Body) Sign(key ed25519.PrivateKey) []byte {
	return ed25519.Sign(key, signMessage(b.ID()))
}

// MemberOfKey returns the member id of a private key.
func MemberOfKey(key ed25519.PrivateKey) MemberID {
	return MemberOf(key.Public().(ed25519.PublicKey))
}

// sigOf returns m's signature on the transaction (nil if m is no party).
func (t *Tx) sigOf(m MemberID) []byte {
	switch m {
	case t.Body.Payer:
		return t.PayerSig
	case t.Body.Payee:
		return t.PayeeSig
	}
	return nil
}
