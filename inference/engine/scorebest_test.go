package engine

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/univrs/hypha/inference/gguf"
)

// TestScoreBest: ScoreBest agrees with Score, its best[i] is the
// log-probability of the argmax of Eval's logits at i, and a greedily
// generated continuation scores lp == best on every generated position
// (what the verification committee relies on).
func TestScoreBest(t *testing.T) {
	m := tinyModel(t, "qwen2", gguf.TensorQ8_0)
	ctx := context.Background()
	toks := seqTokens(70, 3) // more than one prefill batch of 64
	lp, best, err := m.NewCache(0).ScoreBest(ctx, toks)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := m.NewCache(0).Score(ctx, toks)
	if err != nil {
		t.Fatal(err)
	}
	if len(lp) != len(toks) || len(best) != len(toks) || lp[0] != 0 || best[0] != 0 {
		t.Fatalf("lengths %d/%d, first %v/%v", len(lp), len(best), lp[0], best[0])
	}
	for i := range lp {
		if lp[i] != ref[i] {
			t.Fatalf("lp[%d] = %v, Score says %v", i, lp[i], ref[i])
		}
		if best[i] < lp[i] || best[i] > 0 {
			t.Fatalf("best[%d] = %v, lp %v: want lp <= best <= 0", i, best[i], lp[i])
		}
	}
	c := m.NewCache(0)
	for _, i := range []int{1, 30, 65, 69} {
		logits, _, err := c.Eval(ctx, toks[:i])
		if err != nil {
			t.Fatal(err)
		}
		arg := (&Sampler{}).Sample(logits, nil)
		if want := logProb(logits, arg); math.Abs(float64(best[i]-want)) > 1e-4 {
			t.Errorf("best[%d] = %v, log P(argmax %d) = %v", i, best[i], arg, want)
		}
	}

	// greedy continuation: every generated token was the argmax
	seq := append([]int32(nil), toks[:10]...)
	for range 12 {
		logits, _, err := c.Eval(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, (&Sampler{}).Sample(logits, nil))
	}
	lp, best, err = m.NewCache(0).ScoreBest(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < len(seq); i++ {
		if math.Abs(float64(lp[i]-best[i])) > 1e-5 {
			t.Errorf("greedy token %d: lp %v != best %v", i, lp[i], best[i])
		}
	}
}

func TestScoreBestErrors(t *testing.T) {
	m := tinyModel(t, "llama", gguf.TensorF32)
	c := m.NewCache(0)
	for _, toks := range [][]int32{nil, {1, 512}, seqTokens(257, 1)} {
		if _, _, err := c.ScoreBest(context.Background(), toks); !errors.Is(err, ErrInput) {
			t.Errorf("tokens %v: %v, want ErrInput", toks[:min(3, len(toks))], err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.ScoreBest(ctx, seqTokens(10, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
