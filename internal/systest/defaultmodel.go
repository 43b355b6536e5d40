package systest

import (
	"path/filepath"
	"testing"

	"github.com/univrs/hypha/inference/defaultmodel"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// WriteDefaultModel puts the project's trained default model
// (hypha-kjv-tiny, defaultmodel.Name) into the box's models directory,
// as hyphad does on a fresh appliance.
func (b *Box) WriteDefaultModel(t testing.TB) {
	t.Helper()
	if _, err := defaultmodel.WriteTo(b.Models); err != nil {
		t.Fatal(err)
	}
}

// WriteImpostor puts a different model under the default model's name:
// random weights of a smaller shape with the same tokenizer and chat
// template, so every client sees the same name, vocabulary and format.
// It is the cheat the verification committee must catch.
func (b *Box) WriteImpostor(t testing.TB, seed uint64) {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "ref")
	vocab, err := defaultmodel.WriteTo(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(filepath.Join(b.Models, defaultmodel.FileName), testmodel.Spec{
		Arch: "llama", VocabFile: vocab, Layers: 2, Dim: 64, FFN: 192, Heads: 4, KVHeads: 2,
		ContextLen: 128, Tied: true, Type: gguf.TensorF16, Seed: seed,
	}); err != nil {
		t.Fatal(err)
	}
}
