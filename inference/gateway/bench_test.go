package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/internal/workload"
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
	work := workload.Make(workload.Spec{Systems: systems, Conversations: convs, Seed: 2026})
	policies := []route.Policy{route.HRTree, route.RoundRobin, route.LeastLoaded}
	clusters := make([][]*tnode, len(policies))
	for i, p := range policies {
		clusters[i] = startCluster(t, clusterOpts{nodes: 3, modelsDir: dir, policy: p, cacheBytes: cacheBytes, poll: 300 * time.Millisecond})
	}
	// load the model everywhere first so load time is not measured
	for _, nodes := range clusters {
		for _, n := range nodes {
			if _, err := workload.Chat(context.Background(), http.DefaultClient, n.infURL, benchModel,
				[]workload.Message{{Role: "user", Content: "warm up"}}, 1, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	samples := make([][]workload.Sample, len(policies))
	errs := make([]int, len(policies))
	walls := make([]time.Duration, len(policies))
	deadline := time.Now().Add(8 * time.Minute)
	for round := 0; round*clients < len(work); round++ {
		batch := work[round*clients : min(len(work), (round+1)*clients)]
		for k := range policies {
			i := (round + k) % len(policies)
			start := time.Now()
			base := clusters[i][0].gwURL
			s, e := workload.Run(context.Background(), batch, round*clients, workload.Options{Model: benchModel, Clients: clients,
				MaxTokens: maxTokens, Deadline: deadline, Target: func(int) (*http.Client, string) { return http.DefaultClient, base },
				Failed: func(conv, turn int, err error) { t.Logf("conversation %d turn %d: %v", conv, turn, err) }})
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
		st := workload.Summarize(samples[i])
		ttfts[i] = st.MedianTTFT
		reasons := map[string]int{}
		for _, d := range clusters[i][0].gw.Router().Decisions() {
			reasons[d.Reason]++
		}
		fmt.Fprintf(&b, "%-13s %8d %12v %12v %12v %12v %8v  %v (errors %d)\n", p, st.N, st.MedianTTFT.Round(time.Millisecond),
			st.P90TTFT.Round(time.Millisecond), st.MedianTotal.Round(time.Millisecond), st.MeanTotal.Round(time.Millisecond), walls[i].Round(time.Second), reasons, errs[i])
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
