package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/univrs/hypha/inference/engine"
)

// Builtin adapts Hypha's pure-Go engine (inference/engine) to Engine.
// The zero value uses all CPUs and slog.Default().
type Builtin struct {
	Threads int          // goroutines per matrix product; 0 = runtime.NumCPU()
	Log     *slog.Logger // nil = slog.Default()
}

func (b Builtin) opts() []engine.Option {
	var o []engine.Option
	if b.Threads > 0 {
		o = append(o, engine.WithThreads(b.Threads))
	}
	if b.Log != nil {
		o = append(o, engine.WithLogger(b.Log))
	}
	return o
}

// Load loads a GGUF model.
func (b Builtin) Load(path string) (Model, error) {
	m, err := engine.Load(path, b.opts()...)
	if err != nil {
		return nil, err
	}
	return builtinModel{m}, nil
}

// Check loads and closes the model: the engine maps the file and checks
// architecture, tensor types and shapes without reading the weights.
func (b Builtin) Check(path string) error {
	m, err := engine.Load(path, append(b.opts(), engine.WithLogger(slog.New(slog.DiscardHandler)))...)
	if err != nil {
		return err
	}
	return m.Close()
}

type builtinModel struct{ m *engine.Model }

func (b builtinModel) NewCache(maxBytes int64) Cache { return builtinCache{b.m.NewCache(maxBytes)} }
func (b builtinModel) ContextLength() int            { return b.m.Config().ContextLen }
func (b builtinModel) Close() error                  { return b.m.Close() }
func (b builtinModel) ChunkTokens() int              { return engine.ChunkTokens }
func (b builtinModel) ChunkHashes(t []int32) []uint64 {
	return engine.ChunkHashes(t)
}

func (b builtinModel) NewSampler(p Sampling) Sampler {
	return &engine.Sampler{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, MinP: p.MinP,
		RepeatPenalty: p.RepeatPenalty, RepeatLastN: p.RepeatLastN, Seed: p.Seed}
}

type builtinCache struct{ c *engine.Cache }

func (b builtinCache) Eval(ctx context.Context, tokens []int32) ([]float32, int, error) {
	l, n, err := b.c.Eval(ctx, tokens)
	return l, n, requestErr(err)
}

func (b builtinCache) Score(ctx context.Context, tokens []int32) ([]float32, error) {
	l, err := b.c.Score(ctx, tokens)
	return l, requestErr(err)
}

// requestErr marks the engine's complaints about the request (bad tokens,
// too long for the context or the KV memory bound) as ErrBadRequest.
func requestErr(err error) error {
	if err != nil && (errors.Is(err, engine.ErrInput) || errors.Is(err, engine.ErrCacheFull)) {
		return fmt.Errorf("%w: %w", err, ErrBadRequest)
	}
	return err
}

func (b builtinCache) State(since uint64) CacheState {
	st := b.c.State(since)
	return CacheState{Version: st.Version, Full: st.Full, Added: st.Added, Removed: st.Removed}
}
