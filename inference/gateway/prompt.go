package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/univrs/hypha/inference/chat"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/inference/tokenizer"
)

// prompter renders and tokenizes prompts exactly as inferd does for one
// model (inference/api: chatPrompt and encodePrompt).
type prompter struct {
	tok     *tokenizer.Tokenizer
	tmpl    *chat.Template
	tmplErr error
}

// loadPrompter reads the tokenizer and chat template of a GGUF file
// (metadata only).
func loadPrompter(path string) (p *prompter, err error) {
	defer func() { // a reader bug must not take the gateway down
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("reading %s: internal error: %v", path, r)
		}
	}()
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p = &prompter{}
	if p.tok, err = tokenizer.FromGGUF(f); err != nil {
		return nil, fmt.Errorf("%s: tokenizer: %w", path, err)
	}
	p.tmpl, _, p.tmplErr = chat.FromGGUF(f)
	return p, nil
}

func (p *prompter) encode(text string) []int32 {
	ids := p.tok.Encode(text, true, true)
	if len(ids) >= 2 && p.tok.AddBOS() && ids[0] == p.tok.BOS() && ids[1] == p.tok.BOS() {
		ids = ids[1:]
	}
	return ids
}

// tokens returns the prompt tokens of r as the serving inferd will see
// them.
func (p *prompter) tokens(r *inferReq) ([]int32, error) {
	var ids []int32
	switch {
	case r.Kind == kindCompletion && r.IDs != nil:
		return r.IDs, nil
	case r.Kind == kindCompletion || (r.Kind == kindOllamaGenerate && r.Messages == nil):
		ids = p.encode(r.Prompt)
	default:
		if p.tmplErr != nil {
			return nil, p.tmplErr
		}
		text, err := p.tmpl.Render(r.Messages, chat.Options{AddGenerationPrompt: true,
			BOSToken: p.tok.Token(p.tok.BOS()), EOSToken: p.tok.Token(p.tok.EOS())})
		if err != nil {
			return nil, err
		}
		ids = p.encode(text)
	}
	if r.Kind == kindOllamaGenerate && len(r.IDs) > 0 {
		if len(ids) > 0 && p.tok.AddBOS() && ids[0] == p.tok.BOS() {
			ids = ids[1:]
		}
		ids = append(append([]int32(nil), r.IDs...), ids...)
	}
	return ids, nil
}

// prompters caches one prompter per model name, read from a models
// directory laid out as inferd's (NAME.gguf).
type prompters struct {
	dir string
	mu  sync.Mutex // guards m
	m   map[string]*prompterEntry
}

type prompterEntry struct {
	p       *prompter
	err     error
	modTime int64
}

// get returns the prompter of model, or an error when the directory has
// no usable file for it.
func (ps *prompters) get(model string) (*prompter, error) {
	if ps.dir == "" {
		return nil, errNoLocalModel
	}
	name := strings.TrimSuffix(strings.TrimSuffix(model, ":latest"), ".gguf")
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, errNoLocalModel
	}
	path := filepath.Join(ps.dir, name+".gguf")
	info, err := os.Stat(path)
	if err != nil {
		return nil, errNoLocalModel
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[string]*prompterEntry{}
	}
	if e := ps.m[name]; e != nil && e.modTime == info.ModTime().UnixNano() {
		return e.p, e.err
	}
	p, err := loadPrompter(path)
	ps.m[name] = &prompterEntry{p: p, err: err, modTime: info.ModTime().UnixNano()}
	return p, err
}

var errNoLocalModel = errors.New("model file not in the local models directory")

// textHashes keys a request without a tokenizer: the chained chunk hashes
// of its rendered text bytes, each byte standing for a token. They match
// only each other (recorded prefixes of external engines), never an
// engine's reported cache state.
func textHashes(r *inferReq) []uint64 {
	var sb strings.Builder
	for _, m := range r.Messages {
		sb.WriteString(m.Role)
		sb.WriteByte(0)
		sb.WriteString(m.Content)
		sb.WriteByte(0)
	}
	sb.WriteString(r.Prompt)
	s := sb.String()
	ids := make([]int32, len(s))
	for i := 0; i < len(s); i++ {
		ids[i] = int32(s[i])
	}
	return route.ChunkHashes(ids)
}
