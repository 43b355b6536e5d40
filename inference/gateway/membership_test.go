package gateway

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/route"
)

// TestPeerBrieflyGoneKeepsCacheState: a peer that drops out of the mesh
// membership (a connection redialled: found between appliances in
// network namespaces) is not routed to while it is out, but its cache
// state is kept, so the moment it is back a prompt it holds goes there by
// prefix; only a peer gone for the forget period is forgotten.
func TestPeerBrieflyGoneKeepsCacheState(t *testing.T) {
	nodes := startCluster(t, clusterOpts{nodes: 2, modelsDir: tinyModels(t)})
	peerID := nodes[1].host.ID()
	id := route.NodeID(peerID.String())
	var gone atomic.Bool
	// a gateway without an engine of its own, on node 0's host, whose
	// only peer is node 1
	g, err := New(Config{LocalID: "observer", Streams: hostStreams{nodes[0].host}, ModelsDir: tinyModels(t),
		Log: slog.New(slog.DiscardHandler), Peers: func() []Peer {
			if gone.Load() {
				return nil
			}
			return []Peer{{ID: peerID}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sys := strings.Repeat("The mill grinds grain for the village when the wind blows. ", 8)
	msgs := []map[string]string{{"role": "system", "content": sys}, {"role": "user", "content": "When?"}}
	if resp, b := postJSON(t, nodes[1].infURL+"/v1/chat/completions", map[string]any{"model": tinyModel, "messages": msgs, "max_tokens": 1}); resp.StatusCode != 200 {
		t.Fatalf("direct request: %d %s", resp.StatusCode, b)
	}
	ctx := context.Background()
	g.Poll(ctx)
	held := g.router.Tree.Version(id, tinyModel)
	if held == 0 || len(g.Models()) != 1 {
		t.Fatalf("after a poll: cache-state version %d, models %v", held, g.Models())
	}

	gone.Store(true)
	g.Poll(ctx)
	if len(g.Models()) != 0 {
		t.Fatalf("a peer out of the membership still serves %v", g.Models())
	}
	if c, _ := g.candidates(tinyModel); len(c) != 0 {
		t.Fatalf("a peer out of the membership is a candidate: %v", c)
	}
	if v := g.router.Tree.Version(id, tinyModel); v != held {
		t.Fatalf("cache state of a briefly absent peer: version %d, want %d kept", v, held)
	}

	gone.Store(false)
	g.Poll(ctx)
	msgs[1]["content"] = "When does it grind?"
	srv, url := serve(t, g)
	defer srv.Close()
	resp, b := postJSON(t, url+"/v1/chat/completions", map[string]any{"model": tinyModel, "messages": msgs, "max_tokens": 1})
	if resp.StatusCode != 200 {
		t.Fatalf("request after the peer came back: %d %s", resp.StatusCode, b)
	}
	if d := lastDecision(t, g); d.Node != id || d.Reason != "prefix" || d.Cached == 0 {
		t.Fatalf("decision %+v: want the returned peer by prefix", d)
	}

	// gone for longer than the forget period: forgotten
	g.forgetAfter = 50 * time.Millisecond
	gone.Store(true)
	g.Poll(ctx)
	time.Sleep(60 * time.Millisecond)
	g.Poll(ctx)
	if v := g.router.Tree.Version(id, tinyModel); v != 0 || len(g.Nodes()) != 0 {
		t.Fatalf("a peer gone for good: cache-state version %d, nodes %+v", v, g.Nodes())
	}
}
