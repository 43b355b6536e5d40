package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/mesh"
	"github.com/univrs/hypha/mesh/clove"
)

// candidateProtocol serves this node's signed onion key, so that others
// can build clove paths through it.
const candidateProtocol = protocol.ID("/hypha/clove-candidate/1")

// cloveParams takes (n, k, L) from the community manifest.
func (n *Node) cloveParams() clove.Params {
	p := clove.DefaultParams()
	if n.community != nil {
		if c := n.community.Manifest.Clove; c.N > 0 && c.K > 0 && c.L > 0 {
			p.N, p.K, p.L = c.N, c.K, c.L
		}
	}
	// Small communities cannot give every path its own relays.
	p.AllowOverlap = true
	return p
}

// startCloves runs this node as clove relay, sender and (when it has an
// engine) serving node: a reassembled anonymous request is an OpenAI
// chat/completions body handed to the local engine, without ever
// learning who asked.
func (n *Node) startCloves(ctx context.Context) error {
	if n.mesh == nil {
		return nil
	}
	k, err := crypto.UnmarshalEd25519PrivateKey(n.id.Private)
	if err != nil {
		return err
	}
	id, err := clove.NewIdentity(k)
	if err != nil {
		return fmt.Errorf("clove identity: %w", err)
	}
	cand, err := id.Candidate().MarshalBinary()
	if err != nil {
		return err
	}
	n.mesh.SetStreamHandler(candidateProtocol, func(s network.Stream) {
		defer s.Close()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		s.Write(cand)
	})
	p := n.cloveParams()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("clove parameters from the community manifest: %w", err)
	}
	opts := []clove.Option{clove.WithLogger(n.log)}
	if n.opts.EngineURL != "" {
		opts = append(opts, clove.WithHandler(n.serveAnonymous))
	}
	node, err := clove.NewNode(n.mesh.Host(), id, liveCandidates{n}, p, opts...)
	if err != nil {
		return fmt.Errorf("clove: %w", err)
	}
	n.cloves = node
	go n.fetchCandidates(ctx)
	return nil
}

// liveCandidates is the clove membership of a node: the onion keys
// fetched so far, of the members the mesh sees up right now. A relay that
// died is left out of new paths as soon as its connection drops (a power
// cut resets it at once), not DownAfter (30 s) later when the mesh
// declares it down and the candidate sweep forgets its key.
type liveCandidates struct{ n *Node }

// Candidates implements clove.Membership.
func (l liveCandidates) Candidates() []clove.Candidate {
	up := map[peer.ID]bool{}
	for _, m := range l.n.mesh.Members() {
		if m.State == mesh.StateUp {
			up[m.ID] = true
		}
	}
	all := l.n.cloveDir.Candidates()
	out := all[:0]
	for _, c := range all {
		if up[c.ID] {
			out = append(out, c)
		}
	}
	return out
}

// fetchCandidates keeps the directory of onion keys in step with the
// membership: it asks every up member it has no key for.
func (n *Node) fetchCandidates(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		n.refreshCandidates(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshCandidates fetches the onion keys of up members not yet in the
// directory and drops those of members that are down.
func (n *Node) refreshCandidates(ctx context.Context) {
	n.cloveMu.Lock()
	defer n.cloveMu.Unlock()
	if n.cloveHave == nil {
		n.cloveHave = map[peer.ID]bool{}
	}
	for _, m := range n.mesh.Members() {
		switch {
		case m.State == mesh.StateDown && n.cloveHave[m.ID]:
			n.cloveDir.Remove(m.ID)
			delete(n.cloveHave, m.ID)
		case m.State == mesh.StateUp && !n.cloveHave[m.ID]:
			if err := n.fetchCandidate(ctx, m.ID); err != nil {
				n.log.Debug("clove candidate", "peer", m.ID, "err", err)
				continue
			}
			n.cloveHave[m.ID] = true
		}
	}
}

func (n *Node) fetchCandidate(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := n.mesh.NewStream(ctx, p, candidateProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	b, err := io.ReadAll(io.LimitReader(s, 4096))
	if err != nil {
		return err
	}
	// AddBinary checks the signature by the peer's identity key.
	return n.cloveDir.AddBinary(b)
}

// serveAnonymous answers a reassembled clove request with the local engine.
func (n *Node) serveAnonymous(ctx context.Context, req []byte) ([]byte, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.EngineURL+"/v1/chat/completions", bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("engine: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// errNoServer: no member announces the model an anonymous request asks for.
var errNoServer = errors.New("no other node of the mesh serves this model")

// AskAnonymously sends an OpenAI chat/completions body as cloves to a
// member that announces model, over onion paths: the serving node never
// learns which node asked. Streaming is not available this way.
func (n *Node) AskAnonymously(ctx context.Context, model string, body []byte) ([]byte, peer.ID, error) {
	if n.cloves == nil {
		return nil, "", errors.New("anonymous requests need the mesh")
	}
	best := n.anonymousServer(model)
	// A member whose connection is being replaced is not up for a moment:
	// wait a little for a serving member rather than fail the request.
	for wait := time.NewTimer(serverWait); best == ""; best = n.anonymousServer(model) {
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, "", fmt.Errorf("%w: %q: %w", errNoServer, model, ctx.Err())
		case <-wait.C:
			return nil, "", fmt.Errorf("%w: %q", errNoServer, model)
		case <-time.After(200 * time.Millisecond):
		}
	}
	n.refreshCandidates(ctx) // members that came up since the last sweep
	out, err := n.cloves.Request(ctx, best, body)
	return out, best, err
}

// serverWait is how long an anonymous request waits for a member serving
// its model to be up.
const serverWait = 3 * time.Second

// anonymousServer is the least loaded member that is up, trusted and
// announces model, or "".
func (n *Node) anonymousServer(model string) peer.ID {
	var best peer.ID
	bestLoad := 2.0
	for _, m := range n.mesh.Members() {
		if m.State != mesh.StateUp || m.Announcement == nil {
			continue
		}
		if n.verify != nil && !n.verify.book.Trusted(route.NodeID(m.ID.String())) {
			continue // the verification committee caught it serving something else
		}
		for _, md := range m.Announcement.Models {
			if md.Name == model && m.Announcement.Load < bestLoad {
				best, bestLoad = m.ID, m.Announcement.Load
			}
		}
	}
	return best
}
