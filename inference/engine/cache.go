package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"sync"
)

// ChunkTokens is the number of tokens per hashed chunk of the cache-state view.
const ChunkTokens = 16

// prefillBatch bounds the tokens evaluated per forward call, bounding the
// scratch memory (and the cancellation latency).
const prefillBatch = 64

// maxStateLog bounds the retained cache-state change log.
const maxStateLog = 1 << 14

// ChunkHashes returns the chained hashes of the full 16-token chunks of
// tokens: h[i] = FNV-1a-64(h[i-1] || tokens[16i:16i+16]) with h[-1] = 0
// (little-endian encoding). Equal hashes mean equal prefixes of
// 16*(i+1) tokens, so a router can match a prompt against State.
func ChunkHashes(tokens []int32) []uint64 {
	out := make([]uint64, 0, len(tokens)/ChunkTokens)
	var prev uint64
	var buf [8 + 4*ChunkTokens]byte
	for i := 0; i+ChunkTokens <= len(tokens); i += ChunkTokens {
		binary.LittleEndian.PutUint64(buf[:8], prev)
		for j, t := range tokens[i : i+ChunkTokens] {
			binary.LittleEndian.PutUint32(buf[8+4*j:], uint32(t))
		}
		h := fnv.New64a()
		h.Write(buf[:])
		prev = h.Sum64()
		out = append(out, prev)
	}
	return out
}

// Cache is a KV cache over a model holding several token sequences. A new
// evaluation reuses the longest cached prefix of its tokens and skips that
// part of the prefill. Memory is bounded: least recently used sequences are
// evicted to stay under the bound.
//
// A Cache is safe for concurrent use; evaluations are serialised (each one
// already uses all of the model's threads).
type Cache struct {
	m        *Model
	maxBytes int64
	perToken int64

	mu      sync.Mutex // guards everything below
	seqs    []*cachedSeq
	clock   uint64
	s       scratch
	refs    map[uint64]int // chunk hash -> number of sequences holding it
	version uint64
	log     []stateEvent // versions (version-len(log), version]
}

type cachedSeq struct {
	kvSeq
	lastUse uint64
	hashes  []uint64 // chunk hashes registered in refs
}

type stateEvent struct {
	hash  uint64
	added bool
}

// NewCache returns a cache whose KV memory stays under maxBytes (a value
// <= 0 means 1 GiB).
func (m *Model) NewCache(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		maxBytes = 1 << 30
	}
	c := m.cfg
	return &Cache{
		m:        m,
		maxBytes: maxBytes,
		perToken: int64(c.Layers) * int64(c.KVHeads*c.HeadDim) * 2 * 4,
		refs:     map[uint64]int{},
	}
}

// BytesPerToken is the KV memory one cached token takes.
func (c *Cache) BytesPerToken() int64 { return c.perToken }

// Stats describes the cache contents.
type Stats struct {
	Sequences int
	Tokens    int
	Bytes     int64
	MaxBytes  int64
}

// Stats returns the current contents.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{Sequences: len(c.seqs), MaxBytes: c.maxBytes}
	for _, s := range c.seqs {
		st.Tokens += len(s.tokens)
	}
	st.Bytes = int64(st.Tokens) * c.perToken
	return st
}

func (c *Cache) checkTokens(tokens []int32) error {
	if len(tokens) == 0 {
		return fmt.Errorf("engine: no tokens: %w", ErrInput)
	}
	if len(tokens) > c.m.cfg.ContextLen {
		return fmt.Errorf("engine: %d tokens exceed the context length %d: %w", len(tokens), c.m.cfg.ContextLen, ErrInput)
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= c.m.cfg.Vocab {
			return fmt.Errorf("engine: token %d at position %d is outside the vocabulary of %d: %w", t, i, c.m.cfg.Vocab, ErrInput)
		}
	}
	if int64(len(tokens))*c.perToken > c.maxBytes {
		return fmt.Errorf("engine: %d tokens need %d bytes of KV cache, bound is %d: %w", len(tokens), int64(len(tokens))*c.perToken, c.maxBytes, ErrCacheFull)
	}
	return nil
}

func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Eval evaluates tokens and returns the logits of the last position
// (a fresh slice of Vocab values) and how many leading tokens were served
// from the cache. A cancelled ctx stops between layers batches; the part
// already computed stays cached.
func (c *Cache) Eval(ctx context.Context, tokens []int32) (logits []float32, reused int, err error) {
	if err := c.checkTokens(tokens); err != nil {
		return nil, 0, err
	}
	if err := c.m.acquire(); err != nil {
		return nil, 0, fmt.Errorf("engine: eval: %w", err)
	}
	defer c.m.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, reused := c.acquireLocked(tokens)
	var out []float32
	for len(seq.tokens) < len(tokens) {
		if err := ctx.Err(); err != nil {
			c.syncHashesLocked(seq)
			return nil, reused, fmt.Errorf("engine: eval: %w", err)
		}
		end := min(len(tokens), len(seq.tokens)+prefillBatch)
		c.makeRoomLocked(seq, end-len(seq.tokens))
		out = c.m.forward(&c.s, &seq.kvSeq, tokens[len(seq.tokens):end], false)
	}
	c.syncHashesLocked(seq)
	return append([]float32(nil), out[:c.m.cfg.Vocab]...), reused, nil
}

// Score returns, in one forward pass over tokens, the log-probability of
// every token given the tokens before it: lp[i] = log P(tokens[i] |
// tokens[:i]) for i >= 1; lp[0] is 0 (nothing precedes it). The evaluated
// sequence stays cached for later Evals.
func (c *Cache) Score(ctx context.Context, tokens []int32) ([]float32, error) {
	lp, _, _, err := c.score(ctx, tokens, 1, false)
	return lp, err
}

// ScoreBest is Score that also returns, per position, the log-probability
// of the token the model found most likely there: best[i] = max_v log P(v |
// tokens[:i]) for i >= 1 (best[0] = 0), so lp[i] == best[i] exactly when
// tokens[i] was the greedy choice. Still one forward pass.
func (c *Cache) ScoreBest(ctx context.Context, tokens []int32) (lp, best []float32, err error) {
	lp, best, _, err = c.score(ctx, tokens, 1, true)
	return lp, best, err
}

// ScoreBestFrom is ScoreBest for the positions from on only (lp[i] and
// best[i] are 0 for i < from): the context tokens[:from] is evaluated
// without the output projection, and a cached prefix of it is reused, so
// scoring an answer after a prompt costs the prompt's prefill (less what
// is cached) and one batched pass over the answer. from <= 1 scores every
// position; from must not exceed len(tokens).
func (c *Cache) ScoreBestFrom(ctx context.Context, tokens []int32, from int) (lp, best []float32, err error) {
	lp, best, _, err = c.ScoreGreedyFrom(ctx, tokens, from)
	return lp, best, err
}

// ScoreGreedyFrom is ScoreBestFrom that also returns the most likely token
// itself at every scored position (greedy[i] = argmax_v P(v | tokens[:i]),
// -1 before from): a verifier can tell a token the model would not have
// chosen from one that only merges several greedy tokens into one.
func (c *Cache) ScoreGreedyFrom(ctx context.Context, tokens []int32, from int) (lp, best []float32, greedy []int32, err error) {
	if from > len(tokens) {
		return nil, nil, nil, fmt.Errorf("engine: score from position %d of %d tokens: %w", from, len(tokens), ErrInput)
	}
	return c.score(ctx, tokens, max(from, 1), true)
}

func (c *Cache) score(ctx context.Context, tokens []int32, from int, withBest bool) (lp, best []float32, greedy []int32, err error) {
	if err := c.checkTokens(tokens); err != nil {
		return nil, nil, nil, err
	}
	if err := c.m.acquire(); err != nil {
		return nil, nil, nil, fmt.Errorf("engine: score: %w", err)
	}
	defer c.m.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	// reuse at most tokens[:from-1]: the logits at from-1 are needed
	seq, _ := c.acquireLocked(tokens[:from])
	lp = make([]float32, len(tokens))
	if withBest {
		best = make([]float32, len(tokens))
		greedy = make([]int32, len(tokens))
		for i := range greedy {
			greedy[i] = -1
		}
	}
	V := c.m.cfg.Vocab
	for len(seq.tokens) < len(tokens) {
		if err := ctx.Err(); err != nil {
			c.syncHashesLocked(seq)
			return nil, nil, nil, fmt.Errorf("engine: score: %w", err)
		}
		start := len(seq.tokens)
		if start < from-1 {
			// context whose logits nobody needs: no output projection
			end := min(from-1, start+prefillBatch)
			c.makeRoomLocked(seq, end-start)
			c.m.forward(&c.s, &seq.kvSeq, tokens[start:end], false)
			continue
		}
		end := min(len(tokens), start+prefillBatch)
		c.makeRoomLocked(seq, end-start)
		logits := c.m.forward(&c.s, &seq.kvSeq, tokens[start:end], true)
		for t := start; t < end && t+1 < len(tokens); t++ {
			l, b, g := logProbBest(logits[(t-start)*V:(t-start+1)*V], tokens[t+1])
			lp[t+1] = l
			if withBest {
				best[t+1], greedy[t+1] = b, g
			}
		}
	}
	c.syncHashesLocked(seq)
	return lp, best, greedy, nil
}

// logProb is log softmax(logits)[tok], computed in float64.
func logProb(logits []float32, tok int32) float32 {
	lp, _, _ := logProbBest(logits, tok)
	return lp
}

// logProbBest returns log softmax(logits)[tok], max log softmax(logits)
// (the log-probability of the most likely token) and that token (the
// first of equals), computed in float64.
func logProbBest(logits []float32, tok int32) (lp, best float32, arg int32) {
	mx := math.Inf(-1)
	for i, v := range logits {
		if float64(v) > mx {
			mx, arg = float64(v), int32(i)
		}
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	lse := math.Log(sum)
	return float32(float64(logits[tok]) - mx - lse), float32(-lse), arg
}

// acquireLocked picks the sequence to extend for tokens: an existing one
// that is a prefix of tokens, or a copy of the longest shared prefix, or a
// new one. At least the last token is always left to evaluate.
func (c *Cache) acquireLocked(tokens []int32) (*cachedSeq, int) {
	var best *cachedSeq
	bestN := 0
	for _, s := range c.seqs {
		if n := commonPrefix(s.tokens, tokens); n > bestN {
			best, bestN = s, n
		}
	}
	c.clock++
	reuse := min(bestN, len(tokens)-1)
	switch {
	case best != nil && reuse == len(best.tokens):
		best.lastUse = c.clock
		return best, reuse
	case best != nil && reuse == len(best.tokens)-1 && bestN == len(tokens):
		// the same tokens again: recompute the last one to get its logits
		c.truncateLocked(best, reuse)
		best.lastUse = c.clock
		return best, reuse
	}
	seq := &cachedSeq{lastUse: c.clock}
	if reuse > 0 {
		seq.tokens = append([]int32(nil), best.tokens[:reuse]...)
		kvDim := c.m.cfg.KVHeads * c.m.cfg.HeadDim
		seq.k = make([][]float32, len(best.k))
		seq.v = make([][]float32, len(best.v))
		for l := range best.k {
			seq.k[l] = append([]float32(nil), best.k[l][:reuse*kvDim]...)
			seq.v[l] = append([]float32(nil), best.v[l][:reuse*kvDim]...)
		}
		c.makeRoomLocked(seq, 0)
	}
	c.seqs = append(c.seqs, seq)
	return seq, reuse
}

func (c *Cache) truncateLocked(s *cachedSeq, n int) {
	kvDim := c.m.cfg.KVHeads * c.m.cfg.HeadDim
	s.tokens = s.tokens[:n]
	for l := range s.k {
		s.k[l] = s.k[l][:n*kvDim]
		s.v[l] = s.v[l][:n*kvDim]
	}
	c.syncHashesLocked(s)
}

// makeRoomLocked evicts least recently used sequences other than keep until
// keep can grow by extra tokens within the bound.
func (c *Cache) makeRoomLocked(keep *cachedSeq, extra int) {
	for {
		var total int64
		for _, s := range c.seqs {
			total += int64(len(s.tokens)) * c.perToken
		}
		if keep != nil && !c.holds(keep) {
			total += int64(len(keep.tokens)) * c.perToken
		}
		if total+int64(extra)*c.perToken <= c.maxBytes {
			return
		}
		victim := -1
		for i, s := range c.seqs {
			if s != keep && (victim < 0 || s.lastUse < c.seqs[victim].lastUse) {
				victim = i
			}
		}
		if victim < 0 {
			return // checkTokens guarantees keep alone fits
		}
		v := c.seqs[victim]
		c.seqs = append(c.seqs[:victim], c.seqs[victim+1:]...)
		v.tokens = nil
		v.k, v.v = nil, nil
		c.syncHashesLocked(v)
	}
}

func (c *Cache) holds(s *cachedSeq) bool {
	for _, x := range c.seqs {
		if x == s {
			return true
		}
	}
	return false
}

// syncHashesLocked brings s.hashes (and the refcounts) in line with s.tokens.
func (c *Cache) syncHashesLocked(s *cachedSeq) {
	want := len(s.tokens) / ChunkTokens
	keep := min(want, len(s.hashes))
	// hashes chain, so the registered ones stay valid while tokens[:16*keep] are unchanged;
	// sequences only grow or shrink at the end.
	for _, h := range s.hashes[keep:] {
		c.unref(h)
	}
	s.hashes = s.hashes[:keep]
	if want > keep {
		all := ChunkHashes(s.tokens[:want*ChunkTokens])
		for _, h := range all[keep:] {
			c.ref(h)
		}
		s.hashes = append(s.hashes, all[keep:]...)
	}
}

func (c *Cache) ref(h uint64) {
	c.refs[h]++
	if c.refs[h] == 1 {
		c.event(h, true)
	}
}

func (c *Cache) unref(h uint64) {
	c.refs[h]--
	if c.refs[h] <= 0 {
		delete(c.refs, h)
		c.event(h, false)
	}
}

func (c *Cache) event(h uint64, added bool) {
	c.version++
	c.log = append(c.log, stateEvent{h, added})
	if len(c.log) > maxStateLog {
		c.log = append(c.log[:0:0], c.log[len(c.log)-maxStateLog/2:]...)
	}
}

// CacheState is a view of the chunk hashes (see ChunkHashes) held in a cache.
type CacheState struct {
	Version uint64
	// Full is true when Added lists every held hash (the caller asked for
	// version 0 or its version is older than the retained change log) and
	// the caller must replace its set; otherwise Added/Removed are the
	// changes since the requested version.
	Full           bool
	Added, Removed []uint64
}

// State returns the chunk hashes held, as changes since sinceVersion when
// possible. Hashes are sorted.
func (c *Cache) State(sinceVersion uint64) CacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := CacheState{Version: c.version}
	oldest := c.version - uint64(len(c.log))
	if sinceVersion == 0 || sinceVersion < oldest || sinceVersion > c.version {
		st.Full = true
		for h := range c.refs {
			st.Added = append(st.Added, h)
		}
		sort.Slice(st.Added, func(i, j int) bool { return st.Added[i] < st.Added[j] })
		return st
	}
	net := map[uint64]int{}
	for _, e := range c.log[sinceVersion-oldest:] {
		if e.added {
			net[e.hash]++
		} else {
			net[e.hash]--
		}
	}
	for h, n := range net {
		switch {
		case n > 0:
			st.Added = append(st.Added, h)
		case n < 0:
			st.Removed = append(st.Removed, h)
		}
	}
	sort.Slice(st.Added, func(i, j int) bool { return st.Added[i] < st.Added[j] })
	sort.Slice(st.Removed, func(i, j int) bool { return st.Removed[i] < st.Removed[j] })
	return st
}
