package engine

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/univrs/hypha/inference/engine/quant"
)

// kvSeq is the KV storage of one token sequence: per layer, K and V of
// every position (KVHeads*HeadDim values each), F16-rounded like
// llama.cpp's default F16 cache.
type kvSeq struct {
	tokens []int32
	k, v   [][]float32
}

// scratch holds the per-evaluation buffers; a Cache owns one and uses it
// under its lock.
type scratch struct {
	x, xn, q, k, v, att, o, g, u []float32
	rope                         []float32 // per position: cos/sin pairs
	logits                       []float32
	acts                         []quant.Act
	scores                       [][]float32 // per worker
}

func growF(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}

// parallelFor runs fn over [0, n) in chunks of grain on up to m.threads
// goroutines; fn receives a worker index in [0, threads).
func (m *Model) parallelFor(n, grain int, fn func(worker, lo, hi int)) {
	chunks := (n + grain - 1) / grain
	workers := min(m.threads, chunks)
	if workers <= 1 {
		fn(0, 0, n)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				fn(w, c*grain, min(n, (c+1)*grain))
			}
		}(w)
	}
	wg.Wait()
}

// matmul computes out[t*w.rows+r] = W[r]·x[t*w.cols:] for t < T, preparing
// the activations as llama.cpp does for w's type.
func (m *Model) matmul(s *scratch, out []float32, w *mat, x []float32, T int) {
	if len(s.acts) < T {
		s.acts = append(s.acts, make([]quant.Act, T-len(s.acts))...)
	}
	m.parallelFor(T, 1, func(_, lo, hi int) {
		for t := lo; t < hi; t++ {
			s.acts[t].Prepare(w.typ, x[t*w.cols:(t+1)*w.cols])
		}
	})
	grain := max(1, min(16, w.rows/(4*m.threads)))
	rows, cols, typ := w.rows, w.cols, w.typ
	acts := s.acts[:T]
	m.parallelFor(rows, grain, func(_, lo, hi int) {
		var buf [64]float32
		for r := lo; r < hi; r++ {
			row := w.row(r)
			for t0 := 0; t0 < len(acts); t0 += len(buf) {
				part := acts[t0:min(len(acts), t0+len(buf))]
				quant.DotN(typ, row, part, cols, buf[:len(part)])
				for i, v := range buf[:len(part)] {
					out[(t0+i)*rows+r] = v
				}
			}
		}
	})
}

// rmsNorm writes x/rms(x)*w to dst, as ggml_rms_norm followed by ggml_mul.
func rmsNorm(dst, x, w []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v * v)
	}
	scale := 1 / float32(math.Sqrt(float64(float32(sum/float64(len(x)))+eps)))
	for i, v := range x {
		dst[i] = v * scale * w[i]
	}
}

// ropeTable fills cs with cos/sin pairs of every rotated pair at pos, as
// ggml_rope_cache_init computes them.
func (m *Model) ropeTable(cs []float32, pos int) {
	c := &m.cfg
	theta := float32(pos)
	for i := 0; i < c.RopeDim/2; i++ {
		t := theta / m.ropeFF[i] * c.RopeScale
		cs[2*i], cs[2*i+1] = float32(math.Cos(float64(t))), float32(math.Sin(float64(t)))
		theta *= m.thetaScale
	}
}

// rope rotates one head vector x in place with the cos/sin table cs.
func (m *Model) rope(x, cs []float32) {
	half := m.cfg.RopeDim / 2
	neox := m.cfg.RopeType == RopeNeox
	for i := 0; i < half; i++ {
		cos, sin := cs[2*i], cs[2*i+1]
		a, b := 2*i, 2*i+1
		if neox {
			a, b = i, i+half
		}
		x0, x1 := x[a], x[b]
		x[a] = x0*cos - x1*sin
		x[b] = x0*sin + x1*cos
	}
}

// forward runs tokens (appended after seq's existing positions) through the
// model, appends their K/V to seq, and returns the logits of the last
// position (allLogits false) or of every position (true) in s.logits.
func (m *Model) forward(s *scratch, seq *kvSeq, tokens []int32, allLogits bool) []float32 {
	c := &m.cfg
	T := len(tokens)
	p0 := len(seq.tokens)
	dim, qDim, kvDim, hd := c.Dim, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.HeadDim
	s.x = growF(s.x, T*dim)
	s.xn = growF(s.xn, T*dim)
	s.q = growF(s.q, T*qDim)
	s.k = growF(s.k, T*kvDim)
	s.v = growF(s.v, T*kvDim)
	s.att = growF(s.att, T*qDim)
	s.o = growF(s.o, T*dim)
	s.g = growF(s.g, T*c.FFN)
	s.u = growF(s.u, T*c.FFN)
	if len(s.scores) < m.threads {
		s.scores = make([][]float32, m.threads)
	}
	s.rope = growF(s.rope, T*c.RopeDim)
	for t, tok := range tokens {
		m.ropeTable(s.rope[t*c.RopeDim:(t+1)*c.RopeDim], p0+t)
		quant.Dequantize(m.embd.typ, m.embd.row(int(tok)), s.x[t*dim:(t+1)*dim])
	}
	if seq.k == nil {
		seq.k = make([][]float32, c.Layers)
		seq.v = make([][]float32, c.Layers)
	}
	group := c.Heads / c.KVHeads
	kqScale := float32(1 / math.Sqrt(float64(hd)))
	for li := range m.layers {
		l := &m.layers[li]
		for t := 0; t < T; t++ {
			rmsNorm(s.xn[t*dim:(t+1)*dim], s.x[t*dim:(t+1)*dim], l.attnNorm, c.RMSEps)
		}
		m.matmul(s, s.q, l.wq, s.xn, T)
		m.matmul(s, s.k, l.wk, s.xn, T)
		m.matmul(s, s.v, l.wv, s.xn, T)
		for t := 0; t < T; t++ {
			cs := s.rope[t*c.RopeDim : (t+1)*c.RopeDim]
			q, k, v := s.q[t*qDim:(t+1)*qDim], s.k[t*kvDim:(t+1)*kvDim], s.v[t*kvDim:(t+1)*kvDim]
			addBias(q, l.bq)
			addBias(k, l.bk)
			addBias(v, l.bv)
			for h := 0; h < c.Heads; h++ {
				qh := q[h*hd : (h+1)*hd]
				if c.QKNorm {
					rmsNorm(qh, qh, l.qNorm, c.RMSEps)
				}
				m.rope(qh, cs)
				for i := range qh { // the KQ product runs in F16
					qh[i] = quant.RoundF16(qh[i])
				}
			}
			for h := 0; h < c.KVHeads; h++ {
				kh := k[h*hd : (h+1)*hd]
				if c.QKNorm {
					rmsNorm(kh, kh, l.kNorm, c.RMSEps)
				}
				m.rope(kh, cs)
			}
			for i := range k { // the cache is F16
				k[i] = quant.RoundF16(k[i])
				v[i] = quant.RoundF16(v[i])
			}
		}
		seq.k[li] = append(seq.k[li], s.k[:T*kvDim]...)
		seq.v[li] = append(seq.v[li], s.v[:T*kvDim]...)
		K, V := seq.k[li], seq.v[li]
		m.parallelFor(T*c.Heads, 1, func(w, lo, hi int) {
			for item := lo; item < hi; item++ {
				t, h := item/c.Heads, item%c.Heads
				n := p0 + t + 1
				sc := growF(s.scores[w], n)
				s.scores[w] = sc
				qh := s.q[t*qDim+h*hd : t*qDim+(h+1)*hd]
				off := (h / group) * hd
				for j := 0; j < n; j++ {
					sc[j] = quant.DotF32(qh, K[j*kvDim+off:j*kvDim+off+hd]) * kqScale
				}
				softmaxInPlace(sc)
				out := s.att[t*qDim+h*hd : t*qDim+(h+1)*hd]
				clear(out)
				for j := range sc {
					quant.AXPY(quant.RoundF16(sc[j]), V[j*kvDim+off:j*kvDim+off+hd], out)
				}
			}
		})
		m.matmul(s, s.o, l.wo, s.att, T)
		for i := range s.x[:T*dim] {
			s.x[i] += s.o[i]
		}
		for t := 0; t < T; t++ {
			rmsNorm(s.xn[t*dim:(t+1)*dim], s.x[t*dim:(t+1)*dim], l.ffnNorm, c.RMSEps)
		}
		m.matmul(s, s.g, l.gate, s.xn, T)
		m.matmul(s, s.u, l.up, s.xn, T)
		g := s.g[:T*c.FFN]
		for t := 0; t < T; t++ {
			swiglu(g[t*c.FFN:(t+1)*c.FFN], s.u[t*c.FFN:(t+1)*c.FFN])
		}
		m.matmul(s, s.o, l.down, g, T)
		for i := range s.x[:T*dim] {
			s.x[i] += s.o[i]
		}
	}
	seq.tokens = append(seq.tokens, tokens...)
	first := T - 1
	if allLogits {
		first = 0
	}
	n := T - first
	for t := first; t < T; t++ {
		rmsNorm(s.xn[(t-first)*dim:(t-first+1)*dim], s.x[t*dim:(t+1)*dim], m.outNorm, c.RMSEps)
	}
	s.logits = growF(s.logits, n*c.Vocab)
	m.matmul(s, s.logits, m.output, s.xn[:n*dim], n)
	return s.logits
}

func addBias(x, b []float32) {
	for i := range b {
		x[i] += b[i]
	}
}
