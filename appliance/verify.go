package appliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/inference/verify"
	"github.com/univrs/hypha/mesh"
)

// reportsProtocol serves the verification reports this node holds, from
// a given epoch on: every node keeps every report and pulls from every
// member (anti-entropy gossip), so all nodes compute the same reputation.
const reportsProtocol = protocol.ID("/hypha/verify-reports/1")

// reportsFile keeps the reports across reboots.
const reportsFile = "verify-reports.json"

// verification is the node's part in the verification committee: the
// book of reports every node keeps, and, on committee members, the
// verifier that challenges the serving nodes each epoch.
type verification struct {
	book     *verify.Book
	pool     *verify.Pool
	verifier *verify.Verifier // nil: this node is not on the committee
	lie      string           // test hook: "", "0", "1" or "invert"
	path     string

	mu       sync.Mutex
	lastSave string            // fingerprint of the reports last written
	lastErr  map[string]string // node -> why its last challenge failed
}

// startVerification sets up the book from the community manifest, serves
// and pulls reports, and runs the verifier if the manifest names this
// node. It needs the mesh; cloves are needed to verify.
func (n *Node) startVerification(ctx context.Context) error {
	if n.community == nil || n.mesh == nil {
		return nil
	}
	m := n.community.Manifest
	p := verify.ParamsFrom(verify.ReputationParams(m.Reputation))
	v := &verification{
		book: verify.NewBook(p, m.CommunityID, m.Verifiers.Members),
		pool: verify.NewPool(m.Verifiers.Prompts, rand.Int64()),
		lie:  n.opts.VerifierLie,
		path: filepath.Join(n.opts.PermDir, "hypha", reportsFile),
	}
	if err := v.load(); err != nil {
		n.log.Warn("verification reports", "err", err)
	}
	if slices.Contains(m.Verifiers.Members, n.id.ID()) && n.opts.EngineURL != "" {
		k, err := crypto.UnmarshalEd25519PrivateKey(n.id.Private)
		if err != nil {
			return err
		}
		v.verifier = &verify.Verifier{Community: m.CommunityID, Key: k, Params: p, Pool: v.pool,
			Scorer: verify.Scorer{BaseURL: n.opts.EngineURL}, Send: cloveSender{n}}
	}
	n.verify = v
	n.mesh.SetStreamHandler(reportsProtocol, v.serve)
	go n.pullReports(ctx)
	if v.verifier != nil {
		if n.opts.VerifierLie != "" {
			n.log.Warn("verifier: LYING on purpose (test hook -verifier-lie)", "lie", n.opts.VerifierLie)
		}
		go n.verifyLoop(ctx)
	}
	n.log.Info("verification", "committee", len(m.Verifiers.Members), "verifier", v.verifier != nil, "params", p.String())
	return nil
}

// cloveSender sends challenges as cloves over onion paths: to the serving
// node a challenge is one more anonymous request.
type cloveSender struct{ n *Node }

func (s cloveSender) Send(ctx context.Context, node string, body []byte) ([]byte, error) {
	if s.n.cloves == nil {
		return nil, errors.New("cloves are not running")
	}
	id, err := peer.Decode(node)
	if err != nil {
		return nil, err
	}
	s.n.refreshCandidates(ctx)
	return s.n.cloves.Request(ctx, id, body)
}

// verifyLoop challenges every serving node once per epoch, at a random
// moment in the first half of it (so nodes cannot expect the challenges
// at the epoch's start), and publishes the signed reports.
func (n *Node) verifyLoop(ctx context.Context) {
	p := n.verify.book.Params()
	last := int64(-1)
	for {
		// Once per epoch: a second, different report for the same node
		// and epoch would be equivocation, and the committee would ignore
		// this verifier from then on.
		e := max(p.EpochOf(time.Now()), last+1)
		at := p.EpochStart(e).Add(time.Duration(rand.Int64N(int64(p.Epoch / 2))))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		ectx, cancel := context.WithDeadline(ctx, p.EpochStart(e+1))
		n.verifyEpoch(ectx, e)
		cancel()
		last = e
	}
}

// verifyEpoch checks, for epoch e, every up member that serves a model
// this node's engine also has (the reference it scores against).
func (n *Node) verifyEpoch(ctx context.Context, e int64) {
	v := n.verify
	local, _, _ := n.engine.get()
	done := map[string]bool{} // nodes this verifier already reported on for e (before a reboot)
	for _, r := range v.book.Since(e) {
		if r.Epoch == e && r.Verifier == n.id.ID() {
			done[r.Node] = true
		}
	}
	var wg sync.WaitGroup
	for _, m := range n.mesh.Members() {
		if m.State != mesh.StateUp || m.Announcement == nil || done[m.ID.String()] {
			continue
		}
		for _, md := range m.Announcement.Models {
			if !slices.ContainsFunc(local, func(l mesh.Model) bool { return l.Name == md.Name }) {
				continue
			}
			wg.Add(1)
			go func(node peer.ID, model string) {
				defer wg.Done()
				r, err := v.verifier.Verify(ctx, e, node.String(), model)
				v.mu.Lock()
				if v.lastErr == nil {
					v.lastErr = map[string]string{}
				}
				if err != nil {
					v.lastErr[node.String()] = err.Error()
				} else {
					delete(v.lastErr, node.String())
				}
				v.mu.Unlock()
				if err != nil {
					n.log.Info("verify: no report", "node", n.nodeName(node.String()), "model", model, "epoch", e, "err", err)
					return
				}
				if v.lie != "" {
					r.Credit = lie(v.lie, r.Credit)
					if err := r.Sign(v.verifier.Key); err != nil {
						n.log.Warn("verify: sign", "err", err)
						return
					}
				}
				if _, err := v.book.Add(r); err != nil {
					n.log.Warn("verify: own report refused", "err", err)
					return
				}
				n.log.Info("verify", "node", n.nodeName(node.String()), "model", model, "epoch", e,
					"credit", fmt.Sprintf("%.3f", r.Credit), "perplexity", fmt.Sprintf("%.1f", r.Perplexity))
			}(m.ID, md.Name)
			break // one model per node and epoch
		}
	}
	wg.Wait()
	v.save(n)
}

// lie is the lying verifier of the committee test: "0" and "1" report
// that credit for everyone, "invert" the opposite of the truth.
func lie(how string, credit float64) float64 {
	switch how {
	case "0":
		return 0
	case "1":
		return 1
	}
	return 1 - credit
}

// serve answers a pull: 8 bytes big-endian epoch in, the reports from that
// epoch on out.
func (v *verification) serve(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(15 * time.Second))
	var b [8]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		s.Reset()
		return
	}
	verify.WriteReports(s, v.book.Since(int64(binary.BigEndian.Uint64(b[:]))))
}

// pullReports asks every up member for its reports of the recent epochs,
// a few times per epoch. Every report is checked (signature, committee,
// community) before it counts.
func (n *Node) pullReports(ctx context.Context) {
	v := n.verify
	p := v.book.Params()
	every := max(2*time.Second, p.Epoch/4)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		since := p.EpochOf(time.Now()) - int64(4*p.Window)
		for _, m := range n.mesh.Members() {
			if m.State != mesh.StateUp {
				continue
			}
			if err := n.pullFrom(ctx, m.ID, since); err != nil {
				n.log.Debug("verify: pull reports", "peer", m.ID, "err", err)
			}
		}
		v.book.Prune(since - int64(8*p.Window))
		v.save(n)
	}
}

func (n *Node) pullFrom(ctx context.Context, id peer.ID, since int64) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := n.mesh.NewStream(ctx, id, reportsProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(since))
	if _, err := s.Write(b[:]); err != nil {
		return err
	}
	s.CloseWrite()
	// What arrived whole counts even if the stream broke off.
	rs, rerr := verify.ReadReports(s, 64<<20)
	for _, r := range rs {
		if _, err := n.verify.book.Add(r); err != nil {
			n.log.Debug("verify: report refused", "from", id, "err", err)
		}
	}
	if rerr != nil {
		return fmt.Errorf("reports from %s: %w", id, rerr)
	}
	return nil
}

// load reads the reports saved before a reboot; each is checked again.
func (v *verification) load() error {
	f, err := os.Open(v.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	rs, err := verify.ReadReports(f, 0)
	for _, r := range rs {
		v.book.Add(r) // stale or foreign reports are refused; the rest count
	}
	v.lastSave = fingerprint(rs)
	if err != nil {
		return fmt.Errorf("%s: %w", v.path, err)
	}
	return nil
}

// save writes the book when it changed (atomically: a power cut leaves
// the old file or the new one).
func (v *verification) save(n *Node) {
	rs := v.book.Since(0)
	v.mu.Lock()
	defer v.mu.Unlock()
	fp := fingerprint(rs)
	if fp == v.lastSave {
		return
	}
	var buf bytes.Buffer
	verify.WriteReports(&buf, rs)
	if err := WriteFileAtomic(v.path, buf.Bytes(), 0o644); err != nil {
		n.log.Warn("verify: save reports", "err", err)
		return
	}
	v.lastSave = fp
}

// fingerprint tells whether the set of reports changed: pruning old ones
// while new ones arrive can leave the count the same.
func fingerprint(rs []*verify.Report) string {
	var sum int64
	for _, r := range rs {
		sum += r.Time ^ r.Epoch
	}
	return fmt.Sprintf("%d/%d", len(rs), sum)
}

// reputation is the router's view: the book's, once the node takes part.
func (n *Node) reputation() route.Reputation {
	if n.verify == nil {
		return nil
	}
	return n.verify.book
}

// withReputation fills a serving node's standing from the book (1 and no
// flag when no committee runs).
func (n *Node) withReputation(in lanpage.InferenceNode) lanpage.InferenceNode {
	in.Reputation = 1
	if n.verify == nil {
		return in
	}
	p := n.verify.book.Params()
	h := n.verify.book.History(in.PeerID, p.EpochOf(time.Now())-1)
	in.Reputation, in.Flag, in.VerifiedEpochs = h.Current, h.Reason, len(h.Points)
	return in
}

// reputationView adds the committee's work to the Inference view: how
// nodes are checked and each serving node's reputation after every
// scored epoch.
func (n *Node) reputationView(out *lanpage.Inference) {
	out.ReputationThreshold = route.DefaultThreshold
	if n.verify == nil {
		return
	}
	v := n.verify
	p := v.book.Params()
	out.ReputationThreshold = p.Threshold
	members := len(n.community.Manifest.Verifiers.Members)
	role := "This node is not on the committee."
	if v.verifier != nil {
		role = "This node is on the committee."
	}
	out.Verification = fmt.Sprintf("A committee of %d verifiers sends every serving node %d disguised challenge(s) every %v, as anonymous requests, and scores the answers with the same model on its own engine. A node whose reputation falls below %s gets no requests. %s",
		members, p.Challenges, p.Epoch, strconv.FormatFloat(p.Threshold, 'f', -1, 64), role)
	if members == 0 {
		out.Verification = "The community names no verifiers: nobody checks what the serving nodes answer."
	}
	for _, nd := range out.Nodes {
		h := v.book.History(nd.PeerID, p.EpochOf(time.Now())-1)
		if len(h.Points) == 0 {
			continue
		}
		s := lanpage.Series{Name: nd.Name, Chart: "Reputation", Unit: ""}
		for _, pt := range h.Points {
			s.Points = append(s.Points, lanpage.Point{T: p.EpochStart(pt.Epoch + 1), V: pt.Reputation})
		}
		out.ReputationSeries = append(out.ReputationSeries, s)
	}
}
