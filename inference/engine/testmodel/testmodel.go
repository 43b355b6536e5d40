// Package testmodel generates llama-family GGUF models with random weights
// and a real vocabulary, for parity tests against llama.cpp and for
// benchmarks of realistic shape. No real weights are needed.
package testmodel

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/univrs/hypha/inference/engine/quant"
	"github.com/univrs/hypha/inference/gguf"
)

// Spec describes a model to generate.
type Spec struct {
	Arch       string // llama, qwen2 or qwen3
	VocabFile  string // GGUF whose tokenizer.* metadata (and vocabulary size) is copied
	Layers     int
	Dim        int
	FFN        int
	Heads      int
	KVHeads    int
	HeadDim    int // 0: Dim/Heads
	ContextLen int // 0: 2048
	RopeBase   float32
	// Llama3Rope adds a rope_freqs.weight tensor computed with llama-3.1's
	// scaling (factor 32, low 1, high 4, original context 8192).
	Llama3Rope bool
	Tied       bool            // no output.weight: the embedding is reused
	Type       gguf.TensorType // type of the 2-D weights
	// OutputType, when set, is the type of output.weight (Q4_K_M files
	// use Q6_K there) and EmbedType of token_embd.weight.
	OutputType, EmbedType gguf.TensorType
	Seed                  uint64
}

// Fallback is the type used for a 2-D tensor whose rows are not a whole
// number of Type's blocks (e.g. K-quants with a 896-wide qwen2-0.5B), as
// llama.cpp's quantiser also falls back.
const Fallback = gguf.TensorQ4_0

// Write generates the model and writes it to path (via a temporary file
// renamed into place).
func Write(path string, s Spec) error {
	voc, err := gguf.Open(s.VocabFile)
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	defer voc.Close()
	tokens, ok := voc.Strings("tokenizer.ggml.tokens")
	if !ok {
		return fmt.Errorf("testmodel: %s has no tokenizer.ggml.tokens", s.VocabFile)
	}
	vocab := len(tokens)
	if s.HeadDim == 0 {
		s.HeadDim = s.Dim / s.Heads
	}
	if s.ContextLen == 0 {
		s.ContextLen = 2048
	}
	if s.RopeBase == 0 {
		s.RopeBase = 10000
	}
	var w gguf.Writer
	a := s.Arch
	w.Add("general.architecture", a)
	w.Add("general.name", fmt.Sprintf("hypha-test-%s-%dx%d-%v", a, s.Layers, s.Dim, s.Type))
	w.Add(a+".block_count", uint32(s.Layers))
	w.Add(a+".context_length", uint32(s.ContextLen))
	w.Add(a+".embedding_length", uint32(s.Dim))
	w.Add(a+".feed_forward_length", uint32(s.FFN))
	w.Add(a+".attention.head_count", uint32(s.Heads))
	w.Add(a+".attention.head_count_kv", uint32(s.KVHeads))
	w.Add(a+".attention.key_length", uint32(s.HeadDim))
	w.Add(a+".attention.value_length", uint32(s.HeadDim))
	w.Add(a+".rope.freq_base", s.RopeBase)
	w.Add(a+".rope.dimension_count", uint32(s.HeadDim))
	w.Add(a+".attention.layer_norm_rms_epsilon", float32(1e-6))
	w.Add(a+".vocab_size", uint32(vocab))
	w.Add("general.file_type", uint32(fileType(s.Type)))
	w.Add("general.quantization_version", uint32(2))
	for _, kv := range voc.KV {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			w.Add(kv.Key, kv.Value)
		}
	}
	qDim, kvDim := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	mat := func(name string, cols, rows int, std float64) {
		typ := s.Type
		if name == "output.weight" && s.OutputType != 0 {
			typ = s.OutputType
		}
		if name == "token_embd.weight" && s.EmbedType != 0 {
			typ = s.EmbedType
		}
		if _, err := quant.RowBytes(typ, cols); err != nil {
			typ = Fallback
		}
		w.AddTensorFunc(name, typ, []uint64{uint64(cols), uint64(rows)}, func(out io.Writer) error {
			return writeRandom(out, typ, cols, rows, seedFor(s.Seed, name), std, 0)
		})
	}
	vec := func(name string, n int, mean, std float64) {
		w.AddTensorFunc(name, gguf.TensorF32, []uint64{uint64(n)}, func(out io.Writer) error {
			return writeRandom(out, gguf.TensorF32, n, 1, seedFor(s.Seed, name), std, mean)
		})
	}
	mat("token_embd.weight", s.Dim, vocab, 1)
	vec("output_norm.weight", s.Dim, 1, 0.1)
	if !s.Tied {
		mat("output.weight", s.Dim, vocab, 1/math.Sqrt(float64(s.Dim)))
	}
	if s.Llama3Rope {
		f := llama3Factors(s.HeadDim, float64(s.RopeBase))
		w.AddTensor("rope_freqs.weight", gguf.TensorF32, []uint64{uint64(len(f))}, f32bytes(f))
	}
	for i := 0; i < s.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", s.Dim, 1, 0.1)
		mat(p+"attn_q.weight", s.Dim, qDim, 1/math.Sqrt(float64(s.Dim)))
		mat(p+"attn_k.weight", s.Dim, kvDim, 1/math.Sqrt(float64(s.Dim)))
		mat(p+"attn_v.weight", s.Dim, kvDim, 1/math.Sqrt(float64(s.Dim)))
		if a == "qwen2" {
			vec(p+"attn_q.bias", qDim, 0, 0.1)
			vec(p+"attn_k.bias", kvDim, 0, 0.1)
			vec(p+"attn_v.bias", kvDim, 0, 0.1)
		}
		if a == "qwen3" {
			vec(p+"attn_q_norm.weight", s.HeadDim, 1, 0.1)
			vec(p+"attn_k_norm.weight", s.HeadDim, 1, 0.1)
		}
		mat(p+"attn_output.weight", qDim, s.Dim, 1/math.Sqrt(float64(qDim)))
		vec(p+"ffn_norm.weight", s.Dim, 1, 0.1)
		mat(p+"ffn_gate.weight", s.Dim, s.FFN, 1/math.Sqrt(float64(s.Dim)))
		mat(p+"ffn_up.weight", s.Dim, s.FFN, 1/math.Sqrt(float64(s.Dim)))
		mat(p+"ffn_down.weight", s.FFN, s.Dim, 1/math.Sqrt(float64(s.FFN)))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".testmodel-*")
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := w.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("testmodel: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	return nil
}

func fileType(t gguf.TensorType) int {
	switch t {
	case gguf.TensorF32:
		return 0
	case gguf.TensorF16:
		return 1
	case gguf.TensorQ4_0:
		return 2
	case gguf.TensorQ8_0:
		return 7
	case gguf.TensorQ4_K:
		return 15 // Q4_K_M
	case gguf.TensorQ6_K:
		return 18
	case gguf.TensorBF16:
		return 32
	}
	return 0
}

func seedFor(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() ^ seed
}

func f32bytes(f []float32) []byte {
	b, _ := quant.Quantize(gguf.TensorF32, f)
	return b
}

// writeRandom writes rows x cols Gaussian values (mean, std) quantised as
// typ, generating row chunks in parallel but writing them in order.
func writeRandom(out io.Writer, typ gguf.TensorType, cols, rows int, seed uint64, std, mean float64) error {
	const chunk = 64
	nChunks := (rows + chunk - 1) / chunk
	workers := max(1, min(runtime.NumCPU(), nChunks))
	results := make([]chan []byte, nChunks)
	for i := range results {
		results[i] = make(chan []byte, 1)
	}
	var next sync.Mutex
	ci := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers*2) // bounds chunks generated ahead of the writer
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := make([]float32, cols)
			for {
				sem <- struct{}{} // taken before the chunk index, so the oldest chunk never waits
				next.Lock()
				c := ci
				ci++
				next.Unlock()
				if c >= nChunks {
					<-sem
					return
				}
				var buf []byte
				for r := c * chunk; r < min(rows, (c+1)*chunk); r++ {
					rng := rand.New(rand.NewPCG(seed, uint64(r)))
					for i := range x {
						x[i] = float32(mean + std*rng.NormFloat64())
					}
					b, err := quant.Quantize(typ, x)
					if err != nil {
						panic(err) // sizes were checked by the caller
					}
					buf = append(buf, b...)
				}
				results[c] <- buf
			}
		}()
	}
	var err error
	for c := 0; c < nChunks; c++ {
		b := <-results[c]
		<-sem
		if err == nil {
			_, err = out.Write(b)
		}
	}
	wg.Wait()
	return err
}

func llama3Factors(headDim int, base float64) []float32 {
	const factor, lowFF, highFF, oldCtx = 32.0, 1.0, 4.0, 8192.0
	lowWave, highWave := oldCtx/lowFF, oldCtx/highFF
	out := make([]float32, headDim/2)
	for i := range out {
		freq := 1 / math.Pow(base, float64(2*i)/float64(headDim))
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = factor
		default:
			smooth := (oldCtx/wave - lowFF) / (highFF - lowFF)
			out[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}
