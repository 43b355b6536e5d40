package clove

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// request is the asker's state for one Request.
type request struct {
	id   MessageID
	mu   sync.Mutex
	got  []Clove // guarded by mu
	done chan struct{}
	once sync.Once
	msg  []byte // set before done closes
	err  error  // set before done closes
	k    int
}

// pendingPath is one path of a request, awaiting its reply clove.
type pendingPath struct {
	req  *request
	keys []hopKeys
}

func (r *request) finish(msg []byte, err error) {
	r.once.Do(func() {
		r.msg, r.err = msg, err
		close(r.done)
	})
}

func (r *request) fail(err error) { r.finish(nil, err) }

// receive handles one reply body that came back over pp.
func (r *request) receive(pp *pendingPath, body []byte) {
	b, err := openReply(pp.keys, body)
	if err != nil {
		return // tampered: the other paths may still answer
	}
	c, err := DecodeClove(b)
	if err != nil || c.ID != r.id {
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
		r.fail(fmt.Errorf("clove request: empty reply: %w", ErrMalformed))
		return
	}
	switch msg[0] {
	case replyOK:
		r.finish(msg[1:], nil)
	case replyErr:
		r.fail(fmt.Errorf("clove request: %q: %w", msg[1:], ErrRemote))
	default:
		r.fail(fmt.Errorf("clove request: reply status %d: %w", msg[0], ErrMalformed))
	}
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
// address; each relay learns only its predecessor and successor. Up to N-K
// paths may fail. It returns when the reply is rebuilt, ctx ends or
// Params.Expiry passes, whichever is first. Safe for concurrent use.
func (n *Node) Request(ctx context.Context, dest peer.ID, req []byte) ([]byte, error) {
	if dest == n.h.ID() {
		return nil, fmt.Errorf("clove request to %s: that is this node: %w", dest, ErrUnknownPeer)
	}
	cands := n.verifiedCandidates()
	dc, ok := cands[dest]
	if !ok {
		return nil, fmt.Errorf("clove request to %s: %w", dest, ErrUnknownPeer)
	}
	paths, err := pickPaths(cands, n.h.ID(), dest, n.p.N, n.p.L)
	if err != nil {
		return nil, fmt.Errorf("clove request to %s: %w", dest, err)
	}
	return n.requestOver(ctx, dc, paths, req)
}

func (n *Node) requestOver(ctx context.Context, dest Candidate, paths [][]Candidate, req []byte) ([]byte, error) {
	if len(req) > n.p.MaxMessage() {
		return nil, fmt.Errorf("clove request: %d bytes, max %d: %w", len(req), n.p.MaxMessage(), ErrTooLarge)
	}
	cloves, err := Split(req, n.p.N, n.p.K)
	if err != nil {
		return nil, fmt.Errorf("clove request: %w", err)
	}
	encLen := cloves[0].EncodedLen()
	size := n.p.sizeClass(headerLen(n.p.L) + 4 + encLen)
	if size == 0 {
		return nil, fmt.Errorf("clove request: clove of %d bytes exceeds MaxPacket %d: %w", encLen, n.p.MaxPacket, ErrTooLarge)
	}
	expiry := time.Now().Add(n.p.Expiry)
	deadline := expiry.UnixMilli()
	ctx, cancel := context.WithDeadline(ctx, expiry)
	defer cancel()

	r := &request{id: cloves[0].ID, done: make(chan struct{}), k: n.p.K}
	type out struct {
		to  peer.ID
		key linkKey
		f   frame
	}
	outs := make([]out, 0, len(paths))
	for j, path := range paths {
		hops := make([]pathHop, 0, len(path)+1)
		for _, c := range append(append([]Candidate(nil), path...), dest) {
			pub, err := ecdh.X25519().NewPublicKey(c.Key[:])
			if err != nil {
				return nil, fmt.Errorf("clove request: key of %s: %v: %w", c.ID, err, ErrUnknownPeer)
			}
			hops = append(hops, pathHop{id: c.ID, pub: pub})
		}
		cb, err := cloves[j].MarshalBinary()
		if err != nil {
			return nil, err
		}
		pkt, keys, err := buildPacket(hops, deadline, cb, size)
		if err != nil {
			return nil, fmt.Errorf("clove request: %w", err)
		}
		l := newLink()
		o := out{to: path[0].ID, key: linkKey{path[0].ID, l}, f: frame{kind: frameForward, link: l, data: pkt}}
		outs = append(outs, o)
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return nil, ErrClosed
		}
		n.pending[o.key] = &pendingPath{req: r, keys: keys}
		n.mu.Unlock()
	}
	defer func() {
		n.mu.Lock()
		for _, o := range outs {
			delete(n.pending, o.key)
		}
		n.mu.Unlock()
	}()

	var wg sync.WaitGroup
	var fmu sync.Mutex
	var sendErrs []error
	for _, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.send(ctx, o.to, o.f); err != nil {
				fmu.Lock()
				sendErrs = append(sendErrs, err)
				if len(outs)-len(sendErrs) < n.p.K {
					r.fail(fmt.Errorf("clove request: %d of %d paths failed at the first hop (last: %v): %w",
						len(sendErrs), len(outs), err, ErrNoPaths))
				}
				fmu.Unlock()
			}
		}()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		r.mu.Lock()
		got := len(r.got)
		r.mu.Unlock()
		r.fail(fmt.Errorf("clove request: %d of %d reply cloves: %w", got, n.p.K, ctx.Err()))
	}
	wg.Wait()
	return r.msg, r.err
}
