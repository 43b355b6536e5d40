package verify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/api"
	"github.com/univrs/hypha/inference/defaultmodel"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// The integration tests run real inference servers (the real engine and
// API) on 127.0.0.1. The reference model is Hypha's default model,
// hypha-kjv-tiny (trained, so its greedy answers are real text); the
// impostor has the same architecture, shape, vocabulary, chat template and
// file name, with random weights from testmodel (what a node serving "the
// wrong model under the right name" looks like).
//
// (A random-weight reference does not work: its greedy answers degenerate
// into runs like "\n\n\n…", which the tokenizer re-encodes as one
// merged token the model never produced; see docs/status/verify.md.)

var modelName = defaultmodel.Name

var (
	modelsOnce      sync.Once
	refDir, fakeDir string
	modelsErr       error
)

// impostorSpec is hypha-kjv-tiny's shape (models/README.md).
func impostorSpec(vocab string, seed uint64) testmodel.Spec {
	return testmodel.Spec{Arch: "llama", VocabFile: vocab, Layers: 4, Dim: 128, FFN: 384, Heads: 4, KVHeads: 2,
		ContextLen: 128, Tied: true, Type: gguf.TensorF16, Seed: seed}
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{refDir, fakeDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// modelDirs writes the reference and the impostor once per test binary,
// each as hypha-kjv-tiny.gguf in its own directory.
func modelDirs(t testing.TB) (ref, fake string) {
	t.Helper()
	modelsOnce.Do(func() {
		if refDir, modelsErr = os.MkdirTemp("", "hypha-verify-ref-"); modelsErr != nil {
			return
		}
		var path string
		if path, modelsErr = defaultmodel.WriteTo(refDir); modelsErr != nil {
			return
		}
		if fakeDir, modelsErr = os.MkdirTemp("", "hypha-verify-fake-"); modelsErr != nil {
			return
		}
		modelsErr = testmodel.Write(filepath.Join(fakeDir, defaultmodel.FileName), impostorSpec(path, 8))
	})
	if modelsErr != nil {
		t.Fatal(modelsErr)
	}
	return refDir, fakeDir
}

// startInferd runs an inference server over dir on 127.0.0.1.
func startInferd(t testing.TB, dir string) string { return startInferdCache(t, dir, 0) }

// startInferdCache runs an inference server whose KV cache is bounded to
// cacheBytes (0: the default).
func startInferdCache(t testing.TB, dir string, cacheBytes int64) string {
	t.Helper()
	s, err := api.New(api.Config{ModelsDir: dir, Engine: api.Builtin{Threads: 2, Log: slog.New(slog.DiscardHandler)},
		Log: slog.New(slog.DiscardHandler), Queue: 64, CacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return hs.URL
}

// httpSender sends challenges to nodes' OpenAI endpoints (hyphad sends
// them as cloves instead).
type httpSender map[string]string // node -> base URL

func (h httpSender) Send(ctx context.Context, node string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h[node]+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %d %s", node, resp.StatusCode, b)
	}
	return b, nil
}

// TestCreditHonestVsImpostor: greedy answers of the reference model score
// a credit near 1 under the reference; answers of the same-name impostor
// score far below the abnormal line.
func TestCreditHonestVsImpostor(t *testing.T) {
	ref, fake := modelDirs(t)
	refURL, fakeURL := startInferd(t, ref), startInferd(t, fake)
	send := httpSender{"honest": refURL, "impostor": fakeURL}
	sc := Scorer{BaseURL: refURL}
	pool := NewPool(nil, 1)
	ctx := context.Background()
	n := 6
	if testing.Short() {
		n = 2
	}
	var sum = map[string]float64{}
	for i := range n {
		ch := pool.Next(modelName)
		ch.MaxTokens = 32
		ch.Stream = i%2 == 1 // half of them streamed (SSE), as chat front ends ask
		for _, node := range []string{"honest", "impostor"} {
			body, err := send.Send(ctx, node, ch.Body())
			if err != nil {
				t.Fatal(err)
			}
			text, err := AnswerText(body)
			if err != nil {
				t.Fatalf("%s: %v (%s)", node, err, body)
			}
			s, err := sc.Score(ctx, modelName, ch.Messages, text)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("challenge %d %-8s (stream %-5v): %2d tokens, mean logprob %7.3f, best %7.3f, perplexity %10.1f, credit %.4f",
				i, node, ch.Stream, s.Tokens, s.MeanLogprob, s.MeanBestLogprob, s.Perplexity, s.Credit)
			sum[node] += s.Credit
		}
	}
	honest, impostor := sum["honest"]/float64(n), sum["impostor"]/float64(n)
	t.Logf("mean credit over %d challenges: honest %.4f, impostor %.4f", n, honest, impostor)
	if honest <= 0.95 {
		t.Errorf("honest node's mean credit %.4f, want > 0.95", honest)
	}
	if impostor >= 0.4 {
		t.Errorf("impostor's mean credit %.4f, want < 0.4", impostor)
	}
}

// TestCommitteeCatchesImpostor: three verifiers, each with its own
// reference engine, verify an honest node and an impostor for five epochs;
// their signed reports, exchanged as encoded batches, put the impostor
// under the threshold with the reason, while the honest node stays
// trusted; every verifier's book computes the same numbers.
func TestCommitteeCatchesImpostor(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 5 epochs of real inference")
	}
	ref, fake := modelDirs(t)
	refURL := startInferd(t, ref)
	_, honest := testKey(t, nodeBase)
	_, impostor := testKey(t, nodeBase+1)
	send := httpSender{honest: startInferd(t, ref), impostor: startInferd(t, fake)}
	p := Params{Challenges: 2}
	vs := committee(t, 0, 1, 2)
	var clock time.Time // read by the books' clocks; this goroutine alone sets it
	books := make([]*Book, 3)
	verifiers := make([]*Verifier, 3)
	for i := range 3 {
		books[i] = NewBook(p, community, vs)
		books[i].SetNow(func() time.Time { return clock })
		k, _ := testKey(t, i)
		verifiers[i] = &Verifier{Community: community, Key: k, Params: p, Pool: NewPool(nil, int64(i)),
			Scorer: Scorer{BaseURL: refURL}, Send: send}
	}
	ctx := context.Background()
	for e := int64(1000); e < 1005; e++ {
		clock = p.withDefaults().EpochStart(e)
		var batch []*Report
		for _, v := range verifiers {
			for _, node := range []string{honest, impostor} {
				r, err := v.Verify(ctx, e, node, modelName)
				if err != nil {
					t.Fatal(err)
				}
				batch = append(batch, r)
			}
		}
		wire := EncodeReports(batch)
		for _, b := range books {
			rs, err := DecodeReports(wire)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if _, err := b.Add(r); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	hh, hi := books[0].History(honest, 1004), books[0].History(impostor, 1004)
	for _, pt := range hi.Points {
		t.Logf("impostor epoch %d: median credit %.3f from %d, R %.3f (β %.3f)", pt.Epoch, pt.Credit, pt.Verifiers, pt.Reputation, pt.Beta)
	}
	for _, pt := range hh.Points {
		t.Logf("honest   epoch %d: median credit %.3f from %d, R %.3f", pt.Epoch, pt.Credit, pt.Verifiers, pt.Reputation)
		if pt.Reputation < books[0].Params().Threshold {
			t.Errorf("honest node under the threshold at epoch %d", pt.Epoch)
		}
	}
	if !hh.Trusted || hi.Trusted || len(hi.Points) != 5 || hi.Reason == "" {
		t.Fatalf("honest %+v\nimpostor %+v", hh, hi)
	}
	t.Logf("impostor: %s", hi.Reason)
	for i, b := range books[1:] {
		if got := b.History(impostor, 1004); got.Current != hi.Current {
			t.Errorf("verifier %d computes %v for the impostor, verifier 0 %v", i+1, got.Current, hi.Current)
		}
	}
}
