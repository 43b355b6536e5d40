package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/univrs/hypha/inference/chat"
)

// ---- request types (decoders of untrusted JSON; see FuzzDecode*) ----

// textContent is an OpenAI message content: a string, null, or an array
// of parts of which only text parts are accepted.
type textContent string

func (c *textContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*c = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = textContent(s)
		return nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for i, p := range parts {
		if (p.Type != "text" && p.Type != "input_text") || p.Text == nil {
			return fmt.Errorf("content part %d: type %q is not supported (text only)", i, p.Type)
		}
		sb.WriteString(*p.Text)
	}
	*c = textContent(sb.String())
	return nil
}

// stringList is a string, an array of strings, or null.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*l = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = stringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return fmt.Errorf("must be a string or an array of strings")
	}
	*l = ss
	return nil
}

// promptValue is a completions prompt: a string, [string], token ids, or
// [[token ids]] (one prompt only).
type promptValue struct {
	Text   string
	Tokens []int32
	IsIDs  bool
}

func (p *promptValue) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		p.Text = s
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err == nil {
		if len(ss) != 1 {
			return fmt.Errorf("exactly one prompt is supported, got %d", len(ss))
		}
		p.Text = ss[0]
		return nil
	}
	var ids []int32
	if err := json.Unmarshal(b, &ids); err == nil {
		p.Tokens, p.IsIDs = ids, true
		return nil
	}
	var idss [][]int32
	if err := json.Unmarshal(b, &idss); err == nil {
		if len(idss) != 1 {
			return fmt.Errorf("exactly one prompt is supported, got %d", len(idss))
		}
		p.Tokens, p.IsIDs = idss[0], true
		return nil
	}
	return fmt.Errorf("prompt must be a string, [string], an array of token ids or [[token ids]]")
}

type oaMessage struct {
	Role    string      `json:"role"`
	Content textContent `json:"content"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// oaSampling are the sampling fields shared by both OpenAI requests
// (top_k, min_p, repeat_penalty are llama-server extensions).
type oaSampling struct {
	Temperature   *float64 `json:"temperature"`
	TopP          *float64 `json:"top_p"`
	TopK          *int     `json:"top_k"`
	MinP          *float64 `json:"min_p"`
	RepeatPenalty *float64 `json:"repeat_penalty"`
	Seed          *int64   `json:"seed"`
	N             *int     `json:"n"`
}

func (o oaSampling) sampling() (Sampling, error) {
	sp := Sampling{Temperature: 1, Seed: rand.Uint64()}
	if o.N != nil && *o.N != 1 {
		return sp, fmt.Errorf("n=%d: only n=1 is supported: %w", *o.N, ErrBadRequest)
	}
	if o.Temperature != nil {
		if *o.Temperature < 0 || *o.Temperature > 2 {
			return sp, fmt.Errorf("temperature %v: must be in [0, 2]: %w", *o.Temperature, ErrBadRequest)
		}
		sp.Temperature = float32(*o.Temperature)
	}
	if o.TopP != nil {
		if *o.TopP < 0 || *o.TopP > 1 {
			return sp, fmt.Errorf("top_p %v: must be in [0, 1]: %w", *o.TopP, ErrBadRequest)
		}
		sp.TopP = float32(*o.TopP)
	}
	if o.TopK != nil {
		sp.TopK = *o.TopK
	}
	if o.MinP != nil {
		sp.MinP = float32(*o.MinP)
	}
	if o.RepeatPenalty != nil {
		sp.RepeatPenalty = float32(*o.RepeatPenalty)
	}
	if o.Seed != nil {
		sp.Seed = uint64(*o.Seed)
	}
	return sp, nil
}

type chatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []oaMessage     `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stop                stringList      `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Logprobs            bool            `json:"logprobs"`
	Tools               json.RawMessage `json:"tools"`
	oaSampling
}

type completionRequest struct {
	Model         string         `json:"model"`
	Prompt        promptValue    `json:"prompt"`
	MaxTokens     *int           `json:"max_tokens"`
	Stop          stringList     `json:"stop"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	Echo          bool           `json:"echo"`
	Logprobs      *int           `json:"logprobs"`
	oaSampling
}

// decodeChatCompletion parses and validates a /v1/chat/completions body.
func decodeChatCompletion(body []byte) (*chatCompletionRequest, genParams, error) {
	var req chatCompletionRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, genParams{}, err
	}
	if len(req.Messages) == 0 {
		return nil, genParams{}, fmt.Errorf("messages: empty: %w", ErrBadRequest)
	}
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return nil, genParams{}, fmt.Errorf("messages[%d].role %q: not one of system, user, assistant, tool: %w", i, m.Role, ErrBadRequest)
		}
	}
	if len(bytes.TrimSpace(req.Tools)) > 0 && string(bytes.TrimSpace(req.Tools)) != "null" && string(bytes.TrimSpace(req.Tools)) != "[]" {
		return nil, genParams{}, fmt.Errorf("tools: tool calling is not supported: %w", ErrBadRequest)
	}
	sp, err := req.sampling()
	if err != nil {
		return nil, genParams{}, err
	}
	p := genParams{Stop: req.Stop, Sampling: sp, Logprobs: req.Logprobs}
	if req.MaxTokens != nil {
		p.MaxTokens = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil {
		p.MaxTokens = *req.MaxCompletionTokens
	}
	if p.MaxTokens < 0 {
		return nil, genParams{}, fmt.Errorf("max_tokens %d: must not be negative: %w", p.MaxTokens, ErrBadRequest)
	}
	if len(p.Stop) > 4 {
		return nil, genParams{}, fmt.Errorf("stop: at most 4 sequences: %w", ErrBadRequest)
	}
	return &req, p, nil
}

// decodeCompletion parses and validates a /v1/completions body.
func decodeCompletion(body []byte) (*completionRequest, genParams, error) {
	var req completionRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, genParams{}, err
	}
	sp, err := req.sampling()
	if err != nil {
		return nil, genParams{}, err
	}
	p := genParams{Stop: req.Stop, Sampling: sp, MaxTokens: 16} // OpenAI's default
	if req.MaxTokens != nil {
		p.MaxTokens = *req.MaxTokens
	}
	if p.MaxTokens < 0 {
		return nil, genParams{}, fmt.Errorf("max_tokens %d: must not be negative: %w", p.MaxTokens, ErrBadRequest)
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > 5 {
			return nil, genParams{}, fmt.Errorf("logprobs %d: must be in [0, 5]: %w", *req.Logprobs, ErrBadRequest)
		}
		p.Logprobs = true
	}
	if req.Echo && req.Logprobs != nil && req.Stream {
		return nil, genParams{}, fmt.Errorf("echo with logprobs (scoring) cannot stream: %w", ErrBadRequest)
	}
	if len(p.Stop) > 4 {
		return nil, genParams{}, fmt.Errorf("stop: at most 4 sequences: %w", ErrBadRequest)
	}
	return &req, p, nil
}

// ---- handlers ----

type oaUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(r genResult) *oaUsage {
	return &oaUsage{r.PromptTokens, r.CompletionTokens, r.PromptTokens + r.CompletionTokens}
}

// readRequest reads a request body and decodes it with decode.
func readRequest[T any](s *Server, w http.ResponseWriter, r *http.Request, decode func([]byte) (T, genParams, error)) (T, genParams, error) {
	body, err := s.readBody(w, r)
	if err != nil {
		var zero T
		return zero, genParams{}, err
	}
	return decode(body)
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var raw json.RawMessage
	if err := s.decodeBody(w, r, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// chatPrompt renders msgs with the model's template and tokenizes them.
func (s *Server) chatPrompt(lm *loadedModel, msgs []chat.Message) ([]int32, string, error) {
	mf := lm.file
	if mf.tmplErr != nil {
		return nil, "", fmt.Errorf("model %s: %w", mf.Name, mf.tmplErr)
	}
	tok := mf.tok
	text, err := mf.tmpl.Render(msgs, chat.Options{
		AddGenerationPrompt: true,
		BOSToken:            tok.Token(tok.BOS()),
		EOSToken:            tok.Token(tok.EOS()),
	})
	if err != nil {
		if errors.Is(err, chat.ErrRender) {
			return nil, "", fmt.Errorf("%w: %w", err, ErrBadRequest)
		}
		return nil, "", err
	}
	return s.encodePrompt(lm, text), text, nil
}

// encodePrompt tokenizes a prompt with the model's BOS convention, parsing
// special-token text, without doubling a BOS the text already carries.
func (s *Server) encodePrompt(lm *loadedModel, text string) []int32 {
	tok := lm.file.tok
	ids := tok.Encode(text, true, true)
	if len(ids) >= 2 && tok.AddBOS() && ids[0] == tok.BOS() && ids[1] == tok.BOS() {
		ids = ids[1:]
	}
	return ids
}

func (s *Server) handleChatCompletions(w http.ResponseWriter, r *http.Request) {
	req, p, err := readRequest(s, w, r, decodeChatCompletion)
	if err != nil {
		s.openAIError(w, err)
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.openAIError(w, err)
		return
	}
	defer release()
	msgs := make([]chat.Message, len(req.Messages))
	for i, m := range req.Messages {
		role := m.Role
		if role == "developer" {
			role = "system"
		}
		msgs[i] = chat.Message{Role: role, Content: string(m.Content)}
	}
	prompt, _, err := s.chatPrompt(lm, msgs)
	if err != nil {
		s.openAIError(w, err)
		return
	}
	id, created := newID("chatcmpl-"), time.Now().Unix()
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": mf.Name,
			"system_fingerprint": "hypha",
			"choices":            []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}}
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			c["usage"] = nil
		}
		return c
	}
	if req.Stream {
		sw := newStream(w, "text/event-stream")
		first := true
		res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error {
			delta := map[string]any{"content": text}
			if first {
				delta["role"] = "assistant"
				first = false
			}
			return sw.sse(chunk(delta, nil))
		})
		if err != nil {
			s.streamFailed(w, sw, err, true)
			return
		}
		if first {
			_ = sw.sse(chunk(map[string]any{"role": "assistant", "content": ""}, nil))
		}
		_ = sw.sse(chunk(map[string]any{}, res.FinishReason))
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			_ = sw.sse(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": mf.Name,
				"choices": []any{}, "usage": usageOf(res)})
		}
		_ = sw.raw([]byte("data: [DONE]\n\n"))
		return
	}
	var sb strings.Builder
	res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error {
		sb.WriteString(text)
		return nil
	})
	if err != nil {
		s.openAIError(w, err)
		return
	}
	var lp any
	if p.Logprobs {
		content := make([]map[string]any, len(res.Logprobs))
		for i, l := range res.Logprobs {
			content[i] = map[string]any{"token": res.Pieces[i], "logprob": l, "bytes": []byte(res.Pieces[i]), "top_logprobs": []any{}}
		}
		lp = map[string]any{"content": content}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "object": "chat.completion", "created": created, "model": mf.Name, "system_fingerprint": "hypha",
		"choices": []any{map[string]any{"index": 0, "finish_reason": res.FinishReason, "logprobs": lp,
			"message": map[string]any{"role": "assistant", "content": sb.String()}}},
		"usage": usageOf(res),
	})
}

// streamFailed reports an error: as an HTTP error if nothing was sent yet,
// else as a final event. A cancelled client gets nothing.
func (s *Server) streamFailed(w http.ResponseWriter, sw *streamWriter, err error, openai bool) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		s.log.Debug("inferd: client went away", "err", err)
		return
	}
	if !sw.started {
		if openai {
			s.openAIError(w, err)
		} else {
			s.ollamaError(w, err)
		}
		return
	}
	s.log.Warn("inferd: stream failed", "err", err)
	if openai {
		_ = sw.sse(map[string]any{"error": map[string]any{"message": err.Error(), "type": "server_error"}})
	} else {
		_ = sw.ndjson(map[string]string{"error": err.Error()})
	}
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	req, p, err := readRequest(s, w, r, decodeCompletion)
	if err != nil {
		s.openAIError(w, err)
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.openAIError(w, err)
		return
	}
	defer release()
	tok := mf.tok
	var prompt []int32
	addedBOS := false
	if req.Prompt.IsIDs {
		for i, id := range req.Prompt.Tokens {
			if id < 0 || int(id) >= tok.NumTokens() {
				s.openAIError(w, fmt.Errorf("prompt[%d]: token %d outside the vocabulary of %d: %w", i, id, tok.NumTokens(), ErrBadRequest))
				return
			}
		}
		prompt = req.Prompt.Tokens
	} else {
		prompt = s.encodePrompt(lm, req.Prompt.Text)
		addedBOS = tok.AddBOS() && len(prompt) > 0 && prompt[0] == tok.BOS() && !strings.HasPrefix(req.Prompt.Text, tok.Token(tok.BOS()))
	}
	id, created := newID("cmpl-"), time.Now().Unix()

	if req.Echo && req.Logprobs != nil {
		s.score(w, r, lm, req, p, prompt, addedBOS, id, created)
		return
	}

	choice := func(text string, finish any, lp any) map[string]any {
		return map[string]any{"text": text, "index": 0, "logprobs": lp, "finish_reason": finish}
	}
	echo := ""
	if req.Echo {
		echo = req.Prompt.Text
		if req.Prompt.IsIDs {
			echo = tok.Decode(prompt, true)
		}
	}
	if req.Stream {
		sw := newStream(w, "text/event-stream")
		obj := func(choices []any) map[string]any {
			c := map[string]any{"id": id, "object": "text_completion", "created": created, "model": mf.Name, "choices": choices}
			if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
				c["usage"] = nil
			}
			return c
		}
		pending := echo
		res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error {
			text, pending = pending+text, ""
			return sw.sse(obj([]any{choice(text, nil, nil)}))
		})
		if err != nil {
			s.streamFailed(w, sw, err, true)
			return
		}
		_ = sw.sse(obj([]any{choice(pending, res.FinishReason, nil)}))
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			_ = sw.sse(map[string]any{"id": id, "object": "text_completion", "created": created, "model": mf.Name,
				"choices": []any{}, "usage": usageOf(res)})
		}
		_ = sw.raw([]byte("data: [DONE]\n\n"))
		return
	}
	var sb strings.Builder
	res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error {
		sb.WriteString(text)
		return nil
	})
	if err != nil {
		s.openAIError(w, err)
		return
	}
	var lp any
	if p.Logprobs {
		lp = legacyLogprobs(res.Pieces, res.Tokens, res.Logprobs, nil, len(echo))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "object": "text_completion", "created": created, "model": mf.Name,
		"choices": []any{choice(echo+sb.String(), res.FinishReason, lp)},
		"usage":   usageOf(res),
	})
}

// legacyLogprobs builds the OpenAI-legacy logprobs object. nulls marks the
// positions whose log-probability is unknown (the first token).
func legacyLogprobs(pieces []string, ids []int32, lps []float32, nulls map[int]bool, offset int) map[string]any {
	tlp := make([]any, len(lps))
	offs := make([]int, len(pieces))
	for i := range lps {
		if nulls[i] {
			tlp[i] = nil
		} else {
			tlp[i] = lps[i]
		}
		offs[i] = offset
		offset += len(pieces[i])
	}
	return map[string]any{"tokens": pieces, "token_logprobs": tlp, "top_logprobs": nil, "text_offset": offs, "token_ids": ids}
}

// score answers echo+logprobs: the log-probability of every prompt token
// in one forward pass, then (max_tokens > 0) a continuation.
func (s *Server) score(w http.ResponseWriter, r *http.Request, lm *loadedModel, req *completionRequest, p genParams, prompt []int32, addedBOS bool, id string, created int64) {
	tok := lm.file.tok
	if len(prompt) == 0 {
		s.openAIError(w, fmt.Errorf("prompt: empty: %w", ErrBadRequest))
		return
	}
	if len(prompt) > lm.ctxLen {
		s.openAIError(w, fmt.Errorf("prompt of %d tokens exceeds the context length %d: %w", len(prompt), lm.ctxLen, ErrBadRequest))
		return
	}
	release, err := s.acquire(r.Context())
	if err != nil {
		s.openAIError(w, err)
		return
	}
	lps, err := lm.cache.Score(r.Context(), prompt)
	release()
	if err != nil {
		s.openAIError(w, s.engineErr("score", err))
		return
	}
	first := 0
	if addedBOS {
		first = 1 // the BOS we added is context, not text
	}
	ids := append([]int32(nil), prompt[first:]...)
	pieces := make([]string, len(ids))
	for i, t := range ids {
		pieces[i] = tok.Piece(t, true)
	}
	lpv := append([]float32(nil), lps[first:]...)
	nulls := map[int]bool{}
	if first == 0 {
		nulls[0] = true
	}
	text := req.Prompt.Text
	if req.Prompt.IsIDs {
		text = strings.Join(pieces, "")
	}
	res := genResult{PromptTokens: len(prompt), FinishReason: "length"}
	if p.MaxTokens > 0 {
		var sb strings.Builder
		gen, err := s.generate(r.Context(), lm, prompt, p, func(t string) error { sb.WriteString(t); return nil })
		if err != nil {
			s.openAIError(w, err)
			return
		}
		res = gen
		text += sb.String()
		ids = append(ids, gen.Tokens...)
		pieces = append(pieces, gen.Pieces...)
		lpv = append(lpv, gen.Logprobs...)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "object": "text_completion", "created": created, "model": lm.file.Name,
		"choices": []any{map[string]any{"text": text, "index": 0, "finish_reason": res.FinishReason,
			"logprobs": legacyLogprobs(pieces, ids, lpv, nulls, 0)}},
		"usage": usageOf(res),
	})
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	ok, _, _ := s.reg.list()
	data := make([]any, 0, len(ok))
	for _, mf := range ok {
		data = append(data, oaModel(mf))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func oaModel(mf *modelFile) map[string]any {
	return map[string]any{"id": mf.Name, "object": "model", "created": mf.ModTime.Unix(), "owned_by": "hypha"}
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	mf, err := s.reg.find(r.PathValue("id"))
	if err != nil || r.PathValue("id") == "" {
		if err == nil {
			err = fmt.Errorf("model id missing: %w", ErrModelNotFound)
		}
		s.openAIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, oaModel(mf))
}
