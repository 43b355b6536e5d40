package defaultmodel

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/engine"
)

// BenchmarkEngine measures our engine on the default model: prompt
// processing (pp, one 96-token prompt) and generation (tg, 32 tokens one
// by one), reported as tokens/s.
func BenchmarkEngine(b *testing.B) {
	m, tk := load(b, Bytes())
	const pp, tg = 96, 32
	prompt := tk.Encode("In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God said, Let there be light: and there was light. And God saw the light, that it was good: and God divided the light from the darkness.", true, false)
	for len(prompt) < pp {
		prompt = append(prompt, prompt[1:]...)
	}
	prompt = prompt[:pp]
	var ppDur, tgDur time.Duration
	for b.Loop() {
		cache := m.NewCache(0)
		t0 := time.Now()
		logits, _, err := cache.Eval(context.Background(), prompt)
		if err != nil {
			b.Fatal(err)
		}
		ppDur += time.Since(t0)
		var smp engine.Sampler
		seq := append([]int32(nil), prompt...)
		t0 = time.Now()
		for range tg {
			tok := smp.Sample(logits, seq)
			seq = append(seq, tok)
			if logits, _, err = cache.Eval(context.Background(), seq); err != nil {
				b.Fatal(err)
			}
		}
		tgDur += time.Since(t0)
	}
	n := float64(b.N)
	ppTPS := n * pp / ppDur.Seconds()
	tgTPS := n * tg / tgDur.Seconds()
	b.ReportMetric(ppTPS, "pp_tok/s")
	b.ReportMetric(tgTPS, "tg_tok/s")
	b.ReportMetric(0, "ns/op")

	// No llama.cpp figure in the same run: ref.mjs's bench mode feeds token
	// ids up to 5100, beyond this model's 2048, and its greedy mode spends
	// ~0.3 s per token marshalling logits in JavaScript, which would
	// measure node, not llama.cpp. Correctness against llama.cpp is
	// TestParityLlamaCpp.
}

// refHarness returns the path of the llama.cpp reference script installed
// by make engine-refharness (out/refharness), or "" when it is missing.
func refHarness() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	h := filepath.Join(dir, "out", "refharness")
	if _, err := os.Stat(filepath.Join(h, "node_modules", "@node-llama-cpp", "linux-x64")); err != nil {
		return ""
	}
	if _, err := exec.LookPath("node"); err != nil {
		return ""
	}
	src, err := os.ReadFile(filepath.Join(dir, "inference", "engine", "refharness", "ref.mjs"))
	if err != nil {
		return ""
	}
	// ref.mjs must sit next to node_modules; the engine's tests copy it
	// there the same way.
	p := filepath.Join(h, "ref.mjs")
	if cur, err := os.ReadFile(p); err != nil || !bytes.Equal(cur, src) {
		if err := os.WriteFile(p, src, 0o644); err != nil {
			return ""
		}
	}
	return p
}

func runNode(script string, out any, args ...string) error {
	cmd := exec.Command("node", append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return &refError{err: err, stderr: stderr.String()}
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

type refError struct {
	err    error
	stderr string
}

func (e *refError) Error() string { return "llama.cpp reference: " + e.err.Error() + ": " + e.stderr }
func (e *refError) Unwrap() error { return e.err }

// llamaCppParity runs the reference on tokens: every position's logits
// (positions x vocab) and n greedy tokens after tokens.
func llamaCppParity(t testing.TB, ref, path string, tokens []int32, vocab, n int) ([][]float32, []int32) {
	t.Helper()
	s := make([]byte, 0, 6*len(tokens))
	for i, tok := range tokens {
		if i > 0 {
			s = append(s, ',')
		}
		s = strconv.AppendInt(s, int64(tok), 10)
	}
	f32 := filepath.Join(t.TempDir(), "logits.f32")
	var out struct {
		Positions int
		Tokens    []int32
	}
	if err := runNode(ref, &out, "parity", path, "2", string(s), strconv.Itoa(vocab), strconv.Itoa(n), f32); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(f32)
	if err != nil {
		t.Fatal(err)
	}
	if out.Positions != len(tokens) || len(raw) != 4*len(tokens)*vocab {
		t.Fatalf("reference gave %d positions (%d bytes), want %d x %d", out.Positions, len(raw), len(tokens), vocab)
	}
	logits := make([][]float32, len(tokens))
	for i := range logits {
		logits[i] = make([]float32, vocab)
		for j := range logits[i] {
			logits[i][j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(i*vocab+j):]))
		}
	}
	return logits, out.Tokens
}
