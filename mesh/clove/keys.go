package clove

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/hkdf"
)

// Onion keys: every node derives an X25519 key from its libp2p identity key
// (HKDF over the identity's private bytes, so nothing new is stored) and signs
// the public half with the identity. A Candidate carries the three; anyone can
// check that the X25519 key belongs to the peer id.

const (
	x25519Info   = "hypha/clove/x25519/v1"
	maxSigLen    = 1024
	maxPeerIDLen = 54 // fits the routing field; an ed25519 peer id is 38 bytes
)

// Candidate is a member that can relay or serve cloves: its peer id, its
// X25519 onion key and the identity's signature over that key.
type Candidate struct {
	ID  peer.ID
	Key [32]byte
	Sig []byte
}

// Membership is the view of the community this package needs: the members
// that may carry or serve cloves. Candidates must be safe for concurrent use;
// entries whose signature does not verify are skipped.
type Membership interface {
	Candidates() []Candidate
}

// StaticMembership is a fixed Membership.
type StaticMembership []Candidate

// Candidates returns the list itself.
func (s StaticMembership) Candidates() []Candidate { return s }

func signedKeyMsg(key [32]byte) []byte { return append([]byte(x25519Info), key[:]...) }

// Verify checks that c.Sig is c.ID's identity signature over c.Key.
func (c Candidate) Verify() error {
	if len(c.ID) > maxPeerIDLen {
		return fmt.Errorf("candidate %s: peer id is %d bytes, max %d: %w", c.ID, len(c.ID), maxPeerIDLen, ErrUnknownPeer)
	}
	pub, err := c.ID.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("candidate %s: public key: %v: %w", c.ID, err, ErrUnknownPeer)
	}
	ok, err := pub.Verify(signedKeyMsg(c.Key), c.Sig)
	if err != nil || !ok {
		return fmt.Errorf("candidate %s: x25519 key signature does not verify: %w", c.ID, ErrUnknownPeer)
	}
	return nil
}

// MarshalBinary encodes c as idLen(u8)|id|key(32)|sigLen(be16)|sig.
func (c Candidate) MarshalBinary() ([]byte, error) {
	if len(c.ID) > maxPeerIDLen || len(c.Sig) > maxSigLen {
		return nil, fmt.Errorf("candidate: marshal: id %d or sig %d bytes too long: %w", len(c.ID), len(c.Sig), ErrMalformed)
	}
	b := make([]byte, 0, 1+len(c.ID)+32+2+len(c.Sig))
	b = append(b, byte(len(c.ID)))
	b = append(b, c.ID...)
	b = append(b, c.Key[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.Sig)))
	return append(b, c.Sig...), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote. It checks the framing
// and the peer id, not the signature (call Verify).
func (c *Candidate) UnmarshalBinary(b []byte) error {
	bad := func(what string, args ...any) error {
		return fmt.Errorf("candidate: decode %d bytes: %s: %w", len(b), fmt.Sprintf(what, args...), ErrMalformed)
	}
	if len(b) < 1 {
		return bad("empty")
	}
	n := int(b[0])
	if n == 0 || n > maxPeerIDLen {
		return bad("peer id length %d", n)
	}
	if len(b) < 1+n+32+2 {
		return bad("truncated")
	}
	id, err := peer.IDFromBytes(b[1 : 1+n])
	if err != nil {
		return bad("peer id: %v", err)
	}
	sl := int(binary.BigEndian.Uint16(b[1+n+32:]))
	if sl > maxSigLen || len(b) != 1+n+32+2+sl {
		return bad("signature length %d does not match the %d bytes left", sl, len(b)-(1+n+32+2))
	}
	c.ID = id
	copy(c.Key[:], b[1+n:])
	c.Sig = append([]byte(nil), b[1+n+32+2:]...)
	return nil
}

// Identity is a node's onion key pair, derived from its libp2p identity.
// It is immutable and safe for concurrent use.
type Identity struct {
	id   peer.ID
	priv *ecdh.PrivateKey
	self Candidate
}

// NewIdentity derives the X25519 onion key of the libp2p identity priv and
// signs it. The same priv always gives the same key.
func NewIdentity(priv crypto.PrivKey) (*Identity, error) {
	raw, err := priv.Raw()
	if err != nil {
		return nil, fmt.Errorf("clove identity: %w", err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("clove identity: %w", err)
	}
	if len(id) > maxPeerIDLen {
		return nil, fmt.Errorf("clove identity: peer id %d bytes, max %d (use ed25519 keys): %w", len(id), maxPeerIDLen, ErrParams)
	}
	seed := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, raw, nil, []byte(x25519Info)), seed); err != nil {
		return nil, fmt.Errorf("clove identity: %w", err)
	}
	xp, err := ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("clove identity: %w", err)
	}
	var key [32]byte
	copy(key[:], xp.PublicKey().Bytes())
	sig, err := priv.Sign(signedKeyMsg(key))
	if err != nil {
		return nil, fmt.Errorf("clove identity: sign: %w", err)
	}
	return &Identity{id: id, priv: xp, self: Candidate{ID: id, Key: key, Sig: sig}}, nil
}

// Candidate is what this node publishes to the membership view.
func (i *Identity) Candidate() Candidate { return i.self }

// ID is the peer id.
func (i *Identity) ID() peer.ID { return i.id }
