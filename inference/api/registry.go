package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/univrs/hypha/inference/chat"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/tokenizer"
)

// minRescan is the least time between two scans of the models directory.
const minRescan = 2 * time.Second

// modelFile is one *.gguf file of the directory and what we know about it.
type modelFile struct {
	Name    string // file name without .gguf: the model's API name
	Path    string
	Size    int64
	ModTime time.Time
	Err     error // why it cannot be served; nil if it can

	// metadata summary (valid when Err == nil)
	Arch          string
	ContextLength int
	FileType      string // quantisation, e.g. "Q8_0"
	ParamCount    int64
	Digest        string // sha256 of path, size and mtime (not of the content)
	Template      string // chat template source ("" if none)
	meta          map[string]any

	tok      *tokenizer.Tokenizer
	tmpl     *chat.Template
	tmplErr  error
	fallback bool
	loadMu   sync.Mutex   // serialises loading
	loaded   *loadedModel // guarded by registry.mu
}

// loadedModel is a model in memory with its cache.
type loadedModel struct {
	file     *modelFile
	model    Model
	cache    Cache
	ctxLen   int
	loadDur  time.Duration
	lastUsed time.Time // guarded by registry.mu
	refs     int       // guarded by registry.mu
}

type registry struct {
	s        *Server
	mu       sync.Mutex // guards everything below
	files    map[string]*modelFile
	dirErr   error
	lastScan time.Time
	loaded   []*loadedModel
}

func newRegistry(s *Server) *registry {
	return &registry{s: s, files: map[string]*modelFile{}}
}

// scan refreshes the directory view (at most every minRescan unless force).
func (r *registry) scan(force bool) {
	r.mu.Lock()
	if !force && time.Since(r.lastScan) < minRescan {
		r.mu.Unlock()
		return
	}
	r.lastScan = time.Now()
	r.mu.Unlock()

	dir := r.s.cfg.ModelsDir
	var entries []fs.DirEntry
	var dirErr error
	if dir == "" {
		dirErr = errors.New("no models directory configured")
	} else if entries, dirErr = os.ReadDir(dir); dirErr != nil {
		dirErr = fmt.Errorf("models directory: %w", dirErr)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(strings.ToLower(e.Name()), ".gguf") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		seen[path] = true
		info, err := os.Stat(path) // follows symlinks
		if err != nil {
			continue
		}
		r.mu.Lock()
		old := r.files[path]
		r.mu.Unlock()
		if old != nil && old.Size == info.Size() && old.ModTime.Equal(info.ModTime()) {
			continue
		}
		mf := r.inspect(path, info)
		r.mu.Lock()
		if old != nil {
			r.dropLocked(old)
		}
		r.files[path] = mf
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if (dirErr == nil) != (r.dirErr == nil) || (dirErr != nil && dirErr.Error() != r.dirErr.Error()) {
		if dirErr != nil {
			r.s.log.Warn("inferd: no models", "dir", dir, "err", dirErr)
		}
	}
	r.dirErr = dirErr
	for path, mf := range r.files {
		if !seen[path] {
			r.dropLocked(mf)
			delete(r.files, path)
			r.s.log.Info("inferd: model removed", "file", path)
		}
	}
}

// dropLocked unloads mf if it is loaded and idle.
func (r *registry) dropLocked(mf *modelFile) {
	for i, lm := range r.loaded {
		if lm.file == mf && lm.refs == 0 {
			r.loaded = append(r.loaded[:i], r.loaded[i+1:]...)
			_ = lm.model.Close()
			return
		}
	}
}

// inspect reads a file's metadata and decides whether it can be served.
func (r *registry) inspect(path string, info os.FileInfo) *modelFile {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", path, info.Size(), info.ModTime().UnixNano()))
	mf := &modelFile{Name: name, Path: path, Size: info.Size(), ModTime: info.ModTime(), Digest: hex.EncodeToString(h[:])}
	mf.Err = r.check(mf)
	if mf.Err != nil {
		r.s.log.Warn("inferd: model unusable", "file", path, "err", mf.Err)
	} else {
		r.s.log.Info("inferd: model available", "name", name, "arch", mf.Arch, "type", mf.FileType, "ctx", mf.ContextLength)
	}
	return mf
}

func (r *registry) check(mf *modelFile) (err error) {
	defer func() { // a reader bug must not take the server down
		if p := recover(); p != nil {
			err = fmt.Errorf("reading %s: internal error: %v", mf.Path, p)
		}
	}()
	f, err := gguf.Open(mf.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	mf.Arch, _ = f.String("general.architecture")
	if mf.Arch == "" {
		return fmt.Errorf("%s: general.architecture missing", mf.Path)
	}
	if n, ok := f.Uint(mf.Arch + ".context_length"); ok {
		mf.ContextLength = int(min(n, 1<<30))
	}
	if ft, ok := f.Uint("general.file_type"); ok {
		mf.FileType = fileTypeName(ft)
	}
	if pc, ok := f.Uint("general.parameter_count"); ok {
		mf.ParamCount = int64(min(pc, 1<<62))
	}
	mf.meta = map[string]any{"general.architecture": mf.Arch}
	for _, k := range []string{"general.name", "general.basename", "general.size_label", "general.license"} {
		if v, ok := f.String(k); ok {
			mf.meta[k] = v
		}
	}
	for _, k := range []string{"context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count", "attention.head_count_kv", "vocab_size"} {
		if v, ok := f.Uint(mf.Arch + "." + k); ok {
			mf.meta[mf.Arch+"."+k] = v
		}
	}
	if mf.tok, err = tokenizer.FromGGUF(f); err != nil {
		return fmt.Errorf("%s: tokenizer: %w", mf.Path, err)
	}
	mf.Template, _ = f.String(chat.KeyChatTemplate)
	mf.tmpl, mf.fallback, mf.tmplErr = chat.FromGGUF(f)
	if mf.tmplErr != nil {
		r.s.log.Warn("inferd: chat template unusable; chat endpoints will fail for this model", "file", mf.Path, "err", mf.tmplErr)
	}
	if c, ok := r.s.cfg.Engine.(Checker); ok {
		if err := c.Check(mf.Path); err != nil {
			return err
		}
	}
	return nil
}

// fileTypeName names llama.cpp's general.file_type values.
func fileTypeName(ft uint64) string {
	names := map[uint64]string{0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
		10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
		17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
	if n, ok := names[ft]; ok {
		return n
	}
	return fmt.Sprintf("type%d", ft)
}

// list returns the servable models sorted by name, and the unusable files.
func (r *registry) list() (ok, bad []*modelFile, dirErr error) {
	r.scan(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, mf := range r.files {
		if mf.Err == nil {
			ok = append(ok, mf)
		} else {
			bad = append(bad, mf)
		}
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Name < ok[j].Name })
	sort.Slice(bad, func(i, j int) bool { return bad[i].Path < bad[j].Path })
	return ok, bad, r.dirErr
}

// find resolves an API model name ("name", "name:latest", "name.gguf").
// An empty name picks the only model, if there is exactly one.
func (r *registry) find(name string) (*modelFile, error) {
	ok, bad, _ := r.list()
	n := strings.TrimSuffix(strings.TrimSuffix(name, ":latest"), ".gguf")
	if name == "" && len(ok) == 1 {
		return ok[0], nil
	}
	for _, mf := range ok {
		if mf.Name == n {
			return mf, nil
		}
	}
	for _, mf := range bad {
		if mf.Name == n {
			return nil, fmt.Errorf("model %q cannot be served: %v: %w", name, mf.Err, ErrModelNotFound)
		}
	}
	return nil, fmt.Errorf("model %q: %w", name, ErrModelNotFound)
}

// acquire loads mf if needed and pins it until release is called.
// load finds the model a request names and acquires it loaded; release
// must be called when the request is done.
func (r *registry) load(name string) (*modelFile, *loadedModel, func(), error) {
	mf, err := r.find(name)
	if err != nil {
		return nil, nil, nil, err
	}
	lm, release, err := r.acquire(mf)
	if err != nil {
		return nil, nil, nil, err
	}
	return mf, lm, release, nil
}

func (r *registry) acquire(mf *modelFile) (*loadedModel, func(), error) {
	mf.loadMu.Lock()
	defer mf.loadMu.Unlock()
	r.mu.Lock()
	lm := mf.loaded
	if lm != nil {
		lm.refs++
		lm.lastUsed = time.Now()
		r.mu.Unlock()
		return lm, r.releaseFunc(lm), nil
	}
	r.mu.Unlock()

	start := time.Now()
	m, err := r.s.cfg.Engine.Load(mf.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("loading %s: %w", mf.Name, err)
	}
	ctxLen := m.ContextLength()
	if mc := r.s.cfg.MaxContext; mc > 0 && mc < ctxLen {
		ctxLen = mc
	}
	lm = &loadedModel{file: mf, model: m, cache: m.NewCache(r.s.cfg.CacheBytes), ctxLen: ctxLen,
		loadDur: time.Since(start), lastUsed: time.Now(), refs: 1}
	r.s.log.Info("inferd: model loaded", "name", mf.Name, "took", lm.loadDur.Round(time.Millisecond))
	r.mu.Lock()
	mf.loaded = lm
	r.loaded = append(r.loaded, lm)
	r.evictLocked()
	r.mu.Unlock()
	return lm, r.releaseFunc(lm), nil
}

func (r *registry) releaseFunc(lm *loadedModel) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			lm.refs--
			lm.lastUsed = time.Now()
			r.evictLocked()
			r.mu.Unlock()
		})
	}
}

// evictLocked unloads idle models, least recently used first, while more
// than MaxLoaded are loaded.
func (r *registry) evictLocked() {
	for len(r.loaded) > r.s.cfg.MaxLoaded {
		victim := -1
		for i, lm := range r.loaded {
			if lm.refs == 0 && (victim < 0 || lm.lastUsed.Before(r.loaded[victim].lastUsed)) {
				victim = i
			}
		}
		if victim < 0 {
			return
		}
		lm := r.loaded[victim]
		r.loaded = append(r.loaded[:victim], r.loaded[victim+1:]...)
		lm.file.loaded = nil
		if err := lm.model.Close(); err != nil {
			r.s.log.Warn("inferd: closing model", "name", lm.file.Name, "err", err)
		}
		r.s.log.Info("inferd: model unloaded", "name", lm.file.Name)
	}
}

// loadedList returns the loaded models.
func (r *registry) loadedList() []*loadedModel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*loadedModel(nil), r.loaded...)
}

func (r *registry) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, lm := range r.loaded {
		lm.file.loaded = nil
		_ = lm.model.Close()
	}
	r.loaded = nil
}
