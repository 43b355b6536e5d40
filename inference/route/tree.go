// Package route decides which node of the mesh serves an inference
// request: the node whose KV cache already holds the longest prefix of the
// prompt (PlanetServe's hash-radix tree, "HR-tree"), among nodes that are
// trusted and not among the most loaded, with sessions sticking to their
// node.
//
// The HR-tree is keyed by the engine's chained chunk hashes (see
// ChunkHashes): chunk i's hash covers the whole prefix of 16*(i+1) tokens,
// so one hash names one path of the radix tree and a flat hash table is
// that tree with its paths compressed. Nodes running Hypha's engine report
// the exact set of hashes in their cache (inferd's GET /hypha/cache, as
// versioned deltas); for external OpenAI-compatible engines (llama-server,
// Ollama, vLLM), which report nothing, the tree records the prefixes of the
// requests the router sent them (bounded LRU).
package route

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/univrs/hypha/inference/engine"
)

// ChunkTokens is the number of tokens per hashed chunk, as in the engine.
const ChunkTokens = engine.ChunkTokens

// ChunkHashes returns the chained chunk hashes of tokens exactly as the
// engine computes them for its cache state (FNV-1a-64 over the previous
// hash and 16 little-endian token ids).
func ChunkHashes(tokens []int32) []uint64 { return engine.ChunkHashes(tokens) }

// Sentinel errors; errors returned by this package wrap one of them.
var (
	// ErrVersionGap: a delta does not start at the version the tree holds
	// for that node; ask the node for its full state (since=0).
	ErrVersionGap = errors.New("cache state delta does not follow the held version")
	// ErrTooLarge: a cache state or request exceeds the configured bounds.
	ErrTooLarge = errors.New("too large")
	// ErrNoNode: no node can serve the request.
	ErrNoNode = errors.New("no node can serve the request")
)

// NodeID names a serving node: a libp2p peer ID, "local", or an external
// engine's name.
type NodeID string

// CacheState is a node's cache state as inferd reports it.
type CacheState struct {
	Version uint64
	// Full: Added is the whole set (replace); otherwise Added/Removed are
	// the changes since the version the caller asked for.
	Full           bool
	Added, Removed []uint64
}

// Default bounds of a Tree.
const (
	// DefaultMaxHashes bounds the hashes held per node and model (65536
	// chunks = 1M tokens of cache).
	DefaultMaxHashes = 1 << 16
	// DefaultRecorded bounds the prompts recorded per node and model.
	DefaultRecorded = 128
	// DefaultRecordTTL is how long a recorded prompt counts for a node that
	// also reports its cache state (until the report catches up).
	DefaultRecordTTL = 10 * time.Second
)

// Tree is the HR-tree: for each model, the chunk hashes held by each node.
// The zero value is not usable; call NewTree. A Tree is safe for
// concurrent use.
type Tree struct {
	maxHashes int
	maxRec    int
	recTTL    time.Duration
	now       func() time.Time

	mu     sync.Mutex                       // guards everything below
	models map[string]map[uint64][]*holding // model -> hash -> holders
	nodes  map[NodeID]map[string]*holding   // node -> model -> what it holds
}

// holding is what one node holds of one model.
type holding struct {
	node     NodeID
	model    string
	reported bool                // the node reports its cache state
	version  uint64              // last applied cache-state version
	state    map[uint64]struct{} // reported hashes
	rec      map[uint64]int      // recorded hashes -> number of recorded prompts holding it
	prompts  []recorded          // oldest first
}

type recorded struct {
	hashes []uint64
	at     time.Time
}

// TreeOption tunes a Tree.
type TreeOption func(*Tree)

// WithMaxHashes bounds the reported hashes kept per node and model
// (default DefaultMaxHashes); a larger state is refused with ErrTooLarge.
func WithMaxHashes(n int) TreeOption { return func(t *Tree) { t.maxHashes = n } }

// WithRecorded bounds the prompts recorded per node and model (default
// DefaultRecorded); the least recently sent are forgotten first.
func WithRecorded(n int) TreeOption { return func(t *Tree) { t.maxRec = n } }

// WithRecordTTL sets how long a recorded prompt counts for a node that
// reports its cache state (default DefaultRecordTTL).
func WithRecordTTL(d time.Duration) TreeOption { return func(t *Tree) { t.recTTL = d } }

// NewTree returns an empty tree.
func NewTree(opts ...TreeOption) *Tree {
	t := &Tree{maxHashes: DefaultMaxHashes, maxRec: DefaultRecorded, recTTL: DefaultRecordTTL, now: time.Now,
		models: map[string]map[uint64][]*holding{}, nodes: map[NodeID]map[string]*holding{}}
	for _, o := range opts {
		o(t)
	}
	return t
}

func (t *Tree) holdingLocked(node NodeID, model string) *holding {
	ms := t.nodes[node]
	if ms == nil {
		ms = map[string]*holding{}
		t.nodes[node] = ms
	}
	h := ms[model]
	if h == nil {
		h = &holding{node: node, model: model, state: map[uint64]struct{}{}, rec: map[uint64]int{}}
		ms[model] = h
	}
	return h
}

// addLocked makes h a holder of hash (if it is not yet one).
func (t *Tree) addLocked(h *holding, hash uint64) {
	m := t.models[h.model]
	if m == nil {
		m = map[uint64][]*holding{}
		t.models[h.model] = m
	}
	for _, x := range m[hash] {
		if x == h {
			return
		}
	}
	m[hash] = append(m[hash], h)
}

// dropLocked removes h as a holder of hash unless it still holds it
// through its state or a recorded prompt.
func (t *Tree) dropLocked(h *holding, hash uint64) {
	if _, ok := h.state[hash]; ok {
		return
	}
	if h.rec[hash] > 0 {
		return
	}
	m := t.models[h.model]
	hs := m[hash]
	for i, x := range hs {
		if x == h {
			hs = append(hs[:i], hs[i+1:]...)
			break
		}
	}
	if len(hs) == 0 {
		delete(m, hash)
	} else {
		m[hash] = hs
	}
}

// Version returns the cache-state version applied for node and model (0:
// none): the since value of the next pull.
func (t *Tree) Version(node NodeID, model string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.nodes[node][model]; h != nil {
		return h.version
	}
	return 0
}

// Apply applies a cache state of node for model, pulled with since (the
// version the tree held, see Version). A delta (st.Full false) that does
// not start at the held version is refused with ErrVersionGap; a state
// beyond the bounds with ErrTooLarge (the node then keeps its old state).
func (t *Tree) Apply(node NodeID, model string, since uint64, st CacheState) error {
	if len(st.Added)+len(st.Removed) > 2*t.maxHashes {
		return fmt.Errorf("route: cache state of %s for %s: %d changes: %w", node, model, len(st.Added)+len(st.Removed), ErrTooLarge)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.holdingLocked(node, model)
	if !st.Full && since != h.version {
		return fmt.Errorf("route: cache state of %s for %s: delta since %d, held version %d: %w", node, model, since, h.version, ErrVersionGap)
	}
	if st.Full {
		if len(st.Added) > t.maxHashes {
			return fmt.Errorf("route: cache state of %s for %s: %d hashes, bound %d: %w", node, model, len(st.Added), t.maxHashes, ErrTooLarge)
		}
		old := h.state
		h.state = make(map[uint64]struct{}, len(st.Added))
		for _, x := range st.Added {
			h.state[x] = struct{}{}
			t.addLocked(h, x)
		}
		for x := range old {
			t.dropLocked(h, x)
		}
	} else {
		for _, x := range st.Removed {
			if _, ok := h.state[x]; ok {
				delete(h.state, x)
				t.dropLocked(h, x)
			}
		}
		for _, x := range st.Added {
			if len(h.state) >= t.maxHashes {
				break // bounded: the rest is simply not known
			}
			h.state[x] = struct{}{}
			t.addLocked(h, x)
		}
	}
	h.reported = true
	h.version = st.Version
	return nil
}

// Record notes that a prompt with these chunk hashes was sent to node: an
// external engine will hold it in its cache (LRU, bounded per node and
// model); for a node that reports its state it counts until its report
// catches up (the record TTL).
func (t *Tree) Record(node NodeID, model string, hashes []uint64) {
	if len(hashes) == 0 {
		return
	}
	if len(hashes) > t.maxHashes {
		hashes = hashes[:t.maxHashes]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.holdingLocked(node, model)
	h.prompts = append(h.prompts, recorded{hashes: append([]uint64(nil), hashes...), at: t.now()})
	for _, x := range hashes {
		h.rec[x]++
		t.addLocked(h, x)
	}
	for len(h.prompts) > t.maxRec {
		t.forgetOldestLocked(h)
	}
}

func (t *Tree) forgetOldestLocked(h *holding) {
	p := h.prompts[0]
	h.prompts = h.prompts[1:]
	for _, x := range p.hashes {
		if h.rec[x]--; h.rec[x] <= 0 {
			delete(h.rec, x)
			t.dropLocked(h, x)
		}
	}
}

// expireLocked forgets the recorded prompts of reporting nodes older than
// the record TTL.
func (t *Tree) expireLocked(h *holding) {
	if !h.reported {
		return
	}
	cut := t.now().Add(-t.recTTL)
	for len(h.prompts) > 0 && h.prompts[0].at.Before(cut) {
		t.forgetOldestLocked(h)
	}
}

// Forget drops everything known about node (it left or restarted).
func (t *Tree) Forget(node NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.nodes[node] {
		h.state = nil
		h.rec = nil
		h.prompts = nil
		m := t.models[h.model]
		for x, hs := range m {
			for i, y := range hs {
				if y == h {
					hs = append(hs[:i], hs[i+1:]...)
					break
				}
			}
			if len(hs) == 0 {
				delete(m, x)
			} else {
				m[x] = hs
			}
		}
	}
	delete(t.nodes, node)
}

// Match returns, for every node holding at least the first chunk, how many
// leading chunks of hashes it holds.
func (t *Tree) Match(model string, hashes []uint64) map[NodeID]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[NodeID]int{}
	m := t.models[model]
	if m == nil || len(hashes) == 0 {
		return out
	}
	for _, h := range append([]*holding(nil), m[hashes[0]]...) {
		t.expireLocked(h)
	}
	for i, x := range hashes {
		alive := false
		for _, h := range m[x] {
			if out[h.node] == i {
				out[h.node] = i + 1
				alive = true
			}
		}
		if !alive {
			break
		}
	}
	for n, c := range out {
		if c == 0 {
			delete(out, n)
		}
	}
	return out
}

// Size returns the number of distinct hashes held for model by node (both
// reported and recorded).
func (t *Tree) Size(node NodeID, model string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.nodes[node][model]
	if h == nil {
		return 0
	}
	n := len(h.state)
	for x := range h.rec {
		if _, ok := h.state[x]; !ok {
			n++
		}
	}
	return n
}
