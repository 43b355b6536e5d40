package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/univrs/hypha/inference/gguf"
)

func TestF16RoundTrip(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if f != f { // NaN: must stay NaN
			if g := F16ToF32(F32ToF16(f)); g == g {
				t.Fatalf("%#x: NaN lost", h)
			}
			continue
		}
		if got := F32ToF16(f); got != h {
			t.Fatalf("F32ToF16(F16ToF32(%#x)=%g) = %#x", h, f, got)
		}
	}
	// Round to nearest even between neighbours and at the subnormal edge.
	cases := []struct {
		f float32
		h uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {1e-8, 0},
		{float32(math.Ldexp(1, -24)), 1}, {float32(math.Ldexp(1.5, -24)), 2}, {float32(math.Ldexp(1, -25)), 0},
		{1 + float32(math.Ldexp(1, -11)), 0x3c00}, {1 + float32(math.Ldexp(3, -11)), 0x3c02},
	}
	for _, c := range cases {
		if got := F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%g) = %#x, want %#x", c.f, got, c.h)
		}
	}
	if got := F32ToBF16(1 + float32(math.Ldexp(1, -8))); got != 0x3f80 {
		t.Errorf("bf16 tie to even: %#x", got)
	}
}

func randVec(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

var allTypes = []gguf.TensorType{gguf.TensorF32, gguf.TensorF16, gguf.TensorBF16, gguf.TensorQ8_0, gguf.TensorQ4_0, gguf.TensorQ4_K, gguf.TensorQ6_K}

// maximal relative RMS error of quantise+dequantise for Gaussian data.
var maxRMS = map[gguf.TensorType]float64{
	gguf.TensorF32: 0, gguf.TensorF16: 1e-3, gguf.TensorBF16: 5e-3, gguf.TensorQ8_0: 0.01,
	gguf.TensorQ4_0: 0.15, gguf.TensorQ4_K: 0.12, gguf.TensorQ6_K: 0.03,
}

func TestQuantizeDequantize(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randVec(r, 4096)
	for _, typ := range allTypes {
		b, err := Quantize(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := RowBytes(typ, len(x)); n != len(b) {
			t.Fatalf("%v: %d bytes, want %d", typ, len(b), n)
		}
		y := make([]float32, len(x))
		Dequantize(typ, b, y)
		var se, sx float64
		for i := range x {
			d := float64(x[i] - y[i])
			se += d * d
			sx += float64(x[i]) * float64(x[i])
		}
		rms := math.Sqrt(se / sx)
		if rms > maxRMS[typ] {
			t.Errorf("%v: relative RMS error %.4f > %.4f", typ, rms, maxRMS[typ])
		}
		t.Logf("%v: relative RMS error %.5f", typ, rms)
		// Quantising the dequantised values again must be stable for the
		// exact formats and close for the others.
		b2, _ := Quantize(typ, y)
		y2 := make([]float32, len(x))
		Dequantize(typ, b2, y2)
		for i := range y {
			if typ == gguf.TensorF32 || typ == gguf.TensorF16 || typ == gguf.TensorBF16 || typ == gguf.TensorQ8_0 {
				if y[i] != y2[i] {
					t.Fatalf("%v: requantisation changed element %d: %g -> %g", typ, i, y[i], y2[i])
				}
			}
		}
	}
}

// Known block: Q8_0 with d=1 (0x3c00) and qs = 0..31 dequantises to 0..31;
// Q4_0 with d=2 and nibbles 8+k gives 2k.
func TestDequantizeKnownBlocks(t *testing.T) {
	b := make([]byte, BlockQ8_0)
	b[1] = 0x3c
	for j := 0; j < 32; j++ {
		b[2+j] = byte(int8(j - 16))
	}
	y := make([]float32, 32)
	Dequantize(gguf.TensorQ8_0, b, y)
	for j := range y {
		if y[j] != float32(j-16) {
			t.Fatalf("q8_0[%d] = %g", j, y[j])
		}
	}
	b = make([]byte, BlockQ4_0)
	b[1] = 0x40 // 2.0
	for j := 0; j < 16; j++ {
		b[2+j] = byte(j) | byte(15-j)<<4
	}
	Dequantize(gguf.TensorQ4_0, b, y)
	for j := 0; j < 16; j++ {
		if y[j] != float32(2*(j-8)) || y[j+16] != float32(2*(7-j)) {
			t.Fatalf("q4_0[%d] = %g, [%d] = %g", j, y[j], j+16, y[j+16])
		}
	}
}

// Dot must equal the float dot product of the dequantised weights with the
// activation as llama.cpp prepares it (dequantised Q8 activations).
func TestDotMatchesDequantized(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 1024
	for _, typ := range allTypes {
		w := randVec(r, n)
		x := randVec(r, n)
		wb, _ := Quantize(typ, w)
		wd := make([]float32, n)
		Dequantize(typ, wb, wd)
		var a Act
		a.Prepare(typ, x)
		xd := make([]float32, n)
		switch actKind(typ) {
		case gguf.TensorQ8_0:
			for i := range xd {
				xd[i] = float32(a.Q[i]) * a.D[i/32]
			}
		case gguf.TensorQ8_K:
			for i := range xd {
				xd[i] = float32(a.Q[i]) * a.D[i/256]
			}
			for j, s := range a.BSums {
				var want int16
				for _, q := range a.Q[16*j : 16*j+16] {
					want += int16(q)
				}
				if s != want {
					t.Fatalf("bsum %d = %d, want %d", j, s, want)
				}
			}
		default:
			copy(xd, a.F)
		}
		var want float64
		for i := range wd {
			want += float64(wd[i]) * float64(xd[i])
		}
		got := Dot(typ, wb, &a, n)
		if math.Abs(float64(got)-want) > 1e-3*(1+math.Abs(want)) {
			t.Errorf("%v: Dot = %g, want %g", typ, got, want)
		}
	}
}

func BenchmarkDot(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 4096
	x := randVec(r, n)
	for _, typ := range allTypes {
		wb, _ := Quantize(typ, randVec(r, n))
		var a Act
		a.Prepare(typ, x)
		b.Run(typ.String(), func(b *testing.B) {
			b.SetBytes(int64(len(wb)))
			for b.Loop() {
				Dot(typ, wb, &a, n)
			}
		})
	}
}

func BenchmarkDotN(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 4096
	for _, typ := range []gguf.TensorType{gguf.TensorQ8_0, gguf.TensorQ4_K} {
		wb, _ := Quantize(typ, randVec(r, n))
		acts := make([]Act, 32)
		for i := range acts {
			acts[i].Prepare(typ, randVec(r, n))
		}
		out := make([]float32, len(acts))
		b.Run(typ.String()+"-x32", func(b *testing.B) {
			b.SetBytes(int64(len(wb)) * int64(len(acts)))
			for b.Loop() {
				DotN(typ, wb, acts, n, out)
			}
		})
	}
}
