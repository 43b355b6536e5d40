package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/univrs/hypha/inference/api"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/route"
)

// The tests run real nodes on loopback: each a real libp2p host on
// 127.0.0.1, a real inferd (inference/api over the built-in engine) on
// 127.0.0.1:0 with a generated model (random weights, a real vocabulary
// and chat template), and a gateway. No network namespaces.

const tinyModel = "tiny-qwen2"

var (
	modelsOnce sync.Once
	modelsDir  string
	modelsErr  error
)

// tinyModels generates the small model once per test binary.
func tinyModels(t testing.TB) string {
	t.Helper()
	modelsOnce.Do(func() {
		modelsDir, modelsErr = os.MkdirTemp("", "hypha-gateway-test-")
		if modelsErr != nil {
			return
		}
		modelsErr = testmodel.Write(filepath.Join(modelsDir, tinyModel+".gguf"), testmodel.Spec{
			Arch: "qwen2", VocabFile: "../tokenizer/testdata/ggml-vocab-qwen2.gguf",
			Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 1024,
			Tied: true, Type: gguf.TensorQ8_0, Seed: 7,
		})
	})
	if modelsErr != nil {
		t.Fatal(modelsErr)
	}
	return modelsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{modelsDir, benchDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// hostStreams adapts a libp2p host to Streams (as *mesh.Node does).
type hostStreams struct{ host.Host }

func (h hostStreams) NewStream(ctx context.Context, id peer.ID, p protocol.ID) (network.Stream, error) {
	return h.Host.NewStream(ctx, id, p)
}

func (h hostStreams) SetStreamHandler(p protocol.ID, fn network.StreamHandler) {
	h.Host.SetStreamHandler(p, fn)
}

// tnode is one node of a test mesh.
type tnode struct {
	host    host.Host
	inferd  *api.Server
	infSrv  *http.Server
	infURL  string
	gw      *Gateway
	gwSrv   *http.Server
	gwURL   string
	closeMu sync.Mutex
	dead    bool
}

// kill stops the node abruptly: its libp2p host and its inferd.
func (n *tnode) kill() {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.dead {
		return
	}
	n.dead = true
	_ = n.host.Close()
	_ = n.infSrv.Close()
	_ = n.gwSrv.Close()
	_ = n.inferd.Close()
	_ = n.gw.Close()
}

type clusterOpts struct {
	nodes      int
	modelsDir  string
	policy     route.Policy
	cacheBytes int64
	threads    int
	externals  func(nodes []*tnode) []External // for node 0
	usage      func(Usage)
	poll       time.Duration // gateway poll interval; default 100 ms
}

func serve(t testing.TB, h http.Handler) (*http.Server, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return srv, "http://" + ln.Addr().String()
}

// startCluster starts o.nodes connected nodes; node 0's gateway is the
// entry point and has the given policy.
func startCluster(t testing.TB, o clusterOpts) []*tnode {
	t.Helper()
	if o.poll == 0 {
		o.poll = 100 * time.Millisecond
	}
	if o.threads == 0 {
		o.threads = 1
	}
	quiet := slog.New(slog.DiscardHandler)
	nodes := make([]*tnode, o.nodes)
	for i := range nodes {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			t.Fatal(err)
		}
		inf, err := api.New(api.Config{ModelsDir: o.modelsDir, Engine: api.Builtin{Threads: o.threads, Log: quiet},
			Log: quiet, CacheBytes: o.cacheBytes, Queue: 64})
		if err != nil {
			t.Fatal(err)
		}
		srv, u := serve(t, inf.Handler())
		nodes[i] = &tnode{host: h, inferd: inf, infSrv: srv, infURL: u}
	}
	ctx := context.Background()
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if err := a.host.Connect(ctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, n := range nodes {
		self := n
		peers := func() []Peer {
			var out []Peer
			for _, m := range nodes {
				if m != self && !m.isDead() {
					out = append(out, Peer{ID: m.host.ID()})
				}
			}
			return out
		}
		cfg := Config{Local: n.infURL, LocalID: route.NodeID(n.host.ID().String()), Streams: hostStreams{n.host},
			Peers: peers, ModelsDir: o.modelsDir, Log: quiet, PollInterval: o.poll}
		if i == 0 {
			cfg.Router = route.NewRouter(route.WithPolicy(o.policy))
			cfg.Usage = o.usage
			if o.externals != nil {
				cfg.Externals = o.externals(nodes)
			}
		}
		gw, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.gw = gw
		n.gwSrv, n.gwURL = serve(t, gw)
	}
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		n.gw.Poll(ctx)
		wg.Add(1)
		go func() { defer wg.Done(); n.gw.Run(rctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for _, n := range nodes {
			n.kill()
		}
		wg.Wait()
	})
	return nodes
}

func (n *tnode) isDead() bool {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	return n.dead
}

func nodeIndex(nodes []*tnode, id route.NodeID) int {
	for i, n := range nodes {
		if route.NodeID(n.host.ID().String()) == id {
			return i
		}
	}
	return -1
}

var _ = fmt.Sprint
