package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ollama "github.com/ollama/ollama/api"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// TestRunWithoutModels: inferd serves with a models directory that is
// empty (it creates it), reports "no models", and stops cleanly when its
// context is cancelled (SIGTERM).
func TestRunWithoutModels(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "perm", "models")
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.DiscardHandler), options{listen: "127.0.0.1:0", models: dir, parallel: 1, queue: 1,
			ready: func(a net.Addr) { addrc <- a }})
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatal("run:", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not serving after 30s")
	}
	get := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if v := get("/api/version"); !strings.Contains(v, `"version"`) {
		t.Errorf("/api/version = %s", v)
	}
	if m := get("/v1/models"); !strings.Contains(m, `"data":[]`) {
		t.Errorf("/v1/models = %s", m)
	}
	var rep struct {
		Dir    string `json:"dir"`
		Models []any  `json:"models"`
	}
	if err := json.Unmarshal([]byte(get("/hypha/models")), &rep); err != nil || rep.Dir != dir || len(rep.Models) != 0 {
		t.Errorf("/hypha/models = %+v, %v", rep, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if _, err := http.Get(base + "/api/version"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestRunBadListen(t *testing.T) {
	err := run(context.Background(), slog.New(slog.DiscardHandler), options{listen: "256.0.0.1:1", models: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("run(bad address) = %v", err)
	}
}

// TestRunServesModel: the inferd program with a model in its directory
// answers the real Ollama client, then shuts down on cancel.
func TestRunServesModel(t *testing.T) {
	dir := t.TempDir()
	err := testmodel.Write(filepath.Join(dir, "tiny.gguf"), testmodel.Spec{
		Arch: "llama", VocabFile: "../../inference/tokenizer/testdata/ggml-vocab-llama-spm.gguf",
		Layers: 1, Dim: 32, FFN: 64, Heads: 2, KVHeads: 1, ContextLen: 128, Type: gguf.TensorF16, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.DiscardHandler), options{listen: "127.0.0.1:0", models: dir, parallel: 1, queue: 2, threads: 1,
			ready: func(a net.Addr) { addrc <- a }})
	}()
	var a net.Addr
	select {
	case a = <-addrc:
	case err := <-done:
		t.Fatal("run:", err)
	case <-time.After(60 * time.Second):
		t.Fatal("not serving after 60s")
	}
	c := ollama.NewClient(&url.URL{Scheme: "http", Host: a.String()}, http.DefaultClient)
	var last ollama.ChatResponse
	err = c.Chat(context.Background(), &ollama.ChatRequest{Model: "tiny", Messages: []ollama.Message{{Role: "user", Content: "Hello"}},
		Options: map[string]any{"num_predict": 5, "temperature": 0}}, func(r ollama.ChatResponse) error { last = r; return nil })
	if err != nil || !last.Done || last.EvalCount != 5 {
		t.Errorf("Chat: %v, final %+v", err, last)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
