package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/inference/gateway"
	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/inference/verify"
	"github.com/univrs/hypha/ledger"
	"github.com/univrs/hypha/mesh"
	"github.com/univrs/hypha/sensors/obs"
)

// startGateway serves the mesh inference gateway (OpenAI + Ollama API, the
// Ollama port 11434 on the appliance): every node answers for the whole
// mesh, routing each request to the node that already caches its prefix.
//
// A node with an engine runs the gateway even without the HTTP listener:
// it is how peers reach that engine over the mesh.
func (n *Node) startGateway(ctx context.Context) error {
	external := len(n.Config().ExternalEngines)+len(n.opts.ExternalEngines) > 0
	if n.opts.GatewayListen == "" && ((n.opts.EngineURL == "" && !external) || n.mesh == nil) {
		return nil
	}
	cfg := gateway.Config{
		Local: n.opts.EngineURL, LocalID: route.NodeID(n.id.ID()), ModelsDir: n.opts.ModelsDir,
		Log: n.log, Usage: n.onUsage, Router: n.newRouter(),
	}
	if n.mesh != nil {
		cfg.Streams = n.mesh
		cfg.Peers = func() []gateway.Peer {
			var out []gateway.Peer
			for _, m := range n.mesh.Members() {
				if m.State == mesh.StateUp && m.Announcement != nil && len(m.Announcement.Models) > 0 {
					out = append(out, gateway.Peer{ID: m.ID, Name: m.Name})
				}
			}
			return out
		}
	}
	for _, e := range append(n.Config().ExternalEngines, n.opts.ExternalEngines...) {
		cfg.Externals = append(cfg.Externals, gateway.External{Name: e.Name, URL: e.URL, APIKey: e.APIKey})
	}
	g, err := gateway.New(cfg)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	n.gateway = g
	go g.Run(ctx)
	if n.opts.GatewayListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.opts.GatewayListen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	srv := &http.Server{Handler: n.withinCredit(n.anonymousOr(g)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	n.log.Info("inference gateway", "addr", ln.Addr().String())
	return nil
}

// newRouter makes the gateway's router: the configured rule, skipping
// nodes the verification committee does not trust.
func (n *Node) newRouter() *route.Router {
	opts := []route.Option{route.WithPolicy(n.opts.RoutePolicy)}
	if rep := n.reputation(); rep != nil {
		opts = append(opts, route.WithReputation(rep, n.verify.book.Params().Threshold))
	}
	return route.NewRouter(opts...)
}

// anonymousOr sends OpenAI chat requests marked anonymous (the request
// field "anonymous": true or the header X-Hypha-Anonymous: 1) as cloves
// over onion paths; everything else goes to next.
func (n *Node) anonymousOr(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if n.verify != nil {
			if pt, ok := verify.PatternOf(body); ok {
				n.verify.pool.Observe(pt) // its shape only, for challenges that look like it
			}
		}
		var req map[string]json.RawMessage
		anon := r.Header.Get("X-Hypha-Anonymous") == "1"
		if json.Unmarshal(body, &req) == nil {
			if v, ok := req["anonymous"]; ok {
				anon = anon || string(v) == "true"
				delete(req, "anonymous")
			}
		}
		if !anon {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			next.ServeHTTP(w, r)
			return
		}
		var model string
		json.Unmarshal(req["model"], &model)
		if s := string(req["stream"]); s == "true" {
			openAIError(w, http.StatusBadRequest, "anonymous requests cannot stream: send them with \"stream\": false")
			return
		}
		clean, _ := json.Marshal(req)
		out, _, err := n.AskAnonymously(r.Context(), model, clean)
		if err != nil {
			code := http.StatusBadGateway
			if errors.Is(err, errNoServer) {
				code = http.StatusNotFound
			}
			openAIError(w, code, "anonymous request: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	})
}

// withinCredit refuses inference requests up front when this node could
// not pay for them: it has no engine of its own (so another node will
// serve and bill it) and its balance is already at its credit limit.
func (n *Node) withinCredit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate":
		default:
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodPost && n.ledger != nil && n.opts.EngineURL == "" {
			if err := n.ledger.CanSpend(ledger.MemberID{}, 1); errors.Is(err, ledger.ErrLimit) {
				msg := "this box has reached its credit limit in the community ledger; serve others or ask a steward: " + err.Error()
				if r.URL.Path[1] == 'a' { // Ollama clients read {"error": "…"}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusPaymentRequired)
					json.NewEncoder(w).Encode(map[string]string{"error": msg})
					return
				}
				openAIError(w, http.StatusPaymentRequired, msg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func openAIError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "hypha_error"}})
}

// onUsage records where a request went and, when a peer served it, pays
// that peer: the payer proposes, with the inference receipt and the
// sensor readings of the moment attached; the payee countersigns.
func (n *Node) onUsage(u gateway.Usage) {
	n.recentMu.Lock()
	reason := "no node had the prompt cached: least loaded"
	if u.CachedTokens > 0 {
		reason = fmt.Sprintf("longest cached prefix (%d of %d tokens)", u.CachedTokens, u.PromptTokens)
	}
	n.recent = append(n.recent, lanpage.RouteDecision{Time: time.Now(), Model: u.Model, Node: n.nodeName(string(u.Node)),
		Reason: reason, PrefixTokens: u.CachedTokens, PromptTokens: u.PromptTokens, TTFT: u.TTFB, OK: true})
	if len(n.recent) > 50 {
		n.recent = n.recent[len(n.recent)-50:]
	}
	n.recentMu.Unlock()
	if u.Kind != "peer" || n.ledger == nil || n.mesh == nil {
		return
	}
	n.payOnce.Do(func() {
		n.payQueue = make(chan gateway.Usage, payQueueLen)
		go n.payLoop()
	})
	select {
	case n.payQueue <- u:
	default:
		n.log.Warn("pay for inference: queue full, payment dropped", "peer", u.Node, "tokens", u.PromptTokens+u.OutputTokens)
		n.alert(lanpage.SeverityWarning, "ledger", fmt.Sprintf("%d payments for inference are waiting; one for %s was dropped", payQueueLen, n.nodeName(string(u.Node))))
	}
}

// payQueueLen bounds the payments waiting to be settled.
const payQueueLen = 1024

// payLoop settles served requests one at a time: a chain has at most one
// outstanding proposal, so concurrent payments would lock each other out.
// A payment refused because a chain is locked (this one, or the payee's,
// busy countersigning with someone else) is tried again for up to
// payRetryFor (an abandoned proposal expires within it).
func (n *Node) payLoop() {
	for u := range n.payQueue {
		deadline := time.Now().Add(payRetryFor)
		for wait := time.Second; ; wait = min(2*wait, 20*time.Second) {
			err := n.payFor(u)
			if err == nil {
				break
			}
			// Only a refusal before anything was proposed is safe to retry: a
			// payment cut off mid-countersign may have been recorded.
			retry := errors.Is(err, ledger.ErrChainLocked) || strings.Contains(err.Error(), ledger.ErrChainLocked.Error())
			if !retry || time.Now().Add(wait).After(deadline) {
				n.log.Warn("pay for inference", "peer", u.Node, "err", err)
				n.alert(lanpage.SeverityWarning, "ledger", "payment for inference served by "+n.nodeName(string(u.Node))+" failed: "+err.Error())
				break
			}
			n.log.Info("pay for inference: retrying", "peer", u.Node, "in", wait, "err", err)
			time.Sleep(wait)
		}
	}
}

// payRetryFor is how long a payment refused by a locked chain is retried:
// longer than a proposal's expiry.
const payRetryFor = 4 * time.Minute

// payFor settles one served request with the peer that served it.
func (n *Node) payFor(u gateway.Usage) error {
	pid, err := peer.Decode(string(u.Node))
	if err != nil {
		return err
	}
	pk, err := pid.ExtractPublicKey()
	if err != nil || pk.Type() != crypto.Ed25519 {
		return fmt.Errorf("peer %s has no ed25519 key", pid)
	}
	raw, _ := pk.Raw()
	var payee ledger.MemberID
	copy(payee[:], raw)
	terms := ledger.Terms{
		Payer: ledger.MemberOfKey(n.id.Private), Payee: payee, Purpose: ledger.PurposeInference, Bioregion: n.bioregion(),
		Receipt:      &ledger.Receipt{ModelHash: u.Model, TokensIn: uint64(u.PromptTokens), TokensOut: uint64(u.OutputTokens)},
		Observations: n.ledgerObservations(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := n.mesh.NewStream(ctx, pid, protocol.ID(ledger.CountersignProtocolID))
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = n.ledger.Pay(ctx, s, terms)
	return err
}

// ledgerObservations are the sensor readings attached to a credit flow.
func (n *Node) ledgerObservations() []ledger.Observation {
	svc := n.sensors.Load()
	if svc == nil {
		return nil
	}
	props := map[string]string{obs.PVPower: ledger.PropSolarPower, obs.LoadPower: ledger.PropLoadPower,
		obs.BatterySoC: ledger.PropBatterySoC, obs.AirTemperature: "air_temperature", obs.SoilMoisture: "soil_moisture"}
	var out []ledger.Observation
	for _, o := range svc.Snapshot() {
		p, ok := props[o.Quantity]
		if !ok {
			continue
		}
		out = append(out, ledger.Observation{Property: p, Value: o.Value, Unit: o.Unit, Time: o.Time, SensorID: o.SensorID, Simulated: o.Simulated})
	}
	return out
}

// nodeName is a member's name for a peer ID string.
func (n *Node) nodeName(id string) string {
	if id == n.id.ID() {
		return n.Config().Name
	}
	if n.mesh != nil {
		for _, m := range n.mesh.Members() {
			if m.ID.String() == id && m.Name != "" {
				return m.Name
			}
		}
	}
	return id
}
