package clove

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// Onion packets (Sphinx-like, fixed size).
//
// A packet for a path of H = L+1 hops (L relays, then the serving node) is
//
//	header: H slots of slotLen bytes | body
//
// and its total size is a power of two (a size class of Params). The first
// slot belongs to the hop that receives the packet:
//
//	slot = eph (32, X25519 public, fresh per hop) | AEAD(routing (64)) (80)
//
// The hop computes s = X25519(its key, eph) and HKDF(s) -> slot, header,
// body and reply keys and a replay tag. The slot AEAD authenticates the
// routing info and, as associated data, everything after the slot (the rest
// of the header and the body), so a flipped bit anywhere is detected by the
// first hop that sees it. The hop then shifts the header left by one slot,
// appends slotLen zero bytes and XORs the header with its header keystream
// (the appended part becomes pseudo-random filler) and XORs the body with its
// body keystream. Size never changes and every link sees different bytes.
// The sender precomputes the fillers (Sphinx's phi) so every hop's slot
// authenticates what that hop will actually receive.
//
// Replies travel back over the same hops with no header: the serving node
// seals its reply clove under its reply key (AEAD), every relay XORs the
// body with its reply keystream, and the sender strips all layers. Each
// session carries at most two replies, an ack (sent as soon as the clove
// arrives, empty) and the final reply; the frame kind is the nonce.

const (
	ephLen     = 32
	routingLen = 64
	slotLen    = ephLen + routingLen + tagLen
	bodyMin    = 128

	hopForward = 1
	hopDeliver = 2

	hkdfInfo = "hypha/clove/hop/v1"
)

func headerLen(L int) int { return (L + 1) * slotLen }

// hopKeys are the per-hop secrets both the sender and the hop derive.
type hopKeys struct {
	slot, hdr, body, reply [32]byte
	tag                    [16]byte
}

func deriveHop(shared, eph, nodePub []byte) hopKeys {
	salt := make([]byte, 0, 64)
	salt = append(append(salt, eph...), nodePub...)
	r := hkdf.New(sha256.New, shared, salt, []byte(hkdfInfo))
	var k hopKeys
	for _, b := range [][]byte{k.slot[:], k.hdr[:], k.body[:], k.reply[:], k.tag[:]} {
		if _, err := io.ReadFull(r, b); err != nil {
			panic(err) // HKDF-SHA256 yields up to 8160 bytes
		}
	}
	return k
}

// xorStream XORs dst with the ChaCha20 keystream of key (nonce zero: every
// key is used for one stream only).
func xorStream(key *[32]byte, dst, src []byte) {
	var nonce [chacha20.NonceSize]byte
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		panic(err) // fixed sizes
	}
	c.XORKeyStream(dst, src)
}

// replyLayer is a relay's layer on a reply body of the given frame kind
// (ack or final reply): the ChaCha20 keystream of its reply key with the
// kind as nonce, so the two replies of one session never share a stream.
func replyLayer(key *[32]byte, kind byte, dst, src []byte) {
	var nonce [chacha20.NonceSize]byte
	nonce[0] = kind
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		panic(err) // fixed sizes
	}
	c.XORKeyStream(dst, src)
}

func keystream(key *[32]byte, n int) []byte {
	b := make([]byte, n)
	xorStream(key, b, b)
	return b
}

// routing is the per-hop instruction inside a slot.
type routing struct {
	kind     byte
	deadline int64 // unix milliseconds
	next     peer.ID
}

func (r routing) marshal() []byte {
	b := make([]byte, routingLen)
	b[0] = r.kind
	binary.BigEndian.PutUint64(b[1:], uint64(r.deadline))
	b[9] = byte(len(r.next))
	copy(b[10:], r.next)
	return b
}

func parseRouting(b []byte) (routing, error) {
	bad := func(what string, args ...any) (routing, error) {
		return routing{}, fmt.Errorf("onion routing: %s: %w", fmt.Sprintf(what, args...), ErrMalformed)
	}
	if len(b) != routingLen {
		return bad("%d bytes, want %d", len(b), routingLen)
	}
	r := routing{kind: b[0], deadline: int64(binary.BigEndian.Uint64(b[1:]))}
	n := int(b[9])
	if n > maxPeerIDLen {
		return bad("next hop length %d", n)
	}
	if !allZero(b[10+n:]) {
		return bad("nonzero padding")
	}
	switch r.kind {
	case hopForward:
		id, err := peer.IDFromBytes(b[10 : 10+n])
		if err != nil {
			return bad("next hop: %v", err)
		}
		r.next = id
	case hopDeliver:
		if n != 0 {
			return bad("deliver hop names a next hop")
		}
	default:
		return bad("kind %d", r.kind)
	}
	return r, nil
}

// pathHop is one hop of a path as the sender knows it.
type pathHop struct {
	id  peer.ID
	pub *ecdh.PublicKey
}

// buildPacket wraps payload for hops (the last one is the serving node) in
// a packet of exactly size bytes. It returns the per-hop keys the sender
// needs to open the reply.
func buildPacket(hops []pathHop, deadline int64, payload []byte, size int) ([]byte, []hopKeys, error) {
	H := len(hops)
	hl := H * slotLen
	bodyLen := size - hl
	if bodyLen < 4+len(payload) || bodyLen < bodyMin {
		return nil, nil, fmt.Errorf("onion: build: payload %d bytes does not fit packet %d: %w", len(payload), size, ErrTooLarge)
	}
	keys := make([]hopKeys, H)
	ephs := make([][]byte, H)
	for i, h := range hops {
		e, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("onion: build: %w", err)
		}
		s, err := e.ECDH(h.pub)
		if err != nil {
			return nil, nil, fmt.Errorf("onion: build: hop %d (%s): %v: %w", i, h.id, err, ErrUnknownPeer)
		}
		ephs[i] = e.PublicKey().Bytes()
		keys[i] = deriveHop(s, ephs[i], h.pub.Bytes())
	}
	// Bodies, innermost first: body[H] is what the serving node reads.
	body := make([]byte, bodyLen)
	binary.BigEndian.PutUint32(body, uint32(len(payload)))
	copy(body[4:], payload)
	bodies := make([][]byte, H+1)
	bodies[H] = body
	for i := H - 1; i >= 0; i-- {
		bodies[i] = make([]byte, bodyLen)
		xorStream(&keys[i].body, bodies[i], bodies[i+1])
	}
	// Fillers: phi[i] is the tail (i slots) of the header hop i receives.
	ks := make([][]byte, H)
	for i := range ks {
		ks[i] = keystream(&keys[i].hdr, hl)
	}
	phi := []byte{}
	for i := 0; i < H-1; i++ {
		next := append(phi, make([]byte, slotLen)...)
		src := ks[i][(H-i-1)*slotLen : hl]
		for j := range next {
			next[j] ^= src[j]
		}
		phi = next
	}
	// Headers, last hop first.
	hdr := make([]byte, hl) // header received by hop i, built backwards
	copy(hdr[slotLen:], phi)
	for i := H - 1; i >= 0; i-- {
		if i < H-1 {
			// rest_i = hdr_{i+1}[:(H-1) slots] XOR ks_i[:(H-1) slots]
			rest := make([]byte, hl-slotLen)
			for j := range rest {
				rest[j] = hdr[j] ^ ks[i][j]
			}
			copy(hdr[slotLen:], rest)
		}
		r := routing{kind: hopForward, deadline: deadline}
		if i == H-1 {
			r.kind = hopDeliver
		} else {
			r.next = hops[i+1].id
		}
		aead, _ := chacha20poly1305.New(keys[i].slot[:])
		var nonce [chacha20poly1305.NonceSize]byte
		ad := append(append([]byte(nil), hdr[slotLen:]...), bodies[i]...)
		slot := append(append(make([]byte, 0, slotLen), ephs[i]...), aead.Seal(nil, nonce[:], r.marshal(), ad)...)
		copy(hdr[:slotLen], slot)
	}
	pkt := make([]byte, 0, size)
	pkt = append(append(pkt, hdr...), bodies[0]...)
	return pkt, keys, nil
}

// peeled is what one hop learns from a packet.
type peeled struct {
	keys hopKeys
	r    routing
	// out is the packet for the next hop (forward) or the payload (deliver).
	out []byte
}

// peel removes this hop's layer from pkt (H hops, H = L+1). It does not
// check replay or the deadline (the Node does, it holds the state).
func peel(priv *ecdh.PrivateKey, pkt []byte, H int) (peeled, error) {
	hl := H * slotLen
	if len(pkt) < hl+bodyMin || !pow2(len(pkt)) {
		return peeled{}, fmt.Errorf("onion: packet of %d bytes: not a size class with a %d-byte header: %w", len(pkt), hl, ErrMalformed)
	}
	eph := pkt[:ephLen]
	pub, err := ecdh.X25519().NewPublicKey(eph)
	if err != nil {
		return peeled{}, fmt.Errorf("onion: ephemeral key: %v: %w", err, ErrTampered)
	}
	s, err := priv.ECDH(pub)
	if err != nil {
		return peeled{}, fmt.Errorf("onion: ephemeral key: %v: %w", err, ErrTampered)
	}
	keys := deriveHop(s, eph, priv.PublicKey().Bytes())
	aead, _ := chacha20poly1305.New(keys.slot[:])
	var nonce [chacha20poly1305.NonceSize]byte
	rb, err := aead.Open(nil, nonce[:], pkt[ephLen:slotLen], pkt[slotLen:])
	if err != nil {
		return peeled{}, fmt.Errorf("onion: slot of a %d-byte packet: %w", len(pkt), ErrTampered)
	}
	r, err := parseRouting(rb)
	if err != nil {
		return peeled{}, err
	}
	p := peeled{keys: keys, r: r}
	body := make([]byte, len(pkt)-hl)
	xorStream(&keys.body, body, pkt[hl:])
	if r.kind == hopDeliver {
		n := binary.BigEndian.Uint32(body)
		if uint64(n) > uint64(len(body)-4) {
			return peeled{}, fmt.Errorf("onion: payload length %d exceeds body %d: %w", n, len(body)-4, ErrMalformed)
		}
		p.out = body[4 : 4+n]
		return p, nil
	}
	out := make([]byte, len(pkt))
	copy(out, pkt[slotLen:hl]) // shifted header; the tail stays zero
	xorStream(&keys.hdr, out[:hl], out[:hl])
	copy(out[hl:], body)
	p.out = out
	return p, nil
}

// sealReply is the serving node's layer: payload sealed under its reply key
// (nonce = frame kind) in a body of exactly size bytes.
func sealReply(k *hopKeys, kind byte, payload []byte, size int) ([]byte, error) {
	if size < 4+len(payload)+tagLen {
		return nil, fmt.Errorf("onion: reply of %d bytes does not fit %d: %w", len(payload), size, ErrTooLarge)
	}
	pt := make([]byte, size-tagLen)
	binary.BigEndian.PutUint32(pt, uint32(len(payload)))
	copy(pt[4:], payload)
	aead, _ := chacha20poly1305.New(k.reply[:])
	var nonce [chacha20poly1305.NonceSize]byte
	nonce[0] = kind
	return aead.Seal(pt[:0:len(pt)], nonce[:], pt, nil)[:size:size], nil
}

// openReply strips the relays' layers (keys[:H-1]) and the serving node's
// seal (keys[H-1]) from a reply body of the given frame kind.
func openReply(keys []hopKeys, kind byte, body []byte) ([]byte, error) {
	b := make([]byte, len(body))
	copy(b, body)
	for i := 0; i < len(keys)-1; i++ {
		replyLayer(&keys[i].reply, kind, b, b)
	}
	aead, _ := chacha20poly1305.New(keys[len(keys)-1].reply[:])
	var nonce [chacha20poly1305.NonceSize]byte
	nonce[0] = kind
	pt, err := aead.Open(b[:0], nonce[:], b, nil)
	if err != nil {
		return nil, fmt.Errorf("onion: reply of %d bytes: %w", len(body), ErrTampered)
	}
	if len(pt) < 4 {
		return nil, fmt.Errorf("onion: reply of %d bytes: too short: %w", len(body), ErrMalformed)
	}
	n := binary.BigEndian.Uint32(pt)
	if uint64(n) > uint64(len(pt)-4) {
		return nil, fmt.Errorf("onion: reply payload length %d exceeds %d: %w", n, len(pt)-4, ErrMalformed)
	}
	return pt[4 : 4+n], nil
}
