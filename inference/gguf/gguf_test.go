package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sample(t testing.TB) []byte {
	t.Helper()
	var w Writer
	w.Add("general.architecture", "llama")
	w.Add("llama.block_count", uint32(2))
	w.Add("llama.rope.freq_base", float32(10000))
	w.Add("some.int64", int64(-5))
	w.Add("some.u64", uint64(1<<40))
	w.Add("some.f64", 2.5)
	w.Add("some.bool", true)
	w.Add("tokenizer.ggml.tokens", []string{"<s>", "</s>", "hello", ""})
	w.Add("tokenizer.ggml.scores", []float32{0, 0, -1.5, -2})
	w.Add("tokenizer.ggml.token_type", []int32{3, 3, 1, 1})
	w.Add("bytes", []uint8{1, 2, 3})
	w.Add("i16s", []int16{-1, 2})
	w.AddTensor("a", TensorF32, []uint64{3, 2}, make([]byte, 24))
	w.AddTensor("b", TensorQ8_0, []uint64{64}, bytes.Repeat([]byte{7}, 68))
	w.AddTensor("c", TensorF16, []uint64{5}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	b := sample(t)
	f, err := Decode(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
		t.Fatalf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
	}
	if s, ok := f.String("general.architecture"); !ok || s != "llama" {
		t.Errorf("architecture = %q, %v", s, ok)
	}
	if n, ok := f.Uint("llama.block_count"); !ok || n != 2 {
		t.Errorf("block_count = %d, %v", n, ok)
	}
	if _, ok := f.Uint("some.int64"); ok {
		t.Error("negative int64 accepted as Uint")
	}
	if n, ok := f.Uint("some.u64"); !ok || n != 1<<40 {
		t.Errorf("u64 = %d", n)
	}
	if v, ok := f.Float("llama.rope.freq_base"); !ok || v != 10000 {
		t.Errorf("freq_base = %v", v)
	}
	if v, ok := f.Float("some.f64"); !ok || v != 2.5 {
		t.Errorf("f64 = %v", v)
	}
	if v, ok := f.Bool("some.bool"); !ok || !v {
		t.Errorf("bool = %v %v", v, ok)
	}
	if v, ok := f.Strings("tokenizer.ggml.tokens"); !ok || !reflect.DeepEqual(v, []string{"<s>", "</s>", "hello", ""}) {
		t.Errorf("tokens = %q", v)
	}
	if v, ok := f.Float32s("tokenizer.ggml.scores"); !ok || !reflect.DeepEqual(v, []float32{0, 0, -1.5, -2}) {
		t.Errorf("scores = %v", v)
	}
	if v, ok := f.Int32s("tokenizer.ggml.token_type"); !ok || !reflect.DeepEqual(v, []int32{3, 3, 1, 1}) {
		t.Errorf("token_type = %v", v)
	}
	if kv, ok := f.Lookup("i16s"); !ok || kv.ArrayType != TypeInt16 || !reflect.DeepEqual(kv.Value, []int16{-1, 2}) {
		t.Errorf("i16s = %+v", kv)
	}
	if _, ok := f.String("llama.block_count"); ok {
		t.Error("String accepted a uint32")
	}
	if got := []string{f.KV[0].Key, f.KV[1].Key}; got[0] != "general.architecture" || got[1] != "llama.block_count" {
		t.Errorf("KV order %v", got)
	}
	if len(f.Tensors) != 3 {
		t.Fatalf("%d tensors", len(f.Tensors))
	}
	for _, ti := range f.Tensors {
		if ti.Offset%32 != 0 {
			t.Errorf("tensor %s offset %d unaligned", ti.Name, ti.Offset)
		}
	}
	c, err := f.ReadTensor("c")
	if err != nil || !bytes.Equal(c, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("ReadTensor(c) = %v, %v", c, err)
	}
	bq, err := f.ReadTensor("b")
	if err != nil || !bytes.Equal(bq, bytes.Repeat([]byte{7}, 68)) {
		t.Errorf("ReadTensor(b) = %v, %v", bq, err)
	}
}

func TestOpenRealVocabularies(t *testing.T) {
	paths, _ := filepath.Glob("/work/shared/testdata/tokenizer/*.gguf")
	if len(paths) == 0 {
		paths, _ = filepath.Glob("../../../shared/testdata/tokenizer/*.gguf")
	}
	if len(paths) == 0 {
		t.Skip("no tokenizer test vocabularies on this machine")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			toks, ok := f.Strings("tokenizer.ggml.tokens")
			if !ok || len(toks) < 1000 {
				t.Fatalf("tokens: %d, %v", len(toks), ok)
			}
			if m, ok := f.String("tokenizer.ggml.model"); !ok || (m != "llama" && m != "gpt2") {
				t.Errorf("tokenizer.ggml.model = %q", m)
			}
			if _, ok := f.String("general.architecture"); !ok {
				t.Error("no general.architecture")
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
			if err := f.Close(); err != nil {
				t.Error("second Close:", err)
			}
		})
	}
}

func TestHostile(t *testing.T) {
	good := sample(t)
	le := binary.LittleEndian
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	// offset of the first key length: after magic, version, two counts
	const kv0 = 4 + 4 + 8 + 8
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "magic: truncated"},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), "not a GGUF file"},
		{"version 1", mut(func(b []byte) []byte { le.PutUint32(b[4:], 1); return b }), "version: 1 (want 2 or 3)"},
		{"big endian", mut(func(b []byte) []byte { le.PutUint32(b[4:], 3<<24); return b }), "big-endian"},
		{"huge kv count", mut(func(b []byte) []byte { le.PutUint64(b[16:], 1<<60); return b }), "metadata count"},
		{"huge tensor count", mut(func(b []byte) []byte { le.PutUint64(b[8:], 1<<60); return b }), "tensor count"},
		{"huge key", mut(func(b []byte) []byte { le.PutUint64(b[kv0:], 1<<62); return b }), "metadata[0] key: string length"},
		{"bad type", mut(func(b []byte) []byte { le.PutUint32(b[kv0+8+20:], 99); return b }), "value type 99"},
		{"truncated", good[:200], "truncated"},
		{"cut in data", good[:len(good)-3], "runs past"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(c.in), int64(len(c.in)))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %q wraps neither ErrFormat nor ErrUnsupported", err)
			}
		})
	}
}

func TestOpenErrorNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "broken.gguf")
	if err := os.WriteFile(p, sample(t)[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v does not name %s", err, p)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample(f))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Add([]byte("GGUF\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gf, err := Decode(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for _, ti := range gf.Tensors {
			if _, _, ok := ti.Type.BlockSize(); ok {
				if _, err := gf.ReadTensor(ti.Name); err != nil {
					t.Fatalf("decoded tensor %q unreadable: %v", ti.Name, err)
				}
			}
		}
	})
}
