package main

import (
	"context"
	"flag"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/univrs/hypha/hwtest"
	"github.com/univrs/hypha/inference/engine"
)

var benchGGUF = flag.String("hwtest.gguf", "", "GGUF model for BenchmarkPredictionVsEngine (e.g. out/engine-bench/qwen2-0.5B-Q8_0.gguf from make bench-engine)")

// BenchmarkPredictionVsEngine puts hwtest's decode estimate next to the
// built-in engine's measured decode speed on the same machine, in the same
// run: predicted = hwtest read bandwidth / weight bytes (the GGUF file size:
// metadata is <1% of it, and tied embeddings are read whole by the output
// projection), measured = tokens/s of single-token Evals after a prompt.
// It reports both and measured/predicted. Needs -hwtest.gguf.
func BenchmarkPredictionVsEngine(b *testing.B) {
	if *benchGGUF == "" {
		b.Skip("give a model with -hwtest.gguf=PATH")
	}
	st, err := os.Stat(*benchGGUF)
	if err != nil {
		b.Skip(err)
	}
	threads := runtime.GOMAXPROCS(0)
	m, err := engine.Load(*benchGGUF, engine.WithThreads(threads))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	prompt := make([]int32, 8)
	for i := range prompt {
		prompt[i] = int32(100 + (i*7919)%5000)
	}
	const gen = 8
	var measured float64
	for b.Loop() {
		c := m.NewCache(1 << 30)
		if _, _, err := c.Eval(ctx, prompt); err != nil { // also pages the weights in
			b.Fatal(err)
		}
		seq := append([]int32(nil), prompt...)
		tok := int32(200)
		start := time.Now()
		for range gen {
			seq = append(seq, tok)
			if _, _, err := c.Eval(ctx, seq); err != nil {
				b.Fatal(err)
			}
			tok = 200 + (tok*31)%4000
		}
		measured = gen / time.Since(start).Seconds()
	}
	bw := hwtest.MeasureBandwidth(ctx, 300*time.Millisecond, 32<<20, 0)
	predicted := hwtest.PredictTokensPerSec(bw.Read, uint64(st.Size()))
	b.ReportMetric(measured, "measured-tok/s")
	b.ReportMetric(predicted, "predicted-tok/s")
	b.ReportMetric(bw.Read/1e9, "read-GB/s")
	if predicted > 0 {
		b.ReportMetric(measured/predicted, "measured/predicted")
	}
}
