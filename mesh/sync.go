package mesh

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The anti-entropy sync: the dialer sends one frame with its digest; the
// listener answers with one frame per announcement the dialer lacks and
// closes. Each side pulls independently, on every new connection and every
// SyncInterval with the next member in turn, so announcements made while two parts
// of the mesh were apart reach everyone once they meet again.

// syncWith pulls from id, retrying a few times (a fresh connection may be
// closed as a duplicate under the first attempt). Requests that arrive while
// an exchange with id runs are coalesced into one more exchange after it.
func (n *Node) syncWith(id peer.ID, attempts int) {
	n.mu.Lock()
	if _, busy := n.syncing[id]; busy {
		// One exchange at a time per peer, but never drop a request: the
		// running one may be stuck on a dead connection while this one
		// comes from a fresh connection.
		n.syncing[id] = true
		n.mu.Unlock()
		return
	}
	n.syncing[id] = false
	n.mu.Unlock()
	for {
		n.syncAttempts(id, attempts)
		n.mu.Lock()
		again := n.syncing[id]
		if !again || n.ctx.Err() != nil {
			delete(n.syncing, id)
			n.mu.Unlock()
			return
		}
		n.syncing[id] = false
		n.mu.Unlock()
	}
}

func (n *Node) syncAttempts(id peer.ID, attempts int) {
	for i := range attempts {
		if i > 0 {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		got, err := n.pull(id)
		if err == nil {
			if got > 0 {
				n.log.Info("anti-entropy sync", "peer", id, "received", got)
			}
			return
		}
		if n.ctx.Err() != nil {
			return
		}
		n.log.Debug("anti-entropy sync", "peer", id, "attempt", i+1, "err", err)
	}
}

// pull runs one sync exchange with id and returns how many new
// announcements it delivered.
func (n *Node) pull(id peer.ID) (int, error) {
	ctx, cancel := context.WithTimeout(n.ctx, syncTimeout)
	defer cancel()
	s, err := n.h.NewStream(network.WithNoDial(ctx, "sync"), id, SyncProtocol)
	if err != nil {
		return 0, fmt.Errorf("sync with %s: %w", id, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout))
	d, err := json.Marshal(n.store.digest())
	if err != nil {
		s.Reset()
		return 0, fmt.Errorf("sync with %s: %w", id, err)
	}
	if err := writeFrame(s, d); err != nil {
		s.Reset()
		return 0, fmt.Errorf("sync with %s: send digest: %w", id, err)
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return 0, fmt.Errorf("sync with %s: %w", id, err)
	}
	r := bufio.NewReader(s)
	got := 0
	for range syncLimit {
		b, err := readFrame(r, maxEnvelopeSize)
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			s.Reset()
			return got, fmt.Errorf("sync with %s: %w", id, err)
		}
		sa, err := decodeEnvelope(b)
		if err != nil {
			// One bad announcement (e.g. a forged one relayed by a buggy
			// peer) does not spoil the rest.
			n.log.Warn("sync: dropping announcement", "peer", id, "err", err)
			continue
		}
		if n.receive(sa, "sync") {
			got++
		}
	}
	s.Reset()
	return got, fmt.Errorf("sync with %s: %w: more than %d announcements", id, ErrTooLarge, syncLimit)
}

// handleSync answers a peer's digest with what it lacks.
func (n *Node) handleSync(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout))
	b, err := readFrame(bufio.NewReader(s), maxDigestSize)
	if err != nil {
		n.log.Debug("sync: bad request", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	d, err := decodeDigest(b)
	if err != nil {
		n.log.Warn("sync: bad digest", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	w := bufio.NewWriter(s)
	for _, sa := range n.store.missing(d, syncLimit) {
		if err := writeFrame(w, sa.raw); err != nil {
			s.Reset()
			return
		}
	}
	if err := w.Flush(); err != nil {
		s.Reset()
	}
}
