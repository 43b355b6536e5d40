package clove

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// inbound is the serving node's state for one message.
type inbound struct {
	cloves  []Clove
	paths   []replyPath
	started bool
	replies [][]byte // encoded reply cloves, set when the handler returned
	expires int64    // unix ms
}

// replyPath is where reply clove i goes: the predecessor, the link it used,
// and this node's keys for that path.
type replyPath struct {
	pred peer.ID
	link linkID
	keys hopKeys
	sent bool
}

// deliver handles a packet whose last layer this node removed.
func (n *Node) deliver(from peer.ID, f frame, p peeled) error {
	if n.handler == nil {
		return fmt.Errorf("clove deliver: %w", ErrNotServing)
	}
	c, err := DecodeClove(p.out)
	if err != nil {
		return fmt.Errorf("clove deliver: %w", err)
	}
	if int(c.N) != n.p.N || int(c.K) != n.p.K {
		return fmt.Errorf("clove deliver: n=%d k=%d, community uses n=%d k=%d: %w", c.N, c.K, n.p.N, n.p.K, ErrMalformed)
	}
	n.observe(Observation{Event: "deliver", From: from, Data: f.data})
	rp := replyPath{pred: from, link: f.link, keys: p.keys}
	n.mu.Lock()
	in, ok := n.inbound[c.ID]
	if !ok {
		if len(n.inbound) >= n.p.MaxSessions {
			n.mu.Unlock()
			return fmt.Errorf("clove deliver: %d messages held: %w", len(n.inbound), ErrBusy)
		}
		in = &inbound{expires: p.r.deadline}
		n.inbound[c.ID] = in
	}
	if len(in.paths) >= MaxN { // N per attempt, at most 4 attempts
		n.mu.Unlock()
		return fmt.Errorf("clove deliver: message %x has %d paths already: %w", c.ID[:4], len(in.paths), ErrMalformed)
	}
	in.cloves = append(in.cloves, c)
	in.paths = append(in.paths, rp)
	var start []Clove
	if !in.started && distinct(in.cloves, seq(len(in.cloves))) >= int(c.K) {
		start = append([]Clove(nil), in.cloves...)
	}
	ready := in.replies != nil
	n.mu.Unlock()
	// Ack at once, so the sender knows this path works.
	if n.ackDelay > 0 {
		time.Sleep(n.ackDelay)
	}
	if ack, err := sealReply(&p.keys, frameAck, nil, n.p.MinPacket); err == nil {
		if err := n.send(n.ctx, from, frame{kind: frameAck, link: f.link, data: ack}); err != nil {
			n.log.Debug("ack send failed", "to", from, "err", err)
		}
	}
	if ready {
		n.sendReplies(c.ID)
		return nil
	}
	if start == nil {
		return nil
	}
	msg, _, err := Combine(start)
	if err != nil { // keep the cloves and wait for more
		n.log.Debug("cannot rebuild yet", "msg", fmt.Sprintf("%x", c.ID[:4]), "err", err)
		return nil
	}
	n.mu.Lock()
	if in.started {
		n.mu.Unlock()
		return nil
	}
	in.started = true
	n.mu.Unlock()
	n.wg.Add(1)
	go n.serve(c.ID, msg, p.r.deadline)
	return nil
}

// serve runs the handler and sends the reply cloves back.
func (n *Node) serve(id MessageID, req []byte, deadline int64) {
	defer n.wg.Done()
	ctx, cancel := context.WithDeadline(n.ctx, time.UnixMilli(deadline))
	defer cancel()
	reply, err := n.handler(ctx, req)
	if now := time.Now().UnixMilli(); now > deadline {
		n.log.Debug("reply too late, dropped", "late", time.Duration(now-deadline)*time.Millisecond)
		return
	}
	var msg []byte
	if err != nil {
		text := err.Error()
		if len(text) > maxErrText {
			text = text[:maxErrText]
		}
		msg = append([]byte{replyErr}, text...)
	} else {
		msg = append([]byte{replyOK}, reply...)
	}
	if len(msg)-1 > n.p.MaxMessage() {
		msg = append([]byte{replyErr}, fmt.Sprintf("reply of %d bytes exceeds %d", len(msg)-1, n.p.MaxMessage())...)
	}
	// MaxN reply cloves: one for each path this message may arrive on
	// (resends reuse the message id); any K rebuild the reply.
	cloves, err := SplitID(id, msg, MaxN, n.p.K)
	if err != nil {
		n.log.Warn("reply split failed", "err", err)
		return
	}
	enc := make([][]byte, len(cloves))
	for i := range cloves {
		enc[i], _ = cloves[i].MarshalBinary()
	}
	n.mu.Lock()
	if in, ok := n.inbound[id]; ok {
		in.replies = enc
	}
	n.mu.Unlock()
	n.sendReplies(id)
}

// sendReplies sends reply clove i over the i-th path that has not had one.
func (n *Node) sendReplies(id MessageID) {
	type job struct {
		to   peer.ID
		link linkID
		body []byte
	}
	var jobs []job
	n.mu.Lock()
	in, ok := n.inbound[id]
	if ok && in.replies != nil {
		for i := range in.paths {
			rp := &in.paths[i]
			if rp.sent || i >= len(in.replies) {
				continue
			}
			rp.sent = true
			size := n.p.sizeClass(4 + len(in.replies[i]) + tagLen)
			body, err := sealReply(&rp.keys, frameReply, in.replies[i], size)
			if err != nil {
				n.log.Warn("reply seal failed", "err", err)
				continue
			}
			jobs = append(jobs, job{rp.pred, rp.link, body})
		}
	}
	n.mu.Unlock()
	for _, j := range jobs {
		if err := n.send(n.ctx, j.to, frame{kind: frameReply, link: j.link, data: j.body}); err != nil {
			n.log.Debug("reply send failed", "to", j.to, "err", err)
		}
	}
}
