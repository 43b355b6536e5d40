// Package gateway is the mesh inference gateway: an http.Handler serving
// the same OpenAI and Ollama endpoints as inferd, so Open WebUI and Ollama
// clients can point at any node and get the whole mesh. Each request is
// parsed, its prompt rendered and tokenized exactly as the serving engine
// will (the model's GGUF chat template and tokenizer), routed by
// inference/route (longest cached prefix, load, reputation, sessions) and
// forwarded unchanged to the local inferd, an external OpenAI-compatible
// engine, or a peer over the libp2p stream protocol ProtocolID, whose
// gateway hands it to its own inferd. The response streams back.
//
// A node that fails before any byte reached the client is retried on
// another node; once bytes were sent the client sees the error (an error
// event in the stream). Usage is reported through Config.Usage.
//
// A Gateway is safe for concurrent use.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/univrs/hypha/inference/route"
)

// Sentinel errors; errors returned by this package wrap one of them.
var (
	// ErrBadRequest: the client's request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrProtocol: a peer sent bytes that are not the stream protocol.
	ErrProtocol = errors.New("stream protocol violation")
	// ErrUpstream: the serving node failed.
	ErrUpstream = errors.New("upstream failed")
)

// Streams is what the gateway needs of the mesh: *mesh.Node satisfies it.
type Streams interface {
	SetStreamHandler(p protocol.ID, h network.StreamHandler)
	NewStream(ctx context.Context, id peer.ID, p protocol.ID) (network.Stream, error)
}

// Peer is a mesh member that may serve inference.
type Peer struct {
	ID   peer.ID
	Name string
	// Queued is the peer's own report of tokens waiting on it (e.g. from
	// its mesh announcement); 0 if unknown. The router adds what this
	// gateway sent it.
	Queued int
}

// External is an OpenAI-compatible engine reached by URL (llama-server,
// Ollama, vLLM). It reports no cache state: the gateway records the
// prefixes it sent there.
type External struct {
	Name   string // node name in decisions; default the URL
	URL    string // base URL, e.g. http://192.168.1.20:8080
	APIKey string // sent as a bearer token if set
}

// Usage describes one completed request, for ledger receipts.
type Usage struct {
	Model        string
	Node         route.NodeID
	Kind         string // "local", "peer" or "external"
	PromptTokens int    // as tokenized by the gateway (or reported)
	CachedTokens int    // prefix the router expected in the node's cache
	OutputTokens int
	Estimated    bool          // OutputTokens counted from stream events, not reported
	TTFB         time.Duration // to the first response byte
	Latency      time.Duration
}

// Config configures a Gateway. Zero fields take the documented defaults.
type Config struct {
	// Local is the base URL of this node's inferd ("" = none), e.g.
	// http://127.0.0.1:11435.
	Local string
	// LocalID names this node in the HR-tree and decisions (the libp2p
	// peer ID in hyphad); default "local".
	LocalID route.NodeID
	// Streams, when set, lets the gateway reach peers and serve them
	// (ProtocolID is registered at New when Local is set).
	Streams Streams
	// Peers lists the mesh members to consider (called every poll); nil =
	// none. Their models and cache states are pulled over the stream.
	Peers func() []Peer
	// Externals are engines reached by URL.
	Externals []External
	// ModelsDir holds NAME.gguf files whose tokenizer and chat template
	// key requests by tokens (inferd's models directory). Models not
	// found there are tokenized by a node that serves them
	// (/hypha/tokenize), or keyed by text for external-only models.
	ModelsDir string
	// Router applies the forwarding rule; default route.NewRouter().
	Router *route.Router
	// Usage is called after every completed request (from the request's
	// goroutine; it must not block long).
	Usage func(Usage)
	// Log receives the gateway's log lines; default slog.Default().
	Log *slog.Logger
	// PollInterval between pulls of models, health and cache states;
	// default 2 s.
	PollInterval time.Duration
	// MaxAttempts bounds the nodes tried per request; default 3.
	MaxAttempts int
	// Client does the HTTP requests; default a client without timeout
	// (generations stream for long).
	Client *http.Client
}

// Gateway is the mesh inference gateway. Create it with New; Close it.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	router  *route.Router
	prompts prompters
	mux     *http.ServeMux

	mu    sync.Mutex // guards nodes
	nodes map[route.NodeID]*node

	closeOnce sync.Once
	closed    chan struct{}

	forgetAfter time.Duration // peerForgetAfter; tests shorten it

	servedMu sync.Mutex
	served   map[string]int // tokens queued on the local engine by requester ("" = this gateway); guarded by servedMu
}

// LoadPath is answered by a gateway itself on ProtocolID (not forwarded
// to its engine): the tokens queued on its engine by every requester but
// the asking peer, as {"queued_tokens": N}. Peers poll it, so gateways on
// different boxes see each other's requests.
const LoadPath = "/hypha/load"

// QueuedHeader carries, on a request to a peer, the tokens the sender
// expects it to cost (prompt tokens not cached there plus the output
// limit), for the peer's load answer.
const QueuedHeader = "X-Hypha-Queued"

// addServed counts q tokens queued on the local engine by from until the
// returned function is called (idempotent).
func (g *Gateway) addServed(from string, q int) func() {
	g.servedMu.Lock()
	if g.served == nil {
		g.served = map[string]int{}
	}
	g.served[from] += q
	g.servedMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.servedMu.Lock()
			if g.served[from] -= q; g.served[from] <= 0 {
				delete(g.served, from)
			}
			g.servedMu.Unlock()
		})
	}
}

// servedExcept is the tokens queued on the local engine by every
// requester but from.
func (g *Gateway) servedExcept(from string) int {
	g.servedMu.Lock()
	defer g.servedMu.Unlock()
	total := 0
	for k, q := range g.served {
		if k != from {
			total += q
		}
	}
	return total
}

// node is a serving backend.
type node struct {
	id      route.NodeID
	kind    string  // "local", "peer", "external"
	url     string  // local, external
	peer    peer.ID // peer
	apiKey  string
	reports bool // has /hypha/cache
	queued  int  // queued tokens per Peer.Queued; guarded by Gateway.mu
	// load is the peer's own answer to GET /hypha/load (tokens queued on
	// its engine by everyone but this gateway), valid if loadOK; guarded
	// by Gateway.mu. It takes precedence over queued.
	load    int
	loadOK  bool
	models  []string // guarded by Gateway.mu
	healthy bool     // guarded by Gateway.mu
	lastErr string   // guarded by Gateway.mu
	// missing is when a peer dropped out of the membership (zero: it is
	// in); guarded by Gateway.mu. Its cache state is kept for
	// peerForgetAfter, so a peer back after a brief absence (a redialled
	// connection) is routed to by prefix at once.
	missing time.Time
}

// peerForgetAfter is how long a peer may be out of the membership before
// the gateway forgets it and its cache state.
const peerForgetAfter = 30 * time.Second

// New returns a gateway; call Run to keep its view of the mesh fresh.
func New(cfg Config) (*Gateway, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.LocalID == "" {
		cfg.LocalID = "local"
	}
	if cfg.Router == nil {
		cfg.Router = route.NewRouter()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	g := &Gateway{cfg: cfg, log: cfg.Log, router: cfg.Router, prompts: prompters{dir: cfg.ModelsDir},
		nodes: map[route.NodeID]*node{}, closed: make(chan struct{}), forgetAfter: peerForgetAfter}
	if cfg.Local != "" {
		g.nodes[cfg.LocalID] = &node{id: cfg.LocalID, kind: "local", url: strings.TrimRight(cfg.Local, "/"), reports: true}
	}
	for _, e := range cfg.Externals {
		if e.URL == "" {
			return nil, fmt.Errorf("gateway: external engine %q: no URL", e.Name)
		}
		id := route.NodeID(e.Name)
		if id == "" {
			id = route.NodeID(e.URL)
		}
		if g.nodes[id] != nil {
			return nil, fmt.Errorf("gateway: external engine %q: name used twice", id)
		}
		g.nodes[id] = &node{id: id, kind: "external", url: strings.TrimRight(e.URL, "/"), apiKey: e.APIKey}
	}
	if cfg.Streams != nil && cfg.Local != "" {
		cfg.Streams.SetStreamHandler(ProtocolID, g.servePeer)
	}
	g.routes()
	return g, nil
}

// Router returns the router (decisions and loads for the LAN page).
func (g *Gateway) Router() *route.Router { return g.router }

// ServeHTTP serves the OpenAI and Ollama endpoints.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Close stops Run and refuses new requests. Idempotent.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() { close(g.closed) })
	return nil
}

func (g *Gateway) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "Ollama is running")
	})
	m.HandleFunc("HEAD /{$}", func(w http.ResponseWriter, _ *http.Request) {})
	m.HandleFunc("GET /api/version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": "0.17.4"})
	})
	m.HandleFunc("GET /api/tags", g.handleTags)
	m.HandleFunc("POST /api/show", g.handleShow)
	m.HandleFunc("POST /api/chat", g.infer(kindOllamaChat))
	m.HandleFunc("POST /api/generate", g.infer(kindOllamaGenerate))
	for _, p := range []string{"/v1", ""} {
		m.HandleFunc("GET "+p+"/models", g.handleModels)
		m.HandleFunc("POST "+p+"/chat/completions", g.infer(kindChat))
		m.HandleFunc("POST "+p+"/completions", g.infer(kindCompletion))
	}
	m.HandleFunc("GET /hypha/route", g.handleRoute)
	g.mux = m
}

// ---- the view of the mesh ----

// Run polls models, health and cache states every PollInterval until ctx
// is cancelled or the gateway is closed.
func (g *Gateway) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.PollInterval)
	defer t.Stop()
	for {
		g.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-g.closed:
			return
		case <-t.C:
		}
	}
}

// Poll does one round of pulls (every node in parallel, bounded time).
func (g *Gateway) Poll(ctx context.Context) {
	g.syncPeers()
	g.mu.Lock()
	ns := make([]*node, 0, len(g.nodes))
	for _, n := range g.nodes {
		if n.missing.IsZero() { // not a member now: not polled
			ns = append(ns, n)
		}
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, n := range ns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			g.pollNode(pctx, n)
		}()
	}
	wg.Wait()
}

// syncPeers adds new mesh peers and drops the ones that left.
func (g *Gateway) syncPeers() {
	if g.cfg.Peers == nil || g.cfg.Streams == nil {
		return
	}
	want := map[route.NodeID]Peer{}
	for _, p := range g.cfg.Peers() {
		want[route.NodeID(p.ID.String())] = p
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, n := range g.nodes {
		if _, ok := want[id]; ok || n.kind != "peer" {
			continue
		}
		if n.missing.IsZero() { // just left: no requests, but keep its cache state a while
			n.missing, n.lastErr = now, "not a mesh member now"
			if n.healthy {
				n.healthy = false
				g.log.Warn("gateway: peer left the mesh", "node", id)
			}
			g.router.Unhealthy(id)
			continue
		}
		if now.Sub(n.missing) >= g.forgetAfter {
			delete(g.nodes, id)
			g.router.Tree.Forget(id)
		}
	}
	for id, p := range want {
		if id == g.cfg.LocalID {
			continue
		}
		if g.nodes[id] == nil {
			g.nodes[id] = &node{id: id, kind: "peer", peer: p.ID, reports: true}
		}
		g.nodes[id].missing = time.Time{} // (back) in: healthy again after its next poll
		g.nodes[id].queued = p.Queued
	}
}

func (g *Gateway) setHealth(n *node, models []string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	was := n.healthy
	if err != nil {
		n.healthy, n.lastErr = false, err.Error()
	} else {
		n.healthy, n.models, n.lastErr = true, models, ""
	}
	if was && !n.healthy {
		g.log.Warn("gateway: node unhealthy", "node", n.id, "err", err)
		g.router.Unhealthy(n.id)
	} else if !was && n.healthy {
		g.log.Info("gateway: node healthy", "node", n.id, "kind", n.kind, "models", models)
	}
}

func (g *Gateway) pollNode(ctx context.Context, n *node) {
	models, err := g.fetchModels(ctx, n)
	g.setHealth(n, models, err)
	if err != nil || !n.reports {
		return
	}
	if n.kind == "peer" {
		load, err := g.fetchLoad(ctx, n)
		g.mu.Lock()
		n.load, n.loadOK = load, err == nil
		g.mu.Unlock()
		if err != nil {
			g.log.Debug("gateway: load", "node", n.id, "err", err)
		}
	}
	for _, m := range models {
		if err := g.pullState(ctx, n, m); err != nil {
			g.log.Debug("gateway: cache state", "node", n.id, "model", m, "err", err)
		}
	}
}

func (g *Gateway) get(ctx context.Context, n *node, path string, max int64) ([]byte, error) {
	resp, err := g.send(ctx, n, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %s: %w", path, resp.StatusCode, bytes.TrimSpace(b[:min(len(b), 200)]), ErrUpstream)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes: %w", path, max, ErrUpstream)
	}
	return b, nil
}

// fetchModels lists a node's models (OpenAI /v1/models, which inferd,
// llama-server, Ollama and vLLM all serve).
func (g *Gateway) fetchModels(ctx context.Context, n *node) ([]string, error) {
	b, err := g.get(ctx, n, "/v1/models", 1<<20)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("GET /v1/models: %v: %w", err, ErrUpstream)
	}
	var out []string
	for _, d := range doc.Data {
		if d.ID != "" {
			out = append(out, d.ID)
		}
	}
	sort.Strings(out)
	return out, nil
}

// fetchLoad asks a peer's gateway for the tokens queued on its engine by
// others (LoadPath).
func (g *Gateway) fetchLoad(ctx context.Context, n *node) (int, error) {
	b, err := g.get(ctx, n, LoadPath, 4<<10)
	if err != nil {
		return 0, err
	}
	return decodeLoad(b)
}

// decodeLoad decodes a peer's LoadPath answer (untrusted).
func decodeLoad(b []byte) (int, error) {
	var doc struct {
		Queued *int64 `json:"queued_tokens"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, fmt.Errorf("GET %s: answer %.100q: %v: %w", LoadPath, b, err, ErrUpstream)
	}
	if doc.Queued == nil || *doc.Queued < 0 || *doc.Queued > maxQueuedLoad {
		return 0, fmt.Errorf("GET %s: answer %.100q: queued_tokens missing or out of 0..%d: %w", LoadPath, b, maxQueuedLoad, ErrUpstream)
	}
	return int(*doc.Queued), nil
}

// maxQueuedLoad bounds a peer's load answer (beyond it the peer is
// lying or broken).
const maxQueuedLoad = 1 << 30

func (g *Gateway) pullState(ctx context.Context, n *node, model string) error {
	for range 2 {
		since := g.router.Tree.Version(n.id, model)
		b, err := g.get(ctx, n, fmt.Sprintf("/hypha/cache?model=%s&since=%d", urlQueryEscape(model), since), route.MaxStateBytes)
		if err != nil {
			return err
		}
		st, err := route.DecodeCacheState(bytes.NewReader(b), route.MaxStateBytes, route.DefaultMaxHashes)
		if err != nil {
			return err
		}
		err = g.router.Tree.Apply(n.id, model, since, st)
		if errors.Is(err, route.ErrVersionGap) {
			continue // the tree moved meanwhile; pull again
		}
		return err
	}
	return nil
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "#", "%23", "+", "%2B", " ", "%20", "?", "%3F").Replace(s)
}

func sameModel(a, b string) bool {
	norm := func(s string) string { return strings.TrimSuffix(strings.TrimSuffix(s, ":latest"), ".gguf") }
	return norm(a) == norm(b)
}

// candidates returns the healthy nodes serving model.
func (g *Gateway) candidates(model string) ([]route.Candidate, map[route.NodeID]*node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []route.Candidate
	byID := map[route.NodeID]*node{}
	for id, n := range g.nodes {
		if !n.healthy {
			continue
		}
		for _, m := range n.models {
			if sameModel(m, model) {
				q := n.queued
				switch {
				case n.kind == "local":
					q = g.servedExcept("") // peers' requests on this engine, live
				case n.loadOK:
					q = n.load
				}
				out = append(out, route.Candidate{Node: id, Queued: q})
				byID[id] = n
				break
			}
		}
	}
	return out, byID
}

// ---- sending ----

// send performs one request on node n. The caller closes the body.
func (g *Gateway) send(ctx context.Context, n *node, method, path string, header http.Header, body []byte) (*http.Response, error) {
	if n.kind == "peer" {
		return g.sendPeer(ctx, n.peer, method, path, header, body)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for _, k := range []string{"Content-Type", "Accept"} {
		if v := header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	if n.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+n.apiKey)
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, n.id, err)
	}
	return resp, nil
}

func (g *Gateway) sendPeer(ctx context.Context, id peer.ID, method, path string, header http.Header, body []byte) (*http.Response, error) {
	s, err := g.cfg.Streams.NewStream(ctx, id, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: open stream: %w", method, path, id, err)
	}
	h := reqHead{Method: method, Path: path, Header: http.Header{}}
	for _, k := range []string{"Content-Type", "Accept", QueuedHeader} {
		if v := header.Get(k); v != "" {
			h.Header.Set(k, v)
		}
	}
	stop := make(chan struct{})
	var once sync.Once
	finish := func(complete bool) {
		once.Do(func() {
			close(stop)
			if complete {
				_ = s.Close()
			} else {
				_ = s.Reset()
			}
		})
	}
	go func() { // the client went away: abort the peer's generation
		select {
		case <-ctx.Done():
			finish(false)
		case <-stop:
		}
	}()
	bw := &bufWriter{}
	if err := writeRequest(bw, h, body); err != nil {
		finish(false)
		return nil, err
	}
	if _, err := s.Write(bw.b); err != nil {
		finish(false)
		return nil, fmt.Errorf("%s %s on %s: send: %w", method, path, id, err)
	}
	_ = s.CloseWrite()
	br := newBufReader(s)
	rh, err := readResponseHead(br)
	if err != nil {
		finish(false)
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, id, err)
	}
	return &http.Response{StatusCode: rh.Status, Header: rh.Header,
		Body: &bodyReader{r: br, done: finish}}, nil
}

type bufWriter struct{ b []byte }

func (w *bufWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// ---- serving ----

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, kind string, status int, err error) {
	if kind == kindChat || kind == kindCompletion {
		typ := "server_error"
		if status < 500 {
			typ = "invalid_request_error"
		}
		writeJSON(w, status, map[string]any{"error": map[string]any{"message": err.Error(), "type": typ, "code": nil}})
		return
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (g *Gateway) handleModels(w http.ResponseWriter, r *http.Request) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := []model{}
	for _, m := range g.Models() {
		out = append(out, model{ID: m, Object: "model", OwnedBy: "hypha"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

func (g *Gateway) handleTags(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, m := range g.Models() {
		out = append(out, map[string]any{"name": m, "model": m, "modified_at": time.Time{}, "size": 0, "digest": "",
			"details": map[string]any{"format": "gguf"}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out})
}

// handleShow proxies Ollama's /api/show to a healthy node serving the model.
func (g *Gateway) handleShow(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, "", http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
		return
	}
	var q struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(body, &q); err != nil {
		writeError(w, "", http.StatusBadRequest, fmt.Errorf("request body: %v: %w", err, ErrBadRequest))
		return
	}
	if q.Model == "" {
		q.Model = q.Name
	}
	cands, byID := g.candidates(q.Model)
	sort.Slice(cands, func(i, j int) bool { return cands[i].Node < cands[j].Node })
	var lastErr error = fmt.Errorf("model %q: no healthy node of the mesh serves it", q.Model)
	for _, c := range cands {
		resp, err := g.send(r.Context(), byID[c.Node], http.MethodPost, "/api/show", r.Header, body)
		if err != nil {
			lastErr = err
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil || retryable(resp.StatusCode) {
			lastErr = fmt.Errorf("%s: status %d: %v: %w", c.Node, resp.StatusCode, err, ErrUpstream)
			continue
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
		return
	}
	writeError(w, "", http.StatusNotFound, lastErr)
}

// Models returns the models served by the healthy nodes, sorted.
func (g *Gateway) Models() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	set := map[string]bool{}
	for _, n := range g.nodes {
		if n.healthy {
			for _, m := range n.models {
				set[m] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// NodeStatus is one backend as the LAN page shows it.
type NodeStatus struct {
	ID      route.NodeID `json:"id"`
	Kind    string       `json:"kind"`
	Healthy bool         `json:"healthy"`
	Models  []string     `json:"models"`
	Error   string       `json:"error,omitempty"`
}

// Nodes returns the backends, sorted by ID.
func (g *Gateway) Nodes() []NodeStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []NodeStatus
	for _, n := range g.nodes {
		out = append(out, NodeStatus{ID: n.id, Kind: n.kind, Healthy: n.healthy, Models: n.models, Error: n.lastErr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (g *Gateway) handleRoute(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"policy": g.router.Policy().String(), "nodes": g.Nodes(),
		"loads": g.router.Loads(), "decisions": g.router.Decisions()})
}

// key computes the chunk hashes and prompt length of req.
func (g *Gateway) key(ctx context.Context, req *inferReq, byID map[route.NodeID]*node) ([]uint64, int) {
	p, err := g.prompts.get(req.Model)
	if err == nil {
		if ids, err := p.tokens(req); err == nil {
			return route.ChunkHashes(ids), len(ids)
		}
	}
	// ask a node running inferd to tokenize (exact, costs a round trip)
	if req.Kind != kindCompletion || req.IDs == nil {
		ids := make([]route.NodeID, 0, len(byID))
		for id := range byID {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			n := byID[id]
			if !n.reports {
				continue
			}
			if hs, n, err := g.remoteTokenize(ctx, n, req); err == nil {
				return hs, n
			}
			break
		}
	} else {
		return route.ChunkHashes(req.IDs), len(req.IDs)
	}
	hs := textHashes(req)
	return hs, len(hs) * route.ChunkTokens / 4 // a rough token count
}

func (g *Gateway) remoteTokenize(ctx context.Context, n *node, req *inferReq) ([]uint64, int, error) {
	var body any
	if req.Messages != nil {
		body = map[string]any{"model": req.Model, "messages": req.Messages}
	} else {
		body = map[string]any{"model": req.Model, "prompt": req.Prompt}
	}
	b, _ := json.Marshal(body)
	resp, err := g.send(ctx, n, http.MethodPost, "/hypha/tokenize", http.Header{"Content-Type": {"application/json"}}, b)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var doc struct {
		Tokens []int32 `json:"tokens"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("tokenize on %s: status %d: %w", n.id, resp.StatusCode, ErrUpstream)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&doc); err != nil {
		return nil, 0, fmt.Errorf("tokenize on %s: %w", n.id, err)
	}
	return route.ChunkHashes(doc.Tokens), len(doc.Tokens), nil
}

// retryable reports whether a status means "try another node".
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

func (g *Gateway) infer(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-g.closed:
			writeError(w, kind, http.StatusServiceUnavailable, errors.New("gateway closed"))
			return
		default:
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			writeError(w, kind, http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
			return
		}
		req, err := decodeRequest(kind, body)
		if err != nil {
			writeError(w, kind, http.StatusBadRequest, err)
			return
		}
		cands, byID := g.candidates(req.Model)
		if len(cands) == 0 {
			writeError(w, kind, http.StatusNotFound, fmt.Errorf("model %q: no healthy node of the mesh serves it", req.Model))
			return
		}
		hashes, nTok := g.key(r.Context(), req, byID)
		rreq := route.Request{Model: req.Model, Hashes: hashes, PromptTokens: nTok, MaxTokens: req.Max,
			Session: sessionKey(req, r.Header.Get("X-Hypha-Session"))}
		var excluded []route.NodeID
		var lastErr error
		for attempt := 1; attempt <= g.cfg.MaxAttempts; attempt++ {
			d, err := g.router.Pick(rreq, cands, excluded, attempt)
			if err != nil {
				break
			}
			n := byID[d.Node]
			done, err := g.attempt(w, r, kind, req, n, d, body, hashes, start)
			if done {
				return
			}
			if r.Context().Err() != nil {
				return // the client went away: nothing to retry for
			}
			lastErr = err
			excluded = append(excluded, d.Node)
			g.log.Info("gateway: retrying elsewhere", "node", d.Node, "attempt", attempt, "err", err)
		}
		if r.Context().Err() != nil {
			return
		}
		writeError(w, kind, http.StatusBadGateway, fmt.Errorf("model %q: every node tried failed, last: %w", req.Model, lastErr))
	}
}

var (
	reOut    = regexp.MustCompile(`"(?:completion_tokens|eval_count)"\s*:\s*(\d+)`)
	rePrompt = regexp.MustCompile(`"(?:prompt_tokens|prompt_eval_count)"\s*:\s*(\d+)`)
)

// attempt sends the request to n. done reports that the client got an
// answer (success, a client error, or a failure after bytes were sent);
// otherwise err says why n failed and another node may be tried.
func (g *Gateway) attempt(w http.ResponseWriter, r *http.Request, kind string, req *inferReq, n *node, d route.Decision,
	body []byte, hashes []uint64, start time.Time) (done bool, err error) {
	end := g.router.Begin(d, req.Max)
	q := max(0, d.Prompt-d.Cached) + req.Max
	if req.Max <= 0 {
		q += route.DefaultExpectedOutput
	}
	header := http.Header{QueuedHeader: {strconv.Itoa(q)}}
	for _, k := range []string{"Content-Type", "Accept"} {
		if v := r.Header.Get(k); v != "" {
			header.Set(k, v)
		}
	}
	if n.kind == "local" {
		defer g.addServed("", q)()
	}
	resp, err := g.send(r.Context(), n, http.MethodPost, r.URL.Path, header, body)
	if err != nil {
		end(0, false)
		if r.Context().Err() == nil {
			g.setHealthErr(n, err)
		}
		return false, err
	}
	defer resp.Body.Close()
	if retryable(resp.StatusCode) {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		end(0, false)
		return false, fmt.Errorf("%s answered %d: %s: %w", n.id, resp.StatusCode, bytes.TrimSpace(b), ErrUpstream)
	}
	// wait for the first byte before committing to this node
	buf := make([]byte, 32<<10)
	var first int
	var rerr error
	for first == 0 && rerr == nil {
		first, rerr = resp.Body.Read(buf)
	}
	if first == 0 && rerr != io.EOF {
		end(0, false)
		if r.Context().Err() == nil {
			g.setHealthErr(n, rerr)
		}
		return false, fmt.Errorf("%s failed before answering: %w", n.id, rerr)
	}
	ttfb := time.Since(start)
	if resp.StatusCode < 300 {
		g.router.Tree.Record(n.id, req.Model, hashes)
	}
	for _, k := range []string{"Content-Type", "Retry-After", "Cache-Control"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.Header().Set("X-Hypha-Node", string(n.id))
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	tail := newTail(8 << 10)
	events := 0
	write := func(p []byte) error {
		tail.Write(p)
		events += bytes.Count(p, []byte("\n"))
		if _, err := w.Write(p); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	werr := write(buf[:first])
	for werr == nil && rerr == nil {
		var k int
		k, rerr = resp.Body.Read(buf)
		if k > 0 {
			werr = write(buf[:k])
		}
	}
	lat := time.Since(start)
	clientLeft := werr != nil || r.Context().Err() != nil
	if !clientLeft && rerr != nil && rerr != io.EOF {
		end(lat, false)
		g.log.Warn("gateway: node failed mid-response", "node", n.id, "err", rerr)
		g.streamError(w, kind, req, rerr)
		return true, nil
	}
	// A client that hangs up (often right after the final event) still
	// had its tokens generated: the serving node is owed for them.
	end(lat, !clientLeft)
	if g.cfg.Usage != nil && resp.StatusCode < 300 {
		u := Usage{Model: req.Model, Node: n.id, Kind: n.kind, PromptTokens: d.Prompt, CachedTokens: d.Cached, TTFB: ttfb, Latency: lat}
		t := tail.Bytes()
		if m := reOut.FindAllSubmatch(t, -1); len(m) > 0 {
			u.OutputTokens, _ = strconv.Atoi(string(m[len(m)-1][1]))
		} else {
			u.OutputTokens, u.Estimated = max(0, events-2), true
		}
		if m := rePrompt.FindAllSubmatch(t, -1); len(m) > 0 {
			u.PromptTokens, _ = strconv.Atoi(string(m[len(m)-1][1]))
		}
		g.cfg.Usage(u)
	}
	return true, nil
}

// setHealthErr marks n unhealthy after a failed request (it keeps its
// models; the next successful poll brings it back).
func (g *Gateway) setHealthErr(n *node, err error) { g.setHealth(n, nil, err) }

// streamError tells a client whose response was cut that it was.
func (g *Gateway) streamError(w http.ResponseWriter, kind string, req *inferReq, err error) {
	msg := fmt.Sprintf("serving node failed mid-response: %v", err)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "server_error"}})
	switch {
	case !req.Stream:
		// a JSON body was cut: nothing more can be said in it
	case kind == kindChat || kind == kindCompletion:
		_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
	default:
		b, _ = json.Marshal(map[string]string{"error": msg})
		_, _ = fmt.Fprintf(w, "%s\n", b)
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// tail keeps the last bytes written.
type tail struct {
	b   []byte
	max int
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
}

func (t *tail) Bytes() []byte { return t.b }
