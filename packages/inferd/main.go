// Command inferd is Hypha's built-in inference server: the pure-Go engine
// behind the OpenAI and Ollama APIs plus Hypha's scoring and cache-state
// endpoints, listening on 127.0.0.1:11435 for hyphad's gateway.
//
// Models are the *.gguf files in -models (on the appliance /perm/models).
// Without a models directory, or with no usable model in it, inferd keeps
// running and reports "no models" (GET /hypha/models) so models copied in
// later are picked up without a restart. SIGTERM or SIGINT shut it down
// gracefully; it exits 0 then, 1 on a startup error (gokrazy restarts it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/univrs/hypha/inference/api"
)

type options struct {
	listen     string
	models     string
	threads    int
	parallel   int
	queue      int
	kvBytes    int64
	maxLoaded  int
	maxContext int
	ready      func(net.Addr) // tests: called once listening
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:11435", "address to serve the HTTP API on")
	flag.StringVar(&o.models, "models", "/perm/models", "directory of *.gguf model files")
	flag.IntVar(&o.threads, "threads", 0, "threads per matrix product (0: all CPUs)")
	flag.IntVar(&o.parallel, "parallel", 1, "generations running at once")
	flag.IntVar(&o.queue, "queue", 8, "requests that may wait for a turn before 429/503")
	flag.Int64Var(&o.kvBytes, "kv-bytes", 1<<30, "KV cache memory bound per loaded model, bytes")
	flag.IntVar(&o.maxLoaded, "max-loaded", 1, "models kept loaded at once")
	flag.IntVar(&o.maxContext, "ctx", 0, "cap on the context length (0: the model's own)")
	level := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(os.Stderr, "inferd: -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, log, o); err != nil {
		log.Error("inferd", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx is cancelled, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, o options) error {
	if o.models != "" {
		if err := os.MkdirAll(o.models, 0o755); err != nil {
			log.Warn("inferd: cannot create the models directory; serving without models", "dir", o.models, "err", err)
		}
	}
	srv, err := api.New(api.Config{
		ModelsDir:  o.models,
		Engine:     api.Builtin{Threads: o.threads, Log: log},
		Log:        log,
		Parallel:   o.parallel,
		Queue:      o.queue,
		CacheBytes: o.kvBytes,
		MaxLoaded:  o.maxLoaded,
		MaxContext: o.maxContext,
	})
	if err != nil {
		return fmt.Errorf("inferd: %w", err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("inferd: listen: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("inferd: serving", "addr", ln.Addr().String(), "models", o.models)
	if o.ready != nil {
		o.ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("inferd: serve: %w", err)
	case <-ctx.Done():
	}
	// Let short requests finish; streams still running after the grace
	// period are cut (their clients see the connection close).
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("inferd: shutdown", "err", err)
	}
	_ = hs.Close()
	log.Info("inferd: stopped")
	return nil
}
