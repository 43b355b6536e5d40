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

// TestScoreBestFrom: scoring from a position gives ScoreBest's values there
// (zeros before), whether the context is cold, partly cached, or cached
// past the scored position.
func TestScoreBestFrom(t *testing.T) {
	m := tinyModel(t, "qwen2", gguf.TensorQ8_0)
	ctx := context.Background()
	toks := seqTokens(100, 5)
	wantLP, wantBest, err := m.NewCache(0).ScoreBest(ctx, toks)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, c *Cache, from int) {
		t.Helper()
		lp, best, err := c.ScoreBestFrom(ctx, toks, from)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range toks {
			wl, wb := wantLP[i], wantBest[i]
			if i < from {
				wl, wb = 0, 0
			}
			if math.Abs(float64(lp[i]-wl)) > 1e-4 || math.Abs(float64(best[i]-wb)) > 1e-4 {
				t.Fatalf("%s: position %d: lp %v best %v, want %v %v", name, i, lp[i], best[i], wl, wb)
			}
		}
	}
	check("cold, from 0", m.NewCache(0), 0)
	check("cold, from 70", m.NewCache(0), 70) // context longer than one batch
	c := m.NewCache(0)
	if _, _, err := c.Eval(ctx, toks[:40]); err != nil {
		t.Fatal(err)
	}
	check("40 cached, from 60", c, 60)
	check("all cached, from 60", c, 60)
	check("all cached, from 10", c, 10)
	check("from the last", c, len(toks))
	if _, _, err := c.ScoreBestFrom(ctx, toks, len(toks)+1); !errors.Is(err, ErrInput) {
		t.Errorf("from beyond the tokens: %v", err)
	}
}
