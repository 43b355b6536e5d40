package quant

import (
	"math"
	"unsafe"

	"github.com/univrs/hypha/inference/gguf"
)

// Act is an activation row prepared for dot products against weight rows
// of one type, the way llama.cpp's CPU backend prepares it: rounded to F16
// or BF16 for F16/BF16 weights, quantised to Q8_0 for Q8_0/Q4_0 weights and
// to Q8_K for Q4_K/Q6_K weights, kept as is for F32 weights.
type Act struct {
	F     []float32 // F32/F16/BF16 weights: the (rounded) values
	D     []float32 // per-block scales (Q8_0: 32-element blocks, Q8_K: 256)
	Q     []int8    // quantised values
	BSums []int16   // Q8_K: sums of each 16 quantised values
}

// ActKind is the activation format a weight type needs.
func actKind(t gguf.TensorType) gguf.TensorType {
	switch t {
	case gguf.TensorQ8_0, gguf.TensorQ4_0:
		return gguf.TensorQ8_0
	case gguf.TensorQ4_K, gguf.TensorQ6_K:
		return gguf.TensorQ8_K
	}
	return t
}

// Prepare fills a with x in the format needed by weights of type t,
// reusing a's buffers.
func (a *Act) Prepare(t gguf.TensorType, x []float32) {
	switch actKind(t) {
	case gguf.TensorF32:
		a.F = append(a.F[:0], x...)
	case gguf.TensorF16:
		a.F = grow(a.F, len(x))
		for i, v := range x {
			a.F[i] = RoundF16(v)
		}
	case gguf.TensorBF16:
		a.F = grow(a.F, len(x))
		for i, v := range x {
			a.F[i] = BF16ToF32(F32ToBF16(v))
		}
	case gguf.TensorQ8_0:
		a.quantQ8_0(x)
	case gguf.TensorQ8_K:
		a.quantQ8K(x)
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// quantQ8_0 follows the AVX2 quantize_row_q8_0 of ggml-cpu: scale
// 127/amax, round to nearest even, d stored (and used) as F16.
func (a *Act) quantQ8_0(x []float32) {
	nb := len(x) / QK8_0
	a.D = grow(a.D, nb)
	a.Q = grow(a.Q, len(x))
	for b := 0; b < nb; b++ {
		xs := x[b*QK8_0 : b*QK8_0+QK8_0]
		var amax float32
		for _, v := range xs {
			amax = max(amax, abs32(v))
		}
		a.D[b] = RoundF16(amax / 127)
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		q := a.Q[b*QK8_0 : b*QK8_0+QK8_0]
		for j, v := range xs {
			q[j] = int8(math.RoundToEven(float64(v * id)))
		}
	}
}

// quantQ8K is ggml's quantize_row_q8_K_ref.
func (a *Act) quantQ8K(x []float32) {
	nb := len(x) / QK_K
	a.D = grow(a.D, nb)
	a.Q = grow(a.Q, len(x))
	a.BSums = grow(a.BSums, nb*QK_K/16)
	for b := 0; b < nb; b++ {
		xs := x[b*QK_K : b*QK_K+QK_K]
		q := a.Q[b*QK_K : b*QK_K+QK_K]
		var amax, mx float32
		for _, v := range xs {
			if abs32(v) > amax {
				amax, mx = abs32(v), v
			}
		}
		bs := a.BSums[b*16 : b*16+16]
		if amax == 0 {
			a.D[b] = 0
			clear(q)
			clear(bs)
			continue
		}
		iscale := -127 / mx
		for j, v := range xs {
			q[j] = int8(min(127, nearestInt(iscale*v)))
		}
		for j := range bs {
			var s int16
			for _, v := range q[16*j : 16*j+16] {
				s += int16(v)
			}
			bs[j] = s
		}
		a.D[b] = 1 / iscale
	}
}

// Dot returns the dot product of one weight row w (n elements of type t)
// with the prepared activation a.
func Dot(t gguf.TensorType, w []byte, a *Act, n int) float32 {
	switch t {
	case gguf.TensorF32:
		return dotF32(w, a.F[:n])
	case gguf.TensorF16:
		return dotF16(w, a.F[:n])
	case gguf.TensorBF16:
		return dotBF16(w, a.F[:n])
	case gguf.TensorQ8_0:
		return dotQ8_0(w, a.D, a.Q, n/QK8_0)
	case gguf.TensorQ4_0:
		return dotQ4_0(w, a.D, a.Q, n/QK4_0)
	case gguf.TensorQ4_K:
		return dotQ4K(w, a.D, a.Q, a.BSums, n/QK_K)
	case gguf.TensorQ6_K:
		return dotQ6K(w, a.D, a.Q, a.BSums, n/QK_K)
	}
	panic("quant: Dot of unsupported type " + t.String())
}

// DotN computes Dot of the weight row w against every activation in acts,
// writing out[i]; each result is bit-identical to Dot's. Batches of four
// Q8_0 activations share the weight loads when an accelerated kernel exists.
func DotN(t gguf.TensorType, w []byte, acts []Act, n int, out []float32) {
	i := 0
	if t == gguf.TensorQ8_0 && dotQ8_0x4 != nil {
		for ; i+4 <= len(acts); i += 4 {
			dotQ8_0x4(w, acts[i:i+4], n/QK8_0, out[i:i+4])
		}
	}
	if t == gguf.TensorQ4_K && dotQ4Kx4 != nil {
		for ; i+4 <= len(acts); i += 4 {
			dotQ4Kx4(w, acts[i:i+4], n/QK_K, out[i:i+4])
		}
	}
	for ; i < len(acts); i++ {
		out[i] = Dot(t, w, &acts[i], n)
	}
}

// dotQ8_0x4 and dotQ4Kx4, when set, compute four dot products sharing one weight row.
var dotQ8_0x4, dotQ4Kx4 func(w []byte, acts []Act, nb int, out []float32)

// The kernels below are function variables so that an accelerated
// implementation (simd_amd64.go, GOEXPERIMENT=simd) can replace them at
// init time after checking CPU features.
var (
	dotF32  = dotF32Generic
	dotF16  = dotF16Generic
	dotBF16 = dotBF16Generic
	dotQ8_0 = dotQ8_0Generic
	dotQ4_0 = dotQ4_0Generic
	dotQ4K  = dotQ4KGeneric
	dotQ6K  = dotQ6KGeneric
	// DotF32 is the float32 dot product used for attention.
	DotF32 = dotF32s
	// AXPY computes y += a*x, used for attention value accumulation.
	AXPY = axpyGeneric
)

// KernelName names the kernel set in use ("generic" or "avx2").
var KernelName = "generic"

func dotF32s(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	n := len(a)
	b = b[:n]
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

func axpyGeneric(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

// littleEndian is true on the targets that matter (amd64, arm64), where a
// little-endian F32 row can be read in place.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

func dotF32Generic(w []byte, x []float32) float32 {
	if littleEndian && len(x) > 0 {
		_ = w[4*len(x)-1]
		return dotF32s(unsafe.Slice((*float32)(unsafe.Pointer(&w[0])), len(x)), x)
	}
	var s0, s1 float32
	n := len(x)
	w = w[:4*n]
	i := 0
	for ; i+2 <= n; i += 2 {
		s0 += math.Float32frombits(le.Uint32(w[4*i:])) * x[i]
		s1 += math.Float32frombits(le.Uint32(w[4*i+4:])) * x[i+1]
	}
	for ; i < n; i++ {
		s0 += math.Float32frombits(le.Uint32(w[4*i:])) * x[i]
	}
	return s0 + s1
}

func u16s(w []byte, n int) []uint16 {
	_ = w[2*n-1]
	return unsafe.Slice((*uint16)(unsafe.Pointer(&w[0])), n)
}

func dotF16Generic(w []byte, x []float32) float32 {
	n := len(x)
	if n == 0 {
		return 0
	}
	t := f16Table
	var s0, s1 float32
	if littleEndian {
		h := u16s(w, n)
		i := 0
		for ; i+2 <= n; i += 2 {
			s0 += t[h[i]] * x[i]
			s1 += t[h[i+1]] * x[i+1]
		}
		for ; i < n; i++ {
			s0 += t[h[i]] * x[i]
		}
		return s0 + s1
	}
	for i := range x {
		s0 += t[le.Uint16(w[2*i:])] * x[i]
	}
	return s0
}

func dotBF16Generic(w []byte, x []float32) float32 {
	n := len(x)
	if n == 0 {
		return 0
	}
	var s0, s1 float32
	if littleEndian {
		h := u16s(w, n)
		i := 0
		for ; i+2 <= n; i += 2 {
			s0 += math.Float32frombits(uint32(h[i])<<16) * x[i]
			s1 += math.Float32frombits(uint32(h[i+1])<<16) * x[i+1]
		}
		for ; i < n; i++ {
			s0 += math.Float32frombits(uint32(h[i])<<16) * x[i]
		}
		return s0 + s1
	}
	for i, v := range x {
		s0 += BF16ToF32(le.Uint16(w[2*i:])) * v
	}
	return s0
}

// The Q8_0/Q4_0 kernels accumulate like llama.cpp's AVX2 kernels: eight
// float lanes, lane k adding d*(sum of elements 4k..4k+3) of every block
// with a fused multiply-add, then hsum_float_8's reduction order. With the
// same activation quantisation this reproduces llama.cpp's results bit for
// bit on x86 (the float64 product is exact; only a rare double rounding of
// the addition can differ from a true fused operation).
// On other architectures (exactLanes false) speed wins over bit-equality
// with llama.cpp's x86 build.
func lanesAdd(acc *[8]float32, d float32, s *[8]int32) {
	if !exactLanes {
		var t int32
		for _, v := range s {
			t += v
		}
		acc[0] += d * float32(t)
		return
	}
	for k := range acc {
		acc[k] = float32(float64(d)*float64(s[k]) + float64(acc[k]))
	}
}

func hsum8(a *[8]float32) float32 {
	return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

func dotQ8_0Generic(w []byte, xd []float32, xq []int8, nb int) float32 {
	var acc [8]float32
	var s [8]int32
	for b := 0; b < nb; b++ {
		blk := (*[BlockQ8_0]byte)(w[b*BlockQ8_0:])
		q := (*[QK8_0]int8)(xq[b*QK8_0:])
		for k := 0; k < 8; k++ {
			j := 4 * k
			s[k] = int32(int8(blk[2+j]))*int32(q[j]) + int32(int8(blk[3+j]))*int32(q[j+1]) +
				int32(int8(blk[4+j]))*int32(q[j+2]) + int32(int8(blk[5+j]))*int32(q[j+3])
		}
		lanesAdd(&acc, F16ToF32(uint16(blk[0])|uint16(blk[1])<<8)*xd[b], &s)
	}
	return hsum8(&acc)
}

func dotQ4_0Generic(w []byte, xd []float32, xq []int8, nb int) float32 {
	var acc [8]float32
	var s [8]int32
	var v [32]int32
	for b := 0; b < nb; b++ {
		blk := (*[BlockQ4_0]byte)(w[b*BlockQ4_0:])
		q := (*[QK4_0]int8)(xq[b*QK4_0:])
		for j := 0; j < 16; j++ {
			v[j] = int32(blk[2+j]&0xf) - 8
			v[j+16] = int32(blk[2+j]>>4) - 8
		}
		for k := 0; k < 8; k++ {
			j := 4 * k
			s[k] = v[j]*int32(q[j]) + v[j+1]*int32(q[j+1]) + v[j+2]*int32(q[j+2]) + v[j+3]*int32(q[j+3])
		}
		lanesAdd(&acc, F16ToF32(uint16(blk[0])|uint16(blk[1])<<8)*xd[b], &s)
	}
	return hsum8(&acc)
}

// unpackScalesK4 decodes the eight 6-bit scales and mins of a Q4_K block.
func unpackScalesK4(s []byte) (sc, m [8]int32) {
	for j := 0; j < 8; j++ {
		a, b := scaleMinK4(j, s)
		sc[j], m[j] = int32(a), int32(b)
	}
	return
}

func dotQ4KGeneric(w []byte, xd []float32, xq []int8, bsums []int16, nb int) float32 {
	var sum float32
	for b := 0; b < nb; b++ {
		blk := (*[BlockQ4_K]byte)(w[b*BlockQ4_K:])
		q8 := (*[QK_K]int8)(xq[b*QK_K:])
		bs := bsums[b*16 : b*16+16]
		sc, m := unpackScalesK4(blk[4:16])
		var summ int32
		for j := 0; j < 16; j++ {
			summ += int32(bs[j]) * m[j/2]
		}
		q4 := blk[16:]
		var sumi int32
		for j := 0; j < 4; j++ { // 64 elements per step: low nibbles then high
			var lo, hi int32
			qq := q4[32*j : 32*j+32]
			y := q8[64*j : 64*j+64]
			for l := 0; l < 32; l++ {
				lo += int32(qq[l]&0xf) * int32(y[l])
				hi += int32(qq[l]>>4) * int32(y[l+32])
			}
			sumi += lo*sc[2*j] + hi*sc[2*j+1]
		}
		d := F16ToF32(le.Uint16(blk[0:])) * xd[b]
		dmin := F16ToF32(le.Uint16(blk[2:])) * xd[b]
		sum += d*float32(sumi) - dmin*float32(summ)
	}
	return sum
}

func dotQ6KGeneric(w []byte, xd []float32, xq []int8, _ []int16, nb int) float32 {
	var sum float32
	var a [QK_K]int8
	for b := 0; b < nb; b++ {
		blk := (*[BlockQ6_K]byte)(w[b*BlockQ6_K:])
		ql := blk[0:128]
		qh := blk[128:192]
		for n := 0; n < QK_K; n += 128 {
			for l := 0; l < 32; l++ {
				a[n+l] = int8((ql[l]&0xf)|((qh[l]>>0)&3)<<4) - 32
				a[n+l+32] = int8((ql[l+32]&0xf)|((qh[l]>>2)&3)<<4) - 32
				a[n+l+64] = int8((ql[l]>>4)|((qh[l]>>4)&3)<<4) - 32
				a[n+l+96] = int8((ql[l+32]>>4)|((qh[l]>>6)&3)<<4) - 32
			}
			ql = ql[64:]
			qh = qh[32:]
		}
		q8 := (*[QK_K]int8)(xq[b*QK_K:])
		var sumi int32
		for j := 0; j < 16; j++ {
			var s int32
			for l := 0; l < 16; l++ {
				s += int32(a[16*j+l]) * int32(q8[16*j+l])
			}
			sumi += s * int32(int8(blk[192+j]))
		}
		sum += F16ToF32(le.Uint16(blk[208:])) * xd[b] * float32(sumi)
	}
	return sum
}
