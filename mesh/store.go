package mesh

import (
	"sort"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// store keeps, per origin, the recent announcements of its current epoch
// (at most history of them) so that the anti-entropy sync can replay what a
// peer missed. It is safe for concurrent use.
type store struct {
	history int

	mu      sync.Mutex
	origins map[peer.ID]*originLog // guarded by mu
}

type originLog struct {
	epoch  int64
	lo, hi uint64                         // lowest and highest seq held or expected
	msgs   map[uint64]*signedAnnouncement // seq -> announcement, within (hi-history, hi]
}

func newStore(history int) *store {
	return &store{history: history, origins: make(map[peer.ID]*originLog)}
}

// add records s. It reports whether s was new (not seen before and not
// older than the window); only new announcements are delivered.
func (st *store) add(s *signedAnnouncement) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	a := s.a
	l := st.origins[s.origin]
	switch {
	case l == nil || a.Epoch > l.epoch:
		l = &originLog{epoch: a.Epoch, lo: a.Seq, hi: a.Seq, msgs: make(map[uint64]*signedAnnouncement)}
		st.origins[s.origin] = l
	case a.Epoch < l.epoch:
		return false // from an earlier run of the node
	}
	if _, ok := l.msgs[a.Seq]; ok {
		return false
	}
	if l.hi >= uint64(st.history) && a.Seq <= l.hi-uint64(st.history) {
		return false // fell out of the window
	}
	l.msgs[a.Seq] = s
	if a.Seq > l.hi {
		l.hi = a.Seq
	}
	if a.Seq < l.lo {
		l.lo = a.Seq
	}
	// Trim to the window.
	if l.hi > uint64(st.history) {
		floor := l.hi - uint64(st.history)
		if l.lo <= floor {
			for seq := range l.msgs {
				if seq <= floor {
					delete(l.msgs, seq)
				}
			}
			l.lo = floor + 1
		}
	}
	return true
}

// latest returns the highest-sequence announcement of origin, or nil.
func (st *store) latest(origin peer.ID) *signedAnnouncement {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.origins[origin]
	if l == nil {
		return nil
	}
	return l.msgs[l.hi]
}

// forget drops everything known about origin.
func (st *store) forget(origin peer.ID) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.origins, origin)
}

// digest describes what the store holds, for a sync request.
func (st *store) digest() *digest {
	st.mu.Lock()
	defer st.mu.Unlock()
	d := &digest{Version: SyncVersion, Have: make([]digestEntry, 0, len(st.origins))}
	for id, l := range st.origins {
		e := digestEntry{Origin: id.String(), Epoch: l.epoch, Hi: l.hi}
		for seq := l.lo; seq < l.hi && len(e.Miss) < maxMissPerEntry; seq++ { // at most history iterations: lo > hi-history
			if _, ok := l.msgs[seq]; !ok {
				e.Miss = append(e.Miss, seq)
			}
		}
		d.Have = append(d.Have, e)
		if len(d.Have) == maxDigestOrigin {
			break
		}
	}
	return d
}

// missing returns what the sender of d lacks, oldest first per origin, at
// most limit announcements. For an origin the sender does not know, only the
// latest announcement is sent: a newcomer needs the state, not the history.
func (st *store) missing(d *digest, limit int) []*signedAnnouncement {
	have := make(map[string]*digestEntry, len(d.Have))
	for i := range d.Have {
		have[d.Have[i].Origin] = &d.Have[i]
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*signedAnnouncement
	for id, l := range st.origins {
		e := have[id.String()]
		var seqs []uint64
		switch {
		case e == nil:
			seqs = []uint64{l.hi}
		case e.Epoch < l.epoch:
			for seq := range l.msgs {
				seqs = append(seqs, seq)
			}
		case e.Epoch == l.epoch:
			miss := make(map[uint64]bool, len(e.Miss))
			for _, m := range e.Miss {
				miss[m] = true
			}
			for seq := range l.msgs {
				if seq > e.Hi || miss[seq] {
					seqs = append(seqs, seq)
				}
			}
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		for _, seq := range seqs {
			if s, ok := l.msgs[seq]; ok {
				out = append(out, s)
				if len(out) >= limit {
					return out
				}
			}
		}
	}
	return out
}
