package gateway

import (
	"bufio"
	"bytes"
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
		sys[i] = fmt.Sprintf("You are assistant number %d of the community. ", i) + words(r, 220)
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
// same conversations. To share the machine's load fluctuations fairly
// without making the meshes compete, the workload runs in rounds of
// `clients` concurrent conversations, each round on every mesh in turn,
// the order rotating. Run with HYPHA_BENCH=1 (make bench-route).
func TestBenchRoute(t *testing.T) {
	if os.Getenv("HYPHA_BENCH") == "" {
		t.Skip("benchmark: set HYPHA_BENCH=1 (make bench-route)")
	}
	dir := benchModels(t)
	const (
		systems, convs, clients, maxTokens = 5, 15, 3, 4
		cacheBytes                         = 5 << 20 // 1280 tokens of KV per node: 3-4 conversations
	)
	work := makeWorkload(systems, convs, 2026)
	policies := []route.Policy{route.HRTree, route.RoundRobin, route.LeastLoaded}
	clusters := make([][]*tnode, len(policies))
	for i, p := range policies {
		clusters[i] = startCluster(t, clusterOpts{nodes: 3, modelsDir: dir, policy: p, cacheBytes: cacheBytes, poll: 300 * time.Millisecond})
	}
	// load the model everywhere first so load time is not measured
	for _, nodes := range clusters {
		for _, n := range nodes {
			if _, _, _, err := streamChat(n.infURL, []map[string]string{{"role": "user", "content": "warm up"}}, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	samples := make([][]sample, len(policies))
	errs := make([]int, len(policies))
	walls := make([]time.Duration, len(policies))
	deadline := time.Now().Add(8 * time.Minute)
	for round := 0; round*clients < len(work); round++ {
		batch := work[round*clients : min(len(work), (round+1)*clients)]
		for k := range policies {
			i := (round + k) % len(policies)
			start := time.Now()
			s, e := runWorkload(t, clusters[i][0].gwURL, batch, clients, maxTokens, deadline)
			walls[i] += time.Since(start)
			samples[i] = append(samples[i], s...)
			errs[i] += e
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "workload: %d system prompts (~300 tokens, Zipf s=1.1), %d conversations of 2-3 turns in rounds of %d concurrent, %d output tokens, KV cache bound %d MiB (1280 tokens) per node\n",
		systems, convs, clients, maxTokens, cacheBytes>>20)
	fmt.Fprintf(&b, "%-13s %8s %12s %12s %12s %12s %8s  %s\n", "policy", "requests", "median TTFT", "p90 TTFT", "median total", "mean total", "wall", "decisions")
	ttfts := make([]time.Duration, len(policies))
	for i, p := range policies {
		var tt, tot []time.Duration
		var sum time.Duration
		for _, s := range samples[i] {
			tt = append(tt, s.ttft)
			tot = append(tot, s.total)
			sum += s.total
		}
		sort.Slice(tt, func(a, b int) bool { return tt[a] < tt[b] })
		var p90, mean time.Duration
		if len(tt) > 0 {
			p90 = tt[min(len(tt)-1, len(tt)*9/10)]
			mean = sum / time.Duration(len(tt))
		}
		ttfts[i] = median(tt)
		reasons := map[string]int{}
		for _, d := range clusters[i][0].gw.Router().Decisions() {
			reasons[d.Reason]++
		}
		fmt.Fprintf(&b, "%-13s %8d %12v %12v %12v %12v %8v  %v (errors %d)\n", p, len(samples[i]), median(tt).Round(time.Millisecond),
			p90.Round(time.Millisecond), median(tot).Round(time.Millisecond), mean.Round(time.Millisecond), walls[i].Round(time.Second), reasons, errs[i])
	}
	if ttfts[1] > 0 && ttfts[2] > 0 {
		fmt.Fprintf(&b, "median TTFT: hr-tree / round-robin = %.2f (%.0f%% lower), hr-tree / least-loaded = %.2f (%.0f%% lower)\n",
			float64(ttfts[0])/float64(ttfts[1]), 100*(1-float64(ttfts[0])/float64(ttfts[1])),
			float64(ttfts[0])/float64(ttfts[2]), 100*(1-float64(ttfts[0])/float64(ttfts[2])))
	}
	fmt.Print(b.String())
	for i := range policies {
		if errs[i] > 0 {
			t.Errorf("%s: %d requests failed", policies[i], errs[i])
		}
	}
}
