package clove

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// result is the outcome of a Request, shared by its attempts: they carry
// the same message id, so the serving node runs the handler once and reply
// cloves from any attempt's paths rebuild the reply.
type result struct {
	id   MessageID
	k    int
	done chan struct{}
	once sync.Once
	msg  []byte // set before done closes
	err  error  // set before done closes

	mu  sync.Mutex
	got []Clove // reply cloves; guarded by mu
}

func newResult(id MessageID, k int) *result { return &result{id: id, k: k, done: make(chan struct{})} }

func newMessageID() MessageID {
	var id MessageID
	if _, err := rand.Read(id[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return id
}

func (r *result) replies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// add takes one reply clove and finishes r once K of them rebuild the reply.
func (r *result) add(c Clove) {
	if c.ID != r.id {
		return
	}
	r.mu.Lock()
	r.got = append(r.got, c)
	got := append([]Clove(nil), r.got...)
	r.mu.Unlock()
	if distinct(got, seq(len(got))) < r.k {
		return
	}
	msg, _, err := Combine(got)
	if err != nil {
		return // wait for another clove
	}
	if len(msg) < 1 {
		r.finish(nil, fmt.Errorf("clove request: empty reply: %w", ErrMalformed))
		return
	}
	switch msg[0] {
	case replyOK:
		r.finish(msg[1:], nil)
	case replyErr:
		r.finish(nil, fmt.Errorf("clove request: %q: %w", msg[1:], ErrRemote))
	default:
		r.finish(nil, fmt.Errorf("clove request: reply status %d: %w", msg[0], ErrMalformed))
	}
}

func (r *result) finish(msg []byte, err error) {
	r.once.Do(func() {
		r.msg, r.err = msg, err
		close(r.done)
	})
}

// attempt is one sending of a request: N cloves over N paths.
type attempt struct {
	k      int
	res    *result
	acked  chan struct{} // closed when K paths acked
	failed chan struct{} // closed when fewer than K first hops took the packet
	paths  [][]Candidate

	mu      sync.Mutex
	acks    int    // guarded by mu
	ackedBy []bool // per path; guarded by mu
	replied []bool // per path: its reply clove came; guarded by mu
	started time.Time
	sendErr int // guarded by mu
	ackOnce sync.Once
	failOne sync.Once
}

// pendingPath is one path of an attempt, awaiting its ack and reply clove.
type pendingPath struct {
	at   *attempt
	keys []hopKeys
	path int
}

// receive handles an ack or a final reply that came back over pp.
func (pp *pendingPath) receive(kind byte, body []byte) {
	a := pp.at
	b, err := openReply(pp.keys, kind, body)
	if err != nil {
		return // tampered: the other paths may still answer
	}
	if kind == frameAck {
		if len(b) == 0 {
			a.mu.Lock()
			a.ackLocked(pp.path)
			a.mu.Unlock()
		}
		return
	}
	c, err := DecodeClove(b)
	if err != nil {
		return
	}
	a.mu.Lock()
	a.ackLocked(pp.path) // a reply is an ack too
	a.replied[pp.path] = true
	a.mu.Unlock()
	a.res.add(c)
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// Request sends req anonymously to the serving node dest as N cloves over N
// disjoint onion paths of L relays and waits for the reply (rebuilt from
// the first K reply cloves). dest learns neither this node's peer id nor
// its address; each relay learns only its predecessor and successor. Up to
// N-K paths may fail; if fewer than K paths are acknowledged by dest within
// Params.AckTimeout, the request is sent again (up to Params.Retries times)
// over fresh paths avoiding the relays of the silent ones. It returns when a
// reply is rebuilt, ctx ends or Params.Expiry passes. Safe for concurrent use.
func (n *Node) Request(ctx context.Context, dest peer.ID, req []byte) ([]byte, error) {
	if dest == n.h.ID() {
		return nil, fmt.Errorf("clove request to %s: that is this node: %w", dest, ErrUnknownPeer)
	}
	cands := n.verifiedCandidates()
	dc, ok := cands[dest]
	if !ok {
		return nil, fmt.Errorf("clove request to %s: %w", dest, ErrUnknownPeer)
	}
	ctx, cancel := context.WithTimeout(ctx, n.p.Expiry)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // senders still dialling give up
	res := newResult(newMessageID(), n.p.K)
	retries := max(n.p.Retries, 0)
	var ats []*attempt
	for try := 0; ; try++ {
		paths, err := n.choose(cands, dest)
		if err != nil {
			if try == 0 {
				return nil, fmt.Errorf("clove request to %s: %w", dest, err)
			}
			break // no fresh paths left: wait for what is under way
		}
		at, cleanup, err := n.start(ctx, &wg, res, dc, paths, req)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		ats = append(ats, at)
		if try >= retries {
			break
		}
		timer := time.NewTimer(n.p.AckTimeout)
		select {
		case <-res.done:
			timer.Stop()
			return res.msg, res.err
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("clove request to %s: %w", dest, ctx.Err())
		case <-at.acked:
			timer.Stop()
			return n.waitWatching(ctx, &wg, res, dc, req, ats)
		case <-at.failed:
		case <-timer.C:
		}
		// Retry: drop every relay of the paths that did not ack.
		at.mu.Lock()
		unacked := at.unackedPathsLocked()
		at.mu.Unlock()
		for _, i := range unacked {
			for _, c := range at.paths[i] {
				delete(cands, c.ID)
			}
		}
		n.resends.Add(1)
		n.log.Info("anonymous request: resending over fresh paths", "silent_paths", len(unacked), "paths", len(at.paths))
	}
	return n.waitWatching(ctx, &wg, res, dc, req, ats)
}

// choose picks N paths of L relays from cands for a request to dest:
// disjoint ones, or overlapping ones if the parameters allow it and there
// are too few relays.
func (n *Node) choose(cands map[peer.ID]Candidate, dest peer.ID) ([][]Candidate, error) {
	paths, err := n.pick(cands, n.h.ID(), dest, n.p.N, n.p.L)
	if errors.Is(err, ErrNoPaths) && n.p.AllowOverlap {
		paths, err = pickOverlapping(cands, n.h.ID(), dest, n.p.N, n.p.L)
		if err == nil {
			n.noteOverlap(relayCount(cands, n.h.ID(), dest))
		}
	}
	return paths, err
}

// watchPeriod is how often a request waiting for its reply checks the
// relays of its paths against the membership.
const watchPeriod = time.Second

// waitWatching waits for the reply to the attempts ats. Meanwhile, when
// relays leave the membership so that fewer than K paths can still bring
// a reply clove back (a path can if its clove already came, or if every
// relay is still a member and it acknowledged or was sent less than
// AckTimeout ago), it sends the request again over fresh paths of members:
// same message id, so the serving node answers them with the reply it has
// or will have, without running the handler again. The serving node takes
// at most MaxN paths per message, so there are at most MaxN/N attempts in
// all; with Params.Retries < 0, none.
func (n *Node) waitWatching(ctx context.Context, wg *sync.WaitGroup, res *result, dest Candidate, req []byte, ats []*attempt) ([]byte, error) {
	t := time.NewTicker(watchPeriod)
	defer t.Stop()
	for {
		select {
		case <-res.done:
			return res.msg, res.err
		case <-ctx.Done():
			return nil, fmt.Errorf("clove request: %d of %d reply cloves: %w", res.replies(), n.p.K, ctx.Err())
		case <-t.C:
		}
		if n.p.Retries < 0 || (len(ats)+1)*n.p.N > MaxN {
			continue
		}
		live := n.verifiedCandidates()
		alive, lost := n.pathsAlive(ats, live)
		if alive >= n.p.K || lost == 0 {
			continue
		}
		paths, err := n.choose(live, dest.ID)
		if err != nil {
			continue // too few members now: perhaps later
		}
		at, cleanup, err := n.start(ctx, wg, res, dest, paths, req)
		if err != nil {
			return nil, err
		}
		defer cleanup() // at most MaxN/N attempts
		ats = append(ats, at)
		n.resends.Add(1)
		n.log.Info("anonymous request: relays of its paths left, resending over fresh paths", "paths_left", alive, "paths_lost", lost)
	}
}

// pathsAlive counts the paths of ats that can still bring a reply clove
// back and those that lost a relay (no longer in live) before theirs came.
func (n *Node) pathsAlive(ats []*attempt, live map[peer.ID]Candidate) (alive, lost int) {
	now := time.Now()
	for _, a := range ats {
		a.mu.Lock()
		young := now.Sub(a.started) < n.p.AckTimeout
		for i, path := range a.paths {
			if a.replied[i] {
				alive++
				continue
			}
			members := true
			for _, c := range path {
				if _, ok := live[c.ID]; !ok {
					members = false
					break
				}
			}
			switch {
			case !members:
				lost++
			case a.ackedBy[i] || young:
				alive++
			}
		}
		a.mu.Unlock()
	}
	return alive, lost
}

// ackLocked records that path i works. Needs a.mu.
func (a *attempt) ackLocked(i int) {
	if a.ackedBy[i] {
		return
	}
	a.ackedBy[i] = true
	a.acks++
	if a.acks >= a.k {
		a.ackOnce.Do(func() { close(a.acked) })
	}
}

// unackedPathsLocked lists the paths of a without an ack. Needs a.mu.
func (a *attempt) unackedPathsLocked() []int {
	var out []int
	for i, ok := range a.ackedBy {
		if !ok {
			out = append(out, i)
		}
	}
	return out
}

func (n *Node) wait(ctx context.Context, res *result) ([]byte, error) {
	select {
	case <-res.done:
		return res.msg, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("clove request: %d of %d reply cloves: %w", res.replies(), n.p.K, ctx.Err())
	}
}

// requestOver sends one attempt over the given paths, without retries.
func (n *Node) requestOver(ctx context.Context, dest Candidate, paths [][]Candidate, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, n.p.Expiry)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	res := newResult(newMessageID(), n.p.K)
	_, cleanup, err := n.start(ctx, &wg, res, dest, paths, req)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return n.wait(ctx, res)
}

// start splits req (fresh key, the request's message id), builds one packet per path, registers the paths as
// pending and sends the packets (in goroutines tracked by wg). cleanup
// unregisters the paths.
func (n *Node) start(ctx context.Context, wg *sync.WaitGroup, res *result, dest Candidate, paths [][]Candidate, req []byte) (*attempt, func(), error) {
	if len(req) > n.p.MaxMessage() {
		return nil, nil, fmt.Errorf("clove request: %d bytes, max %d: %w", len(req), n.p.MaxMessage(), ErrTooLarge)
	}
	cloves, err := SplitID(res.id, req, n.p.N, n.p.K)
	if err != nil {
		return nil, nil, fmt.Errorf("clove request: %w", err)
	}
	encLen := cloves[0].EncodedLen()
	size := n.p.sizeClass(headerLen(n.p.L) + 4 + encLen)
	if size == 0 {
		return nil, nil, fmt.Errorf("clove request: clove of %d bytes exceeds MaxPacket %d: %w", encLen, n.p.MaxPacket, ErrTooLarge)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(n.p.Expiry)
	}
	at := &attempt{k: n.p.K, res: res, acked: make(chan struct{}), failed: make(chan struct{}), paths: paths,
		ackedBy: make([]bool, len(paths)), replied: make([]bool, len(paths)), started: time.Now()}
	type out struct {
		key linkKey
		f   frame
	}
	outs := make([]out, 0, len(paths))
	cleanup := func() {
		n.mu.Lock()
		for _, o := range outs {
			delete(n.pending, o.key)
		}
		n.mu.Unlock()
	}
	// Build the packets in parallel (X25519 dominates the sender's work).
	pkts := make([][]byte, len(paths))
	keys := make([][]hopKeys, len(paths))
	errs := make([]error, len(paths))
	var bwg sync.WaitGroup
	for j, path := range paths {
		bwg.Add(1)
		go func() {
			defer bwg.Done()
			pkts[j], keys[j], errs[j] = n.buildFor(path, dest, &cloves[j], deadline, size)
		}()
	}
	bwg.Wait()
	for j, path := range paths {
		if errs[j] != nil {
			cleanup()
			return nil, nil, errs[j]
		}
		l := newLink()
		o := out{key: linkKey{path[0].ID, l}, f: frame{kind: frameForward, link: l, data: pkts[j]}}
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			cleanup()
			return nil, nil, ErrClosed
		}
		n.pending[o.key] = &pendingPath{at: at, keys: keys[j], path: j}
		n.mu.Unlock()
		outs = append(outs, o)
	}
	for _, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.send(ctx, o.key.peer, o.f); err != nil {
				at.mu.Lock()
				at.sendErr++
				if len(outs)-at.sendErr < n.p.K {
					at.failOne.Do(func() { close(at.failed) })
				}
				at.mu.Unlock()
			}
		}()
	}
	return at, cleanup, nil
}

// buildFor wraps clove c for path (relays) then dest.
func (n *Node) buildFor(path []Candidate, dest Candidate, c *Clove, deadline time.Time, size int) ([]byte, []hopKeys, error) {
	hops := make([]pathHop, 0, len(path)+1)
	for _, h := range append(append([]Candidate(nil), path...), dest) {
		pub, err := ecdh.X25519().NewPublicKey(h.Key[:])
		if err != nil {
			return nil, nil, fmt.Errorf("clove request: key of %s: %v: %w", h.ID, err, ErrUnknownPeer)
		}
		hops = append(hops, pathHop{id: h.ID, pub: pub})
	}
	cb, err := c.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	pkt, keys, err := buildPacket(hops, deadline.UnixMilli(), cb, size)
	if err != nil {
		return nil, nil, fmt.Errorf("clove request: %w", err)
	}
	return pkt, keys, nil
}

// overlapNoteEvery bounds how often a node says its paths share relays.
const overlapNoteEvery = time.Minute

// noteOverlap tells the steward, at most once per overlapNoteEvery, that
// requests go over paths sharing relays (too few members for disjoint
// ones), which lets one relay see more of a request.
func (n *Node) noteOverlap(relays int) {
	now := time.Now().UnixNano()
	last := n.overlapNoted.Load()
	if now-last < int64(overlapNoteEvery) || !n.overlapNoted.CompareAndSwap(last, now) {
		return
	}
	n.log.Info("anonymous requests over paths that share relays", "relays", relays,
		"disjoint_paths_need", n.p.N*n.p.L)
}

// relayCount is the number of candidates that may relay from self to dest.
func relayCount(cands map[peer.ID]Candidate, self, dest peer.ID) int {
	c := 0
	for id := range cands {
		if id != self && id != dest {
			c++
		}
	}
	return c
}
