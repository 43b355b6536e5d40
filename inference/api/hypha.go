package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/univrs/hypha/inference/chat"
)

// Hasher is optionally implemented by a Model whose cache state is keyed
// by chunk hashes of token prefixes; /hypha/tokenize then returns the
// prompt's hashes so a router can match them against /hypha/cache.
type Hasher interface {
	ChunkTokens() int
	ChunkHashes(tokens []int32) []uint64
}

func hexHashes(hs []uint64) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = fmt.Sprintf("%016x", h)
	}
	return out
}

// handleHyphaModels lists every *.gguf file, servable or not, with the
// reason a file cannot be served.
func (s *Server) handleHyphaModels(w http.ResponseWriter, r *http.Request) {
	ok, bad, dirErr := s.reg.list()
	type entry struct {
		Name          string    `json:"name"`
		File          string    `json:"file"`
		Size          int64     `json:"size"`
		ModifiedAt    time.Time `json:"modified_at"`
		OK            bool      `json:"ok"`
		Error         string    `json:"error,omitempty"`
		Arch          string    `json:"arch,omitempty"`
		Quantization  string    `json:"quantization,omitempty"`
		ContextLength int       `json:"context_length,omitempty"`
		ChatTemplate  string    `json:"chat_template,omitempty"` // "model", "chatml-fallback" or the error
		Loaded        bool      `json:"loaded"`
	}
	loaded := map[*modelFile]bool{}
	for _, lm := range s.reg.loadedList() {
		loaded[lm.file] = true
	}
	out := struct {
		Dir      string  `json:"dir"`
		DirError string  `json:"dir_error,omitempty"`
		Models   []entry `json:"models"`
	}{Dir: s.cfg.ModelsDir, Models: []entry{}}
	if dirErr != nil {
		out.DirError = dirErr.Error()
	}
	for _, mf := range ok {
		tmpl := "model"
		switch {
		case mf.tmplErr != nil:
			tmpl = mf.tmplErr.Error()
		case mf.fallback:
			tmpl = "chatml-fallback"
		}
		out.Models = append(out.Models, entry{Name: mf.Name, File: mf.Path, Size: mf.Size, ModifiedAt: mf.ModTime, OK: true,
			Arch: mf.Arch, Quantization: mf.FileType, ContextLength: mf.ContextLength, ChatTemplate: tmpl, Loaded: loaded[mf]})
	}
	for _, mf := range bad {
		out.Models = append(out.Models, entry{Name: mf.Name, File: mf.Path, Size: mf.Size, ModifiedAt: mf.ModTime, Error: mf.Err.Error()})
	}
	writeJSON(w, http.StatusOK, out)
}

// handleCacheState: GET /hypha/cache?model=NAME&since=VERSION returns the
// chunk hashes held in the model's KV cache, as changes since VERSION when
// the server still knows them ("full": false), else the whole set. A model
// that is not loaded holds nothing.
func (s *Server) handleCacheState(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("since %q: not a version number", v)})
			return
		}
		since = n
	}
	mf, err := s.reg.find(q.Get("model"))
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	resp := map[string]any{"model": mf.Name, "loaded": false, "version": 0, "full": true,
		"added": []string{}, "removed": []string{}}
	for _, lm := range s.reg.loadedList() {
		if lm.file != mf {
			continue
		}
		st := lm.cache.State(since)
		resp["loaded"] = true
		resp["version"] = st.Version
		resp["full"] = st.Full
		resp["added"] = hexHashes(st.Added)
		resp["removed"] = hexHashes(st.Removed)
		if h, ok := lm.model.(Hasher); ok {
			resp["chunk_tokens"] = h.ChunkTokens()
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// promptRequest is the prompt part of the /hypha requests: a model and
// exactly one of a raw prompt and chat messages.
type promptRequest struct {
	Model    string      `json:"model"`
	Prompt   *string     `json:"prompt"`
	Messages []oaMessage `json:"messages"`
}

func (p *promptRequest) check() error {
	if (p.Prompt == nil) == (len(p.Messages) == 0) {
		return fmt.Errorf("give exactly one of prompt and messages: %w", ErrBadRequest)
	}
	return nil
}

// handleTokenize: POST /hypha/tokenize {"model", "prompt"} or {"model",
// "messages"} returns the token ids exactly as a completion or chat request
// would see them, and their chunk hashes.
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req promptRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.ollamaError(w, err)
		return
	}
	if err := req.check(); err != nil {
		s.ollamaError(w, err)
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	defer release()
	ids, err := s.promptIDs(lm, req.Prompt, req.Messages)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	resp := map[string]any{"model": mf.Name, "tokens": ids}
	if h, ok := lm.model.(Hasher); ok {
		resp["chunk_tokens"] = h.ChunkTokens()
		resp["chunk_hashes"] = hexHashes(h.ChunkHashes(ids))
	}
	writeJSON(w, http.StatusOK, resp)
}

// promptIDs tokenizes a prompt (exactly one of prompt and messages) as a
// completion or chat request would see it.
func (s *Server) promptIDs(lm *loadedModel, prompt *string, messages []oaMessage) ([]int32, error) {
	if prompt != nil {
		return s.encodePrompt(lm, *prompt), nil
	}
	msgs := make([]chat.Message, len(messages))
	for i, m := range messages {
		msgs[i] = chat.Message{Role: m.Role, Content: string(m.Content)}
	}
	ids, _, err := s.chatPrompt(lm, msgs)
	return ids, err
}

// BestScorer is optionally implemented by a Cache that can score the
// positions from on of tokens in one pass: lp[i] = log P(tokens[i] |
// tokens[:i]) and best[i] = max_v log P(v | tokens[:i]) for i >= from (0
// before), reusing any cached prefix of tokens[:from]. /hypha/score needs
// it; Builtin's caches implement it.
type BestScorer interface {
	// ScoreGreedyFrom also returns the most likely token at each scored
	// position (greedy[i]).
	ScoreGreedyFrom(ctx context.Context, tokens []int32, from int) (lp, best []float32, greedy []int32, err error)
}

func (b builtinCache) ScoreGreedyFrom(ctx context.Context, tokens []int32, from int) ([]float32, []float32, []int32, error) {
	lp, best, greedy, err := b.c.ScoreGreedyFrom(ctx, tokens, from)
	return lp, best, greedy, requestErr(err)
}

// handleScore: POST /hypha/score {"model", "prompt" or "messages",
// "response"} scores a response under the model, teacher-forced, in one
// forward pass (the prompt's cached prefix reused, its positions without
// the output projection): the prompt is rendered and tokenized exactly as for
// generation (chat template, BOS), the response text is tokenized as plain
// text (no BOS, no special tokens) and appended. The answer covers the
// response tokens only: each one's log-probability, the log-probability of
// the model's own most likely token at the same position, their means and
// the perplexity exp(-mean_logprob). A response the model would have
// produced greedily has mean_logprob == mean_best_logprob.
func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	var req struct {
		promptRequest
		Response *string `json:"response"`
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		s.ollamaError(w, err)
		return
	}
	if err := req.check(); err != nil {
		s.ollamaError(w, err)
		return
	}
	if req.Response == nil || *req.Response == "" {
		s.ollamaError(w, fmt.Errorf("response: missing or empty, nothing to score: %w", ErrBadRequest))
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	defer release()
	bs, ok := lm.cache.(BestScorer)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": fmt.Sprintf("model %s: this engine cannot score responses", mf.Name)})
		return
	}
	tok := mf.tok
	prompt, err := s.promptIDs(lm, req.Prompt, req.Messages)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	if len(prompt) == 0 {
		if tok.BOS() < 0 {
			s.ollamaError(w, fmt.Errorf("prompt: empty and the model has no BOS token to start from: %w", ErrBadRequest))
			return
		}
		prompt = []int32{tok.BOS()} // as generation does
	}
	resp := tok.Encode(*req.Response, false, false)
	if len(resp) == 0 {
		s.ollamaError(w, fmt.Errorf("response: %d bytes give no tokens: %w", len(*req.Response), ErrBadRequest))
		return
	}
	if n := len(prompt) + len(resp); n > lm.ctxLen {
		s.ollamaError(w, fmt.Errorf("prompt (%d tokens) and response (%d tokens) exceed the context length %d: %w",
			len(prompt), len(resp), lm.ctxLen, ErrBadRequest))
		return
	}
	all := make([]int32, 0, len(prompt)+len(resp))
	all = append(append(all, prompt...), resp...)
	turn, err := s.acquire(r.Context())
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	lp, best, greedy, err := bs.ScoreGreedyFrom(r.Context(), all, len(prompt))
	turn()
	if err != nil {
		s.ollamaError(w, s.engineErr("score", err))
		return
	}
	lp, best, greedy = lp[len(prompt):], best[len(prompt):], greedy[len(prompt):]
	var sumLP, sumBest, sumGap float64
	merged := 0
	for i := range lp {
		sumLP += float64(lp[i])
		sumBest += float64(best[i])
		if greedy[i] == resp[i] {
			continue
		}
		// The text was re-tokenized: a generator that emitted "\n" four
		// times reads back as one "\n\n\n\n" token. A token that starts
		// with the greedy choice's text is such a merge, not a departure.
		if g, t := tok.Piece(greedy[i], false), tok.Piece(resp[i], false); g != "" && len(g) < len(t) && strings.HasPrefix(t, g) {
			merged++
			continue
		}
		sumGap += float64(best[i] - lp[i])
	}
	n := float64(len(lp))
	ppl := math.Exp(-sumLP / n)
	if math.IsInf(ppl, 0) {
		ppl = math.MaxFloat64 // JSON has no infinity
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model": mf.Name, "prompt_tokens": len(prompt), "tokens": resp,
		"logprobs": lp, "best_logprobs": best,
		"mean_logprob": sumLP / n, "mean_best_logprob": sumBest / n,
		"perplexity": ppl,
		// credit: exp(-mean gap to the greedy choice), merges forgiven; 1
		// when the text is what this model would have said.
		"credit": math.Exp(-sumGap / n), "merged_tokens": merged, "greedy": greedy,
	})
}
