package route

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func toks(seed uint64, n int) []int32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(1000))
	}
	return out
}

func TestMatchLongestPrefixPerNode(t *testing.T) {
	tr := NewTree()
	sys := toks(1, 64)                                           // 4 chunks
	conv := append(append([]int32(nil), sys...), toks(2, 32)...) // 6 chunks
	if err := tr.Apply("a", "m", 0, CacheState{Version: 3, Full: true, Added: ChunkHashes(sys)}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Apply("b", "m", 0, CacheState{Version: 9, Full: true, Added: ChunkHashes(conv)}); err != nil {
		t.Fatal(err)
	}
	got := tr.Match("m", ChunkHashes(append(append([]int32(nil), conv...), toks(3, 40)...)))
	if got["a"] != 4 || got["b"] != 6 || len(got) != 2 {
		t.Fatalf("match = %v, want a:4 b:6", got)
	}
	if got := tr.Match("other", ChunkHashes(conv)); len(got) != 0 {
		t.Fatalf("another model matched: %v", got)
	}
	// a different first chunk matches nothing even if later tokens agree
	other := append(toks(9, 16), conv[16:]...)
	if got := tr.Match("m", ChunkHashes(other)); len(got) != 0 {
		t.Fatalf("different first chunk matched: %v", got)
	}
	// delta: b evicts its last two chunks
	h := ChunkHashes(conv)
	if err := tr.Apply("b", "m", 9, CacheState{Version: 11, Removed: h[4:]}); err != nil {
		t.Fatal(err)
	}
	if got := tr.Match("m", h); got["b"] != 4 {
		t.Fatalf("after delta b = %d, want 4", got["b"])
	}
	// a delta from the wrong base is refused and changes nothing
	err := tr.Apply("b", "m", 3, CacheState{Version: 12, Removed: h})
	if !errors.Is(err, ErrVersionGap) {
		t.Fatalf("gap: err = %v", err)
	}
	if tr.Version("b", "m") != 11 || tr.Match("m", h)["b"] != 4 {
		t.Fatal("refused delta changed the state")
	}
	tr.Forget("b")
	if got := tr.Match("m", h); got["b"] != 0 || got["a"] != 4 {
		t.Fatalf("after Forget: %v", got)
	}
}

func TestApplyBounds(t *testing.T) {
	tr := NewTree(WithMaxHashes(4))
	err := tr.Apply("a", "m", 0, CacheState{Version: 1, Full: true, Added: []uint64{1, 2, 3, 4, 5}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if tr.Size("a", "m") != 0 {
		t.Fatal("oversized state applied")
	}
}

func TestRecordLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := NewTree(WithRecorded(2), WithRecordTTL(time.Second))
	tr.now = func() time.Time { return now }
	p := [][]uint64{ChunkHashes(toks(1, 32)), ChunkHashes(toks(2, 32)), ChunkHashes(toks(3, 32))}
	for _, h := range p {
		tr.Record("ext", "m", h)
	}
	if tr.Match("m", p[0])["ext"] != 0 || tr.Match("m", p[1])["ext"] != 2 || tr.Match("m", p[2])["ext"] != 2 {
		t.Fatal("LRU of 2 prompts: the oldest must be forgotten, the others kept")
	}
	// an external engine's records do not expire with time
	now = now.Add(time.Hour)
	if tr.Match("m", p[2])["ext"] != 2 {
		t.Fatal("external record expired")
	}
	// a reporting node's records count until the TTL
	if err := tr.Apply("inferd", "m", 0, CacheState{Version: 1, Full: true}); err != nil {
		t.Fatal(err)
	}
	tr.Record("inferd", "m", p[0])
	if tr.Match("m", p[0])["inferd"] != 2 {
		t.Fatal("fresh record not matched")
	}
	now = now.Add(2 * time.Second)
	if tr.Match("m", p[0])["inferd"] != 0 {
		t.Fatal("record of a reporting node outlived its TTL")
	}
}

// TestTreeProperty drives random full states, deltas, records and forgets
// and compares Match with a naive model (sets per node, walked in order).
func TestTreeProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	nodes := []NodeID{"a", "b", "c"}
	// a pool of prompts sharing prefixes: 4 roots x 3 branches
	var pool [][]uint64
	for root := range 4 {
		base := toks(uint64(100+root), 48)
		for br := range 3 {
			pool = append(pool, ChunkHashes(append(append([]int32(nil), base...), toks(uint64(1000+root*10+br), 16*(1+br))...)))
		}
	}
	for iter := range 300 {
		tr := NewTree(WithRecorded(1 << 20))
		state := map[NodeID]map[uint64]bool{}
		rec := map[NodeID]map[uint64]int{}
		ver := map[NodeID]uint64{}
		for _, n := range nodes {
			state[n], rec[n] = map[uint64]bool{}, map[uint64]int{}
		}
		for step := range 30 {
			n := nodes[r.IntN(len(nodes))]
			switch r.IntN(5) {
			case 0: // full state
				state[n] = map[uint64]bool{}
				var add []uint64
				for _, p := range pool {
					if r.IntN(3) == 0 {
						k := r.IntN(len(p) + 1)
						for _, h := range p[:k] {
							if !state[n][h] {
								state[n][h] = true
								add = append(add, h)
							}
						}
					}
				}
				ver[n] += 5
				if err := tr.Apply(n, "m", 0, CacheState{Version: ver[n], Full: true, Added: add}); err != nil {
					t.Fatal(err)
				}
			case 1, 2: // delta
				var add, rem []uint64
				p := pool[r.IntN(len(pool))]
				k := r.IntN(len(p) + 1)
				if r.IntN(2) == 0 {
					for _, h := range p[:k] {
						if !state[n][h] {
							state[n][h] = true
							add = append(add, h)
						}
					}
				} else {
					for _, h := range p[k:] {
						if state[n][h] {
							delete(state[n], h)
							rem = append(rem, h)
						}
					}
				}
				old := ver[n]
				ver[n]++
				if err := tr.Apply(n, "m", old, CacheState{Version: ver[n], Added: add, Removed: rem}); err != nil {
					t.Fatal(err)
				}
			case 3: // record a sent prompt (TTL far away)
				p := pool[r.IntN(len(pool))]
				tr.Record(n, "m", p)
				for _, h := range p {
					rec[n][h]++
				}
			case 4:
				if r.IntN(4) == 0 {
					tr.Forget(n)
					state[n], rec[n], ver[n] = map[uint64]bool{}, map[uint64]int{}, 0
				}
			}
			q := pool[r.IntN(len(pool))]
			got := tr.Match("m", q)
			for _, nd := range nodes {
				want := 0
				for _, h := range q {
					if !state[nd][h] && rec[nd][h] == 0 {
						break
					}
					want++
				}
				if got[nd] != want {
					t.Fatalf("iter %d step %d: node %s matched %d, naive %d", iter, step, nd, got[nd], want)
				}
			}
		}
	}
}

type rep map[NodeID]float64

func (r rep) Reputation(n NodeID) float64 {
	if v, ok := r[n]; ok {
		return v
	}
	return 1
}

func cands(ids ...NodeID) []Candidate {
	var out []Candidate
	for _, id := range ids {
		out = append(out, Candidate{Node: id})
	}
	return out
}

func TestRulePrefixLoadReputationSession(t *testing.T) {
	sys := toks(5, 96)
	h := ChunkHashes(sys)
	req := Request{Model: "m", Hashes: h, PromptTokens: 100}
	newR := func(opts ...Option) *Router {
		r := NewRouter(opts...)
		if err := r.Tree.Apply("b", "m", 0, CacheState{Version: 1, Full: true, Added: h[:4]}); err != nil {
			t.Fatal(err)
		}
		if err := r.Tree.Apply("c", "m", 0, CacheState{Version: 1, Full: true, Added: h[:2]}); err != nil {
			t.Fatal(err)
		}
		return r
	}

	r := newR()
	d, err := r.Pick(req, cands("a", "b", "c"), nil, 1)
	if err != nil || d.Node != "b" || d.Reason != "prefix" || d.Cached != 64 {
		t.Fatalf("longest prefix: %+v %v", d, err)
	}

	// b untrusted: the next longest prefix (c)
	r = newR(WithReputation(rep{"b": 0.1}, 0.3))
	if d, _ = r.Pick(req, cands("a", "b", "c"), nil, 1); d.Node != "c" || d.Reason != "prefix" {
		t.Fatalf("untrusted b: %+v", d)
	}

	// b in the worst fifth by load: the next holder
	r = newR()
	for range 3 {
		r.Begin(Decision{Node: "b", Prompt: 4000}, 100)
	}
	if d, _ = r.Pick(req, cands("a", "b", "c"), nil, 1); d.Node != "c" {
		t.Fatalf("loaded b: %+v", d)
	}
	// the only holder is loaded: the least loaded, and the reason says why
	if err := r.Tree.Apply("c", "m", 1, CacheState{Version: 2, Removed: h[:2]}); err != nil {
		t.Fatal(err)
	}
	r.Begin(Decision{Node: "c", Prompt: 2000}, 100)
	if d, _ = r.Pick(req, cands("a", "b", "c"), nil, 1); d.Node != "a" || d.Reason != "least-loaded" || !strings.Contains(d.Detail, "worst fifth") {
		t.Fatalf("loaded b and c: %+v", d)
	}

	// no prefix anywhere: least loaded by EWMA latency
	r = NewRouter()
	r.Begin(Decision{Node: "a"}, 1)(3*time.Second, true)
	r.Begin(Decision{Node: "b"}, 1)(time.Second, true)
	r.Begin(Decision{Node: "c"}, 1)(2*time.Second, true)
	if d, _ = r.Pick(Request{Model: "m", Hashes: ChunkHashes(toks(77, 32))}, cands("a", "b", "c"), nil, 1); d.Node != "b" || d.Reason != "least-loaded" {
		t.Fatalf("no prefix: %+v", d)
	}

	// sessions stick while the node is a candidate, move when it fails
	r = newR()
	sreq := req
	sreq.Session = "conv-1"
	sreq.Hashes = nil
	d1, _ := r.Pick(sreq, cands("a", "b", "c"), nil, 1)
	for range 3 {
		if d, _ = r.Pick(sreq, cands("a", "b", "c"), nil, 1); d.Node != d1.Node || d.Reason != "session" {
			t.Fatalf("session moved: %+v then %+v", d1, d)
		}
	}
	d, _ = r.Pick(sreq, cands("a", "b", "c"), []NodeID{d1.Node}, 2)
	if d.Node == d1.Node || d.Reason != "retry" {
		t.Fatalf("retry went to the excluded node: %+v", d)
	}
	if d2, _ := r.Pick(sreq, cands("a", "b", "c"), nil, 1); d2.Node != d.Node || d2.Reason != "session" {
		t.Fatalf("session did not follow the retry: %+v", d2)
	}

	// nothing left
	if _, err := r.Pick(req, cands("a"), []NodeID{"a"}, 2); !errors.Is(err, ErrNoNode) {
		t.Fatalf("err = %v", err)
	}
	if n := len(r.Decisions()); n != 6 {
		t.Fatalf("%d decisions recorded, want 6", n)
	}
}

func TestBaselines(t *testing.T) {
	r := NewRouter(WithPolicy(RoundRobin))
	var got []NodeID
	for range 6 {
		d, _ := r.Pick(Request{Model: "m"}, cands("c", "a", "b"), nil, 1)
		got = append(got, d.Node)
	}
	if fmt.Sprint(got) != "[a b c a b c]" {
		t.Fatalf("round robin: %v", got)
	}
	r = NewRouter(WithPolicy(LeastLoaded))
	r.Begin(Decision{Node: "a", Prompt: 10}, 10)
	if d, _ := r.Pick(Request{Model: "m"}, cands("a", "b"), nil, 1); d.Node != "b" {
		t.Fatalf("least loaded: %+v", d)
	}
}

// TestRuleProperty: whatever the loads and holdings, HRTree picks a
// candidate that is not excluded and trusted, and when it reports
// "prefix" no eligible node holds a longer prefix.
func TestRuleProperty(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	ids := []NodeID{"a", "b", "c", "d", "e"}
	prompt := ChunkHashes(toks(8, 160))
	for range 500 {
		reps := rep{}
		r := NewRouter(WithReputation(reps, 0.3))
		for _, id := range ids {
			reps[id] = rnd.Float64()
			if k := rnd.IntN(len(prompt) + 1); k > 0 {
				_ = r.Tree.Apply(id, "m", 0, CacheState{Version: 1, Full: true, Added: prompt[:k]})
			}
			for range rnd.IntN(4) {
				r.Begin(Decision{Node: id, Prompt: rnd.IntN(5000)}, 0)
			}
		}
		excl := []NodeID{ids[rnd.IntN(len(ids))]}
		d, err := r.Pick(Request{Model: "m", Hashes: prompt, PromptTokens: 160}, cands(ids...), excl, 1)
		if err != nil {
			continue // possible: every node untrusted or excluded
		}
		if d.Node == excl[0] || reps[d.Node] < 0.3 {
			t.Fatalf("picked excluded/untrusted %s: %+v", d.Node, d)
		}
		if d.Reason == "prefix" {
			m := r.Tree.Match("m", prompt)
			if m[d.Node]*ChunkTokens < d.Cached || d.Cached == 0 {
				t.Fatalf("prefix decision without the prefix: %+v", d)
			}
		}
	}
}

func TestDecodeCacheState(t *testing.T) {
	st, err := DecodeCacheState(strings.NewReader(`{"model":"m","loaded":true,"version":7,"full":false,"added":["00000000000000ff"],"removed":["0123456789abcdef"]}`), 0, 0)
	if err != nil || st.Version != 7 || st.Full || len(st.Added) != 1 || st.Added[0] != 0xff || st.Removed[0] != 0x0123456789abcdef {
		t.Fatalf("%+v %v", st, err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"full":true}`, "no version field"},
		{`{"version":1,"added":["xyz"]}`, `added[0] "xyz": not a 16-digit hex hash`},
		{`{"version":1,"removed":["1"]}`, `removed[0] "1": not a 16-digit hex hash`},
		{`[`, "unexpected end of JSON input"},
		{`{"version":1,"added":["0000000000000001","0000000000000002","0000000000000003"]}`, "3 hashes, bound 2"},
	} {
		_, err := DecodeCacheState(strings.NewReader(tc.in), 0, 2)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := DecodeCacheState(bytes.NewReader(make([]byte, 100)), 50, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized document: %v", err)
	}
}

func FuzzDecodeCacheState(f *testing.F) {
	f.Add([]byte(`{"version":7,"full":true,"added":["00000000000000ff"],"removed":[]}`))
	f.Add([]byte(`{"version":1,"added":["zz"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeCacheState(bytes.NewReader(b), 1<<16, 1<<10)
		if err != nil {
			return
		}
		if len(st.Added)+len(st.Removed) > 1<<10 {
			t.Fatal("bound exceeded")
		}
		tr := NewTree()
		_ = tr.Apply("n", "m", 0, st)
	})
}

// TestOverloadTolerance: a prefix holder only marginally slower than the
// others keeps its requests; with PlanetServe's bare p80 cut (overload 0)
// the slowest of three is always skipped.
func TestOverloadTolerance(t *testing.T) {
	h := ChunkHashes(toks(12, 64))
	for _, tc := range []struct {
		opt  []Option
		want NodeID
	}{{nil, "b"}, {[]Option{WithOverload(0)}, "a"}} {
		r := NewRouter(tc.opt...)
		_ = r.Tree.Apply("b", "m", 0, CacheState{Version: 1, Full: true, Added: h})
		r.Begin(Decision{Node: "a"}, 1)(time.Second, true)
		r.Begin(Decision{Node: "c"}, 1)(1100*time.Millisecond, true)
		r.Begin(Decision{Node: "b"}, 1)(1200*time.Millisecond, true)
		d, _ := r.Pick(Request{Model: "m", Hashes: h, PromptTokens: 64}, cands("a", "b", "c"), nil, 1)
		if d.Node != tc.want {
			t.Errorf("overload %v: picked %+v, want %s", tc.opt, d, tc.want)
		}
	}
}

// TestBusyHolderLosesToIdleNode: a holder whose queue is longer than the
// prefix it saves loses to an idle node; a short queue does not matter.
func TestBusyHolderLosesToIdleNode(t *testing.T) {
	h := ChunkHashes(toks(13, 320))
	req := Request{Model: "m", Hashes: h, PromptTokens: 330}
	r := NewRouter()
	_ = r.Tree.Apply("b", "m", 0, CacheState{Version: 1, Full: true, Added: h})
	end := r.Begin(Decision{Node: "b", Prompt: 40}, 4) // 44 tokens queued on b
	if d, _ := r.Pick(req, cands("a", "b"), nil, 1); d.Node != "b" || d.Reason != "prefix" {
		t.Fatalf("short queue: %+v", d)
	}
	end(0, false)
	r.Begin(Decision{Node: "b", Prompt: 400}, 100) // 500 queued > 320 saved
	d, _ := r.Pick(req, cands("a", "b"), nil, 1)
	if d.Node != "a" || d.Reason != "least-loaded" || !strings.Contains(d.Detail, "more work queued") {
		t.Fatalf("long queue: %+v", d)
	}
}
