package clove

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/reedsolomon"
	"github.com/openbao/openbao/sdk/v2/helper/shamir"
	"golang.org/x/crypto/chacha20poly1305"
)

// S-IDA (secret sharing made short, Krawczyk 1993): the message is sealed
// under a fresh 256-bit key with XChaCha20-Poly1305, the ciphertext is cut
// into N Reed-Solomon shards of which any K rebuild it, and the key is split
// with Shamir (K, N). Clove i carries shard i and key share i. Fewer than K
// cloves hold fewer than K key shares, which are independent of the key, so
// the ciphertext they carry is under an unknown uniformly random key.
//
// The key is fresh for every message, so the AEAD nonce is fixed (zero).

const (
	cloveVersion   = 1
	idLen          = 16
	cloveHeaderLen = 1 + 1 + 1 + 1 + idLen + 4 // version k n index id msgLen
	keyLen         = chacha20poly1305.KeySize
	shareLen       = keyLen + shamir.ShareOverhead
	tagLen         = chacha20poly1305.Overhead
	maxSubsetTries = 256
)

// MessageID names one message; all its cloves carry it.
type MessageID [idLen]byte

// A Clove is one fragment of a message: one Reed-Solomon shard of the
// ciphertext, one Shamir share of its key, and what is needed to put K of
// them back together. A Clove is a plain value; its slices are owned by it.
type Clove struct {
	ID     MessageID
	K, N   uint8
	Index  uint8  // shard index, 0..N-1
	MsgLen uint32 // plaintext length
	Share  []byte // Shamir share of the key (33 bytes, last byte is x)
	Shard  []byte // shard of the ciphertext
}

// shardLen is the length of each shard of a msgLen-byte message split k ways.
func shardLen(msgLen, k int) int { return (msgLen + tagLen + k - 1) / k }

// EncodedLen is the length of the clove's binary encoding.
func (c *Clove) EncodedLen() int { return cloveHeaderLen + len(c.Share) + len(c.Shard) }

// MarshalBinary encodes c as version|k|n|index|id|msgLen(be32)|share|shard.
func (c *Clove) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, c.EncodedLen()))
}

// AppendBinary appends the encoding of c to b.
func (c *Clove) AppendBinary(b []byte) ([]byte, error) {
	if len(c.Share) != shareLen {
		return nil, fmt.Errorf("clove: marshal: share is %d bytes, want %d: %w", len(c.Share), shareLen, ErrMalformed)
	}
	b = append(b, cloveVersion, c.K, c.N, c.Index)
	b = append(b, c.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, c.MsgLen)
	b = append(b, c.Share...)
	return append(b, c.Shard...), nil
}

// UnmarshalBinary decodes a clove from b (the whole of b, no trailing
// bytes), checking every field for range and every length for consistency.
// It copies what it keeps.
func (c *Clove) UnmarshalBinary(b []byte) error {
	bad := func(what string, args ...any) error {
		return fmt.Errorf("clove: decode %d bytes: %s: %w", len(b), fmt.Sprintf(what, args...), ErrMalformed)
	}
	if len(b) < cloveHeaderLen+shareLen {
		return bad("shorter than header (%d)", cloveHeaderLen+shareLen)
	}
	if b[0] != cloveVersion {
		return bad("version %d, want %d", b[0], cloveVersion)
	}
	k, n, idx := b[1], b[2], b[3]
	if k < 2 || n < k || n > MaxN {
		return bad("k=%d n=%d out of range", k, n)
	}
	if idx >= n {
		return bad("index %d >= n %d", idx, n)
	}
	msgLen := binary.BigEndian.Uint32(b[4+idLen:])
	if uint64(msgLen) > uint64(maxPacketHi)*MaxN {
		return bad("message length %d too large", msgLen)
	}
	want := shardLen(int(msgLen), int(k))
	rest := b[cloveHeaderLen+shareLen:]
	if len(rest) != want {
		return bad("shard is %d bytes, want %d for message length %d and k=%d", len(rest), want, msgLen, k)
	}
	c.K, c.N, c.Index, c.MsgLen = k, n, idx, msgLen
	copy(c.ID[:], b[4:4+idLen])
	c.Share = bytes.Clone(b[cloveHeaderLen : cloveHeaderLen+shareLen])
	c.Shard = bytes.Clone(rest)
	return nil
}

// DecodeClove is UnmarshalBinary into a new Clove.
func DecodeClove(b []byte) (Clove, error) {
	var c Clove
	err := c.UnmarshalBinary(b)
	return c, err
}

func aad(id MessageID, k, n uint8, msgLen uint32) []byte {
	b := make([]byte, 0, 3+idLen+4)
	b = append(b, cloveVersion, k, n)
	b = append(b, id[:]...)
	return binary.BigEndian.AppendUint32(b, msgLen)
}

var encoders sync.Map // [2]int{k, n} -> reedsolomon.Encoder

func encoder(k, n int) (reedsolomon.Encoder, error) {
	key := [2]int{k, n}
	if e, ok := encoders.Load(key); ok {
		return e.(reedsolomon.Encoder), nil
	}
	e, err := reedsolomon.New(k, n-k)
	if err != nil {
		return nil, fmt.Errorf("reedsolomon %d+%d: %w", k, n-k, err)
	}
	e2, _ := encoders.LoadOrStore(key, e)
	return e2.(reedsolomon.Encoder), nil
}

func checkNK(n, k int) error {
	if k < 2 || n < k || n > MaxN {
		return fmt.Errorf("clove: n=%d k=%d: want 2 <= k <= n <= %d: %w", n, k, MaxN, ErrParams)
	}
	return nil
}

// Split turns msg into n cloves of which any k rebuild it, under a fresh
// random message id. It is safe for concurrent use.
func Split(msg []byte, n, k int) ([]Clove, error) {
	var id MessageID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("clove: split: %w", err)
	}
	return SplitID(id, msg, n, k)
}

// SplitID is Split with a caller-chosen message id.
func SplitID(id MessageID, msg []byte, n, k int) ([]Clove, error) {
	if err := checkNK(n, k); err != nil {
		return nil, err
	}
	if uint64(len(msg)) > uint64(maxPacketHi)*MaxN {
		return nil, fmt.Errorf("clove: split %d bytes: %w", len(msg), ErrTooLarge)
	}
	var key [keyLen]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("clove: split: %w", err)
	}
	return splitWithKey(id, key[:], msg, n, k)
}

// splitWithKey is SplitID under a given key (tests use it to show that the
// key shares do not depend on the key).
func splitWithKey(id MessageID, key, msg []byte, n, k int) ([]Clove, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("clove: split: %w", err)
	}
	var nonce [chacha20poly1305.NonceSizeX]byte
	sl := shardLen(len(msg), k)
	// One buffer for all shards; the ciphertext is sealed into the data part.
	buf := make([]byte, sl*n)
	ct := aead.Seal(buf[:0], nonce[:], msg, aad(id, uint8(k), uint8(n), uint32(len(msg))))
	if len(ct) > sl*k || &ct[0] != &buf[0] {
		panic("clove: ciphertext does not fit its shards") // shardLen invariant
	}
	shards := make([][]byte, n)
	for i := range shards {
		shards[i] = buf[i*sl : (i+1)*sl : (i+1)*sl]
	}
	enc, err := encoder(k, n)
	if err != nil {
		return nil, err
	}
	if err := enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("clove: split: encode: %w", err)
	}
	shares, err := shamir.Split(key, n, k)
	if err != nil {
		return nil, fmt.Errorf("clove: split: shamir: %w", err)
	}
	cloves := make([]Clove, n)
	for i := range cloves {
		cloves[i] = Clove{ID: id, K: uint8(k), N: uint8(n), Index: uint8(i),
			MsgLen: uint32(len(msg)), Share: shares[i], Shard: shards[i]}
	}
	return cloves, nil
}

// Combine rebuilds the message from cloves of one message. It needs K
// well-formed cloves with distinct indices; when some are tampered or belong
// to another message it tries other sets of K (at most 256 sets) and
// returns, with the message, the positions in cloves of those it rejected.
// A clove is accepted only if it is consistent with the rebuilt message:
// its shard re-encodes identically and its key share lies on the key's
// polynomial. Errors: ErrNotEnough (fewer than K usable cloves), ErrTampered
// (no set of K authenticates).
func Combine(cloves []Clove) (msg []byte, rejected []int, err error) {
	if len(cloves) == 0 {
		return nil, nil, fmt.Errorf("clove: combine: no cloves: %w", ErrNotEnough)
	}
	// Group by header; try the largest group first.
	type hdr struct {
		id     MessageID
		k, n   uint8
		msgLen uint32
	}
	groups := map[hdr][]int{}
	var order []hdr
	for i := range cloves {
		c := &cloves[i]
		if c.K < 2 || c.N < c.K || c.N > MaxN || c.Index >= c.N || len(c.Share) != shareLen ||
			len(c.Shard) != shardLen(int(c.MsgLen), int(c.K)) {
			rejected = append(rejected, i)
			continue
		}
		h := hdr{c.ID, c.K, c.N, c.MsgLen}
		if _, ok := groups[h]; !ok {
			order = append(order, h)
		}
		groups[h] = append(groups[h], i)
	}
	best := -1
	for i, h := range order {
		if best < 0 || len(groups[h]) > len(groups[order[best]]) {
			best = i
		}
	}
	if best < 0 {
		return nil, rejected, fmt.Errorf("clove: combine: %d cloves, none well formed: %w", len(cloves), ErrNotEnough)
	}
	h := order[best]
	for _, o := range order {
		if o != h {
			rejected = append(rejected, groups[o]...)
		}
	}
	members := groups[h]
	k, n := int(h.k), int(h.n)
	if distinct(cloves, members) < k {
		return nil, rejected, fmt.Errorf("clove: combine: %d distinct cloves of message %x, need %d: %w",
			distinct(cloves, members), h.id[:4], k, ErrNotEnough)
	}
	enc, err := encoder(k, n)
	if err != nil {
		return nil, rejected, err
	}
	ad := aad(h.id, h.k, h.n, h.msgLen)
	sl := shardLen(int(h.msgLen), k)
	tries := 0
	var found []int
	var key []byte
	eachSubset(members, k, func(set []int) bool {
		if !distinctSet(cloves, set) {
			return true
		}
		if tries++; tries > maxSubsetTries {
			return false
		}
		m, kk, ok := tryOpen(cloves, set, enc, n, ad)
		if ok {
			msg, key, found = m, kk, append([]int(nil), set...)
			return false
		}
		return true
	})
	if found == nil {
		return nil, rejected, fmt.Errorf("clove: combine: no %d of %d cloves of message %x authenticate (%d sets tried): %w",
			k, len(members), h.id[:4], min(tries, maxSubsetTries), ErrTampered)
	}
	if len(members) == len(found) {
		return msg, rejected, nil
	}
	// Check every other clove against the rebuilt message.
	shards := make([][]byte, n)
	ct := make([]byte, sl*n)
	sealed := sealAgain(key, msg, ad)
	copy(ct, sealed)
	for i := range shards {
		shards[i] = ct[i*sl : (i+1)*sl : (i+1)*sl]
	}
	if err := enc.Encode(shards); err != nil {
		return nil, rejected, fmt.Errorf("clove: combine: re-encode: %w", err)
	}
	in := map[int]bool{}
	for _, i := range found {
		in[i] = true
	}
	base := make([][]byte, 0, k)
	for _, i := range found[:k-1] {
		base = append(base, cloves[i].Share)
	}
	for _, i := range members {
		if in[i] {
			continue
		}
		c := &cloves[i]
		if !bytes.Equal(c.Shard, shards[c.Index]) {
			rejected = append(rejected, i)
			continue
		}
		k2, err := shamir.Combine(append(base[:k-1:k-1], c.Share))
		if err != nil || !bytes.Equal(k2, key) {
			rejected = append(rejected, i)
		}
	}
	return msg, rejected, nil
}

func sealAgain(key, msg, ad []byte) []byte {
	aead, _ := chacha20poly1305.NewX(key)
	var nonce [chacha20poly1305.NonceSizeX]byte
	return aead.Seal(nil, nonce[:], msg, ad)
}

func tryOpen(cloves []Clove, set []int, enc reedsolomon.Encoder, n int, ad []byte) (msg, key []byte, ok bool) {
	parts := make([][]byte, len(set))
	shards := make([][]byte, n)
	for j, i := range set {
		parts[j] = cloves[i].Share
		shards[cloves[i].Index] = bytes.Clone(cloves[i].Shard)
	}
	key, err := shamir.Combine(parts)
	if err != nil || len(key) != keyLen {
		return nil, nil, false
	}
	if err := enc.ReconstructData(shards); err != nil {
		return nil, nil, false
	}
	msgLen := int(binary.BigEndian.Uint32(ad[len(ad)-4:]))
	data := allData(shards, len(set))
	ct, pad := data[:msgLen+tagLen], data[msgLen+tagLen:]
	// The data shards beyond the ciphertext must be the zero padding Split left.
	if !allZero(pad) {
		return nil, nil, false
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, nil, false
	}
	var nonce [chacha20poly1305.NonceSizeX]byte
	msg, err = aead.Open(nil, nonce[:], ct, ad)
	if err != nil {
		return nil, nil, false
	}
	return msg, key, true
}

func allData(shards [][]byte, k int) []byte {
	var b []byte
	for i := 0; i < k; i++ {
		b = append(b, shards[i]...)
	}
	return b
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func distinct(cloves []Clove, idx []int) int {
	seen := map[uint8]bool{}
	for _, i := range idx {
		seen[cloves[i].Index] = true
	}
	return len(seen)
}

func distinctSet(cloves []Clove, set []int) bool { return distinct(cloves, set) == len(set) }

// eachSubset calls f with every k-subset of items (in lexicographic order)
// until f returns false.
func eachSubset(items []int, k int, f func([]int) bool) {
	set := make([]int, k)
	var rec func(start, depth int) bool
	rec = func(start, depth int) bool {
		if depth == k {
			return f(set)
		}
		for i := start; i <= len(items)-(k-depth); i++ {
			set[depth] = items[i]
			if !rec(i+1, depth+1) {
				return false
			}
		}
		return true
	}
	rec(0, 0)
}
