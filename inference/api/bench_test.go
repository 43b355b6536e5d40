package api

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/engine"
)

// BenchmarkServeVsEngine measures what the HTTP layer costs: the same
// greedy generation (32 tokens after a short prompt, tiny generated model
// so that per-token overhead shows) run directly on the engine and through
// a streamed /v1/completions request, in the same run. It reports both
// rates and their ratio (1.0 = no overhead).
func BenchmarkServeVsEngine(b *testing.B) {
	const n = 32
	dir := testModelDir(b)
	path := filepath.Join(dir, modelName+".gguf")
	m, err := engine.Load(path, engine.WithThreads(1), engine.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s, err := New(Config{ModelsDir: dir, Engine: Builtin{Threads: 1, Log: slog.New(slog.DiscardHandler)}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/v1/completions"
	mf, err := s.reg.find(modelName)
	if err != nil {
		b.Fatal(err)
	}
	tok := mf.tok

	direct := func(i int) {
		c := m.NewCache(0)
		seq := tok.Encode(fmt.Sprintf("Prompt number %d:", i), true, false)
		var sm engine.Sampler
		for k := 0; k < n; k++ {
			logits, _, err := c.Eval(context.Background(), seq)
			if err != nil {
				b.Fatal(err)
			}
			seq = append(seq, sm.Sample(logits, seq))
		}
	}
	served := func(i int) {
		body := fmt.Sprintf(`{"model":%q,"prompt":"Prompt number %d:","max_tokens":%d,"temperature":0,"stream":true}`, modelName, i, n)
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		done := false
		for sc.Scan() {
			if sc.Text() == "data: [DONE]" {
				done = true
			}
		}
		if !done || resp.StatusCode != 200 {
			b.Fatalf("stream did not finish: %d", resp.StatusCode)
		}
	}
	direct(-1) // warm up both paths (model load, page faults)
	served(-1)
	b.ResetTimer()
	var tDirect, tServed time.Duration
	for i := range b.N {
		t0 := time.Now()
		direct(i)
		t1 := time.Now()
		served(i)
		tServed += time.Since(t1)
		tDirect += t1.Sub(t0)
	}
	dRate := float64(n*b.N) / tDirect.Seconds()
	sRate := float64(n*b.N) / tServed.Seconds()
	b.ReportMetric(dRate, "engine-tok/s")
	b.ReportMetric(sRate, "served-tok/s")
	b.ReportMetric(sRate/dRate, "ratio")
}
