package clove

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ProtocolID is the libp2p stream protocol of cloves.
const ProtocolID protocol.ID = "/hypha/clove/1.0.0"

const (
	ioTimeout     = 30 * time.Second
	maxClockSkew  = time.Minute
	maxErrText    = 1024
	replyOK       = 0
	replyErr      = 1
	janitorPeriod = 5 * time.Second
)

// Handler serves one anonymous request on the serving node and returns the
// reply. It never learns who asked. ctx ends when the request expires or
// the Node closes. An error is sent back to the asker as text (ErrRemote).
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// Observation is what a node saw of one frame; tests and metrics use it.
type Observation struct {
	Node  peer.ID // the observing node
	Event string  // "relay", "deliver", "reply" (ack or final), "answer", "drop"
	From  peer.ID // where the frame came from
	To    peer.ID // where it went on ("" if nowhere)
	Ack   bool    // the frame is an ack (a "reply" or "answer" event)
	Data  []byte  // the packet or reply body as received (read only)
	Err   error   // why it was dropped
}

// Option tunes a Node.
type Option func(*Node)

// WithHandler makes the node a serving node: requests delivered to it are
// handed to h. Default: none (requests for this node are dropped).
func WithHandler(h Handler) Option { return func(n *Node) { n.handler = h } }

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(n *Node) { n.log = l } }

// WithObserver calls f for every frame handled (synchronously, on the
// stream's goroutine: f must be fast and safe for concurrent use).
// Default: none.
func WithObserver(f func(Observation)) Option { return func(n *Node) { n.obs = f } }

// Node speaks /hypha/clove/1.0.0 on a libp2p host. Every node relays; a
// node with a Handler also serves; any node can send requests with Request.
// All methods are safe for concurrent use. Close is idempotent.
type Node struct {
	h            host.Host
	id           *Identity
	mem          Membership
	p            Params
	handler      Handler
	log          *slog.Logger
	obs          func(Observation)
	pick         func(cands map[peer.ID]Candidate, self, dest peer.ID, count, L int) ([][]Candidate, error)
	resends      atomic.Int64
	overlapNoted atomic.Int64           // unix ns of the last noteOverlap line
	ackDelay     time.Duration          // tests only: hold acks back to force resends
	sendFault    func(to peer.ID) error // tests only: fail a send before it opens a stream

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu       sync.Mutex
	closed   bool                     // guarded by mu
	seen     map[[16]byte]int64       // replay tag -> deadline (unix ms); guarded by mu
	sessions map[linkKey]*session     // relay reply state, by (successor, out link); guarded by mu
	pending  map[linkKey]*pendingPath // asker state, by (first relay, link); guarded by mu
	inbound  map[MessageID]*inbound   // serving state; guarded by mu
	verified map[string]bool          // candidate signatures checked; guarded by mu
}

type linkKey struct {
	peer peer.ID
	link linkID
}

// session is a relay's reply state for one path through it.
type session struct {
	pred     peer.ID
	predLink linkID
	reply    [32]byte
	acked    bool  // the ack has been relayed
	replied  bool  // the final reply has been relayed
	expires  int64 // unix ms
}

// NewNode registers the clove protocol on h. id must be h's identity
// (NewIdentity of h's private key); mem is the membership view used to
// pick paths; p are the community's parameters (zero fields = defaults).
func NewNode(h host.Host, id *Identity, mem Membership, p Params, opts ...Option) (*Node, error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if id == nil || id.ID() != h.ID() {
		return nil, fmt.Errorf("clove: identity does not belong to host %s: %w", h.ID(), ErrParams)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{h: h, id: id, mem: mem, p: p, log: slog.Default(), ctx: ctx, cancel: cancel,
		seen: map[[16]byte]int64{}, sessions: map[linkKey]*session{}, pending: map[linkKey]*pendingPath{},
		inbound: map[MessageID]*inbound{}, verified: map[string]bool{}, pick: pickPaths}
	if p.SharedEntry {
		n.pick = pickSharedEntry
	}
	for _, o := range opts {
		o(n)
	}
	n.log = n.log.With("component", "clove")
	h.SetStreamHandler(ProtocolID, n.handleStream)
	n.wg.Add(1)
	go n.janitor()
	return n, nil
}

// Params returns the parameters in force.
func (n *Node) Params() Params { return n.p }

// Close unregisters the protocol, cancels running handlers and drops all
// state. It does not close the host.
func (n *Node) Close() error {
	n.once.Do(func() {
		n.h.RemoveStreamHandler(ProtocolID)
		n.mu.Lock()
		n.closed = true
		for _, pp := range n.pending {
			pp.at.res.finish(nil, ErrClosed)
		}
		n.mu.Unlock()
		n.cancel()
		n.wg.Wait()
	})
	return nil
}

// Stats counts the state a node holds.
type Stats struct {
	Sessions, ReplayTags, Pending, Inbound int
	Resends                                int64 // requests sent again over fresh paths
}

// Stats returns current table sizes.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Stats{Sessions: len(n.sessions), ReplayTags: len(n.seen), Pending: len(n.pending),
		Inbound: len(n.inbound), Resends: n.resends.Load()}
}

func (n *Node) janitor() {
	defer n.wg.Done()
	period := min(janitorPeriod, n.p.Expiry/4)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.expire(time.Now().UnixMilli())
		}
	}
}

// expire drops every state whose deadline is before now (unix ms).
func (n *Node) expire(now int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, d := range n.seen {
		if d < now {
			delete(n.seen, k)
		}
	}
	for k, s := range n.sessions {
		if s.expires < now {
			delete(n.sessions, k)
		}
	}
	for k, in := range n.inbound {
		if in.expires < now {
			delete(n.inbound, k)
		}
	}
}

func (n *Node) observe(o Observation) {
	if n.obs != nil {
		o.Node = n.h.ID()
		n.obs(o)
	}
}

func (n *Node) drop(from peer.ID, f *frame, err error) {
	n.log.Debug("dropped", "from", from, "err", err)
	o := Observation{Event: "drop", From: from, Err: err}
	if f != nil {
		o.Data, o.Ack = f.data, f.kind == frameAck
	}
	n.observe(o)
}

func (n *Node) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(ioTimeout))
	f, err := readFrame(s, n.p)
	if err != nil {
		_ = s.Reset()
		n.drop(from, nil, err)
		return
	}
	_ = s.Close()
	switch f.kind {
	case frameForward:
		err = n.handleForward(from, f)
	case frameReply, frameAck:
		err = n.handleReply(from, f)
	}
	if err != nil {
		n.drop(from, &f, err)
	}
}

// sendRetryDelay is how long send waits before its one retry.
const sendRetryDelay = 250 * time.Millisecond

// send writes one frame to `to`, and once more after sendRetryDelay if
// that fails: a connection being replaced (the mesh closes links it
// thinks dead and redials) loses the stream, not the peer. A frame that
// did arrive the first time is dropped by the receiver (ErrReplay for a
// packet; a reply session relays one ack and one reply). A dead peer
// costs the delay and a refused dial more.
func (n *Node) send(ctx context.Context, to peer.ID, f frame) error {
	err := n.sendOnce(ctx, to, f)
	if err == nil || ctx.Err() != nil {
		return err
	}
	t := time.NewTimer(sendRetryDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return err
	case <-t.C:
	}
	if err := n.sendOnce(ctx, to, f); err != nil {
		if ctx.Err() == nil {
			// A neighbour this node was asked to reach is gone. Only its
			// id at Info (a path's hops know each other anyway): a dial
			// error lists every address of the peer, including circuit
			// addresses through other members.
			n.log.Info("clove frame not delivered", "to", to, "kind", frameKindName(f.kind))
			n.log.Debug("clove frame not delivered", "to", to, "err", err)
		}
		return err
	}
	n.log.Debug("frame sent on the second try", "to", to, "first_err", err)
	return nil
}

func frameKindName(k byte) string {
	switch k {
	case frameForward:
		return "forward"
	case frameReply:
		return "reply"
	case frameAck:
		return "ack"
	}
	return fmt.Sprintf("kind %d", k)
}

// sendOnce opens a stream to `to` and writes one frame.
func (n *Node) sendOnce(ctx context.Context, to peer.ID, f frame) error {
	if n.sendFault != nil {
		if err := n.sendFault(to); err != nil {
			return fmt.Errorf("clove send to %s: %w", to, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	s, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "clove"), to, ProtocolID)
	if err != nil {
		return fmt.Errorf("clove send to %s: %w", to, err)
	}
	_ = s.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := s.Write(f.marshal()); err != nil {
		_ = s.Reset()
		return fmt.Errorf("clove send to %s: %w", to, err)
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("clove send to %s: close: %w", to, err)
	}
	return nil
}

func newLink() linkID {
	var l linkID
	if _, err := rand.Read(l[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return l
}

// checkPacket verifies deadline and replay and records the replay tag.
func (n *Node) checkPacket(p peeled) error {
	now := time.Now()
	d := p.r.deadline
	if d < now.UnixMilli() {
		return fmt.Errorf("clove packet: deadline %s passed: %w", time.UnixMilli(d).UTC().Format(time.RFC3339), ErrExpired)
	}
	if d > now.Add(n.p.Expiry+maxClockSkew).UnixMilli() {
		return fmt.Errorf("clove packet: deadline %s beyond expiry %s: %w", time.UnixMilli(d).UTC().Format(time.RFC3339), n.p.Expiry, ErrMalformed)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if _, ok := n.seen[p.keys.tag]; ok {
		return fmt.Errorf("clove packet: tag %x: %w", p.keys.tag[:4], ErrReplay)
	}
	if len(n.seen) >= n.p.MaxSessions {
		return fmt.Errorf("clove packet: %d replay tags held: %w", len(n.seen), ErrBusy)
	}
	n.seen[p.keys.tag] = d
	return nil
}

func (n *Node) handleForward(from peer.ID, f frame) error {
	p, err := peel(n.id.priv, f.data, n.p.L+1)
	if err != nil {
		return err
	}
	if err := n.checkPacket(p); err != nil {
		return err
	}
	if p.r.kind == hopDeliver {
		return n.deliver(from, f, p)
	}
	if p.r.next == n.h.ID() || p.r.next == from {
		return fmt.Errorf("clove packet: next hop %s loops back: %w", p.r.next, ErrMalformed)
	}
	out := newLink()
	key := linkKey{p.r.next, out}
	n.mu.Lock()
	if len(n.sessions) >= n.p.MaxSessions {
		n.mu.Unlock()
		return fmt.Errorf("clove relay: %d sessions held: %w", n.p.MaxSessions, ErrBusy)
	}
	n.sessions[key] = &session{pred: from, predLink: f.link, reply: p.keys.reply, expires: p.r.deadline}
	n.mu.Unlock()
	n.observe(Observation{Event: "relay", From: from, To: p.r.next, Data: f.data})
	if err := n.send(n.ctx, p.r.next, frame{kind: frameForward, link: out, data: p.out}); err != nil {
		n.mu.Lock()
		delete(n.sessions, key)
		n.mu.Unlock()
		return err
	}
	return nil
}

// handleReply relays an ack or final reply one hop back, or hands it to
// the request waiting for it. A session relays one ack and one final reply.
func (n *Node) handleReply(from peer.ID, f frame) error {
	key := linkKey{from, f.link}
	now := time.Now().UnixMilli()
	n.mu.Lock()
	if pp, ok := n.pending[key]; ok {
		if f.kind == frameReply {
			delete(n.pending, key)
		}
		n.mu.Unlock()
		n.observe(Observation{Event: "answer", From: from, Data: f.data, Ack: f.kind == frameAck})
		pp.receive(f.kind, f.data)
		return nil
	}
	// Ack and reply travel on separate streams and may arrive in either
	// order; the session ends when both have passed.
	s, ok := n.sessions[key]
	dup := false
	if ok {
		flag := &s.replied
		if f.kind == frameAck {
			flag = &s.acked
		}
		dup, *flag = *flag, true
		if s.acked && s.replied {
			delete(n.sessions, key)
		}
	}
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("clove reply from %s link %x: %w", from, f.link[:4], ErrUnknownSession)
	}
	if dup {
		return fmt.Errorf("clove reply (kind %d) from %s link %x: second of its kind: %w", f.kind, from, f.link[:4], ErrReplay)
	}
	if s.expires < now {
		return fmt.Errorf("clove reply from %s link %x: %w", from, f.link[:4], ErrExpired)
	}
	body := make([]byte, len(f.data))
	replyLayer(&s.reply, f.kind, body, f.data)
	n.observe(Observation{Event: "reply", From: from, To: s.pred, Data: f.data, Ack: f.kind == frameAck})
	return n.send(n.ctx, s.pred, frame{kind: f.kind, link: s.predLink, data: body})
}

// verifiedCandidates returns the members whose key signature verifies.
func (n *Node) verifiedCandidates() map[peer.ID]Candidate {
	out := map[peer.ID]Candidate{}
	if n.mem == nil {
		return out
	}
	for _, c := range n.mem.Candidates() {
		k := string(c.ID) + string(c.Key[:]) + string(c.Sig)
		n.mu.Lock()
		ok, known := n.verified[k]
		n.mu.Unlock()
		if !known {
			ok = c.Verify() == nil
			n.mu.Lock()
			if len(n.verified) > 4*n.p.MaxSessions {
				clear(n.verified)
			}
			n.verified[k] = ok
			n.mu.Unlock()
		}
		if ok {
			out[c.ID] = c
		}
	}
	return out
}

// randInt returns a uniform int in [0, max).
func randInt(max int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(max)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

// pickPaths chooses count disjoint paths of L relays at random among the
// candidates, excluding the sender and the destination.
func pickPaths(cands map[peer.ID]Candidate, self, dest peer.ID, count, L int) ([][]Candidate, error) {
	var pool []Candidate
	for id, c := range cands {
		if id != self && id != dest {
			pool = append(pool, c)
		}
	}
	if len(pool) < count*L {
		return nil, fmt.Errorf("clove: %d relays known, %d disjoint paths of %d need %d: %w", len(pool), count, L, count*L, ErrNoPaths)
	}
	need := count * L
	for i := 0; i < need; i++ { // partial Fisher-Yates with crypto/rand
		j := i + randInt(len(pool)-i)
		pool[i], pool[j] = pool[j], pool[i]
	}
	paths := make([][]Candidate, count)
	for i := range paths {
		paths[i] = pool[i*L : (i+1)*L]
	}
	return paths, nil
}

// pickOverlapping is the fallback for small communities: count paths of L
// relays where paths may share relays (never one relay twice on a path).
// Relays are spread evenly: path i takes the next L of one random order,
// wrapping around.
func pickOverlapping(cands map[peer.ID]Candidate, self, dest peer.ID, count, L int) ([][]Candidate, error) {
	var pool []Candidate
	for id, c := range cands {
		if id != self && id != dest {
			pool = append(pool, c)
		}
	}
	if len(pool) < L {
		return nil, fmt.Errorf("clove: %d relays known, a path of %d needs %d: %w", len(pool), L, L, ErrNoPaths)
	}
	for i := len(pool) - 1; i > 0; i-- {
		j := randInt(i + 1)
		pool[i], pool[j] = pool[j], pool[i]
	}
	paths := make([][]Candidate, count)
	for i := range paths {
		for j := 0; j < L; j++ {
			paths[i] = append(paths[i], pool[(i*L+j)%len(pool)])
		}
	}
	return paths, nil
}

// pickSharedEntry chooses one entry relay shared by all paths, then count
// disjoint continuations of L-1 relays: path i = entry + continuation i.
// The sender then talks to one relay only, which bounds its exposure to
// colluders to that relay (see Params.SharedEntry).
func pickSharedEntry(cands map[peer.ID]Candidate, self, dest peer.ID, count, L int) ([][]Candidate, error) {
	var pool []Candidate
	for id, c := range cands {
		if id != self && id != dest {
			pool = append(pool, c)
		}
	}
	need := 1 + count*(L-1)
	if len(pool) < need {
		return nil, fmt.Errorf("clove: %d relays known, a shared entry and %d disjoint continuations of %d need %d: %w",
			len(pool), count, L-1, need, ErrNoPaths)
	}
	for i := 0; i < need; i++ { // partial Fisher-Yates with crypto/rand
		j := i + randInt(len(pool)-i)
		pool[i], pool[j] = pool[j], pool[i]
	}
	paths := make([][]Candidate, count)
	for i := range paths {
		paths[i] = append([]Candidate{pool[0]}, pool[1+i*(L-1):1+(i+1)*(L-1)]...)
	}
	return paths, nil
}
