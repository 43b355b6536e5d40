package engine

import (
	"math"
	"testing"
)

// Every variant of the exp approximation stays within a few ulps of exp
// over the range softmax and SiLU use, and the softmax sums to 1.
func TestExpVariants(t *testing.T) {
	saved := expKind
	defer func() { expKind = saved }()
	for _, v := range []expVariant{expScalar, expAVX2, expAVX512} {
		expKind = v
		for x := float32(-87); x < 88; x += 0.0137 {
			got := float64(vexpf(x))
			want := math.Exp(float64(x))
			if math.Abs(got-want) > 4e-7*want {
				t.Fatalf("variant %d: exp(%g) = %g, want %g", v, x, got, want)
			}
		}
		if vexpf(-200) != 0 || !math.IsInf(float64(vexpf(200)), 1) {
			t.Errorf("variant %d: no flush to 0/inf outside the range", v)
		}
		x := []float32{1, 2, 3, -4, 0.5, 7, 1, 1, 2, 3}
		softmaxInPlace(x)
		var s float64
		for _, p := range x {
			s += float64(p)
		}
		if math.Abs(s-1) > 1e-6 || x[5] < x[2] {
			t.Errorf("variant %d: softmax %v sums to %v", v, x, s)
		}
	}
}
