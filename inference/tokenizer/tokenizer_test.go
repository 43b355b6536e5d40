package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/univrs/hypha/inference/gguf"
)

// The vocabularies and vectors under testdata/ are llama.cpp's own
// (models/ggml-vocab-*.gguf{,.inp,.out}), generated with the reference
// Hugging Face tokenizers.
var vocabs = []string{"llama-spm", "phi-3", "llama-bpe", "qwen2"}

var (
	loadMu sync.Mutex
	loaded = map[string]*Tokenizer{}
)

func load(t testing.TB, name string) *Tokenizer {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if tk, ok := loaded[name]; ok {
		return tk
	}
	f, err := gguf.Open(filepath.Join("testdata", "ggml-vocab-"+name+".gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tk, err := FromGGUF(f)
	if err != nil {
		t.Fatalf("FromGGUF(%s): %v", name, err)
	}
	loaded[name] = tk
	return tk
}

// readVectors splits a .inp file exactly as llama.cpp's test-tokenizer-0
// does: on "\n__ggml_vocab_test__\n", the last piece kept only if non-empty.
func readVectors(t *testing.T, name string) ([]string, [][]int32) {
	t.Helper()
	inp, err := os.ReadFile(filepath.Join("testdata", "ggml-vocab-"+name+".gguf.inp"))
	if err != nil {
		t.Fatal(err)
	}
	outp, err := os.ReadFile(filepath.Join("testdata", "ggml-vocab-"+name+".gguf.out"))
	if err != nil {
		t.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	var in []string
	raw := string(inp)
	for pos := 0; pos < len(raw); {
		i := strings.Index(raw[pos:], sep)
		if i < 0 {
			in = append(in, raw[pos:])
			break
		}
		in = append(in, raw[pos:pos+i])
		pos += i + len(sep)
	}
	lines := strings.Split(strings.TrimSuffix(string(outp), "\n"), "\n")
	if len(lines) != len(in) {
		t.Fatalf("%s: %d inputs, %d outputs", name, len(in), len(lines))
	}
	want := make([][]int32, len(lines))
	for i, l := range lines {
		want[i] = []int32{}
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", name, i+1, err)
			}
			want[i] = append(want[i], int32(n))
		}
	}
	return in, want
}

// TestParityLlamaCpp: every vector of every vocabulary gives exactly
// llama.cpp's ids (test-tokenizer-0: add_special=false, parse_special=false).
func TestParityLlamaCpp(t *testing.T) {
	for _, name := range vocabs {
		t.Run(name, func(t *testing.T) {
			tk := load(t, name)
			in, want := readVectors(t, name)
			fails := 0
			for i, s := range in {
				got := tk.Encode(s, false, false)
				if len(got) == 0 {
					got = []int32{}
				}
				if !reflect.DeepEqual(got, want[i]) {
					fails++
					t.Errorf("%q:\n got %v\nwant %v", s, got, want[i])
				}
			}
			t.Logf("%s: %d/%d strings identical", name, len(in)-fails, len(in))
		})
	}
}

func TestSpecialTokens(t *testing.T) {
	q := load(t, "qwen2")
	im, ok := q.TokenID("<|im_start|>")
	if !ok {
		t.Fatal("no <|im_start|>")
	}
	got := q.Encode("<|im_start|>user\nhi", false, true)
	if got[0] != im {
		t.Errorf("parseSpecial: first id %d, want %d", got[0], im)
	}
	plain := q.Encode("<|im_start|>user\nhi", false, false)
	if plain[0] == im {
		t.Error("without parseSpecial the control token must not be recognised")
	}
	if !q.IsEOG(mustID(t, q, "<|im_end|>")) || !q.IsEOG(mustID(t, q, "<|endoftext|>")) {
		t.Error("qwen2: <|im_end|> and <|endoftext|> must end generation")
	}
	if d := q.Decode(got, false); d != "user\nhi" {
		t.Errorf("Decode without special = %q", d)
	}
	if d := q.Decode(got, true); d != "<|im_start|>user\nhi" {
		t.Errorf("Decode with special = %q", d)
	}

	l := load(t, "llama-bpe")
	ids := l.Encode("Hello", true, false)
	if ids[0] != 128000 || len(ids) != 2 {
		t.Errorf("llama-bpe add_special: %v, want BOS 128000 first", ids)
	}
	if !l.IsEOG(mustID(t, l, "<|eot_id|>")) {
		t.Error("<|eot_id|> must end generation")
	}

	s := load(t, "llama-spm")
	ids = s.Encode("Once", true, false)
	if !reflect.DeepEqual(ids, []int32{1, 9038}) {
		t.Errorf("spm Once = %v, want [1 9038] (BOS, ▁Once)", ids)
	}
	// as llama_detokenize: the added space is removed only from the first token
	if d := s.Decode(ids[1:], false); d != "Once" {
		t.Errorf("spm decode = %q", d)
	}
	if d := s.Decode(ids, false); d != " Once" {
		t.Errorf("spm decode after BOS = %q, want llama.cpp's %q", d, " Once")
	}
	// byte fallback: a character not in the vocabulary
	ids = s.Encode("🦙", false, false)
	for _, id := range ids[1:] {
		if !strings.HasPrefix(s.Token(id), "<0x") {
			t.Errorf("🦙 -> %v: want byte tokens after ▁", ids)
		}
	}
	if d := s.Decode(ids, false); d != "🦙" {
		t.Errorf("byte fallback round trip = %q", d)
	}
}

func mustID(t *testing.T, tk *Tokenizer, s string) int32 {
	t.Helper()
	id, ok := tk.TokenID(s)
	if !ok {
		t.Fatalf("no token %q", s)
	}
	return id
}

func TestStreamDecoderHoldsPartialUTF8(t *testing.T) {
	for _, name := range vocabs {
		tk := load(t, name)
		const text = "héllo 🦙 нещо 我想在apple工作 ✅"
		ids := tk.Encode(text, false, false)
		d := tk.NewStreamDecoder()
		var b strings.Builder
		for _, id := range ids {
			s := d.Add(id)
			if !utf8.ValidString(s) {
				t.Errorf("%s: partial UTF-8 emitted: %q", name, s)
			}
			b.WriteString(s)
		}
		b.WriteString(d.Flush())
		got := b.String()
		if tk.spacePrefix {
			got = strings.TrimPrefix(got, " ")
		}
		if got != text {
			t.Errorf("%s: streamed %q, want %q", name, got, text)
		}
	}
}

func TestCompletePrefix(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", 0}, {"a", 1}, {"\xf0\x9f", 0}, {"a\xf0\x9f\xa6", 1}, {"a\xf0\x9f\xa6\x99", 5},
		{"\xc3", 0}, {"\xc3\xa9", 2}, {"\xff", 1}, {"a\xe4\x41", 3}, {"\x80\x80\x80\x80", 4},
	} {
		if got := completePrefix([]byte(c.in)); got != c.want {
			t.Errorf("completePrefix(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

type mapMeta map[string]any

func (m mapMeta) String(k string) (string, bool) { v, ok := m[k].(string); return v, ok }
func (m mapMeta) Uint(k string) (uint64, bool)   { v, ok := m[k].(uint64); return v, ok }
func (m mapMeta) Bool(k string) (bool, bool)     { v, ok := m[k].(bool); return v, ok }
func (m mapMeta) Strings(k string) ([]string, bool) {
	v, ok := m[k].([]string)
	return v, ok
}
func (m mapMeta) Float32s(k string) ([]float32, bool) { v, ok := m[k].([]float32); return v, ok }
func (m mapMeta) Int32s(k string) ([]int32, bool)     { v, ok := m[k].([]int32); return v, ok }

func TestFromGGUFErrors(t *testing.T) {
	for _, c := range []struct {
		meta mapMeta
		want error
		msg  string
	}{
		{mapMeta{}, ErrInvalidVocab, "tokenizer.ggml.model: missing"},
		{mapMeta{KeyModel: "llama"}, ErrInvalidVocab, "tokenizer.ggml.tokens: missing"},
		{mapMeta{KeyModel: "t5", KeyTokens: []string{"a"}}, ErrUnsupported, `tokenizer.ggml.model "t5"`},
		{mapMeta{KeyModel: "gpt2", KeyTokens: []string{"a"}}, ErrInvalidVocab, "tokenizer.ggml.merges: missing"},
		{mapMeta{KeyModel: "gpt2", KeyPre: "tekken", KeyTokens: []string{"a", "b"}, KeyMerges: []string{"a b"}}, ErrUnsupported, `tokenizer.ggml.pre "tekken"`},
		{mapMeta{KeyModel: "gpt2", KeyTokens: []string{"a", "b"}, KeyMerges: []string{"ab"}}, ErrInvalidVocab, `tokenizer.ggml.merges[0] "ab"`},
		{mapMeta{KeyModel: "llama", KeyTokens: []string{"a", "b"}, KeyScores: []float32{1}}, ErrInvalidVocab, "tokenizer.ggml.scores: 1 entries for 2 tokens"},
	} {
		_, err := FromGGUF(c.meta)
		if !errors.Is(err, c.want) || err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("FromGGUF(%v) = %v, want %v containing %q", c.meta, err, c.want, c.msg)
		}
	}
}

// FuzzEncodeDecode: Encode and Decode never panic on any bytes, and valid
// UTF-8 round-trips (with the documented exceptions: gpt2 "clean spaces"
// rewriting, U+2581 in SentencePiece vocabularies, phi-3 whitespace
// stripping after special tokens).
func FuzzEncodeDecode(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world", "\n\n\t x", "🦙.cpp 1234567", "\xff\xfe", "нещо ' era", "<|im_start|>", "<s></s>", "a\r\n\r\n b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, name := range vocabs {
			tk := load(t, name)
			for _, parse := range []bool{false, true} {
				ids := tk.Encode(s, true, parse)
				for _, id := range ids {
					if id < 0 || int(id) >= tk.NumTokens() {
						t.Fatalf("%s: id %d out of range", name, id)
					}
				}
				_ = tk.Decode(ids, parse)
			}
			if !utf8.ValidString(s) || name == "phi-3" {
				continue
			}
			if tk.spm && strings.ContainsRune(s, '\u2581') {
				continue
			}
			if tk.cleanSpaces && strings.ContainsAny(s, "?!.,'") {
				continue
			}
			ids := tk.Encode(s, false, false)
			if got := tk.Decode(ids, false); got != s && !hasControlText(tk, s) {
				t.Fatalf("%s: Decode(Encode(%q)) = %q (ids %v)", name, s, got, ids)
			}
		}
	})
}

// hasControlText reports whether s contains the text of a user-defined
// token, which Encode always recognises and Decode renders.
func hasControlText(tk *Tokenizer, s string) bool {
	for _, id := range tk.special {
		if strings.Contains(s, tk.tokens[id]) {
			return true
		}
	}
	return false
}

func BenchmarkEncode(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. Привет, мир! 我想在apple工作1314151天～ 🦙.cpp\n", 40)
	for _, name := range vocabs {
		b.Run(name, func(b *testing.B) {
			tk := load(b, name)
			n := len(tk.Encode(text, false, false))
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tk.Encode(text, false, false)
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. Привет, мир! 🦙\n", 40)
	for _, name := range vocabs {
		b.Run(name, func(b *testing.B) {
			tk := load(b, name)
			ids := tk.Encode(text, false, false)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tk.Decode(ids, false)
			}
			b.ReportMetric(float64(len(ids)*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func ExampleTokenizer_Encode() {
	f, err := gguf.Open("testdata/ggml-vocab-llama-bpe.gguf")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	tk, err := FromGGUF(f)
	if err != nil {
		panic(err)
	}
	ids := tk.Encode("Hello world", true, false)
	fmt.Println(ids, tk.Decode(ids, false))
	// Output: [128000 9906 1917] Hello world
}
