package clove

import (
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Directory is a Membership fed by whatever spreads candidates through the
// community (gossip, the community manifest). It keeps one verified
// Candidate per peer. The zero value is ready to use; it is safe for
// concurrent use.
type Directory struct {
	mu    sync.Mutex
	peers map[peer.ID]Candidate // guarded by mu
}

// Add verifies c and stores it, replacing an older entry for the peer.
func (d *Directory) Add(c Candidate) error {
	if err := c.Verify(); err != nil {
		return fmt.Errorf("clove directory: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peers == nil {
		d.peers = map[peer.ID]Candidate{}
	}
	d.peers[c.ID] = c
	return nil
}

// AddBinary decodes a Candidate (Candidate.MarshalBinary) and adds it.
func (d *Directory) AddBinary(b []byte) error {
	var c Candidate
	if err := c.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("clove directory: %w", err)
	}
	return d.Add(c)
}

// Remove forgets p (e.g. when it leaves the community).
func (d *Directory) Remove(p peer.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.peers, p)
}

// Candidates returns a snapshot of the stored candidates.
func (d *Directory) Candidates() []Candidate {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Candidate, 0, len(d.peers))
	for _, c := range d.peers {
		out = append(out, c)
	}
	return out
}
