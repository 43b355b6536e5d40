package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/api"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/provisioning"
)

// startEngine runs a real inference server (inferd's) with a small
// generated model on 127.0.0.1 and returns its base URL.
func startEngine(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testmodel.Write(filepath.Join(dir, "tiny.gguf"), testmodel.Spec{
		Arch: "qwen2", VocabFile: "../inference/tokenizer/testdata/ggml-vocab-qwen2.gguf",
		Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 256,
		Tied: true, Type: gguf.TensorQ8_0, Seed: 7,
	}); err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{ModelsDir: dir, Engine: api.Builtin{Threads: 1, Log: slog.New(slog.DiscardHandler)},
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return "http://" + ln.Addr().String()
}

// community creates a community and returns a function that bakes it
// into a fresh /perm.
func community(t *testing.T, edit func(*provisioning.Manifest)) func() string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "community")
	if _, _, err := provisioning.Init(dir, provisioning.InitOptions{Name: "Test Valley", Bioregion: "Test Basin",
		Password: "test-steward", Edit: edit}); err != nil {
		t.Fatal(err)
	}
	return func() string {
		perm := t.TempDir()
		if err := provisioning.BakePerm(dir, perm); err != nil {
			t.Fatal(err)
		}
		return perm
	}
}

// startNodes runs count appliance nodes of one community on loopback;
// node 0 is every other node's bootstrap peer. tweak adjusts options.
func startNodes(t *testing.T, ctx context.Context, perm func() string, count int, tweak func(int, *Options)) []*Node {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	var nodes []*Node
	var first string
	for i := 0; i < count; i++ {
		o := Options{PermDir: perm(), Listen: "127.0.0.1:0", Version: "test", MeshListen: []string{"/ip4/127.0.0.1/tcp/0"},
			MeshNoLANDiscovery: true, Logger: slog.New(slog.DiscardHandler), ProcDir: t.TempDir(), ProgramDirs: []string{}}
		tweak(i, &o)
		if first != "" {
			o.MeshBootstrap = []string{first}
		}
		n, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if _, err := n.Addr(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = fmt.Sprintf("%s/p2p/%s", n.Mesh().Host().Addrs()[0], n.Mesh().ID())
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// TestAnonymousRequestOverCloves: four appliances of one community meet on
// loopback; one serves a model. Another asks it a chat question as cloves
// over onion paths through the others and gets the engine's answer.
func TestAnonymousRequestOverCloves(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four mesh nodes and an engine")
	}
	engineURL := startEngine(t)
	perm := community(t, func(m *provisioning.Manifest) { m.Clove.N, m.Clove.K, m.Clove.L = 2, 2, 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := startNodes(t, ctx, perm, 4, func(i int, o *Options) {
		if i == 3 {
			o.EngineURL = engineURL
		}
	})
	asker, server := nodes[0], nodes[3]
	body := []byte(`{"model":"tiny","messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"temperature":0}`)
	var reply []byte
	var via string
	var err error
	// Until the asker knows the server's models and everyone's onion keys,
	// there are no paths: retry, bounded.
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(time.Second) {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		got, pid, e := asker.AskAnonymously(rctx, "tiny", body)
		rcancel()
		if err = e; err == nil {
			reply, via = got, pid.String()
			break
		}
	}
	if reply == nil {
		t.Fatalf("no anonymous answer: %v", err)
	}
	if via != server.Identity().ID() {
		t.Fatalf("answered by %s, want the serving node %s", via, server.Identity().ID())
	}
	var resp struct {
		Object  string
		Choices []struct{ Message struct{ Content string } }
		Usage   struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(reply, &resp); err != nil {
		t.Fatalf("reply is not a chat completion: %v: %s", err, reply)
	}
	if resp.Object != "chat.completion" || len(resp.Choices) != 1 || resp.Usage.CompletionTokens == 0 {
		t.Fatalf("reply: %s", reply)
	}
	// Without the model on the mesh, the asker says so.
	if _, _, err := asker.AskAnonymously(ctx, "no-such-model", body); err == nil || !strings.Contains(err.Error(), "no-such-model") {
		t.Fatalf("unknown model: err = %v", err)
	}
}
