// Package api is the HTTP front of an inference engine: the OpenAI API
// (/v1/chat/completions, /v1/completions, /v1/models), the Ollama API
// (/api/tags, /api/chat, /api/generate, /api/show, /api/version, /api/ps)
// and Hypha's own endpoints: prompt scoring (OpenAI-legacy echo+logprobs on
// /v1/completions, one forward pass), KV cache state (/hypha/cache, chunk
// hashes with versioned deltas), tokenization (/hypha/tokenize) and the
// model directory report (/hypha/models).
//
// Models are the *.gguf files of one directory. Every file is checked when
// it appears; files that cannot be served are reported by name and reason
// on /hypha/models and in the log, never listed on /v1/models or /api/tags,
// and never stop the server.
//
// The engine is reached through the small interfaces below; Builtin adapts
// Hypha's own inference/engine.
//
// A *Server is safe for concurrent use. Generations run at most
// Config.Parallel at a time; up to Config.Queue more wait, beyond that
// requests are refused at once (429 on /v1, 503 on /api) with Retry-After.
// A client that goes away cancels its generation.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors; errors returned by this package wrap one of them.
var (
	// ErrModelNotFound: no servable model of that name in the directory.
	ErrModelNotFound = errors.New("model not found")
	// ErrBadRequest: the request is malformed or asks for something the
	// model cannot do (prompt longer than the context, ...).
	ErrBadRequest = errors.New("bad request")
	// ErrOverloaded: the queue is full; retry later.
	ErrOverloaded = errors.New("server overloaded")
	// ErrClosed: the server is shutting down.
	ErrClosed = errors.New("server closed")
)

// Engine loads models. Load may be slow; it is called at most once per
// model file at a time.
type Engine interface {
	Load(path string) (Model, error)
}

// Checker is optionally implemented by an Engine that can tell cheaply
// whether it can serve a file (architecture, tensor types) without loading
// it for use.
type Checker interface {
	Check(path string) error
}

// Model is a loaded model. It must be safe for concurrent use.
type Model interface {
	// NewCache returns a KV cache bounded to maxBytes.
	NewCache(maxBytes int64) Cache
	// NewSampler returns a sampler for one generation.
	NewSampler(p Sampling) Sampler
	// ContextLength is the longest token sequence the model accepts.
	ContextLength() int
	Close() error
}

// Cache is a prefix-reusing KV cache; it must be safe for concurrent use.
type Cache interface {
	// Eval returns the logits after tokens (reusing any cached prefix) and
	// how many leading tokens came from the cache.
	Eval(ctx context.Context, tokens []int32) (logits []float32, reused int, err error)
	// Score returns lp[i] = log P(tokens[i] | tokens[:i]) for i >= 1
	// (lp[0] = 0) in one forward pass.
	Score(ctx context.Context, tokens []int32) ([]float32, error)
	// State reports the chunk hashes held, as changes since a version.
	State(since uint64) CacheState
}

// CacheState is a view of the KV cache as chunk hashes (see
// Builtin.ChunkHashes for how they are computed).
type CacheState struct {
	Version        uint64
	Full           bool // Added is the whole set, replace yours
	Added, Removed []uint64
}

// Sampler picks the next token; one per generation, not shared.
type Sampler interface {
	Sample(logits []float32, history []int32) int32
}

// Sampling are the sampling settings of one request.
type Sampling struct {
	Temperature   float32 // <= 0: greedy
	TopK          int     // <= 0: off
	TopP          float32 // 0 or >= 1: off
	MinP          float32 // 0: off
	RepeatPenalty float32 // 0 or 1: off
	RepeatLastN   int
	Seed          uint64
}

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// ModelsDir holds the *.gguf files. Empty or missing: the server runs
	// and reports "no models".
	ModelsDir string
	// Engine loads models (required).
	Engine Engine
	// Log receives the server's log lines; default slog.Default().
	Log *slog.Logger
	// Parallel is the number of generations that run at once; default 1.
	Parallel int
	// Queue is the number of requests that may wait for a turn; default 8,
	// negative means none (refuse whenever Parallel are running).
	Queue int
	// CacheBytes bounds the KV cache of each loaded model; default 1 GiB.
	CacheBytes int64
	// MaxLoaded is the number of models kept loaded; default 1.
	MaxLoaded int
	// MaxContext caps the context length used; 0 means the model's own.
	MaxContext int
	// RetryAfter is the delay suggested to refused clients; default 2 s.
	RetryAfter time.Duration
	// Version is reported by /api/version; default "0.17.4" (the Ollama
	// API version this server follows).
	Version string
	// MaxRequestBytes bounds request bodies; default 8 MiB.
	MaxRequestBytes int64
}

// Server serves the APIs. Create it with New; stop it with Close.
type Server struct {
	cfg Config
	log *slog.Logger
	reg *registry
	mux *http.ServeMux

	sem     chan struct{} // one token per running generation
	waiting atomic.Int64  // requests queued for a turn

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a Server for cfg. It scans the models directory once; a
// missing directory is not an error.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("api: Config.Engine is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 1
	}
	if cfg.Queue < 0 {
		cfg.Queue = 0
	} else if cfg.Queue == 0 {
		cfg.Queue = 8
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 1 << 30
	}
	if cfg.MaxLoaded <= 0 {
		cfg.MaxLoaded = 1
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 2 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "0.17.4"
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 8 << 20
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Log,
		sem:    make(chan struct{}, cfg.Parallel),
		closed: make(chan struct{}),
	}
	s.reg = newRegistry(s)
	s.reg.scan(true)
	s.routes()
	return s, nil
}

// Handler is the HTTP handler of all endpoints.
func (s *Server) Handler() http.Handler { return s.mux }

// Close unloads every model. Requests still running fail. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.reg.closeAll()
	})
	return nil
}

// acquire waits for a generation turn. It fails at once with ErrOverloaded
// when Queue requests are already waiting.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	default:
	}
	if s.waiting.Add(1) > int64(s.cfg.Queue) {
		s.waiting.Add(-1)
		return nil, fmt.Errorf("%d requests running and %d waiting: %w", s.cfg.Parallel, s.cfg.Queue, ErrOverloaded)
	}
	defer s.waiting.Add(-1)
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, ErrClosed
	}
}

func (s *Server) routes() {
	m := http.NewServeMux()
	// Ollama
	m.HandleFunc("GET /{$}", s.handleRoot)
	m.HandleFunc("HEAD /{$}", s.handleRoot)
	m.HandleFunc("GET /api/version", s.handleVersion)
	m.HandleFunc("GET /api/tags", s.handleTags)
	m.HandleFunc("GET /api/ps", s.handlePs)
	m.HandleFunc("POST /api/show", s.handleShow)
	m.HandleFunc("POST /api/generate", s.handleGenerate)
	m.HandleFunc("POST /api/chat", s.handleOllamaChat)
	// OpenAI (also without the /v1 prefix, as Open WebUI may call)
	for _, p := range []string{"/v1", ""} {
		m.HandleFunc("GET "+p+"/models", s.handleModels)
		m.HandleFunc("GET "+p+"/models/{id...}", s.handleModel)
		m.HandleFunc("POST "+p+"/chat/completions", s.handleChatCompletions)
		m.HandleFunc("POST "+p+"/completions", s.handleCompletions)
	}
	// Hypha
	m.HandleFunc("GET /hypha/models", s.handleHyphaModels)
	m.HandleFunc("GET /hypha/cache", s.handleCacheState)
	m.HandleFunc("POST /hypha/tokenize", s.handleTokenize)
	m.HandleFunc("POST /hypha/score", s.handleScore)
	s.mux = m
}
