package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/route"
)

const benchModel = "bench-llama"

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

// benchModels generates a model whose prefill dominates (llama shape,
// 32k SentencePiece vocabulary, 4 layers of width 128).
func benchModels(t testing.TB) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "hypha-route-bench-")
		if benchErr != nil {
			return
		}
		benchErr = testmodel.Write(filepath.Join(benchDir, benchModel+".gguf"), testmodel.Spec{
			Arch: "llama", VocabFile: "../tokenizer/testdata/ggml-vocab-llama-spm.gguf",
			Layers: 4, Dim: 128, FFN: 384, Heads: 4, KVHeads: 4, ContextLen: 2048,
			Type: gguf.TensorQ8_0, Seed: 11,
		})
	})
	if benchErr != nil {
		t.Fatal(benchErr)
	}
	return benchDir
}

// workload is a fixed set of conversations: several long system prompts
// chosen with a Zipf distribution, each conversation 2-3 turns.
type conversation struct {
	system string
	users  []string
}

var benchWords = strings.Fields(`the river garden solar battery seed water soil village market bread
harvest winter summer cooperative credit ledger steward mesh node radio school clinic forest
orchard bees compost rain roof well pump tool library bicycle repair kitchen grain mill wind
sheep goat cheese wool loom clay kiln brick road bridge boat net fish salt honey apple pear`)

func words(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = benchWords[r.IntN(len(benchWords))]
	}
	return strings.Join(w, " ")
}

func makeWorkload(systems, convs int, seed uint64) []conversation {
	r := rand.New(rand.NewPCG(seed, 99))
	sys := make([]string, systems)
	for i := range sys {
		sys[i] = fmt.Sprintf("You are assistant number %d of the community. ", i) + words(r, 170)
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 100)), 1.1, 1, uint64(systems-1))
	out := make([]conversation, convs)
	for i := range out {
		c := conversation{system: sys[z.Uint64()]}
		for range 2 + r.IntN(2) {
			c.users = append(c.users, words(r, 14)+"?")
		}
		out[i] = c
	}
	return out
}

type sample struct {
	ttft, total time.Duration
	turn        int
}

// streamChat sends one streaming chat request and measures the time to
// the first content event and to the end; it returns the reply text.
func streamChat(base string, msgs []map[string]string, maxTokens int) (string, time.Duration, time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"model": benchModel, "messages": msgs, "stream": true, "max_tokens": maxTokens, "temperature": 0})
	start := time.Now()
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", 0, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var ttft time.Duration
	var reply strings.Builder
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if ttft == 0 {
			ttft = time.Since(start)
		}
		if line == "data: [DONE]" {
			done = true
			break
		}
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal([]byte(line[6:]), &ch); err != nil || ch.Error != nil {
			return "", 0, 0, fmt.Errorf("bad event %q", line)
		}
		if len(ch.Choices) > 0 {
			reply.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if !done {
		return "", 0, 0, fmt.Errorf("stream ended without [DONE]: %v", sc.Err())
	}
	return reply.String(), ttft, time.Since(start), nil
}

// runWorkload drives the conversations through base with the given
// number of concurrent clients (each runs whole conversations).
func runWorkload(t testing.TB, base string, convs []conversation, clients, maxTokens int, deadline time.Time) ([]sample, int) {
	work := make(chan conversation, len(convs))
	for _, c := range convs {
		work <- c
	}
	close(work)
	var mu sync.Mutex
	var out []sample
	errs := 0
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				msgs := []map[string]string{{"role": "system", "content": c.system}}
				for turn, u := range c.users {
					if time.Now().After(deadline) {
						return
					}
					msgs = append(msgs, map[string]string{"role": "user", "content": u})
					reply, ttft, total, err := streamChat(base, msgs, maxTokens)
					mu.Lock()
					if err != nil {
						errs++
						mu.Unlock()
						t.Logf("request failed: %v", err)
						break
					}
					out = append(out, sample{ttft, total, turn})
					mu.Unlock()
					msgs = append(msgs, map[string]string{"role": "assistant", "content": reply})
				}
			}
		}()
	}
	wg.Wait()
	return out, errs
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestBenchRoute compares HR-tree routing with round-robin and
// least-loaded in one run: three 3-node meshes (one per policy) run the
// same workload at the same time, so they share the machine's load
// fluctuations. Run with HYPHA_BENCH=1 (make bench-route).
func TestBenchRoute(t *testing.T) {
	if os.Getenv("HYPHA_BENCH") == "" {
		t.Skip("benchmark: set HYPHA_BENCH=1 (make bench-route)")
	}
	dir := benchModels(t)
	const (
		systems, convs, clients, maxTokens = 5, 12, 3, 4
		cacheBytes                         = 6 << 20 // ~1500 tokens of KV per node: a few conversations
	)
	convsW := makeWorkload(systems, convs, 2026)
	policies := []route.Policy{route.HRTree, route.RoundRobin, route.LeastLoaded}
	type result struct {
		samples []sample
		errs    int
		hits    map[string]int
		dur     time.Duration
	}
	results := make([]result, len(policies))
	clusters := make([][]*tnode, len(policies))
	for i, p := range policies {
		clusters[i] = startCluster(t, clusterOpts{nodes: 3, modelsDir: dir, policy: p, cacheBytes: cacheBytes})
	}
	// load the model everywhere first so load time is not measured
	for _, nodes := range clusters {
		for _, n := range nodes {
			if _, _, _, err := streamChat(n.infURL, []map[string]string{{"role": "user", "content": "warm up"}}, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(4 * time.Minute)
	var wg sync.WaitGroup
	for i := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			s, errs := runWorkload(t, clusters[i][0].gwURL, convsW, clients, maxTokens, deadline)
			hits := map[string]int{}
			for _, d := range clusters[i][0].gw.Router().Decisions() {
				hits[d.Reason]++
			}
			results[i] = result{s, errs, hits, time.Since(start)}
		}()
	}
	wg.Wait()
	var b strings.Builder
	fmt.Fprintf(&b, "workload: %d system prompts (~250 tokens, Zipf s=1.1), %d conversations of 2-3 turns, %d concurrent clients per mesh, %d output tokens, KV cache bound %d MiB per node\n",
		systems, convs, clients, maxTokens, cacheBytes>>20)
	fmt.Fprintf(&b, "%-13s %8s %14s %14s %14s %10s  %s\n", "policy", "requests", "median TTFT", "median total", "p90 TTFT", "wall", "decisions")
	ttfts := make([]time.Duration, len(policies))
	for i, p := range policies {
		r := results[i]
		var tt, tot []time.Duration
		for _, s := range r.samples {
			tt = append(tt, s.ttft)
			tot = append(tot, s.total)
		}
		sort.Slice(tt, func(a, b int) bool { return tt[a] < tt[b] })
		p90 := time.Duration(0)
		if len(tt) > 0 {
			p90 = tt[min(len(tt)-1, len(tt)*9/10)]
		}
		ttfts[i] = median(tt)
		fmt.Fprintf(&b, "%-13s %8d %14v %14v %14v %10v  %v (errors %d)\n", p, len(r.samples), median(tt).Round(time.Millisecond),
			median(tot).Round(time.Millisecond), p90.Round(time.Millisecond), r.dur.Round(time.Second), r.hits, r.errs)
	}
	if ttfts[1] > 0 && ttfts[2] > 0 {
		fmt.Fprintf(&b, "median TTFT: hr-tree / round-robin = %.2f (%.0f%% lower), hr-tree / least-loaded = %.2f\n",
			float64(ttfts[0])/float64(ttfts[1]), 100*(1-float64(ttfts[0])/float64(ttfts[1])), float64(ttfts[0])/float64(ttfts[2]))
	}
	t.Log("\n" + b.String())
	fmt.Print(b.String())
	for i := range results {
		if results[i].errs > 0 {
			t.Errorf("%s: %d requests failed", policies[i], results[i].errs)
		}
	}
	_ = context.Background
}
