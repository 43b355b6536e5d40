package engine

import (
	"math"

	"golang.org/x/sys/cpu"
)

// llama.cpp's CPU backend computes exp in softmax and SiLU with a vector
// approximation (ggml_v_expf, "adapted from arm limited optimized
// routine"), whose AVX-512 and AVX2 variants round differently from each
// other and from a correctly rounded exp. Our engine reproduces the variant
// llama.cpp picks on the same CPU, so that logits agree to the last bit far
// more often: a 1-ulp difference upstream flips a Q8_0 activation rounding
// downstream and becomes a visible logit difference.

type expVariant int

const (
	expScalar expVariant = iota // correctly rounded expf (llama.cpp's scalar tail)
	expAVX2                     // ggml_v_expf, __m256 variant
	expAVX512                   // ggml_v_expf, __m512 variant
)

var expKind = func() expVariant {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ:
		return expAVX512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		return expAVX2
	}
	return expScalar
}()

// expLanes is the vector width of the variant (1 for scalar).
func expLanes() int {
	switch expKind {
	case expAVX512:
		return 16
	case expAVX2:
		return 8
	}
	return 1
}

func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// vexpf is one lane of ggml_v_expf for the selected variant.
func vexpf(x float32) float32 {
	const (
		r   = 0x1.8p23
		l2e = 0x1.715476p+0
		ln1 = 0x1.62e4p-1
		ln2 = 0x1.7f7d1cp-20
		c1  = 0x1.0e4020p-7
		c2  = 0x1.573e2ep-5
		c3  = 0x1.555e66p-3
		c4  = 0x1.fffdb6p-2
		c5  = 0x1.ffffecp-1
	)
	switch expKind {
	case expScalar:
		return float32(math.Exp(float64(x)))
	case expAVX512:
		z := fma32(x, l2e, r)
		n := z - r
		b := fma32(-n, ln2, fma32(-n, ln1, x))
		if abs32(n) > 192 {
			if n <= 0 {
				return 0
			}
			return float32(math.Inf(1))
		}
		u := b * b
		j := fma32(fma32(fma32(c1, b, c2), u, fma32(c3, b, c4)), u, fma32(c5, b, 1))
		return float32(math.Ldexp(float64(j), int(n)))
	default: // AVX2
		z := fma32(x, l2e, r)
		n := z - r
		b := fma32(-n, ln2, fma32(-n, ln1, x))
		e := math.Float32bits(z) << 23
		k := math.Float32frombits(e + math.Float32bits(1))
		u := b * b
		j := fma32(fma32(fma32(c1, b, c2), u, fma32(c3, b, c4)), u, c5*b)
		an := abs32(n)
		if an <= 126 {
			return fma32(k, j, k)
		}
		var g uint32
		if n <= 0 {
			g = 0x82000000
		}
		s1 := math.Float32frombits(g + 0x7f000000)
		if an > 192 {
			return s1 * s1
		}
		s2 := math.Float32frombits(e - g)
		return fma32(s2, j, s2) * s1
	}
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// softmaxInPlace replaces x with softmax(x) as ggml_compute_forward_soft_max
// does: exp(x - max) in vector chunks (the padded, masked lanes contribute
// 0), each chunk summed in float32 in the reduction order of the vector
// width and accumulated in float64, then scaled by float32(1/sum).
func softmaxInPlace(x []float32) {
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	w := expLanes()
	var sum float64
	var lanes [16]float32
	for i := 0; i < len(x); i += w {
		if w == 1 {
			x[i] = vexpf(x[i] - mx)
			sum += float64(x[i])
			continue
		}
		for l := 0; l < w; l++ {
			if i+l < len(x) {
				x[i+l] = vexpf(x[i+l] - mx)
				lanes[l] = x[i+l]
			} else {
				lanes[l] = 0
			}
		}
		for h := w / 2; h >= 1; h /= 2 {
			for l := 0; l < h; l++ {
				lanes[l] += lanes[l+h]
			}
		}
		sum += float64(lanes[0])
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// swiglu computes g[i] = silu(g[i]) * u[i] as ggml_vec_swiglu_f32: vector
// lanes use ggml_v_silu (x / (1 + v_expf(-x))), the tail the scalar form.
func swiglu(g, u []float32) {
	w := expLanes()
	vec := len(g) / w * w
	if w == 1 {
		vec = 0
	}
	for i := 0; i < vec; i++ {
		x := g[i]
		g[i] = x / (1 + vexpf(0-x)) * u[i]
	}
	for i := vec; i < len(g); i++ {
		x := g[i]
		g[i] = x / (1 + float32(math.Exp(float64(-x)))) * u[i]
	}
}
