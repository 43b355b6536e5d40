package clove

import (
	"fmt"
	"math/bits"
	"time"
)

// Params are the knobs of cloves and onion paths. They must be the same on
// every node of a community (relays derive the header size from L and the
// packet size classes from MinPacket and MaxPacket). A zero field takes its
// default (see DefaultParams); Validate reports fields out of range.
type Params struct {
	// N is the number of cloves (and of disjoint paths). Default 4.
	N int
	// K is the number of cloves that rebuild a message; any K-1 reveal
	// nothing. 2 <= K <= N. Default 3.
	K int
	// L is the number of relays on each path (the serving node is one more
	// onion hop after them). Default 3.
	L int
	// MinPacket and MaxPacket bound the packet size classes: every packet
	// is padded to a power of two between them, so all packets of one
	// request have the same size at every hop. Defaults 1 KiB and 1 MiB.
	MinPacket, MaxPacket int
	// Expiry bounds the life of a packet, of the reply state relays keep
	// and of replay tags. It must exceed the serving time of a request.
	// Default 5 minutes.
	Expiry time.Duration
	// AckTimeout is how long a sender waits for K serving-node acks before
	// it sends the request again over fresh paths that avoid every relay of
	// the unacknowledged ones. Default 5 s (at most Expiry/2).
	AckTimeout time.Duration
	// Retries is the number of such resends; zero means the default 1, a
	// negative value none.
	Retries int
	// SharedEntry makes all N paths start at one entry relay (then go on
	// disjointly). With disjoint paths the sender has N first hops, N
	// chances that a colluder sits next to it; with a shared entry it has
	// one (sender anonymity at 10% colluders: about 0.70 disjoint, 0.90
	// shared, see TestSimulateAnonymity), at the price of one relay whose
	// failure loses all paths (the resend then picks another entry).
	// Default false.
	SharedEntry bool
	// AllowOverlap lets paths share relays when the membership view has
	// fewer than N·L relays (each path still has L distinct relays). Paths
	// then fail together more often and a shared relay sees more of one
	// request. Default false: such requests fail with ErrNoPaths. A
	// community of fewer than N·L+2 nodes needs it (or a smaller N or L).
	AllowOverlap bool
	// MaxSessions bounds the reply sessions and the replay tags a node
	// holds; beyond it new packets are dropped. Default 65536.
	MaxSessions int
}

// DefaultParams returns n=4, k=3, L=3, packets 1 KiB..1 MiB, expiry 5 min,
// one resend after 5 s without K acks.
func DefaultParams() Params {
	return Params{N: 4, K: 3, L: 3, MinPacket: 1 << 10, MaxPacket: 1 << 20,
		Expiry: 5 * time.Minute, AckTimeout: 5 * time.Second, Retries: 1, MaxSessions: 1 << 16}
}

// WithDefaults returns p with every zero field set to its default.
func (p Params) WithDefaults() Params {
	d := DefaultParams()
	if p.N == 0 {
		p.N = d.N
	}
	if p.K == 0 {
		p.K = d.K
	}
	if p.L == 0 {
		p.L = d.L
	}
	if p.MinPacket == 0 {
		p.MinPacket = d.MinPacket
	}
	if p.MaxPacket == 0 {
		p.MaxPacket = d.MaxPacket
	}
	if p.Expiry == 0 {
		p.Expiry = d.Expiry
	}
	if p.AckTimeout == 0 {
		p.AckTimeout = min(d.AckTimeout, p.Expiry/2)
	}
	if p.Retries == 0 {
		p.Retries = d.Retries
	}
	if p.MaxSessions == 0 {
		p.MaxSessions = d.MaxSessions
	}
	return p
}

// Limits of Params.
const (
	MaxN        = 16
	MaxL        = 8
	minPacketLo = 512
	maxPacketHi = 16 << 20
)

// Validate reports the first field of p (after defaults) that is out of range.
func (p Params) Validate() error {
	p = p.WithDefaults()
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("params: %s=%v: want %s: %w", field, v, want, ErrParams)
	}
	switch {
	case p.K < 2 || p.K > MaxN:
		return bad("K", p.K, fmt.Sprintf("2..%d", MaxN))
	case p.N < p.K || p.N > MaxN:
		return bad("N", p.N, fmt.Sprintf("K(%d)..%d", p.K, MaxN))
	case p.L < 1 || p.L > MaxL:
		return bad("L", p.L, fmt.Sprintf("1..%d", MaxL))
	case !pow2(p.MinPacket) || p.MinPacket < minPacketLo:
		return bad("MinPacket", p.MinPacket, fmt.Sprintf("a power of two >= %d", minPacketLo))
	case p.MinPacket < headerLen(p.L)+bodyMin:
		return bad("MinPacket", p.MinPacket, fmt.Sprintf(">= %d for L=%d", headerLen(p.L)+bodyMin, p.L))
	case !pow2(p.MaxPacket) || p.MaxPacket < p.MinPacket || p.MaxPacket > maxPacketHi:
		return bad("MaxPacket", p.MaxPacket, fmt.Sprintf("a power of two in MinPacket..%d", maxPacketHi))
	case p.Expiry < 100*time.Millisecond || p.Expiry > 24*time.Hour:
		return bad("Expiry", p.Expiry, "100ms..24h")
	case p.AckTimeout < 10*time.Millisecond || p.AckTimeout > p.Expiry:
		return bad("AckTimeout", p.AckTimeout, "10ms..Expiry")
	case p.Retries > 3:
		return bad("Retries", p.Retries, "<= 3 (negative: none)")
	case p.MaxSessions < 1:
		return bad("MaxSessions", p.MaxSessions, ">= 1")
	}
	return nil
}

func pow2(v int) bool { return v > 0 && v&(v-1) == 0 }

// sizeClass returns the smallest power of two >= need and >= MinPacket, or
// 0 if it exceeds MaxPacket.
func (p Params) sizeClass(need int) int {
	c := p.MinPacket
	if need > c {
		c = 1 << bits.Len(uint(need-1))
	}
	if c > p.MaxPacket {
		return 0
	}
	return c
}

// validClass reports whether size is one of the packet size classes.
func (p Params) validClass(size int) bool {
	return pow2(size) && size >= p.MinPacket && size <= p.MaxPacket
}

// MaxMessage is the largest request or reply (in bytes) that fits in a
// MaxPacket packet with these parameters.
func (p Params) MaxMessage() int {
	p = p.WithDefaults()
	// request body: 4-byte length + clove; reply body: 4 + clove + tag.
	room := min(p.MaxPacket-headerLen(p.L)-4, p.MaxPacket-4-tagLen) - cloveHeaderLen - shareLen
	// shard = ceil((msg+tagLen+1)/K) <= room  =>  msg <= room*K - tagLen - 1
	return room*p.K - tagLen - 1
}
