package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// genParams are the generation settings common to every endpoint.
type genParams struct {
	MaxTokens int // <= 0: until the context is full
	Stop      []string
	Sampling  Sampling
	Logprobs  bool // record the log-probability of each generated token
}

// genResult describes a finished generation.
type genResult struct {
	PromptTokens     int
	ReusedTokens     int
	CompletionTokens int
	FinishReason     string // "stop" or "length"
	Tokens           []int32
	Logprobs         []float32 // per generated token, if asked
	Pieces           []string  // text of each generated token (logprobs only)
	PromptDur        time.Duration
	EvalDur          time.Duration
}

// generate runs one generation from prompt, calling emit with each piece of
// text that is final (complete UTF-8, not part of a possible stop string).
// It returns when the model ends its turn, a stop string appears, MaxTokens
// or the context length is reached, ctx is cancelled or emit fails.
func (s *Server) generate(ctx context.Context, lm *loadedModel, prompt []int32, p genParams, emit func(string) error) (genResult, error) {
	res := genResult{PromptTokens: len(prompt)}
	tok := lm.file.tok
	if len(prompt) == 0 {
		if tok.BOS() < 0 {
			return res, fmt.Errorf("empty prompt: %w", ErrBadRequest)
		}
		prompt = []int32{tok.BOS()}
		res.PromptTokens = 1
	}
	if len(prompt) >= lm.ctxLen {
		return res, fmt.Errorf("prompt of %d tokens does not fit the context length %d: %w", len(prompt), lm.ctxLen, ErrBadRequest)
	}
	maxNew := lm.ctxLen - len(prompt)
	if p.MaxTokens > 0 && p.MaxTokens < maxNew {
		maxNew = p.MaxTokens
	}

	release, err := s.acquire(ctx)
	if err != nil {
		return res, err
	}
	defer release()

	seq := make([]int32, len(prompt), len(prompt)+maxNew)
	copy(seq, prompt)
	start := time.Now()
	logits, reused, err := lm.cache.Eval(ctx, seq)
	res.ReusedTokens = reused
	res.PromptDur = time.Since(start)
	if err != nil {
		return res, s.engineErr("prompt", err)
	}
	sampler := lm.model.NewSampler(p.Sampling)
	dec := tok.NewStreamDecoder()
	st := stopper{stops: p.Stop}
	evalStart := time.Now()
	res.FinishReason = "length"
	for res.CompletionTokens < maxNew {
		next := sampler.Sample(logits, seq)
		if tok.IsEOG(next) {
			res.FinishReason = "stop"
			break
		}
		seq = append(seq, next)
		res.CompletionTokens++
		res.Tokens = append(res.Tokens, next)
		if p.Logprobs {
			res.Logprobs = append(res.Logprobs, logSoftmaxAt(logits, next))
			res.Pieces = append(res.Pieces, tok.Piece(next, false))
		}
		out, stopped := st.push(dec.Add(next))
		if out != "" {
			if err := emit(out); err != nil {
				return res, err
			}
		}
		if stopped {
			res.FinishReason = "stop"
			res.EvalDur = time.Since(evalStart)
			return res, nil
		}
		if res.CompletionTokens == maxNew {
			break
		}
		if logits, _, err = lm.cache.Eval(ctx, seq); err != nil {
			if errors.Is(err, ErrBadRequest) {
				// the sequence outgrew what the engine holds (KV memory
				// bound): end the generation as if max_tokens were reached
				s.log.Info("inferd: generation stopped by the engine", "err", err)
				break
			}
			return res, s.engineErr("generation", err)
		}
	}
	out, _ := st.push(dec.Flush())
	out += st.flush()
	if out != "" {
		if err := emit(out); err != nil {
			return res, err
		}
	}
	res.EvalDur = time.Since(evalStart)
	return res, nil
}

// engineErr keeps context errors recognisable and marks the rest.
func (s *Server) engineErr(stage string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %w", stage, err)
}

// logSoftmaxAt is log softmax(logits)[i], in float64.
func logSoftmaxAt(logits []float32, i int32) float32 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return float32(float64(logits[i]) - mx - math.Log(sum))
}

// stopper withholds text that might be the start of a stop string and
// cuts the output where one appears.
type stopper struct {
	stops []string
	held  string
}

// push adds text and returns what can be released, and whether a stop
// string was found (the text before it is released, the rest dropped).
func (st *stopper) push(text string) (string, bool) {
	if len(st.stops) == 0 {
		return text, false
	}
	buf := st.held + text
	cut := -1
	for _, s := range st.stops {
		if s == "" {
			continue
		}
		if i := strings.Index(buf, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		st.held = ""
		return buf[:cut], true
	}
	keep := 0
	for _, s := range st.stops {
		for k := min(len(s)-1, len(buf)); k > keep; k-- {
			if strings.HasSuffix(buf, s[:k]) {
				keep = k
				break
			}
		}
	}
	st.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// flush releases the withheld text at the end of a generation.
func (st *stopper) flush() string {
	out := st.held
	st.held = ""
	return out
}
