package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// tinyVocab writes a GGUF holding only a 512-token vocabulary.
func tinyVocab(t testing.TB) string {
	t.Helper()
	toks := make([]string, 512)
	for i := range toks {
		toks[i] = fmt.Sprintf("t%d", i)
	}
	var w gguf.Writer
	w.Add("general.architecture", "llama")
	w.Add("tokenizer.ggml.model", "llama")
	w.Add("tokenizer.ggml.tokens", toks)
	p := filepath.Join(t.TempDir(), "vocab.gguf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return p
}

func tinyModel(t testing.TB, arch string, typ gguf.TensorType) *Model {
	t.Helper()
	s := testmodel.Spec{Arch: arch, VocabFile: tinyVocab(t), Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 256, Type: typ, Seed: 9}
	m, err := Load(genModel(t, "tiny-"+arch, s), WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func seqTokens(n, salt int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32((i*37 + salt*101 + 5) % 512)
	}
	return out
}

func TestPrefixReuseGivesSameLogits(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		t.Run(arch, func(t *testing.T) {
			m := tinyModel(t, arch, gguf.TensorQ8_0)
			ctx := context.Background()
			a := seqTokens(40, 1)
			ab := append(append([]int32(nil), a...), seqTokens(30, 2)...)
			fresh, reused, err := m.NewCache(0).Eval(ctx, ab)
			if err != nil || reused != 0 {
				t.Fatalf("fresh eval: reused %d, %v", reused, err)
			}
			c := m.NewCache(0)
			if _, reused, err = c.Eval(ctx, a); err != nil || reused != 0 {
				t.Fatalf("eval a: reused %d, %v", reused, err)
			}
			got, reused, err := c.Eval(ctx, ab)
			if err != nil {
				t.Fatal(err)
			}
			if reused != len(a) {
				t.Errorf("reused %d tokens, want %d", reused, len(a))
			}
			if !reflect.DeepEqual(got, fresh) {
				t.Errorf("logits after prefix reuse differ from a fresh evaluation")
			}
			// The same request again reuses all but the last token.
			again, reused, err := c.Eval(ctx, ab)
			if err != nil || reused != len(ab)-1 || !reflect.DeepEqual(again, fresh) {
				t.Errorf("repeat: reused %d (want %d), same logits %v, err %v", reused, len(ab)-1, reflect.DeepEqual(again, fresh), err)
			}
			// Per-position logits agree with a one-pass evaluation.
			all := allLogits(m, ab)
			if !reflect.DeepEqual(all[len(ab)-1], fresh) {
				t.Errorf("batched and incremental evaluation differ")
			}
		})
	}
}

func TestDivergentPromptsShareAPrefix(t *testing.T) {
	m := tinyModel(t, "llama", gguf.TensorF32)
	ctx := context.Background()
	c := m.NewCache(0)
	a := seqTokens(32, 1)
	ab := append(append([]int32(nil), a...), seqTokens(8, 2)...)
	ac := append(append([]int32(nil), a...), seqTokens(8, 3)...)
	if _, _, err := c.Eval(ctx, ab); err != nil {
		t.Fatal(err)
	}
	if _, reused, err := c.Eval(ctx, ac); err != nil || reused != len(a) {
		t.Fatalf("ac reused %d, want %d (%v)", reused, len(a), err)
	}
	abd := append(append([]int32(nil), ab...), 7, 8, 9)
	if _, reused, err := c.Eval(ctx, abd); err != nil || reused != len(ab) {
		t.Fatalf("abd reused %d, want %d (%v): the first branch was lost", reused, len(ab), err)
	}
	if st := c.Stats(); st.Sequences != 2 {
		t.Errorf("%d sequences cached, want 2", st.Sequences)
	}
}

func TestCacheMemoryBoundAndState(t *testing.T) {
	m := tinyModel(t, "llama", gguf.TensorQ8_0)
	ctx := context.Background()
	per := m.NewCache(0).BytesPerToken()
	c := m.NewCache(per * 70)
	a, b := seqTokens(40, 1), seqTokens(40, 2)
	if _, _, err := c.Eval(ctx, a); err != nil {
		t.Fatal(err)
	}
	st := c.State(0)
	want := ChunkHashes(a)
	if !st.Full || !reflect.DeepEqual(sortedU64(st.Added), sortedU64(want)) || len(want) != 2 {
		t.Fatalf("state after a: %+v, want full %v", st, want)
	}
	v1 := st.Version
	if _, _, err := c.Eval(ctx, b); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Bytes > per*70 || s.Sequences != 1 {
		t.Errorf("stats %+v: bound %d not kept (a should be evicted)", s, per*70)
	}
	d := c.State(v1)
	if d.Full || !reflect.DeepEqual(d.Added, sortedU64(ChunkHashes(b))) || !reflect.DeepEqual(d.Removed, sortedU64(want)) {
		t.Errorf("delta since %d: %+v", v1, d)
	}
	if d2 := c.State(d.Version); len(d2.Added)+len(d2.Removed) != 0 || d2.Version != d.Version {
		t.Errorf("empty delta expected, got %+v", d2)
	}
	_, _, err := c.Eval(ctx, seqTokens(71, 3))
	if !errors.Is(err, ErrCacheFull) {
		t.Errorf("71 tokens in a 70-token cache: %v, want ErrCacheFull", err)
	}
	// A chunk hash depends on everything before it.
	h1, h2 := ChunkHashes(seqTokens(32, 1)), ChunkHashes(append([]int32{9}, seqTokens(31, 1)...))
	if h1[1] == h2[1] || len(ChunkHashes(seqTokens(15, 1))) != 0 {
		t.Error("chunk hashes are not chained or count partial chunks")
	}
}

func sortedU64(s []uint64) []uint64 {
	out := append([]uint64(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestScoreMatchesEval(t *testing.T) {
	m := tinyModel(t, "qwen2", gguf.TensorQ8_0)
	ctx := context.Background()
	toks := seqTokens(20, 4)
	lp, err := m.NewCache(0).Score(ctx, toks)
	if err != nil {
		t.Fatal(err)
	}
	if len(lp) != len(toks) || lp[0] != 0 {
		t.Fatalf("score: %d values, lp[0]=%v", len(lp), lp[0])
	}
	c := m.NewCache(0)
	for _, i := range []int{1, 7, 19} {
		logits, _, err := c.Eval(ctx, toks[:i])
		if err != nil {
			t.Fatal(err)
		}
		want := logProb(logits, toks[i])
		if math.Abs(float64(lp[i]-want)) > 1e-4 || lp[i] > 0 {
			t.Errorf("lp[%d] = %v, want %v", i, lp[i], want)
		}
	}
}

func TestEvalErrors(t *testing.T) {
	m := tinyModel(t, "llama", gguf.TensorF32)
	c := m.NewCache(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Eval(ctx, seqTokens(10, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	defer func() {
		m.Close()
		if _, _, err := c.Eval(context.Background(), seqTokens(3, 1)); !errors.Is(err, ErrClosed) {
			t.Errorf("eval after Close: %v, want ErrClosed", err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}()
	for _, toks := range [][]int32{nil, {1, 512}, {-1}, seqTokens(257, 1)} {
		if _, _, err := c.Eval(context.Background(), toks); !errors.Is(err, ErrInput) {
			t.Errorf("tokens %v: %v, want ErrInput", toks[:min(3, len(toks))], err)
		}
	}
}

func TestConcurrentEvals(t *testing.T) {
	m := tinyModel(t, "llama", gguf.TensorQ8_0)
	ctx := context.Background()
	want := make([][]float32, 4)
	for i := range want {
		l, _, err := m.NewCache(0).Eval(ctx, seqTokens(24, i))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = l
	}
	c := m.NewCache(0)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			i := g % 4
			got, _, err := c.Eval(ctx, seqTokens(24, i))
			if err != nil || !reflect.DeepEqual(got, want[i]) {
				t.Errorf("goroutine %d: wrong logits (%v)", g, err)
			}
			c.State(0)
		}(g)
	}
	wg.Wait()
}

func TestSampler(t *testing.T) {
	logits := []float32{1, 3, 2.9, -1, 0.5}
	var greedy Sampler
	if got := (&Sampler{Temperature: 1}).Sample(nil, nil); got != -1 {
		t.Errorf("empty logits gave %d", got)
	}
	if got := greedy.Sample(logits, nil); got != 1 {
		t.Errorf("greedy = %d", got)
	}
	pen := Sampler{RepeatPenalty: 1.5}
	if got := pen.Sample(logits, []int32{1}); got != 2 {
		t.Errorf("greedy with repetition penalty on 1 = %d, want 2", got)
	}
	draw := func(s Sampler, n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = s.Sample(logits, nil)
		}
		return out
	}
	a := draw(Sampler{Temperature: 1, Seed: 42}, 50)
	b := draw(Sampler{Temperature: 1, Seed: 42}, 50)
	c := draw(Sampler{Temperature: 1, Seed: 43}, 50)
	if !reflect.DeepEqual(a, b) {
		t.Error("same seed gave different tokens")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("different seeds gave the same 50 tokens")
	}
	for _, tk := range draw(Sampler{Temperature: 1, TopK: 2, Seed: 1}, 200) {
		if tk != 1 && tk != 2 {
			t.Fatalf("top-k 2 drew %d", tk)
		}
	}
	for _, tk := range draw(Sampler{Temperature: 1, MinP: 0.5, Seed: 1}, 200) {
		if tk != 1 && tk != 2 {
			t.Fatalf("min-p 0.5 drew %d", tk)
		}
	}
	for _, tk := range draw(Sampler{Temperature: 1, TopP: 0.3, Seed: 1}, 200) {
		if tk != 1 {
			t.Fatalf("top-p 0.3 drew %d", tk)
		}
	}
	// Frequencies follow the softmax at temperature 1.
	counts := make([]int, len(logits))
	const n = 20000
	for _, tk := range draw(Sampler{Temperature: 1, Seed: 5}, n) {
		counts[tk]++
	}
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l))
	}
	for i, l := range logits {
		p := math.Exp(float64(l)) / z
		if got := float64(counts[i]) / n; math.Abs(got-p) > 0.02 {
			t.Errorf("token %d drawn %.3f of the time, softmax %.3f", i, got, p)
		}
	}
}

func TestLoadErrorsNameFileAndReason(t *testing.T) {
	voc := tinyVocab(t)
	good := genModel(t, "good", testmodel.Spec{Arch: "llama", VocabFile: voc, Layers: 1, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, Type: gguf.TensorF32})
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		path, want string
	}{
		{write("truncated.gguf", data[:len(data)/2]), "runs past"},
		{write("notgguf.gguf", []byte("hello world, not a model")), "not a GGUF file"},
		{write("arch.gguf", bytes.Replace(data, []byte("llama.block_count"), []byte("llamX.block_count"), 1)), "block_count missing"},
		{genModel(t, "mistral", testmodel.Spec{Arch: "mistral", VocabFile: voc, Layers: 1, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, Type: gguf.TensorF32}), `architecture "mistral" is not supported`},
		{write("tensor.gguf", bytes.Replace(data, []byte("blk.0.ffn_up.weight"), []byte("blk.0.ffn_uq.weight"), 1)), `"blk.0.ffn_up.weight" missing`},
	}
	for _, c := range cases {
		_, err := Load(c.path)
		if err == nil {
			t.Errorf("%s: loaded", c.path)
			continue
		}
		if !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q should name the file and %q", filepath.Base(c.path), err, c.want)
		}
	}
}

// FuzzLoad feeds mutated model files to Load: it must return a model or an
// error, never panic; a loaded model must evaluate without panicking.
func FuzzLoad(f *testing.F) {
	voc := tinyVocab(f)
	p := genModel(f, "seed", testmodel.Spec{Arch: "qwen2", VocabFile: voc, Layers: 1, Dim: 32, FFN: 64, Heads: 2, KVHeads: 1, Type: gguf.TensorQ8_0})
	seed, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, uint32(0), byte(0))
	f.Add(seed, uint32(100), byte(0xff))
	f.Add(seed[:300], uint32(8), byte(1))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, at uint32, v byte) {
		b = append([]byte(nil), b...)
		if len(b) > 0 {
			b[int(at)%len(b)] ^= v
		}
		path := filepath.Join(dir, "m.gguf")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(path, WithThreads(1), WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		defer m.Close()
		if m.cfg.Dim*m.cfg.Vocab > 1<<22 || m.cfg.Layers > 4 {
			return // a mutation made it huge; loading was the point
		}
		if _, _, err := m.NewCache(1<<20).Eval(context.Background(), []int32{1, 2, 3}); err != nil && !errors.Is(err, ErrInput) && !errors.Is(err, ErrCacheFull) {
			t.Fatalf("eval: %v", err)
		}
	})
}
