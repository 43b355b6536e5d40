package engine

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// Sampler picks the next token from logits. The zero value is greedy.
//
// The chain follows llama.cpp's default order: repetition penalty, top-k,
// top-p, min-p, temperature, then a draw from the softmax. Temperature <= 0
// means greedy (after the repetition penalty). The same Seed and settings
// over the same logits give the same tokens.
//
// A Sampler carries its random state and is not safe for concurrent use;
// use one per request.
type Sampler struct {
	Temperature   float32
	TopP          float32 // keep the smallest set with cumulative probability >= TopP; 0 or >= 1 disables
	MinP          float32 // drop tokens with probability < MinP * max probability; 0 disables
	RepeatPenalty float32 // > 1 penalises tokens in the last RepeatLastN of history; 0 or 1 disables
	TopK          int     // keep the K most likely; <= 0 disables
	RepeatLastN   int     // window for RepeatPenalty; <= 0 means 64
	Seed          uint64

	rng  *rand.Rand
	cand []candidate
}

type candidate struct {
	id    int32
	logit float32
	p     float64
}

// Sample returns the next token. history is the tokens so far (prompt and
// generated), used by the repetition penalty. logits is not modified.
// Empty logits give -1.
func (s *Sampler) Sample(logits []float32, history []int32) int32 {
	if len(logits) == 0 {
		return -1
	}
	pen := s.RepeatPenalty
	var penalised map[int32]bool
	if pen > 0 && pen != 1 {
		n := s.RepeatLastN
		if n <= 0 {
			n = 64
		}
		penalised = map[int32]bool{}
		for _, t := range history[max(0, len(history)-n):] {
			if t >= 0 && int(t) < len(logits) {
				penalised[t] = true
			}
		}
	}
	logit := func(i int) float32 {
		v := logits[i]
		if penalised[int32(i)] {
			if v > 0 {
				v /= pen
			} else {
				v *= pen
			}
		}
		return v
	}
	if s.Temperature <= 0 {
		best, bv := 0, float32(math.Inf(-1))
		for i := range logits {
			if v := logit(i); v > bv {
				best, bv = i, v
			}
		}
		return int32(best)
	}
	c := s.cand[:0]
	for i := range logits {
		c = append(c, candidate{id: int32(i), logit: logit(i)})
	}
	s.cand = c
	if s.TopK > 0 || (s.TopP > 0 && s.TopP < 1) || s.MinP > 0 {
		// sorted by logit, ties by id, so the order is deterministic
		slices.SortFunc(c, func(a, b candidate) int {
			if a.logit != b.logit {
				return cmp.Compare(b.logit, a.logit)
			}
			return cmp.Compare(a.id, b.id)
		})
	} else {
		// no truncation: only the maximum must come first (for softmax)
		best := 0
		for i := range c {
			if c[i].logit > c[best].logit {
				best = i
			}
		}
		c[0], c[best] = c[best], c[0]
	}
	if s.TopK > 0 && s.TopK < len(c) {
		c = c[:s.TopK]
	}
	softmax := func(c []candidate, temp float32) {
		mx := float64(c[0].logit)
		var sum float64
		for i := range c {
			c[i].p = math.Exp((float64(c[i].logit) - mx) / float64(temp))
			sum += c[i].p
		}
		for i := range c {
			c[i].p /= sum
		}
	}
	if s.TopP > 0 && s.TopP < 1 {
		softmax(c, 1)
		var cum float64
		for i := range c {
			cum += c[i].p
			if cum >= float64(s.TopP) {
				c = c[:i+1]
				break
			}
		}
	}
	if s.MinP > 0 {
		softmax(c, 1)
		thr := float64(s.MinP) * c[0].p
		n := 1
		for n < len(c) && c[n].p >= thr {
			n++
		}
		c = c[:n]
	}
	softmax(c, s.Temperature)
	if s.rng == nil {
		s.rng = rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	}
	r := s.rng.Float64()
	var cum float64
	for _, x := range c {
		cum += x.p
		if r < cum {
			return x.id
		}
	}
	return c[len(c)-1].id
}
