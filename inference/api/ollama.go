package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/univrs/hypha/inference/chat"
)

// ---- request types (decoders of untrusted JSON; see FuzzDecode*) ----

// ollamaOptions are the runtime options of an Ollama request.
type ollamaOptions struct {
	Temperature   *float64   `json:"temperature"`
	TopK          *int       `json:"top_k"`
	TopP          *float64   `json:"top_p"`
	MinP          *float64   `json:"min_p"`
	RepeatPenalty *float64   `json:"repeat_penalty"`
	RepeatLastN   *int       `json:"repeat_last_n"`
	Seed          *int64     `json:"seed"`
	NumPredict    *int       `json:"num_predict"`
	Stop          stringList `json:"stop"`
}

type ollamaMessage struct {
	Role      string            `json:"role"`
	Content   string            `json:"content"`
	Images    []json.RawMessage `json:"images,omitempty"`
	ToolCalls []json.RawMessage `json:"tool_calls,omitempty"`
}

type ollamaChatRequest struct {
	Model    string          `json:"model"`
	Messages []ollamaMessage `json:"messages"`
	Stream   *bool           `json:"stream"`
	Format   json.RawMessage `json:"format"`
	Options  *ollamaOptions  `json:"options"`
	Tools    json.RawMessage `json:"tools"`
}

type ollamaGenerateRequest struct {
	Model    string            `json:"model"`
	Prompt   string            `json:"prompt"`
	Suffix   string            `json:"suffix"`
	System   string            `json:"system"`
	Template string            `json:"template"`
	Context  []int32           `json:"context"`
	Stream   *bool             `json:"stream"`
	Raw      bool              `json:"raw"`
	Format   json.RawMessage   `json:"format"`
	Images   []json.RawMessage `json:"images"`
	Options  *ollamaOptions    `json:"options"`
}

// params turns Ollama options into generation settings with Ollama's
// defaults (temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1 over
// the last 64 tokens, random seed, no token limit).
func (o *ollamaOptions) params() (genParams, error) {
	p := genParams{Sampling: Sampling{Temperature: 0.8, TopK: 40, TopP: 0.9, RepeatPenalty: 1.1, RepeatLastN: 64, Seed: rand.Uint64()}}
	if o == nil {
		return p, nil
	}
	if o.Temperature != nil {
		if *o.Temperature < 0 {
			return p, fmt.Errorf("options.temperature %v: must not be negative: %w", *o.Temperature, ErrBadRequest)
		}
		p.Sampling.Temperature = float32(*o.Temperature)
	}
	if o.TopK != nil {
		p.Sampling.TopK = *o.TopK
	}
	if o.TopP != nil {
		p.Sampling.TopP = float32(*o.TopP)
	}
	if o.MinP != nil {
		p.Sampling.MinP = float32(*o.MinP)
	}
	if o.RepeatPenalty != nil {
		p.Sampling.RepeatPenalty = float32(*o.RepeatPenalty)
	}
	if o.RepeatLastN != nil {
		p.Sampling.RepeatLastN = *o.RepeatLastN
	}
	if o.Seed != nil && *o.Seed >= 0 {
		p.Sampling.Seed = uint64(*o.Seed)
	}
	if o.NumPredict != nil && *o.NumPredict > 0 {
		p.MaxTokens = *o.NumPredict
	}
	p.Stop = o.Stop
	return p, nil
}

func checkFormat(format json.RawMessage) error {
	f := string(bytes.TrimSpace(format))
	if f == "" || f == "null" || f == `""` {
		return nil
	}
	return fmt.Errorf("format: structured output is not supported: %w", ErrBadRequest)
}

func decodeOllamaChat(body []byte) (*ollamaChatRequest, genParams, error) {
	var req ollamaChatRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, genParams{}, err
	}
	for i, m := range req.Messages {
		switch strings.ToLower(m.Role) {
		case "system", "user", "assistant", "tool":
		default:
			return nil, genParams{}, fmt.Errorf("messages[%d].role %q: not one of system, user, assistant, tool: %w", i, m.Role, ErrBadRequest)
		}
		if len(m.Images) > 0 {
			return nil, genParams{}, fmt.Errorf("messages[%d].images: images are not supported: %w", i, ErrBadRequest)
		}
	}
	if t := string(bytes.TrimSpace(req.Tools)); t != "" && t != "null" && t != "[]" {
		return nil, genParams{}, fmt.Errorf("tools: tool calling is not supported: %w", ErrBadRequest)
	}
	if err := checkFormat(req.Format); err != nil {
		return nil, genParams{}, err
	}
	p, err := req.Options.params()
	return &req, p, err
}

func decodeOllamaGenerate(body []byte) (*ollamaGenerateRequest, genParams, error) {
	var req ollamaGenerateRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, genParams{}, err
	}
	if len(req.Images) > 0 {
		return nil, genParams{}, fmt.Errorf("images: not supported: %w", ErrBadRequest)
	}
	if req.Template != "" {
		return nil, genParams{}, fmt.Errorf("template: Go templates are not supported (the model's Jinja template is used): %w", ErrBadRequest)
	}
	if req.Suffix != "" {
		return nil, genParams{}, fmt.Errorf("suffix: fill-in-the-middle is not supported: %w", ErrBadRequest)
	}
	if err := checkFormat(req.Format); err != nil {
		return nil, genParams{}, err
	}
	p, err := req.Options.params()
	return &req, p, err
}

// ---- handlers ----

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("Ollama is running"))
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.cfg.Version})
}

func details(mf *modelFile) map[string]any {
	size := ""
	if v, ok := mf.meta["general.size_label"].(string); ok {
		size = v
	} else if mf.ParamCount > 0 {
		size = humanCount(mf.ParamCount)
	}
	return map[string]any{"parent_model": "", "format": "gguf", "family": mf.Arch, "families": []string{mf.Arch},
		"parameter_size": size, "quantization_level": mf.FileType}
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	}
	return fmt.Sprint(n)
}

func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) {
	ok, _, _ := s.reg.list()
	models := make([]any, 0, len(ok))
	for _, mf := range ok {
		models = append(models, map[string]any{"name": mf.Name, "model": mf.Name, "modified_at": mf.ModTime,
			"size": mf.Size, "digest": mf.Digest, "details": details(mf)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

func (s *Server) handlePs(w http.ResponseWriter, r *http.Request) {
	models := []any{}
	for _, lm := range s.reg.loadedList() {
		mf := lm.file
		models = append(models, map[string]any{"name": mf.Name, "model": mf.Name, "size": mf.Size, "digest": mf.Digest,
			"details": details(mf), "expires_at": time.Now().Add(24 * time.Hour), "size_vram": 0, "context_length": lm.ctxLen})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

func (s *Server) handleShow(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		s.ollamaError(w, err)
		return
	}
	name := req.Model
	if name == "" {
		name = req.Name
	}
	if name == "" {
		s.ollamaError(w, fmt.Errorf("model: missing: %w", ErrBadRequest))
		return
	}
	mf, err := s.reg.find(name)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	info := map[string]any{}
	for k, v := range mf.meta {
		info[k] = v
	}
	if mf.ParamCount > 0 {
		info["general.parameter_count"] = mf.ParamCount
	}
	license, _ := mf.meta["general.license"].(string)
	writeJSON(w, http.StatusOK, map[string]any{"license": license, "modelfile": "# served by hypha inferd from " + mf.Path,
		"parameters": "", "template": mf.Template, "details": details(mf), "model_info": info,
		"capabilities": []string{"completion"}, "modified_at": mf.ModTime})
}

// ollamaMetrics are the timing fields of a final Ollama response.
func ollamaMetrics(m map[string]any, res genResult, start time.Time, load time.Duration) {
	m["total_duration"] = time.Since(start).Nanoseconds()
	m["load_duration"] = load.Nanoseconds()
	m["prompt_eval_count"] = res.PromptTokens
	m["prompt_eval_duration"] = res.PromptDur.Nanoseconds()
	m["eval_count"] = res.CompletionTokens
	m["eval_duration"] = res.EvalDur.Nanoseconds()
}

func (s *Server) handleOllamaChat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, p, err := readRequest(s, w, r, decodeOllamaChat)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	defer release()
	load := time.Since(start)
	obj := func(content string, done bool) map[string]any {
		return map[string]any{"model": mf.Name, "created_at": time.Now().UTC(),
			"message": map[string]any{"role": "assistant", "content": content}, "done": done}
	}
	if len(req.Messages) == 0 { // Ollama: an empty chat loads the model
		o := obj("", true)
		o["done_reason"] = "load"
		writeJSON(w, http.StatusOK, o)
		return
	}
	msgs := make([]chat.Message, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = chat.Message{Role: strings.ToLower(m.Role), Content: m.Content}
	}
	prompt, _, err := s.chatPrompt(lm, msgs)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	if req.Stream == nil || *req.Stream {
		sw := newStream(w, "application/x-ndjson")
		res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error {
			return sw.ndjson(obj(text, false))
		})
		if err != nil {
			s.streamFailed(w, sw, err, false)
			return
		}
		o := obj("", true)
		o["done_reason"] = res.FinishReason
		ollamaMetrics(o, res, start, load)
		_ = sw.ndjson(o)
		return
	}
	var sb strings.Builder
	res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error { sb.WriteString(text); return nil })
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	o := obj(sb.String(), true)
	o["done_reason"] = res.FinishReason
	ollamaMetrics(o, res, start, load)
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, p, err := readRequest(s, w, r, decodeOllamaGenerate)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	defer release()
	load := time.Since(start)
	obj := func(text string, done bool) map[string]any {
		return map[string]any{"model": mf.Name, "created_at": time.Now().UTC(), "response": text, "done": done}
	}
	if req.Prompt == "" && len(req.Context) == 0 { // Ollama: an empty prompt loads the model
		o := obj("", true)
		o["done_reason"] = "load"
		writeJSON(w, http.StatusOK, o)
		return
	}
	tok := mf.tok
	for i, id := range req.Context {
		if id < 0 || int(id) >= tok.NumTokens() {
			s.ollamaError(w, fmt.Errorf("context[%d]: token %d outside the vocabulary: %w", i, id, ErrBadRequest))
			return
		}
	}
	var ids []int32
	if req.Raw {
		ids = s.encodePrompt(lm, req.Prompt)
	} else {
		var msgs []chat.Message
		if req.System != "" {
			msgs = append(msgs, chat.Message{Role: "system", Content: req.System})
		}
		msgs = append(msgs, chat.Message{Role: "user", Content: req.Prompt})
		if ids, _, err = s.chatPrompt(lm, msgs); err != nil {
			s.ollamaError(w, err)
			return
		}
	}
	if len(req.Context) > 0 && len(ids) > 0 && tok.AddBOS() && ids[0] == tok.BOS() {
		ids = ids[1:]
	}
	prompt := append(append([]int32(nil), req.Context...), ids...)
	final := func(res genResult) map[string]any {
		o := obj("", true)
		o["done_reason"] = res.FinishReason
		ctxTokens := append(append([]int32(nil), prompt...), res.Tokens...)
		o["context"] = ctxTokens
		ollamaMetrics(o, res, start, load)
		return o
	}
	if req.Stream == nil || *req.Stream {
		sw := newStream(w, "application/x-ndjson")
		res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error {
			return sw.ndjson(obj(text, false))
		})
		if err != nil {
			s.streamFailed(w, sw, err, false)
			return
		}
		_ = sw.ndjson(final(res))
		return
	}
	var sb strings.Builder
	res, err := s.generate(r.Context(), lm, prompt, p, func(text string) error { sb.WriteString(text); return nil })
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	o := final(res)
	o["response"] = sb.String()
	writeJSON(w, http.StatusOK, o)
}
