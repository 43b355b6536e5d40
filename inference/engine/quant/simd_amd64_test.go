//go:build goexperiment.simd && amd64

package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/univrs/hypha/inference/gguf"
)

// The AVX2 kernels must agree with the portable ones (same integer block
// sums; float order differs) on random data, including extreme int8 values.
func TestSIMDMatchesGeneric(t *testing.T) {
	if KernelName != "avx2" {
		t.Skip("CPU without AVX2/FMA")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{256, 512, 4096} {
		for _, typ := range allTypes {
			for trial := 0; trial < 5; trial++ {
				w := randVec(r, n)
				x := randVec(r, n)
				if trial == 1 {
					for i := range x {
						x[i] *= 1000
					}
				}
				wb, _ := Quantize(typ, w)
				if trial == 2 { // hostile bytes: any pattern is a valid block
					for i := range wb {
						wb[i] = byte(r.Uint32())
					}
					if typ == gguf.TensorF32 || typ == gguf.TensorF16 || typ == gguf.TensorBF16 {
						wb, _ = Quantize(typ, w)
					}
				}
				var a Act
				a.Prepare(typ, x)
				got := Dot(typ, wb, &a, n)
				var want float32
				switch typ {
				case gguf.TensorF32:
					want = dotF32Generic(wb, a.F)
				case gguf.TensorF16:
					want = dotF16Generic(wb, a.F)
				case gguf.TensorBF16:
					want = dotBF16Generic(wb, a.F)
				case gguf.TensorQ8_0:
					want = dotQ8_0Generic(wb, a.D, a.Q, n/32)
				case gguf.TensorQ4_0:
					want = dotQ4_0Generic(wb, a.D, a.Q, n/32)
				case gguf.TensorQ4_K:
					want = dotQ4KGeneric(wb, a.D, a.Q, a.BSums, n/256)
				case gguf.TensorQ6_K:
					want = dotQ6KGeneric(wb, a.D, a.Q, a.BSums, n/256)
				}
				scale := math.Sqrt(float64(n)) * 1e-4 * (1 + math.Abs(float64(want)))
				if d := math.Abs(float64(got - want)); d > scale && !(math.IsNaN(float64(want)) || math.IsInf(float64(want), 0)) {
					t.Errorf("%v n=%d trial %d: avx2 %g, generic %g", typ, n, trial, got, want)
				}
			}
		}
	}
	// DotN (four activations sharing a weight row) is bit-identical to Dot.
	for _, typ := range allTypes {
		const n = 1024
		wb, _ := Quantize(typ, randVec(r, n))
		acts := make([]Act, 7)
		for i := range acts {
			acts[i].Prepare(typ, randVec(r, n))
		}
		out := make([]float32, len(acts))
		DotN(typ, wb, acts, n, out)
		for i := range acts {
			if want := Dot(typ, wb, &acts[i], n); out[i] != want {
				t.Errorf("%v: DotN[%d] = %g, Dot = %g", typ, i, out[i], want)
			}
		}
	}
	x, y := randVec(r, 100), randVec(r, 100)
	want := dotF32s(x, y)
	if got := DotF32(x, y); math.Abs(float64(got-want)) > 1e-4 {
		t.Errorf("DotF32 %g, want %g", got, want)
	}
	y2 := append([]float32(nil), y...)
	AXPY(0.5, x, y)
	axpyGeneric(0.5, x, y2)
	for i := range y {
		if math.Abs(float64(y[i]-y2[i])) > 1e-5 {
			t.Fatalf("AXPY[%d] %g, want %g", i, y[i], y2[i])
		}
	}
}
