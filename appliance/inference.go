package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/inference/defaultmodel"
	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/mesh"
)

// localModels is what the local inference engine (inferd, or any Ollama-
// compatible engine) says it serves, polled from its /api/tags.
type localModels struct {
	mu      sync.Mutex
	models  []mesh.Model // guarded by mu
	healthy bool         // guarded by mu
	err     error        // guarded by mu
	checked time.Time    // guarded by mu
}

func (l *localModels) get() ([]mesh.Model, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mesh.Model(nil), l.models...), l.healthy, l.err
}

// seedDefaultModel gives a new box something to say: the project's tiny
// model goes into the models directory unless a steward put a GGUF there.
func (n *Node) seedDefaultModel() {
	path, err := defaultmodel.WriteTo(n.opts.ModelsDir)
	switch {
	case err != nil:
		n.log.Warn("default model", "err", err)
	case path != "":
		n.log.Info("default model", "path", path)
	}
	if _, err := os.Stat(filepath.Join(n.opts.ModelsDir, defaultmodel.FileName)); err == nil {
		n.alert(lanpage.SeverityInfo, "inference", "this box serves "+defaultmodel.Name+
			", a tiny demo model (1 M parameters) trained by the project on the King James Bible: it knows no facts and has no safety tuning. Copy your own GGUF model into /perm/models.")
	}
}

// pollEngine asks the engine at base for its models every 15 s.
func (n *Node) pollEngine(ctx context.Context, base string) {
	client := &http.Client{Timeout: 5 * time.Second}
	poll := func() {
		var tags struct {
			Models []struct {
				Name   string `json:"name"`
				Digest string `json:"digest"`
			} `json:"models"`
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/tags", nil)
		resp, err := client.Do(req)
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s/api/tags: %s", base, resp.Status)
			} else {
				err = json.NewDecoder(resp.Body).Decode(&tags)
			}
			resp.Body.Close()
		}
		var models []mesh.Model
		for _, m := range tags.Models {
			models = append(models, mesh.Model{Name: m.Name, Hash: m.Digest})
		}
		l := &n.engine
		l.mu.Lock()
		changed := len(models) != len(l.models) || l.healthy != (err == nil)
		l.models, l.healthy, l.err, l.checked = models, err == nil, err, time.Now()
		l.mu.Unlock()
		if changed {
			n.announce()
		}
	}
	poll()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poll()
		}
	}
}

// inferenceView shows the models on the mesh and each node's serving state.
func (n *Node) inferenceView(context.Context) (lanpage.Inference, error) {
	if n.opts.EngineURL == "" && n.mesh == nil {
		return lanpage.Inference{}, errors.New("no inference engine on this box and no mesh to reach one")
	}
	var out lanpage.Inference
	byName := map[string]*lanpage.Model{}
	add := func(node string, ms []mesh.Model) {
		for _, m := range ms {
			lm := byName[m.Name]
			if lm == nil {
				lm = &lanpage.Model{Name: m.Name, Hash: m.Hash}
				byName[m.Name] = lm
			}
			lm.Nodes = append(lm.Nodes, node)
		}
	}
	if n.opts.EngineURL != "" {
		self := n.Config().Name
		models, healthy, _ := n.engine.get()
		add(self, models)
		out.Nodes = append(out.Nodes, n.withReputation(lanpage.InferenceNode{Name: self, PeerID: n.id.ID(), Engine: "inferd", Healthy: healthy}))
	}
	if n.mesh != nil {
		for _, m := range n.mesh.Members() {
			a := m.Announcement
			if a == nil || len(a.Models) == 0 {
				continue
			}
			add(m.Name, a.Models)
			out.Nodes = append(out.Nodes, n.withReputation(lanpage.InferenceNode{Name: m.Name, PeerID: m.ID.String(), Engine: "inferd",
				Healthy: m.State == mesh.StateUp, Load: a.Load}))
		}
	}
	n.reputationView(&out)
	if n.gateway != nil {
		// The router's own view of each node: requests in flight, the
		// queued tokens it knows of, and how often a cached prefix was hit.
		loads := map[string]route.NodeLoad{}
		for _, l := range n.gateway.Router().Loads() {
			loads[string(l.Node)] = l
		}
		for i, nd := range out.Nodes {
			if l, ok := loads[nd.PeerID]; ok {
				out.Nodes[i].Queue, out.Nodes[i].CacheHitRate = l.InFlight, l.HitRate
				out.Nodes[i].Load = max(out.Nodes[i].Load, min(1, float64(l.Queued)/float64(route.DefaultLoadQuantum)))
			}
		}
	}
	// Where recent requests went and why: the router's own decisions
	// (prefix, session, least loaded…), newest first, with the time to
	// first byte the gateway measured for completed ones.
	n.recentMu.Lock()
	done := append([]lanpage.RouteDecision(nil), n.recent...)
	n.recentMu.Unlock()
	if n.gateway != nil {
		ds := n.gateway.Router().Decisions()
		for i := len(ds) - 1; i >= 0 && len(out.Recent) < 50; i-- {
			d := ds[i]
			rd := lanpage.RouteDecision{Time: d.Time, Model: d.Model, Node: n.nodeName(string(d.Node)),
				Reason: d.Reason + ": " + d.Detail, PrefixTokens: d.Cached, PromptTokens: d.Prompt}
			for _, u := range done {
				if u.Model == d.Model && u.Node == rd.Node && !u.Time.Before(d.Time) && u.Time.Sub(d.Time) < 10*time.Minute {
					rd.TTFT, rd.OK = u.TTFT, true
					break
				}
			}
			out.Recent = append(out.Recent, rd)
		}
	} else {
		for i := len(done) - 1; i >= 0; i-- {
			out.Recent = append(out.Recent, done[i])
		}
	}
	for _, m := range byName {
		out.Models = append(out.Models, *m)
	}
	sort.Slice(out.Models, func(i, j int) bool { return out.Models[i].Name < out.Models[j].Name })
	return out, nil
}
