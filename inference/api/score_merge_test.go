package api

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// TestHyphaScoreForgivesRetokenization: a verifier only sees the answer's
// text. This generated model's greedy chat answer is four "\n" tokens,
// which read back as one "\n\n\n\n" token; the merged token starts with
// the model's greedy choice, so the credit stays at 1 (an honest node
// must not lose reputation to the tokenizer), while another model's
// answer under the same prompt does not.
func TestHyphaScoreForgivesRetokenization(t *testing.T) {
	dir := t.TempDir()
	if err := testmodel.Write(filepath.Join(dir, "tiny.gguf"), testmodel.Spec{
		Arch: "qwen2", VocabFile: filepath.Join("..", "tokenizer", "testdata", "ggml-vocab-qwen2.gguf"),
		Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 256, Tied: true, Type: gguf.TensorQ8_0, Seed: 7,
	}); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{ModelsDir: dir})
	msgs := []map[string]string{{"role": "user", "content": "Hello"}}
	var cc struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if st := postJSON(t, ts.URL+"/v1/chat/completions", map[string]any{"model": "tiny", "messages": msgs,
		"max_tokens": 6, "temperature": 0}, &cc); st != 200 || len(cc.Choices) != 1 {
		t.Fatalf("chat: %d %+v", st, cc)
	}
	text := cc.Choices[0].Message.Content
	var sc struct {
		scoreAnswer
		Credit float64 `json:"credit"`
		Merged int     `json:"merged_tokens"`
		Greedy []int32 `json:"greedy"`
	}
	if st := postJSON(t, ts.URL+"/hypha/score", map[string]any{"model": "tiny", "messages": msgs, "response": text}, &sc); st != 200 {
		t.Fatalf("score: %d %s", st, sc.Error)
	}
	t.Logf("answer %q: %d tokens read back, %d merged, credit %.4f, raw exp(mean gap) %.3g", text, len(sc.Tokens), sc.Merged,
		sc.Credit, math.Exp(sc.MeanLogprob-sc.MeanBestLogprob))
	if sc.Merged == 0 {
		t.Fatalf("this model's greedy answer %q should read back with merged tokens (the case under test): %+v", text, sc)
	}
	if sc.Credit < 0.95 {
		t.Fatalf("honest greedy answer scored %.4f, want >= 0.95", sc.Credit)
	}
	if len(sc.Greedy) != len(sc.Tokens) {
		t.Fatalf("greedy %v for tokens %v", sc.Greedy, sc.Tokens)
	}
	var other struct {
		Credit float64 `json:"credit"`
	}
	postJSON(t, ts.URL+"/hypha/score", map[string]any{"model": "tiny", "messages": msgs, "response": "The river runs to the sea."}, &other)
	if other.Credit > 0.4 {
		t.Fatalf("a made-up answer scored %.4f, want < 0.4", other.Credit)
	}
}
