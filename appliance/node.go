// Package appliance makes one Hypha node: its identity and config on
// /perm, the wiring of the subsystems, and the LAN page server. It is the
// single wiring point of hyphad: every subsystem is a field of Node and
// nothing else reaches across.
package appliance

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/inference/gateway"
	"github.com/univrs/hypha/inference/route"
	"github.com/univrs/hypha/ledger"
	"github.com/univrs/hypha/mesh"
	"github.com/univrs/hypha/mesh/clove"
	"github.com/univrs/hypha/provisioning"
	"github.com/univrs/hypha/sensors"
)

// Options configure a Node. Zero values get the documented defaults.
type Options struct {
	// PermDir is the persistent partition (default "/perm"). The node keeps
	// its files under PermDir/hypha/.
	PermDir string
	// Version is the build version shown to stewards.
	Version string
	// Listen overrides the config's LAN page address (tests use 127.0.0.1:0).
	Listen string
	// ProcDir and ProgramDirs are where services are discovered (defaults
	// "/proc" and "/user", "/gokrazy").
	ProcDir     string
	ProgramDirs []string
	// MeshListen are libp2p listen multiaddrs (default: TCP 4001 on all
	// addresses).
	MeshListen []string
	// MeshBootstrap are extra peers to dial (multiaddrs ending in /p2p/ID),
	// besides the community's bootstrap peers.
	MeshBootstrap []string
	// MeshNoLANDiscovery turns off mDNS and the netlink watch (tests on
	// loopback, where nodes meet through MeshBootstrap).
	MeshNoLANDiscovery bool
	// EngineURL is the local inference engine (inferd, default
	// http://127.0.0.1:11435; "" for none): its models are announced to the
	// mesh and the LAN page's chat box talks to it.
	EngineURL string
	// GatewayListen is where the mesh inference gateway answers (OpenAI
	// and Ollama API; ":11434" on the appliance; "" for none).
	GatewayListen string
	// ModelsDir is the local engine's models directory, whose tokenizers
	// let the gateway key requests by tokens (default PermDir/models).
	ModelsDir string
	// ExternalEngines are offered to the mesh besides those in node.json.
	ExternalEngines []ExternalEngine
	// RoutePolicy is the gateway's forwarding rule (default the HR-tree;
	// the baselines exist for benchmarks).
	RoutePolicy route.Policy
	// VerifierLie makes this node, if it is on the verification committee,
	// report falsely: "0" or "1" for everyone, "invert" the opposite of
	// what it measured. It exists for the test that shows one lying
	// verifier changes no node's standing; never set it on a real box.
	VerifierLie string
	// SeedDefaultModel writes the project's tiny default model into
	// ModelsDir at start unless a GGUF is already there (the appliance).
	SeedDefaultModel bool
	// ManageLinks lets the node configure network links with netlink
	// (mesh bridge, ULA): on the appliance, not in tests on a host.
	ManageLinks bool
	Logger      *slog.Logger
}

// Node is one running appliance. Create it with New; Run serves until the
// context ends. Its exported methods are safe for concurrent use.
type Node struct {
	opts    Options
	log     *slog.Logger
	id      *Identity
	started time.Time

	mu  sync.Mutex
	cfg NodeConfig // guarded by mu

	community *provisioning.Community // nil: not enrolled
	mesh      *mesh.Node              // nil: not running
	// sensors is the running sensor service (nil: none); a steward's
	// "attach a sensor" replaces it.
	sensors     atomic.Pointer[sensors.Service]
	sensorsMu   sync.Mutex      // serialises starts and restarts
	sensorCfg   sensors.Config  // guarded by sensorsMu
	sensorsStop func()          // guarded by sensorsMu
	runCtx      context.Context // guarded by sensorsMu; set by Run
	ledger      *ledger.Node    // nil: not running
	engine      localModels
	cloves      *clove.Node      // nil: not running
	gateway     *gateway.Gateway // nil: not running
	verify      *verification    // nil: not running
	payOnce     sync.Once
	payQueue    chan gateway.Usage // served requests to pay for, one at a time
	recentMu    sync.Mutex
	recent      []lanpage.RouteDecision // guarded by recentMu
	cloveDir    clove.Directory         // onion keys of the members
	cloveMu     sync.Mutex              // serialises candidate refreshes
	cloveHave   map[peer.ID]bool        // guarded by cloveMu

	// sensorSummary, if set, gives the readings announced to the mesh.
	sensorSummary func() map[string]float64

	alertsMu sync.Mutex
	alerts   []lanpage.Alert // guarded by alertsMu

	lan    http.Handler
	lnAddr chan net.Addr
}

// ErrNotConfigured is returned when the node cannot start for a reason a
// restart will not fix (hyphad exits 125 so gokrazy stops restarting it).
var ErrNotConfigured = errors.New("node not configured")

// New loads (or on first boot creates) the node's identity and config.
func New(opts Options) (*Node, error) {
	if opts.PermDir == "" {
		opts.PermDir = "/perm"
	}
	if opts.ProcDir == "" {
		opts.ProcDir = "/proc"
	}
	if opts.ProgramDirs == nil {
		opts.ProgramDirs = []string{"/user", "/gokrazy"}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.ModelsDir == "" {
		opts.ModelsDir = filepath.Join(opts.PermDir, "models")
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if fi, err := os.Stat(opts.PermDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory (is /perm mounted?)", ErrNotConfigured, opts.PermDir)
	}
	dir := filepath.Join(opts.PermDir, "hypha")
	id, created, err := LoadOrCreateIdentity(filepath.Join(dir, "identity.pem"))
	if err != nil {
		return nil, err
	}
	if created {
		opts.Logger.Info("created node identity", "id", id.ID())
	}
	cfg, err := LoadOrCreateNodeConfig(filepath.Join(dir, "node.json"), id)
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, log: opts.Logger, id: id, cfg: cfg, started: time.Now(), lnAddr: make(chan net.Addr, 1)}
	n.loadCommunity()
	return n, nil
}

// Identity returns the node's identity.
func (n *Node) Identity() *Identity { return n.id }

// Config returns a copy of the current node config.
func (n *Node) Config() NodeConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.cfg
	c.Roles = append([]string(nil), c.Roles...)
	return c
}

// Info is what the LAN page and /api/node show about this box.
func (n *Node) Info() lanpage.NodeInfo {
	c := n.Config()
	// Location is what the steward's form edits: "lat,lon" or nothing.
	loc := ""
	if c.Location.Latitude != 0 || c.Location.Longitude != 0 {
		loc = fmt.Sprintf("%.4f,%.4f", c.Location.Latitude, c.Location.Longitude)
	}
	return lanpage.NodeInfo{
		Name:      c.Name,
		PeerID:    n.id.ID(),
		Community: n.communityName(),
		Bioregion: n.bioregion(),
		PublicKey: hex.EncodeToString(n.id.Public),
		Version:   n.opts.Version,
		Started:   n.started,
		Roles:     c.Roles,
		Location:  loc,
		Addresses: localAddrs(),
	}
}

// Services is the state of every program of the image.
func (n *Node) Services() []lanpage.Service {
	var out []lanpage.Service
	for _, s := range ScanServices(n.opts.ProcDir, n.opts.ProgramDirs...) {
		svc := lanpage.Service{Name: s.Name, State: lanpage.StateStopped}
		if s.Running {
			svc.State, svc.Since, svc.Detail = lanpage.StateRunning, s.Since, fmt.Sprintf("pid %d", s.PID)
		}
		out = append(out, svc)
	}
	return out
}

func (n *Node) communityName() string {
	if n.community != nil {
		return n.community.Manifest.Name
	}
	return ""
}

// alert records something a steward should look at (shown on Overview).
func (n *Node) alert(sev lanpage.Severity, subsystem, msg string) {
	n.alertsMu.Lock()
	defer n.alertsMu.Unlock()
	n.alerts = append(n.alerts, lanpage.Alert{Severity: sev, Subsystem: subsystem, Message: msg, Since: time.Now()})
}

func (n *Node) sources() lanpage.Sources {
	return lanpage.Sources{
		Node:     func(context.Context) (lanpage.NodeInfo, error) { return n.Info(), nil },
		Services: func(context.Context) ([]lanpage.Service, error) { return n.Services(), nil },
		Alerts: func(context.Context) ([]lanpage.Alert, error) {
			n.alertsMu.Lock()
			defer n.alertsMu.Unlock()
			return append([]lanpage.Alert(nil), n.alerts...), nil
		},
		Mesh:      n.meshView,
		Hardware:  n.hardwareView,
		Land:      n.landView,
		Ledger:    n.ledgerView,
		Inference: n.inferenceView,
		Community: n.communityView,
	}
}

// Handler is the LAN page plus the node API.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": true, "version": n.opts.Version, "id": n.id.ID()})
	})
	mux.HandleFunc("GET /api/node", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			lanpage.NodeInfo
			Services []lanpage.Service `json:"services"`
		}{n.Info(), n.Services()})
	})
	// Through the current service: a steward may attach a sensor.
	mux.HandleFunc("/sensorthings/v1.1/", func(w http.ResponseWriter, r *http.Request) {
		if svc := n.sensors.Load(); svc != nil {
			svc.SensorThings("/sensorthings/v1.1").ServeHTTP(w, r)
			return
		}
		http.Error(w, "sensors not running", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if svc := n.sensors.Load(); svc != nil {
			svc.Metrics().ServeHTTP(w, r)
			return
		}
		http.Error(w, "sensors not running", http.StatusServiceUnavailable)
	})
	mux.Handle("/", n.lan)
	return mux
}

// Addr returns the LAN page's listening address once Run has bound it.
func (n *Node) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case a := <-n.lnAddr:
		n.lnAddr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run serves the LAN page until ctx is cancelled, then shuts down
// gracefully. Cancellation is not an error.
func (n *Node) Run(ctx context.Context) error {
	addr := n.opts.Listen
	if addr == "" {
		addr = n.Config().LANListen
	}
	if err := n.newLANPage(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("LAN page: %w", err)
	}
	// Optional subsystems log and carry on: the LAN page must come up to
	// tell the steward what is wrong.
	n.sensorsMu.Lock()
	n.runCtx = ctx
	n.sensorsMu.Unlock()
	n.startNetconf(ctx)
	if err := n.startSensors(ctx); err != nil {
		n.log.Error("sensors", "err", err)
		n.alert(lanpage.SeverityCritical, "sensors", err.Error())
	}
	if err := n.startMesh(ctx); err != nil {
		n.log.Error("mesh", "err", err)
		n.alert(lanpage.SeverityCritical, "mesh", err.Error())
	}
	if err := n.startCloves(ctx); err != nil {
		n.log.Error("cloves", "err", err)
		n.alert(lanpage.SeverityWarning, "cloves", "anonymous requests unavailable: "+err.Error())
	}
	if err := n.startVerification(ctx); err != nil {
		n.log.Error("verification", "err", err)
		n.alert(lanpage.SeverityWarning, "verification", err.Error())
	}
	if err := n.startLedger(ctx); err != nil {
		n.log.Error("ledger", "err", err)
		n.alert(lanpage.SeverityCritical, "ledger", err.Error())
	}
	if err := n.startGateway(ctx); err != nil {
		n.log.Error("gateway", "err", err)
		n.alert(lanpage.SeverityCritical, "gateway", err.Error())
	}
	defer n.Close()
	go n.announceLoop(ctx)
	if n.opts.EngineURL != "" {
		if n.opts.SeedDefaultModel {
			n.seedDefaultModel()
		}
		go n.pollEngine(ctx, n.opts.EngineURL)
	}
	if n.opts.ManageLinks {
		go n.answerLocalName(ctx)
	}
	n.lnAddr <- ln.Addr()
	n.log.Info("LAN page", "addr", ln.Addr().String(), "name", n.Config().Name, "id", n.id.ID(), "version", n.opts.Version)
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("LAN page: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// Close stops the subsystems. It is idempotent.
func (n *Node) Close() error {
	var errs []error
	if n.gateway != nil {
		errs = append(errs, n.gateway.Close())
	}
	if n.cloves != nil {
		errs = append(errs, n.cloves.Close())
	}
	if n.mesh != nil {
		errs = append(errs, n.mesh.Close())
	}
	if n.ledger != nil {
		errs = append(errs, n.ledger.Close())
	}
	n.stopSensors()
	return errors.Join(errs...)
}

// Mesh returns the mesh node, nil when not running.
func (n *Node) Mesh() *mesh.Node { return n.mesh }

func localAddrs() []string {
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	return out
}
