package verify

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/univrs/hypha/inference/defaultmodel"
	"github.com/univrs/hypha/inference/engine/quant"
	"github.com/univrs/hypha/inference/gguf"
)

// requantize writes src's model with every F16 matrix re-encoded as to
// (the same weights, another quantization: what a node that downloaded a
// different GGUF of the community's model would serve).
func requantize(t testing.TB, src, dst string, to gguf.TensorType) {
	t.Helper()
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w gguf.Writer
	for _, kv := range f.KV {
		if kv.Key != "general.alignment" {
			w.Add(kv.Key, kv.Value)
		}
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		data, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		typ := ti.Type
		if typ == gguf.TensorF16 && len(ti.Dims) == 2 && ti.Dims[0]%quant.QK8_0 == 0 {
			x := make([]float32, ti.Elements())
			quant.Dequantize(typ, data, x)
			if data, err = quant.Quantize(to, x); err != nil {
				t.Fatal(err)
			}
			typ = to
		}
		w.AddTensor(ti.Name, typ, ti.Dims, data)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := w.WriteTo(out); err != nil {
		t.Fatal(err)
	}
}

// TestCreditQuantizedVariant measures what the committee makes of a node
// serving the community's model in another quantization: the same weights,
// rounded. Its greedy answers follow the reference's until a near-tie
// flips. The test pins only that a Q8_0 copy is not mistaken for another
// model (credit well above the abnormal line) and logs what Q4_0 scores;
// the figures are in docs/benchmarks/verify.md.
func TestCreditQuantizedVariant(t *testing.T) {
	if testing.Short() {
		t.Skip("real inference")
	}
	ref, _ := modelDirs(t)
	refURL := startInferd(t, ref)
	sc := Scorer{BaseURL: refURL}
	ctx := context.Background()
	for _, typ := range []gguf.TensorType{gguf.TensorQ8_0, gguf.TensorQ4_0} {
		dir := t.TempDir()
		requantize(t, filepath.Join(ref, defaultmodel.FileName), filepath.Join(dir, defaultmodel.FileName), typ)
		url := startInferd(t, dir)
		pool := NewPool(nil, 1)
		const n = 6
		var sum float64
		for range n {
			ch := pool.Next(modelName)
			ch.MaxTokens = 32
			body, err := httpSender{"variant": url}.Send(ctx, "variant", ch.Body())
			if err != nil {
				t.Fatal(err)
			}
			text, err := AnswerText(body)
			if err != nil {
				t.Fatal(err)
			}
			s, err := sc.Score(ctx, modelName, ch.Messages, text)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v variant: %2d tokens, credit %.4f", typ, s.Tokens, s.Credit)
			sum += s.Credit
		}
		mean := sum / n
		t.Logf("mean credit of the %v variant over %d challenges: %.4f", typ, n, mean)
		if typ == gguf.TensorQ8_0 && mean < 0.6 {
			t.Errorf("Q8_0 copy of the reference scores %.4f: it would be mistaken for another model", mean)
		}
	}
}
