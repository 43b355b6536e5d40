// Command hyphad is the Hypha node daemon: identity, config, mesh, ledger,
// sensors, routing and the LAN page. gokrazy supervises it; exit 125 means
// "do not restart" (the node is not configured and a restart cannot help).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/univrs/hypha/appliance"
	"github.com/univrs/hypha/inference/route"
)

// version is set by the image builder (-ldflags -X main.version=…).
var version = "dev"

func main() {
	var opts appliance.Options
	flag.StringVar(&opts.PermDir, "perm", "/perm", "persistent directory (identity, config, data)")
	flag.StringVar(&opts.Listen, "listen", "", "LAN page address (default: the node config's, normally :80)")
	flag.StringVar(&opts.EngineURL, "engine", "http://127.0.0.1:11435", "local inference engine (inferd or Ollama-compatible); empty for none")
	flag.StringVar(&opts.GatewayListen, "gateway", ":11434", "mesh inference gateway address (OpenAI + Ollama API); empty for none")
	flag.StringVar(&opts.ModelsDir, "models", "", "the local engine's models directory (default <perm>/models)")
	flag.BoolVar(&opts.SeedDefaultModel, "default-model", true, "put the project's tiny default model into the models directory when it holds no GGUF")
	flag.BoolVar(&opts.ManageLinks, "manage-links", false, "configure the mesh bridge and ULA with netlink (the appliance sets it)")
	flag.StringVar(&opts.VerifierLie, "verifier-lie", "", "TEST ONLY: as a committee member, report falsely (0, 1 or invert)")
	flag.Func("external", "an OpenAI-compatible engine to offer to the mesh, name=http://host:port (repeatable; also node.json externalEngines)", func(s string) error {
		e, err := appliance.ParseExternalEngine(s)
		if err == nil {
			opts.ExternalEngines = append(opts.ExternalEngines, e)
		}
		return err
	})
	policy := flag.String("route", "hr-tree", "gateway forwarding rule: hr-tree, or the benchmark baselines round-robin and least-loaded")
	flag.Parse()
	p, err := route.ParsePolicy(*policy)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hyphad:", err)
		os.Exit(2)
	}
	opts.RoutePolicy = p
	opts.Version = version
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, opts)
	cancel()
	switch {
	case err == nil, errors.Is(err, context.Canceled):
	case errors.Is(err, appliance.ErrNotConfigured):
		opts.Logger.Error("not configured; not restarting", "err", err)
		os.Exit(125)
	default:
		opts.Logger.Error("hyphad", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts appliance.Options) error {
	n, err := appliance.New(opts)
	if err != nil {
		return err
	}
	return n.Run(ctx)
}
