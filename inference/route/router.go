package route

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// Policy is a forwarding rule. HRTree is the real one; RoundRobin and
// LeastLoaded exist as baselines for benchmarks.
type Policy int

const (
	// HRTree: session, else among trusted nodes not in the worst fifth by
	// load factor the one with the least work before the first token
	// (queued tokens + prompt tokens it does not hold): the longest cached
	// prefix when queues are equal, else the least loaded.
	HRTree Policy = iota
	// RoundRobin cycles through the candidates.
	RoundRobin
	// LeastLoaded picks the fewest queued tokens, then the lowest load
	// factor.
	LeastLoaded
)

func (p Policy) String() string {
	switch p {
	case HRTree:
		return "hr-tree"
	case RoundRobin:
		return "round-robin"
	case LeastLoaded:
		return "least-loaded"
	}
	return fmt.Sprintf("policy(%d)", int(p))
}

// ParsePolicy reads a policy by its name ("hr-tree", "round-robin",
// "least-loaded").
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{HRTree, RoundRobin, LeastLoaded} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("route: unknown policy %q (hr-tree, round-robin or least-loaded)", s)
}

// Defaults of a Router (PlanetServe's parameters where it has them).
const (
	// DefaultEWMAWeight is the weight of a new latency sample.
	DefaultEWMAWeight = 0.125
	// DefaultLoadQuantum: BF = EWMA latency x ceil(queued tokens / quantum).
	DefaultLoadQuantum = 2048
	// DefaultCutPercentile: nodes whose BF is above this percentile of the
	// candidates' BFs are skipped for prefix routing (the worst fifth).
	DefaultCutPercentile = 0.8
	// DefaultOverload: a node counts as overloaded (skipped for prefix
	// routing) only when its BF is above the cut percentile AND above this
	// multiple of the median BF. PlanetServe's rule is the percentile
	// alone; in a 3-node mesh that always skips the slowest node, even
	// when it is only marginally slower and holds the whole prompt.
	DefaultOverload = 2.0
	// DefaultThreshold is the community reputation threshold (PlanetServe
	// marks nodes below 0.3 untrusted).
	DefaultThreshold = 0.3
	// DefaultSessions bounds the remembered sessions.
	DefaultSessions = 4096
	// DefaultDecisions is how many recent decisions are kept.
	DefaultDecisions = 256
	// DefaultExpectedOutput is the number of generated tokens assumed for
	// a request without a limit, when counting queued tokens.
	DefaultExpectedOutput = 128
)

// Reputation reports a node's reputation in [0,1] (the verification
// committee's output). Implementations must be safe for concurrent use.
type Reputation interface {
	Reputation(node NodeID) float64
}

// Request is what the router needs to know about a request.
type Request struct {
	Model string
	// Hashes are the chunk hashes of the prompt as the serving engine
	// will tokenize it.
	Hashes []uint64
	// PromptTokens is the prompt length; MaxTokens the generation limit
	// (0: unknown).
	PromptTokens, MaxTokens int
	// Session identifies a conversation ("" = none).
	Session string
}

// Candidate is a node able to serve the request's model.
type Candidate struct {
	Node NodeID
	// Queued is the node's own report of queued tokens (e.g. from its mesh
	// announcement); the router adds what it sent itself.
	Queued int
}

// Decision is one routing decision, kept for the LAN page.
type Decision struct {
	Time    time.Time `json:"time"`
	Model   string    `json:"model"`
	Node    NodeID    `json:"node"`
	Policy  string    `json:"policy"`
	Reason  string    `json:"reason"` // "session", "prefix", "least-loaded", "round-robin", "retry"
	Detail  string    `json:"detail"` // human-readable why
	Cached  int       `json:"cached_tokens"`
	Prompt  int       `json:"prompt_tokens"`
	Attempt int       `json:"attempt"`
}

// Router applies the forwarding rule. Create it with NewRouter. A Router
// is safe for concurrent use.
type Router struct {
	Tree *Tree

	policy    Policy
	weight    float64
	quantum   int
	cut       float64
	overload  float64
	threshold float64
	rep       Reputation
	maxSess   int
	maxDec    int
	now       func() time.Time

	mu        sync.Mutex // guards everything below
	load      map[NodeID]*nodeLoad
	sessions  map[string]*session
	decisions []Decision // ring, oldest first
	rr        uint64
}

type nodeLoad struct {
	queued   int     // tokens of requests in flight sent by this router
	inflight int     // requests in flight
	ewma     float64 // seconds; 0 = no sample yet
	served   int
	hits     int // served with a cached prefix
}

type session struct {
	node    NodeID
	lastUse time.Time
}

// Option tunes a Router.
type Option func(*Router)

// WithPolicy sets the forwarding rule (default HRTree).
func WithPolicy(p Policy) Option { return func(r *Router) { r.policy = p } }

// WithLoadQuantum sets the token quantum of the load factor (default
// DefaultLoadQuantum).
func WithLoadQuantum(n int) Option { return func(r *Router) { r.quantum = max(1, n) } }

// WithReputation sets the reputation source and the community threshold
// (default: every node trusted, threshold DefaultThreshold).
func WithReputation(rep Reputation, threshold float64) Option {
	return func(r *Router) { r.rep, r.threshold = rep, threshold }
}

// WithOverload sets the multiple of the median load factor a node must
// also exceed to be skipped for prefix routing (default DefaultOverload;
// 0 = PlanetServe's percentile cut alone).
func WithOverload(x float64) Option { return func(r *Router) { r.overload = max(0, x) } }

// WithTree uses t as the HR-tree (default a NewTree()).
func WithTree(t *Tree) Option { return func(r *Router) { r.Tree = t } }

// NewRouter returns a router.
func NewRouter(opts ...Option) *Router {
	r := &Router{policy: HRTree, weight: DefaultEWMAWeight, quantum: DefaultLoadQuantum, cut: DefaultCutPercentile, overload: DefaultOverload,
		threshold: DefaultThreshold, maxSess: DefaultSessions, maxDec: DefaultDecisions, now: time.Now,
		load: map[NodeID]*nodeLoad{}, sessions: map[string]*session{}}
	for _, o := range opts {
		o(r)
	}
	if r.Tree == nil {
		r.Tree = NewTree()
	}
	return r
}

// Policy returns the router's forwarding rule.
func (r *Router) Policy() Policy { return r.policy }

func (r *Router) loadLocked(n NodeID) *nodeLoad {
	l := r.load[n]
	if l == nil {
		l = &nodeLoad{}
		r.load[n] = l
	}
	return l
}

// bfLocked is the load factor: EWMA latency x ceil(queued/quantum), with
// the multiplier at least 1 so idle nodes are still ordered by latency (a
// node without samples takes the lowest known latency, so it gets tried).
func (r *Router) bfLocked(c Candidate, minLat float64) float64 {
	l := r.loadLocked(c.Node)
	lat := l.ewma
	if lat == 0 {
		lat = minLat
	}
	q := l.queued + max(0, c.Queued)
	mult := math.Max(1, math.Ceil(float64(q)/float64(r.quantum)))
	// Break ties between equal quanta by in-flight work, so the factor
	// still sees load below one quantum.
	return lat*mult + 1e-9*float64(q)
}

// percentile is the linear-interpolation percentile p of sorted xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	pos := p * float64(len(xs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(xs)-1)
	return xs[lo] + (pos-float64(lo))*(xs[hi]-xs[lo])
}

// Pick chooses the node for req among cands, skipping the nodes in
// exclude (ones that already failed this request; attempt counts from 1).
// It records the decision.
func (r *Router) Pick(req Request, cands []Candidate, exclude []NodeID, attempt int) (Decision, error) {
	match := r.Tree.Match(req.Model, req.Hashes)
	r.mu.Lock()
	defer r.mu.Unlock()
	d := Decision{Time: r.now(), Model: req.Model, Policy: r.policy.String(), Prompt: req.PromptTokens, Attempt: attempt}
	var ok []Candidate
	for _, c := range cands {
		if slices.Contains(exclude, c.Node) {
			continue
		}
		if r.rep != nil && r.rep.Reputation(c.Node) < r.threshold {
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		return d, fmt.Errorf("route: model %q: %d candidate nodes, all excluded or untrusted: %w", req.Model, len(cands), ErrNoNode)
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Node < ok[j].Node })
	minLat := 0.0
	for _, c := range ok {
		if l := r.loadLocked(c.Node).ewma; l > 0 && (minLat == 0 || l < minLat) {
			minLat = l
		}
	}
	if minLat == 0 {
		minLat = 1
	}
	bf := make(map[NodeID]float64, len(ok))
	var bfs []float64
	for _, c := range ok {
		bf[c.Node] = r.bfLocked(c, minLat)
		bfs = append(bfs, bf[c.Node])
	}
	sort.Float64s(bfs)
	least := ok[0]
	for _, c := range ok[1:] {
		if bf[c.Node] < bf[least.Node] {
			least = c
		}
	}
	choose := func(c Candidate, reason, detail string) (Decision, error) {
		d.Node, d.Reason, d.Detail = c.Node, reason, detail
		d.Cached = min(match[c.Node]*ChunkTokens, req.PromptTokens)
		if attempt > 1 {
			d.Reason = "retry"
			d.Detail = fmt.Sprintf("attempt %d after %v failed; %s", attempt, exclude, detail)
		}
		if req.Session != "" && r.policy == HRTree {
			r.rememberLocked(req.Session, c.Node)
		}
		r.decisions = append(r.decisions, d)
		if len(r.decisions) > r.maxDec {
			r.decisions = r.decisions[len(r.decisions)-r.maxDec:]
		}
		return d, nil
	}
	switch r.policy {
	case RoundRobin:
		c := ok[r.rr%uint64(len(ok))]
		r.rr++
		return choose(c, "round-robin", "next in turn")
	case LeastLoaded:
		// the fewest queued tokens (what "least loaded" means to a
		// conventional balancer), then the lowest load factor
		ll := ok[0]
		q := func(c Candidate) int { return r.loadLocked(c.Node).queued + max(0, c.Queued) }
		for _, c := range ok[1:] {
			if q(c) < q(ll) || (q(c) == q(ll) && bf[c.Node] < bf[ll.Node]) {
				ll = c
			}
		}
		return choose(ll, "least-loaded", fmt.Sprintf("%d tokens queued, load factor %.3g", q(ll), bf[ll.Node]))
	}
	if req.Session != "" {
		if s := r.sessions[req.Session]; s != nil {
			for _, c := range ok {
				if c.Node == s.node {
					return choose(c, "session", "conversation stays on its node")
				}
			}
		}
	}
	limit := percentile(bfs, r.cut) + 1e-12
	if r.overload > 0 {
		limit = max(limit, r.overload*percentile(bfs, 0.5))
	}
	// Among trusted nodes not in the worst fifth, pick the least work
	// ahead of the first token: tokens queued there plus the prompt
	// tokens it does not hold. With equal queues this is the longest
	// cached prefix; a holder busy with more than the prefix saves loses
	// to an idle node (PlanetServe's quantised BF cannot see queues
	// shorter than 2048 tokens).
	work := func(c Candidate) int {
		return r.loadLocked(c.Node).queued + max(0, c.Queued) + max(0, req.PromptTokens-match[c.Node]*ChunkTokens)
	}
	var best *Candidate
	var skipped []NodeID
	for i, c := range ok {
		if bf[c.Node] > limit {
			if match[c.Node] > 0 {
				skipped = append(skipped, c.Node)
			}
			continue
		}
		if best == nil {
			best = &ok[i]
			continue
		}
		w, bw := work(c), work(*best)
		if w < bw || (w == bw && (match[c.Node] > match[best.Node] || (match[c.Node] == match[best.Node] && bf[c.Node] < bf[best.Node]))) {
			best = &ok[i]
		}
	}
	if best == nil { // cannot happen: the lowest BF is never above the limit
		best = &least
	}
	if match[best.Node] > 0 {
		return choose(*best, "prefix", fmt.Sprintf("holds %d of %d prompt tokens, %d tokens of work ahead, load factor %.3g (cut %.3g)",
			min(match[best.Node]*ChunkTokens, req.PromptTokens), req.PromptTokens, work(*best), bf[best.Node], limit))
	}
	detail := "no node holds a prefix"
	switch {
	case len(skipped) > 0:
		detail = fmt.Sprintf("prefix holders %v are in the worst fifth by load", skipped)
	case len(match) > 0:
		detail = "prefix holders have more work queued than their prefix saves"
	}
	return choose(*best, "least-loaded", fmt.Sprintf("%s; %d tokens of work ahead, load factor %.3g", detail, work(*best), bf[best.Node]))
}

func (r *Router) rememberLocked(key string, n NodeID) {
	now := r.now()
	if s := r.sessions[key]; s != nil {
		s.node, s.lastUse = n, now
		return
	}
	if len(r.sessions) >= r.maxSess {
		var oldK string
		var old time.Time
		for k, s := range r.sessions {
			if oldK == "" || s.lastUse.Before(old) {
				oldK, old = k, s.lastUse
			}
		}
		delete(r.sessions, oldK)
	}
	r.sessions[key] = &session{node: n, lastUse: now}
}

// Begin notes that a request of d was sent; call the returned function
// once it finished with its latency and whether it succeeded. Failed
// requests do not update the latency average. The returned function is
// idempotent.
func (r *Router) Begin(d Decision, maxTokens int) (end func(latency time.Duration, ok bool)) {
	if maxTokens <= 0 {
		maxTokens = DefaultExpectedOutput
	}
	q := max(0, d.Prompt-d.Cached) + maxTokens
	r.mu.Lock()
	l := r.loadLocked(d.Node)
	l.queued += q
	l.inflight++
	r.mu.Unlock()
	var once sync.Once
	return func(latency time.Duration, ok bool) {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			l.queued -= q
			l.inflight--
			if !ok {
				return
			}
			l.served++
			if d.Cached > 0 {
				l.hits++
			}
			s := latency.Seconds()
			if l.ewma == 0 {
				l.ewma = s
			} else {
				l.ewma = (1-r.weight)*l.ewma + r.weight*s
			}
		})
	}
}

// Unhealthy forgets the sessions on node (it failed or left), so they move.
func (r *Router) Unhealthy(node NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.sessions {
		if s.node == node {
			delete(r.sessions, k)
		}
	}
}

// Decisions returns the recent decisions, newest last.
func (r *Router) Decisions() []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Decision(nil), r.decisions...)
}

// NodeLoad is a snapshot of one node's load as this router sees it.
type NodeLoad struct {
	Node     NodeID  `json:"node"`
	Queued   int     `json:"queued_tokens"`
	InFlight int     `json:"in_flight"`
	Latency  float64 `json:"ewma_latency_s"`
	Served   int     `json:"served"`
	HitRate  float64 `json:"cache_hit_rate"` // share of served requests routed to a cached prefix
}

// Loads returns the load of every node the router has sent to, by ID.
func (r *Router) Loads() []NodeLoad {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []NodeLoad
	for n, l := range r.load {
		nl := NodeLoad{Node: n, Queued: l.queued, InFlight: l.inflight, Latency: l.ewma, Served: l.served}
		if l.served > 0 {
			nl.HitRate = float64(l.hits) / float64(l.served)
		}
		out = append(out, nl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
