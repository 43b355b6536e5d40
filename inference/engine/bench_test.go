package engine

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/engine/quant"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

var (
	benchEnabled = flag.Bool("engine.bench", false, "run BenchmarkVsLlamaCpp (generates ~0.5-1.3 GB models under out/engine-bench)")
	benchThreads = flag.Int("engine.threads", 2, "threads for both engines in BenchmarkVsLlamaCpp")
	benchPP      = flag.Int("engine.pp", 64, "prompt tokens per prompt-processing measurement")
	benchTG      = flag.Int("engine.tg", 16, "generated tokens per generation measurement")
	benchShapes  = flag.String("engine.shapes", "qwen2-0.5B,llama-1B", "model shapes to benchmark")
	benchTypes   = flag.String("engine.types", "Q8_0,Q4_K", "weight types to benchmark")
)

func benchSpecs(t testing.TB) map[string]testmodel.Spec {
	return map[string]testmodel.Spec{
		// Qwen2-0.5B: 24 layers, 896 wide, 14 heads / 2 KV heads, FFN 4864, tied embeddings.
		"qwen2-0.5B": {Arch: "qwen2", VocabFile: vocabFile(t, "ggml-vocab-qwen2.gguf"), Layers: 24, Dim: 896, FFN: 4864, Heads: 14, KVHeads: 2, ContextLen: 4096, RopeBase: 1000000, Tied: true, Seed: 1},
		// Llama-3.2-1B: 16 layers, 2048 wide, 32 heads / 8 KV heads, FFN 8192, tied, llama-3 rope.
		"llama-1B": {Arch: "llama", VocabFile: vocabFile(t, "ggml-vocab-llama-bpe.gguf"), Layers: 16, Dim: 2048, FFN: 8192, Heads: 32, KVHeads: 8, ContextLen: 4096, RopeBase: 500000, Llama3Rope: true, Tied: true, Seed: 1},
	}
}

// memBandwidth measures the read bandwidth (bytes/s) of threads goroutines
// summing a 256 MiB buffer, best of 3.
func memBandwidth(threads int) float64 {
	buf := make([]uint64, 32<<20)
	for i := range buf {
		buf[i] = uint64(i)
	}
	best := 0.0
	var sink uint64
	var mu sync.Mutex
	for rep := 0; rep < 3; rep++ {
		start := time.Now()
		var wg sync.WaitGroup
		per := len(buf) / threads
		for w := 0; w < threads; w++ {
			wg.Add(1)
			go func(part []uint64) {
				defer wg.Done()
				var s0, s1, s2, s3 uint64
				for i := 0; i+4 <= len(part); i += 4 {
					s0 += part[i]
					s1 += part[i+1]
					s2 += part[i+2]
					s3 += part[i+3]
				}
				mu.Lock()
				sink += s0 + s1 + s2 + s3
				mu.Unlock()
			}(buf[w*per : (w+1)*per])
		}
		wg.Wait()
		if bw := float64(len(buf)*8) / time.Since(start).Seconds(); bw > best {
			best = bw
		}
	}
	_ = sink
	return best
}

// weightBytesPerToken is what one generated token must read: every layer
// matrix and the output projection (one embedding row is negligible).
func weightBytesPerToken(m *Model) int64 {
	var n int64
	for _, l := range m.layers {
		for _, w := range []*mat{l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down} {
			n += int64(len(w.data))
		}
	}
	return n + int64(len(m.output.data))
}

// BenchmarkVsLlamaCpp runs our engine and llama.cpp (node-llama-cpp) on the
// same generated GGUF with the same thread count and prints prompt and
// generation tokens/s, their ratio, and generation against the
// memory-bandwidth bound. Enable with -engine.bench (make bench-engine).
func BenchmarkVsLlamaCpp(b *testing.B) {
	if !*benchEnabled {
		b.Skip("enable with -engine.bench (make bench-engine): generates large models")
	}
	threads := *benchThreads
	dir := filepath.Join(repoRoot(b), "out", "engine-bench")
	specs := benchSpecs(b)
	var bw float64
	var rows []string
	for _, shape := range strings.Split(*benchShapes, ",") {
		for _, typName := range strings.Split(*benchTypes, ",") {
			spec, ok := specs[shape]
			if !ok {
				b.Fatalf("unknown shape %q", shape)
			}
			switch typName {
			case "Q8_0":
				spec.Type = gguf.TensorQ8_0
			case "Q4_K":
				spec.Type = gguf.TensorQ4_K
			case "Q4_0":
				spec.Type = gguf.TensorQ4_0
			case "F16":
				spec.Type = gguf.TensorF16
			default:
				b.Fatalf("unknown type %q", typName)
			}
			name := shape + "-" + typName
			b.Run(name, func(b *testing.B) {
				path := filepath.Join(dir, name+".gguf")
				if _, err := os.Stat(path); err != nil {
					start := time.Now()
					if err := testmodel.Write(path, spec); err != nil {
						b.Fatal(err)
					}
					b.Logf("generated %s in %v", path, time.Since(start).Round(time.Second))
				}
				var ref struct {
					PPTPS float64 `json:"pp_tps"`
					TGTPS float64 `json:"tg_tps"`
				}
				runRef(b, &ref, "bench", path, fmt.Sprint(threads), fmt.Sprint(*benchPP), fmt.Sprint(*benchTG))

				m, err := Load(path, WithThreads(threads))
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				ctx := context.Background()
				prompt := make([]int32, *benchPP)
				for i := range prompt {
					prompt[i] = int32(100 + (i*7919)%5000)
				}
				c := m.NewCache(1 << 30)
				if _, _, err := c.Eval(ctx, prompt[:1]); err != nil { // warm-up: page in the weights
					b.Fatal(err)
				}
				c = m.NewCache(1 << 30)
				start := time.Now()
				if _, _, err := c.Eval(ctx, prompt); err != nil {
					b.Fatal(err)
				}
				pp := float64(len(prompt)) / time.Since(start).Seconds()
				seq := append([]int32(nil), prompt...)
				tok := int32(200)
				start = time.Now()
				for i := 0; i < *benchTG; i++ {
					seq = append(seq, tok)
					if _, _, err := c.Eval(ctx, seq); err != nil {
						b.Fatal(err)
					}
					tok = 200 + (tok*31)%4000
				}
				tg := float64(*benchTG) / time.Since(start).Seconds()
				// measured right after, so a shared machine's load is comparable
				bw = memBandwidth(threads)
				bound := bw / float64(weightBytesPerToken(m))
				row := fmt.Sprintf("| %s | %d | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %.1f GB/s | %.1f | %.0f%% |",
					name, threads, pp, ref.PPTPS, pp/ref.PPTPS, tg, ref.TGTPS, tg/ref.TGTPS, bw/1e9, bound, 100*tg/bound)
				rows = append(rows, row)
				b.ReportMetric(pp, "pp-tok/s")
				b.ReportMetric(tg, "tg-tok/s")
				b.ReportMetric(pp/ref.PPTPS, "pp-ratio")
				b.ReportMetric(tg/ref.TGTPS, "tg-ratio")
			})
		}
	}
	fmt.Printf("\nengine vs llama.cpp (kernels %s, GOARCH %s, %d threads; last measured memory read bandwidth %.1f GB/s)\n", quant.KernelName, runtime.GOARCH, threads, bw/1e9)
	fmt.Println("| model | threads | pp tok/s (ours) | pp tok/s (llama.cpp) | pp ratio | tg tok/s (ours) | tg tok/s (llama.cpp) | tg ratio | read bandwidth | tg bound tok/s | ours/bound |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Println(r)
	}
}
