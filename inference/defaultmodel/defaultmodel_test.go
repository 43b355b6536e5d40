package defaultmodel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/chat"
	"github.com/univrs/hypha/inference/engine"
	"github.com/univrs/hypha/inference/engine/quant"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/tokenizer"
)

// load writes the embedded model (or the GGUF bytes b) to a temporary
// directory and loads it with the engine and its tokenizer.
func load(t testing.TB, b []byte) (*engine.Model, *tokenizer.Tokenizer) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := engine.Load(p, engine.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tk, err := tokenizer.FromGGUF(m.Meta())
	if err != nil {
		t.Fatal(err)
	}
	return m, tk
}

// demoSampler is deterministic: greedy after a repetition penalty (a tiny
// model's pure greedy output loops on "and the LORD, and the LORD, ...").
func demoSampler() engine.Sampler { return engine.Sampler{RepeatPenalty: 1.3, RepeatLastN: 64} }

// generate continues prompt with demoSampler for up to n tokens, stopping
// at an end-of-generation token.
func generate(t testing.TB, m *engine.Model, tk *tokenizer.Tokenizer, prompt string, n int, parseSpecial bool) (string, []int32) {
	t.Helper()
	seq := tk.Encode(prompt, true, parseSpecial)
	cache := m.NewCache(0)
	smp := demoSampler()
	var gen []int32
	for i := 0; i < n && len(seq) < m.Config().ContextLen; i++ {
		logits, _, err := cache.Eval(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		tok := smp.Sample(logits, seq)
		if tk.IsEOG(tok) {
			break
		}
		gen = append(gen, tok)
		seq = append(seq, tok)
	}
	return tk.Decode(gen, false), gen
}

func corpusWords(t testing.TB) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("testdata/words.txt")
	if err != nil {
		t.Fatal(err)
	}
	w := map[string]bool{}
	for _, s := range strings.Fields(string(b)) {
		w[s] = true
	}
	if len(w) < 5000 {
		t.Fatalf("testdata/words.txt has only %d words", len(w))
	}
	return w
}

var wordRE = regexp.MustCompile(`[A-Za-z]+`)

// realWordShare is the share of the words of s found in the training
// corpus's vocabulary, and the number of distinct words.
func realWordShare(s string, vocab map[string]bool) (share float64, distinct int) {
	ws := wordRE.FindAllString(s, -1)
	if len(ws) == 0 {
		return 0, 0
	}
	n := 0
	seen := map[string]bool{}
	for _, w := range ws {
		w = strings.ToLower(w)
		seen[w] = true
		if vocab[w] {
			n++
		}
	}
	return float64(n) / float64(len(ws)), len(seen)
}

var prompts = []string{"In the beginning", "And the LORD said unto Moses,", "Blessed are", "The kingdom of heaven is like"}

// wordCheck is the test a generated continuation must pass: at least 80%
// of its words are words of the training corpus and it has at least 8
// distinct words ("the the the ..." is not an answer).
func wordCheck(out string, vocab map[string]bool) (ok bool, share float64, distinct int) {
	share, distinct = realWordShare(out, vocab)
	return share >= 0.8 && distinct >= 8, share, distinct
}

// The trained model continues prompts in real English words.
func TestGeneratesCorpusWords(t *testing.T) {
	m, tk := load(t, Bytes())
	if got, _ := m.Meta().String("general.name"); got != Name {
		t.Errorf("general.name = %q, want %q", got, Name)
	}
	vocab := corpusWords(t)
	for _, p := range prompts {
		out, toks := generate(t, m, tk, p, 48, false)
		ok, share, n := wordCheck(out, vocab)
		t.Logf("%q -> %q (%d tokens, %d distinct words, %.0f%% corpus words)", p, out, len(toks), n, 100*share)
		if !ok {
			t.Errorf("%q: %d distinct words, %.0f%% corpus words (want >= 8 and >= 80%%): %q", p, n, 100*share, out)
		}
	}
}

// randomized returns the embedded model with every weight matrix replaced
// by random F16 values of the same shape (norms kept): the control for
// TestGeneratesCorpusWords.
func randomized(t testing.TB) []byte {
	t.Helper()
	f, err := gguf.Decode(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var w gguf.Writer
	for _, kv := range f.KV {
		w.Add(kv.Key, kv.Value)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ti := range f.Tensors {
		raw, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(ti.Dims) == 2 {
			n := ti.Elements()
			raw = make([]byte, 2*n)
			for i := range n {
				binary.LittleEndian.PutUint16(raw[2*i:], quant.F32ToF16(float32(rng.NormFloat64()*0.02)))
			}
			w.AddTensor(ti.Name, gguf.TensorF16, ti.Dims, raw)
			continue
		}
		w.AddTensor(ti.Name, ti.Type, ti.Dims, raw)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A random-weight model of the same shape and vocabulary fails the word
// check: the check measures training, not the tokenizer.
func TestRandomWeightsFailWordCheck(t *testing.T) {
	m, tk := load(t, randomized(t))
	vocab := corpusWords(t)
	passed := 0
	for _, p := range prompts {
		out, _ := generate(t, m, tk, p, 48, false)
		ok, share, n := wordCheck(out, vocab)
		t.Logf("random weights: %q -> %q (%d distinct words, %.0f%% corpus words)", p, out, n, 100*share)
		if ok {
			passed++
		}
	}
	if passed > 0 {
		t.Errorf("a random-weight model passes the word check on %d of %d prompts: the check is too weak", passed, len(prompts))
	}
}

// heldOut returns the token windows of the held-out chapters (text the
// model did not train on), each starting with BOS.
func heldOut(t testing.TB, tk *tokenizer.Tokenizer, ctx, windows int) [][]int32 {
	t.Helper()
	b, err := os.ReadFile("testdata/heldout.txt")
	if err != nil {
		t.Fatal(err)
	}
	toks := tk.Encode(string(b), false, false)
	var out [][]int32
	for i := 0; i+ctx-1 <= len(toks) && len(out) < windows; i += ctx - 1 {
		out = append(out, append([]int32{tk.BOS()}, toks[i:i+ctx-1]...))
	}
	return out
}

// perplexity is exp of the mean negative log-likelihood of every token
// after the first of each window, scored by our engine.
func perplexity(t testing.TB, m *engine.Model, wins [][]int32) (float64, int) {
	t.Helper()
	cache := m.NewCache(0)
	var nll float64
	n := 0
	for _, w := range wins {
		lp, err := cache.Score(context.Background(), w)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range lp[1:] {
			nll -= float64(v)
			n++
		}
	}
	return math.Exp(nll / float64(n)), n
}

// Held-out perplexity is far below the vocabulary size (a model that
// learned nothing scores about the vocabulary size) and close to the
// figure measured at training time (models/README.md).
func TestHeldOutPerplexity(t *testing.T) {
	m, tk := load(t, Bytes())
	wins := heldOut(t, tk, m.Config().ContextLen, 3)
	ppl, n := perplexity(t, m, wins)
	t.Logf("held-out perplexity %.2f over %d tokens (vocabulary %d)", ppl, n, tk.NumTokens())
	if ppl > 100 {
		t.Errorf("held-out perplexity %.1f, want < 100", ppl)
	}
	rm, _ := load(t, randomized(t))
	rppl, _ := perplexity(t, rm, wins[:1])
	t.Logf("random weights: held-out perplexity %.1f", rppl)
	if rppl < 10*ppl {
		t.Errorf("random-weight perplexity %.1f is not far above the trained %.1f", rppl, ppl)
	}
}

// Our tokenizer, driven by the GGUF metadata, encodes exactly as the
// Python trainer did (testdata/encode.tsv: JSON text, tab, ids), and decodes
// back to the text.
func TestTokenizerMatchesTrainer(t *testing.T) {
	m, tk := load(t, Bytes())
	_ = m
	f, err := os.Open("testdata/encode.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		text, idsField, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("bad line %q", sc.Text())
		}
		var s string
		if err := json.Unmarshal([]byte(text), &s); err != nil {
			t.Fatal(err)
		}
		var want []int32
		for _, f := range strings.Fields(idsField) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, int32(v))
		}
		got := tk.Encode(s, false, false)
		if !equal(got, want) {
			t.Errorf("Encode(%q):\n got %v\nwant %v", s, got, want)
		}
		if dec := tk.Decode(got, false); dec != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, dec)
		}
		lines++
	}
	if lines < 100 {
		t.Fatalf("only %d lines in testdata/encode.tsv", lines)
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The chat template renders with our chat package and the model closes its
// turn with <|im_end|> (trained on ChatML exchanges).
func TestChatTurnEnds(t *testing.T) {
	m, tk := load(t, Bytes())
	tpl, fallback, err := chat.FromGGUF(m.Meta())
	if err != nil || fallback {
		t.Fatalf("chat template: fallback %v, err %v", fallback, err)
	}
	prompt, err := tpl.Render([]chat.Message{{Role: "user", Content: "And God said, Let there be light: and there was light."}}, chat.Options{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	seq := tk.Encode(prompt, true, true)
	cache := m.NewCache(0)
	smp := demoSampler()
	var gen []int32
	ended := false
	for i := 0; i < 120 && len(seq) < m.Config().ContextLen; i++ {
		logits, _, err := cache.Eval(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		tok := smp.Sample(logits, seq)
		if tk.IsEOG(tok) {
			ended = true
			break
		}
		gen = append(gen, tok)
		seq = append(seq, tok)
	}
	out := tk.Decode(gen, false)
	t.Logf("chat reply: %q (ended %v)", out, ended)
	if !ended {
		t.Errorf("the reply did not end with an end-of-turn token within 120 tokens: %q", out)
	}
	if ok, share, n := wordCheck(out, corpusWords(t)); !ok {
		t.Errorf("chat reply: %d distinct words, %.0f%% corpus words: %q", n, 100*share, out)
	}
}

func TestWriteTo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "models")
	p, err := WriteTo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, FileName) {
		t.Fatalf("path %q", p)
	}
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("written file differs from the embedded model (err %v)", err)
	}
	st1, _ := os.Stat(p)

	// Idempotent: a second call finds the file and does not rewrite it.
	time.Sleep(10 * time.Millisecond)
	if p2, err := WriteTo(dir); err != nil || p2 != p {
		t.Fatalf("second WriteTo = %q, %v", p2, err)
	}
	if st2, _ := os.Stat(p); !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("second WriteTo rewrote an identical file")
	}

	// An older default (different content) is replaced.
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p3, err := WriteTo(dir); err != nil || p3 != p {
		t.Fatalf("WriteTo over a stale default = %q, %v", p3, err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, data) {
		t.Error("stale default not replaced")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1 (no temporary files left)", len(ents))
	}

	// A steward's own model takes precedence: nothing written.
	own := t.TempDir()
	if err := os.WriteFile(filepath.Join(own, "Mistral.GGUF"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p4, err := WriteTo(own); err != nil || p4 != "" {
		t.Fatalf("WriteTo with a steward's model = %q, %v; want \"\", nil", p4, err)
	}
	if _, err := os.Stat(filepath.Join(own, FileName)); !os.IsNotExist(err) {
		t.Errorf("default written next to a steward's model (%v)", err)
	}

	// Errors name the directory.
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTo(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("WriteTo(a file) error = %v, want one naming %s", err, file)
	}
}

func TestEmbedded(t *testing.T) {
	if Size() < 1<<20 || Size() > 25<<20 {
		t.Errorf("embedded model is %d bytes, want 1-25 MiB", Size())
	}
	if len(SHA256()) != 64 {
		t.Errorf("SHA256() = %q", SHA256())
	}
	if _, err := gguf.Decode(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// logSoftmaxAt is log softmax(logits)[tok] in float64.
func logSoftmaxAt(logits []float32, tok int32) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return float64(logits[tok]) - mx - math.Log(sum)
}

// Our engine and llama.cpp agree on the trained model: perplexity of a
// held-out window, and the greedy continuation of that window. (One
// reference run: starting node and llama.cpp is the slow part.)
func TestParityLlamaCpp(t *testing.T) {
	ref := refHarness()
	if ref == "" {
		t.Skip("llama.cpp reference not installed (make engine-refharness)")
	}
	m, tk := load(t, Bytes())
	p := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const gn = 16
	w := heldOut(t, tk, m.Config().ContextLen, 1)[0][:m.Config().ContextLen-gn]
	logits, want := llamaCppParity(t, ref, p, w, m.Config().Vocab, gn)
	ours, n := perplexity(t, m, [][]int32{w})
	var nll float64
	for i := 0; i+1 < len(w); i++ {
		nll -= logSoftmaxAt(logits[i], w[i+1])
	}
	theirs := math.Exp(nll / float64(len(w)-1))
	t.Logf("held-out perplexity over %d tokens: engine %.4f, llama.cpp %.4f", n, ours, theirs)
	if math.Abs(ours-theirs)/theirs > 0.005 {
		t.Errorf("held-out perplexity differs: engine %.4f, llama.cpp %.4f", ours, theirs)
	}
	var smp engine.Sampler
	cache := m.NewCache(0)
	seq := append([]int32(nil), w...)
	var got []int32
	for range gn {
		logits, _, err := cache.Eval(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		tok := smp.Sample(logits, seq)
		got = append(got, tok)
		seq = append(seq, tok)
	}
	t.Logf("greedy continuation of the held-out window: %q", tk.Decode(got, false))
	if !equal(got, want) {
		t.Errorf("greedy continuation differs:\n ours %v %q\n ref  %v %q", got, tk.Decode(got, false), want, tk.Decode(want, false))
	}
}
