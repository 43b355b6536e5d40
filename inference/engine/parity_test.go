package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// repoRoot finds the module root (the directory holding go.mod).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

func vocabFile(t testing.TB, name string) string {
	t.Helper()
	for _, dir := range []string{"/work/shared/testdata/tokenizer", filepath.Join(repoRoot(t), "..", "shared", "testdata", "tokenizer")} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("vocabulary %s not available", name)
	return ""
}

var refOnce sync.Once

// refHarness returns the path of ref.mjs installed next to its node_modules
// in out/refharness. Without the reference the test fails (make test
// installs it), except under -short where it skips.
func refHarness(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	dir := filepath.Join(root, "out", "refharness")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@node-llama-cpp", "linux-x64")); err != nil {
		if testing.Short() {
			t.Skip("llama.cpp reference not installed (make engine-refharness)")
		}
		t.Fatalf("llama.cpp reference not installed: run `make engine-refharness` (%v)", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		if testing.Short() {
			t.Skip("node not installed")
		}
		t.Fatal("node not installed (Debian package nodejs)")
	}
	var err error
	refOnce.Do(func() {
		var b []byte
		if b, err = os.ReadFile(filepath.Join(root, "inference", "engine", "refharness", "ref.mjs")); err == nil {
			err = os.WriteFile(filepath.Join(dir, "ref.mjs"), b, 0o644)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ref.mjs")
}

func runRef(t testing.TB, out any, args ...string) {
	t.Helper()
	cmd := exec.Command("node", append([]string{refHarness(t)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("reference %v: %v\n%s", args[:2], err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("reference output: %v\n%.300s", err, stdout.String())
	}
}

func joinTokens(toks []int32) string {
	s := make([]string, len(toks))
	for i, t := range toks {
		s[i] = fmt.Sprint(t)
	}
	return strings.Join(s, ",")
}

// allLogits evaluates tokens from scratch and returns every position's logits.
func allLogits(m *Model, tokens []int32) [][]float32 {
	var s scratch
	var seq kvSeq
	l := m.forward(&s, &seq, tokens, true)
	out := make([][]float32, len(tokens))
	for i := range out {
		out[i] = append([]float32(nil), l[i*m.cfg.Vocab:(i+1)*m.cfg.Vocab]...)
	}
	return out
}

func smallSpec(arch, vocab string, typ gguf.TensorType) testmodel.Spec {
	return testmodel.Spec{Arch: arch, VocabFile: vocab, Layers: 2, Dim: 256, FFN: 512, Heads: 4, KVHeads: 2, ContextLen: 512, Type: typ, Seed: 42}
}

func genModel(t testing.TB, name string, s testmodel.Spec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".gguf")
	if err := testmodel.Write(p, s); err != nil {
		t.Fatal(err)
	}
	return p
}

var prompt = []int32{1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366}

func TestParityLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("parity with llama.cpp runs node; skipped under -short")
	}
	spm := vocabFile(t, "ggml-vocab-llama-spm.gguf")
	refHarness(t)
	type tc struct {
		name    string
		spec    testmodel.Spec
		relTol  float64
		greedyN int // 0: no greedy comparison
	}
	cases := []tc{
		{"llama-F32", smallSpec("llama", spm, gguf.TensorF32), 1e-3, 12},
		{"llama-F16", smallSpec("llama", spm, gguf.TensorF16), 2e-3, 12},
		{"llama-BF16", smallSpec("llama", spm, gguf.TensorBF16), 5e-3, 0},
		{"llama-Q8_0", smallSpec("llama", spm, gguf.TensorQ8_0), 2e-3, 12},
		{"llama-Q4_0", smallSpec("llama", spm, gguf.TensorQ4_0), 2e-2, 0},
		{"llama-Q4_K", smallSpec("llama", spm, gguf.TensorQ4_K), 3e-2, 0},
		{"llama-Q6_K", smallSpec("llama", spm, gguf.TensorQ6_K), 3e-2, 0},
	}
	// The architecture, not the vocabulary, is under test here: only qwen2
	// pays for its 151k-token vocabulary.
	qwen := vocabFile(t, "ggml-vocab-qwen2.gguf")
	l3 := smallSpec("llama", spm, gguf.TensorQ8_0)
	l3.Llama3Rope, l3.RopeBase, l3.Tied = true, 500000, true
	q2 := smallSpec("qwen2", qwen, gguf.TensorQ8_0)
	q2.Tied, q2.RopeBase = true, 1000000
	q3 := smallSpec("qwen3", spm, gguf.TensorQ8_0)
	q3.Tied, q3.HeadDim = true, 128 // qwen3 has head_dim != dim/heads
	cases = append(cases,
		tc{"llama3-rope-Q8_0", l3, 2e-3, 12},
		tc{"qwen2-Q8_0", q2, 2e-3, 12},
		tc{"qwen3-Q8_0", q3, 2e-3, 12},
	)
	var report []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := genModel(t, c.name, c.spec)
			m, err := Load(path, WithThreads(2))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var ref struct {
				Positions int
				Tokens    []int32
			}
			out := filepath.Join(t.TempDir(), "ref.f32")
			runRef(t, &ref, "parity", path, "2", joinTokens(prompt), fmt.Sprint(m.cfg.Vocab), fmt.Sprint(c.greedyN), out)
			raw, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got := allLogits(m, prompt)
			if ref.Positions != len(got) || len(raw) != 4*len(got)*m.cfg.Vocab {
				t.Fatalf("reference gave %d positions (%d bytes), want %d x %d", ref.Positions, len(raw), len(got), m.cfg.Vocab)
			}
			var maxAbs, maxRef float64
			for i := range got {
				for j := range got[i] {
					r := float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(i*m.cfg.Vocab+j):])))
					maxAbs = math.Max(maxAbs, math.Abs(float64(got[i][j])-r))
					maxRef = math.Max(maxRef, math.Abs(r))
				}
			}
			rel := maxAbs / maxRef
			line := fmt.Sprintf("%-18s max abs err %.2e  max |logit| %.2f  relative %.2e", c.name, maxAbs, maxRef, rel)
			report = append(report, line)
			t.Log(line)
			if rel > c.relTol || math.IsNaN(rel) {
				t.Errorf("relative logit error %.3e > %.1e", rel, c.relTol)
			}
			if c.greedyN > 0 {
				cache := m.NewCache(64 << 20)
				seq := append([]int32(nil), prompt...)
				var gen []int32
				var smp Sampler
				for i := 0; i < c.greedyN; i++ {
					logits, _, err := cache.Eval(context.Background(), seq)
					if err != nil {
						t.Fatal(err)
					}
					tok := smp.Sample(logits, seq)
					gen = append(gen, tok)
					seq = append(seq, tok)
				}
				if fmt.Sprint(gen) != fmt.Sprint(ref.Tokens) {
					t.Errorf("greedy continuation differs:\n ours %v\n ref  %v", gen, ref.Tokens)
				}
			}
		})
	}
	t.Logf("logit parity with llama.cpp:\n%s", strings.Join(report, "\n"))
}
