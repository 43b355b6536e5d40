package api

import (
	"fmt"
	"net/http"
	"strconv"
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

// handleTokenize: POST /hypha/tokenize {"model", "prompt"} or {"model",
// "messages"} returns the token ids exactly as a completion or chat request
// would see them, and their chunk hashes.
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string      `json:"model"`
		Prompt   *string     `json:"prompt"`
		Messages []oaMessage `json:"messages"`
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		s.ollamaError(w, err)
		return
	}
	if (req.Prompt == nil) == (len(req.Messages) == 0) {
		s.ollamaError(w, fmt.Errorf("give exactly one of prompt and messages: %w", ErrBadRequest))
		return
	}
	mf, lm, release, err := s.reg.load(req.Model)
	if err != nil {
		s.ollamaError(w, err)
		return
	}
	defer release()
	var ids []int32
	if req.Prompt != nil {
		ids = s.encodePrompt(lm, *req.Prompt)
	} else {
		msgs := make([]chat.Message, len(req.Messages))
		for i, m := range req.Messages {
			msgs[i] = chat.Message{Role: m.Role, Content: string(m.Content)}
		}
		if ids, _, err = s.chatPrompt(lm, msgs); err != nil {
			s.ollamaError(w, err)
			return
		}
	}
	resp := map[string]any{"model": mf.Name, "tokens": ids}
	if h, ok := lm.model.(Hasher); ok {
		resp["chunk_tokens"] = h.ChunkTokens()
		resp["chunk_hashes"] = hexHashes(h.ChunkHashes(ids))
	}
	writeJSON(w, http.StatusOK, resp)
}
