package systest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// WriteModelSpec generates a model of the given shape (random weights)
// named name into the box's models directory. A relative spec.VocabFile
// is taken from the module root (e.g.
// "inference/tokenizer/testdata/ggml-vocab-llama-spm.gguf"). Use it for
// models larger than WriteModel's, e.g. one whose prompt processing
// dominates for routing benchmarks; BenchModelSpec is such a shape.
func (b *Box) WriteModelSpec(t testing.TB, name string, spec testmodel.Spec) {
	t.Helper()
	if spec.VocabFile != "" && !filepath.IsAbs(spec.VocabFile) {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		spec.VocabFile = filepath.Join(root, spec.VocabFile)
	}
	if err := os.MkdirAll(b.Models, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(filepath.Join(b.Models, name+".gguf"), spec); err != nil {
		t.Fatalf("write model %s on %s: %v", name, b.Name, err)
	}
}

// BenchModelSpec is a model whose prefill dominates on a CPU (llama
// shape, the 32k SentencePiece vocabulary, 4 layers of width 128, Q8_0):
// the routing benchmarks' model. Its KV cache takes 4 KiB per token.
func BenchModelSpec(seed uint64) testmodel.Spec {
	return testmodel.Spec{
		Arch: "llama", VocabFile: "inference/tokenizer/testdata/ggml-vocab-llama-spm.gguf",
		Layers: 4, Dim: 128, FFN: 384, Heads: 4, KVHeads: 4, ContextLen: 2048,
		Type: gguf.TensorQ8_0, Seed: seed,
	}
}
