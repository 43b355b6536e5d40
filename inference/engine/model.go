// Package engine is Hypha's built-in inference engine: a pure Go forward
// pass of llama-family models (llama 2/3, qwen2, qwen3 dense) read from
// GGUF files, with a prefix-reusing KV cache, a scoring call and samplers.
//
// It follows llama.cpp's CPU backend closely enough that logits agree to
// rounding (see docs/status/engine.md): the KV cache holds F16-rounded
// values, activations are quantised to Q8_0/Q8_K before quantised matrix
// products, and RoPE ordering (normal vs NeoX) is chosen per architecture.
//
// A *Model is immutable after Load and safe for concurrent use; each
// *Cache serialises its own evaluations. Several caches may share a model.
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sync"

	"github.com/univrs/hypha/inference/engine/quant"
	"github.com/univrs/hypha/inference/gguf"
)

// Sentinel errors of the engine; returned errors wrap them.
var (
	// ErrModel reports a model file that cannot be used (unsupported
	// architecture or tensor type, missing or mis-shaped tensors).
	ErrModel = errors.New("engine: unusable model")
	// ErrInput reports bad tokens (empty, out of vocabulary, too long).
	ErrInput = errors.New("engine: bad input")
	// ErrCacheFull reports a request that does not fit the cache's memory bound.
	ErrCacheFull = errors.New("engine: request exceeds the KV cache memory bound")
	// ErrClosed reports use of a closed model.
	ErrClosed = errors.New("engine: model closed")
)

// RopeType is the pairing of dimensions RoPE rotates.
type RopeType int

const (
	// RopeNorm rotates adjacent pairs (2i, 2i+1): llama.
	RopeNorm RopeType = iota
	// RopeNeox rotates (i, i+n/2): qwen2, qwen3 (GPT-NeoX style).
	RopeNeox
)

// Config is the shape of a loaded model.
type Config struct {
	Arch        string
	Layers      int
	Dim         int // embedding length
	FFN         int // feed-forward length
	Heads       int
	KVHeads     int
	HeadDim     int
	Vocab       int
	ContextLen  int
	RMSEps      float32
	RopeBase    float32
	RopeDim     int     // rotated dimensions per head
	RopeScale   float32 // linear position scale (1 = none)
	RopeType    RopeType
	QKNorm      bool // qwen3: RMSNorm of q and k per head
	TiedOutput  bool // output projection is the token embedding
	WeightTypes map[gguf.TensorType]int
}

// Option tunes Load.
type Option func(*options)

type options struct {
	threads int
	log     *slog.Logger
}

// WithThreads sets the number of goroutines used by matrix products;
// default runtime.NumCPU().
func WithThreads(n int) Option { return func(o *options) { o.threads = n } }

// WithLogger sets the logger; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// mat is a weight matrix of Rows output rows of Cols inputs, row-major in
// its ggml type.
type mat struct {
	name     string
	typ      gguf.TensorType
	rows     int
	cols     int
	rowBytes int
	data     []byte
}

func (m *mat) row(r int) []byte { return m.data[r*m.rowBytes : (r+1)*m.rowBytes] }

type layer struct {
	attnNorm, ffnNorm []float32
	qNorm, kNorm      []float32 // qwen3
	wq, wk, wv, wo    *mat
	bq, bk, bv        []float32 // qwen2
	gate, up, down    *mat
}

// Model is a loaded model. It is safe for concurrent use.
type Model struct {
	cfg        Config
	meta       *gguf.File
	path       string
	threads    int
	log        *slog.Logger
	embd       *mat
	output     *mat
	outNorm    []float32
	layers     []layer
	ropeFF     []float32 // per rotated pair: frequency divisor (rope_freqs.weight, llama-3 scaling), else 1
	thetaScale float32   // base^(-2/n_rot)
	unmap      func() error

	mu       sync.RWMutex // held for reading by evaluations, for writing by Close
	closed   bool         // guarded by mu
	closeErr error        // guarded by mu
}

// Load opens and maps the GGUF model at path. Every tensor the model needs
// is checked for presence, shape and type; errors name the file and the reason.
func Load(path string, opts ...Option) (*Model, error) {
	o := options{threads: runtime.NumCPU(), log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	if o.threads < 1 {
		o.threads = 1
	}
	meta, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("engine: load: %w", err)
	}
	defer meta.Close()
	data, unmap, err := mapFile(path, meta.Size())
	if err != nil {
		return nil, fmt.Errorf("engine: load %s: %w", path, err)
	}
	m := &Model{meta: meta, path: path, threads: o.threads, log: o.log, unmap: unmap}
	if err := m.init(data); err != nil {
		unmap()
		return nil, fmt.Errorf("engine: load %s: %w", path, err)
	}
	o.log.Info("engine: model loaded", "path", path, "arch", m.cfg.Arch, "layers", m.cfg.Layers, "dim", m.cfg.Dim, "vocab", m.cfg.Vocab, "threads", m.threads, "kernels", quant.KernelName)
	return m, nil
}

// Close unmaps the model after running evaluations finish. It is
// idempotent; later evaluations return ErrClosed.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		if m.unmap != nil {
			m.closeErr = m.unmap()
		}
	}
	return m.closeErr
}

// acquire holds the model open for an evaluation; release with m.mu.RUnlock.
func (m *Model) acquire() error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Meta returns the GGUF metadata (tokenizer, chat template…). Its tensor
// reader is closed; use only the metadata.
func (m *Model) Meta() *gguf.File { return m.meta }

// Config returns the model's shape.
func (m *Model) Config() Config { return m.cfg }

// Threads is the number of goroutines used by matrix products.
func (m *Model) Threads() int { return m.threads }

func modelErr(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrModel)...)
}

func (m *Model) init(data []byte) error {
	f := m.meta
	arch, _ := f.String("general.architecture")
	c := &m.cfg
	c.Arch = arch
	switch arch {
	case "llama":
		c.RopeType = RopeNorm
	case "qwen2":
		c.RopeType = RopeNeox
	case "qwen3":
		c.RopeType = RopeNeox
		c.QKNorm = true
	default:
		return modelErr("architecture %q is not supported (llama, qwen2, qwen3)", arch)
	}
	u := func(key string, def int, required bool) (int, error) {
		v, ok := f.Uint(arch + "." + key)
		if !ok {
			if required {
				return 0, modelErr("metadata %s.%s missing", arch, key)
			}
			return def, nil
		}
		if v == 0 || v > 1<<24 {
			return 0, modelErr("metadata %s.%s = %d out of range", arch, key, v)
		}
		return int(v), nil
	}
	var err error
	if c.Layers, err = u("block_count", 0, true); err != nil {
		return err
	}
	if c.Dim, err = u("embedding_length", 0, true); err != nil {
		return err
	}
	if c.FFN, err = u("feed_forward_length", 0, true); err != nil {
		return err
	}
	if c.Heads, err = u("attention.head_count", 0, true); err != nil {
		return err
	}
	if c.KVHeads, err = u("attention.head_count_kv", c.Heads, false); err != nil {
		return err
	}
	if c.HeadDim, err = u("attention.key_length", c.Dim/c.Heads, false); err != nil {
		return err
	}
	if vl, err := u("attention.value_length", c.HeadDim, false); err != nil {
		return err
	} else if vl != c.HeadDim {
		return modelErr("value_length %d != key_length %d is not supported", vl, c.HeadDim)
	}
	if c.ContextLen, err = u("context_length", 4096, false); err != nil {
		return err
	}
	if c.RopeDim, err = u("rope.dimension_count", c.HeadDim, false); err != nil {
		return err
	}
	if c.Heads%c.KVHeads != 0 {
		return modelErr("head_count %d is not a multiple of head_count_kv %d", c.Heads, c.KVHeads)
	}
	if c.RopeDim > c.HeadDim || c.RopeDim%2 != 0 {
		return modelErr("rope.dimension_count %d invalid for head size %d", c.RopeDim, c.HeadDim)
	}
	eps, ok := f.Float(arch + ".attention.layer_norm_rms_epsilon")
	if !ok {
		return modelErr("metadata %s.attention.layer_norm_rms_epsilon missing", arch)
	}
	c.RMSEps = float32(eps)
	c.RopeBase = 10000
	if v, ok := f.Float(arch + ".rope.freq_base"); ok {
		c.RopeBase = float32(v)
	}
	c.RopeScale = 1
	if st, ok := f.String(arch + ".rope.scaling.type"); ok && st != "none" {
		if st != "linear" {
			return modelErr("rope scaling type %q is not supported (none, linear)", st)
		}
		if fac, ok := f.Float(arch + ".rope.scaling.factor"); ok && fac > 0 {
			c.RopeScale = float32(1 / fac)
		}
	}

	c.WeightTypes = map[gguf.TensorType]int{}
	need := func(name string, dims ...int) (*mat, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return nil, modelErr("tensor %q missing", name)
		}
		if len(t.Dims) != len(dims) && !(len(dims) == 2 && len(t.Dims) == 1 && dims[1] == 1) {
			return nil, modelErr("tensor %q has shape %v, want %v", name, t.Dims, dims)
		}
		for i, d := range dims {
			if i < len(t.Dims) && t.Dims[i] != uint64(d) {
				return nil, modelErr("tensor %q has shape %v, want %v", name, t.Dims, dims)
			}
		}
		if !quant.Supported(t.Type) {
			return nil, modelErr("tensor %q has type %v, which is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)", name, t.Type)
		}
		rb, err := quant.RowBytes(t.Type, dims[0])
		if err != nil {
			return nil, modelErr("tensor %q: %v", name, err)
		}
		off, n, err := f.TensorRange(t)
		if err != nil {
			return nil, modelErr("tensor %q: %v", name, err)
		}
		rows := 1
		if len(dims) > 1 {
			rows = dims[1]
		}
		if n != int64(rb)*int64(rows) || off+n > int64(len(data)) {
			return nil, modelErr("tensor %q: data out of range", name)
		}
		c.WeightTypes[t.Type]++
		return &mat{name: name, typ: t.Type, rows: rows, cols: dims[0], rowBytes: rb, data: data[off : off+n : off+n]}, nil
	}
	vec := func(name string, n int, optional bool) ([]float32, error) {
		if _, ok := f.Tensor(name); !ok && optional {
			return nil, nil
		}
		mt, err := need(name, n)
		if err != nil {
			return nil, err
		}
		out := make([]float32, n)
		quant.Dequantize(mt.typ, mt.data, out)
		for i, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, modelErr("tensor %q element %d is %v", name, i, v)
			}
		}
		return out, nil
	}

	et, ok := f.Tensor("token_embd.weight")
	if !ok || len(et.Dims) != 2 {
		return modelErr("tensor \"token_embd.weight\" missing or not 2-D")
	}
	c.Vocab = int(min(et.Dims[1], 1<<24))
	if m.embd, err = need("token_embd.weight", c.Dim, c.Vocab); err != nil {
		return err
	}
	if _, ok := f.Tensor("output.weight"); ok {
		if m.output, err = need("output.weight", c.Dim, c.Vocab); err != nil {
			return err
		}
	} else {
		m.output = m.embd
		c.TiedOutput = true
	}
	if m.outNorm, err = vec("output_norm.weight", c.Dim, false); err != nil {
		return err
	}
	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		l := &m.layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		steps := []struct {
			dst  **mat
			name string
			dims []int
		}{
			{&l.wq, "attn_q.weight", []int{c.Dim, qDim}},
			{&l.wk, "attn_k.weight", []int{c.Dim, kvDim}},
			{&l.wv, "attn_v.weight", []int{c.Dim, kvDim}},
			{&l.wo, "attn_output.weight", []int{qDim, c.Dim}},
			{&l.gate, "ffn_gate.weight", []int{c.Dim, c.FFN}},
			{&l.up, "ffn_up.weight", []int{c.Dim, c.FFN}},
			{&l.down, "ffn_down.weight", []int{c.FFN, c.Dim}},
		}
		for _, s := range steps {
			if *s.dst, err = need(p+s.name, s.dims...); err != nil {
				return err
			}
		}
		if l.attnNorm, err = vec(p+"attn_norm.weight", c.Dim, false); err != nil {
			return err
		}
		if l.ffnNorm, err = vec(p+"ffn_norm.weight", c.Dim, false); err != nil {
			return err
		}
		if l.bq, err = vec(p+"attn_q.bias", qDim, true); err != nil {
			return err
		}
		if l.bk, err = vec(p+"attn_k.bias", kvDim, true); err != nil {
			return err
		}
		if l.bv, err = vec(p+"attn_v.bias", kvDim, true); err != nil {
			return err
		}
		if _, ok := f.Tensor(p + "attn_output.bias"); ok {
			return modelErr("tensor %q: output projection biases are not supported", p+"attn_output.bias")
		}
		if c.QKNorm {
			if l.qNorm, err = vec(p+"attn_q_norm.weight", c.HeadDim, false); err != nil {
				return err
			}
			if l.kNorm, err = vec(p+"attn_k_norm.weight", c.HeadDim, false); err != nil {
				return err
			}
		}
	}
	// RoPE: theta_i = pos * base^(-2i/n_rot) / factor_i, with the optional
	// per-pair factors of rope_freqs.weight (llama-3 scaling).
	factors, err := vec("rope_freqs.weight", c.RopeDim/2, true)
	if err != nil {
		return err
	}
	m.ropeFF = make([]float32, c.RopeDim/2)
	for i := range m.ropeFF {
		m.ropeFF[i] = 1
		if factors != nil {
			if factors[i] <= 0 {
				return modelErr("rope_freqs.weight[%d] = %v is not positive", i, factors[i])
			}
			m.ropeFF[i] = factors[i]
		}
	}
	m.thetaScale = float32(math.Pow(float64(c.RopeBase), -2/float64(c.RopeDim)))
	return nil
}

// fileBytes reads the whole file; used where mapping is unavailable.
func fileBytes(path string, size int64) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) != size {
		return nil, nil, fmt.Errorf("file changed while loading (%d bytes, was %d)", len(b), size)
	}
	return b, func() error { return nil }, nil
}
