package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ollama "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/univrs/hypha/inference/engine"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// The tests run a real server (the real engine, a generated model with
// random weights and qwen2's real vocabulary and chat template) on
// 127.0.0.1:0 and talk to it with the real Ollama and OpenAI Go clients.

const modelName = "tiny-qwen2"

var (
	modelOnce sync.Once
	modelDir  string
	modelErr  error
)

// testModelDir generates the model once per test binary.
func testModelDir(t testing.TB) string {
	t.Helper()
	modelOnce.Do(func() {
		modelDir, modelErr = os.MkdirTemp("", "hypha-api-test-")
		if modelErr != nil {
			return
		}
		modelErr = testmodel.Write(filepath.Join(modelDir, modelName+".gguf"), testmodel.Spec{
			Arch: "qwen2", VocabFile: "../tokenizer/testdata/ggml-vocab-qwen2.gguf",
			Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 256,
			Tied: true, Type: gguf.TensorQ8_0, Seed: 7,
		})
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return modelDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if modelDir != "" {
		os.RemoveAll(modelDir)
	}
	os.Exit(code)
}

type testServer struct {
	*Server
	URL string
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	if cfg.ModelsDir == "" {
		cfg.ModelsDir = testModelDir(t)
	}
	if cfg.Engine == nil {
		cfg.Engine = Builtin{Threads: 2, Log: slog.New(slog.DiscardHandler)}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return &testServer{s, "http://" + ln.Addr().String()}
}

func ollamaClient(t *testing.T, ts *testServer) *ollama.Client {
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return ollama.NewClient(u, http.DefaultClient)
}

func openaiClient(ts *testServer) openai.Client {
	return openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func TestOllamaClient(t *testing.T) {
	ts := startServer(t, Config{})
	c := ollamaClient(t, ts)
	ctx := context.Background()

	if err := c.Heartbeat(ctx); err != nil {
		t.Fatal("Heartbeat:", err)
	}
	if v, err := c.Version(ctx); err != nil || v != "0.17.4" {
		t.Errorf("Version = %q, %v", v, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != modelName {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if d := list.Models[0].Details; d.Family != "qwen2" || d.QuantizationLevel != "Q8_0" || d.Format != "gguf" {
		t.Errorf("details = %+v", d)
	}
	show, err := c.Show(ctx, &ollama.ShowRequest{Model: modelName})
	if err != nil || !strings.Contains(show.Template, "<|im_start|>") || show.ModelInfo["general.architecture"] != "qwen2" {
		t.Errorf("Show = %+v, %v", show, err)
	}

	opts := map[string]any{"temperature": 0, "num_predict": 12, "seed": 1}
	msgs := []ollama.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Say hello."}}
	var streamed strings.Builder
	var last ollama.ChatResponse
	chunks := 0
	err = c.Chat(ctx, &ollama.ChatRequest{Model: modelName, Messages: msgs, Options: opts}, func(r ollama.ChatResponse) error {
		streamed.WriteString(r.Message.Content)
		last = r
		chunks++
		return nil
	})
	if err != nil {
		t.Fatal("Chat:", err)
	}
	if !last.Done || last.DoneReason != "length" || last.EvalCount != 12 || last.PromptEvalCount == 0 || last.TotalDuration <= 0 {
		t.Errorf("final chat chunk = %+v", last)
	}
	if chunks < 2 || streamed.Len() == 0 {
		t.Errorf("streamed %d chunks, %q", chunks, streamed.String())
	}
	// the same request without streaming, greedy: the same text
	no := false
	var whole ollama.ChatResponse
	err = c.Chat(ctx, &ollama.ChatRequest{Model: modelName, Messages: msgs, Options: opts, Stream: &no}, func(r ollama.ChatResponse) error {
		whole = r
		return nil
	})
	if err != nil || whole.Message.Content != streamed.String() || whole.Message.Role != "assistant" {
		t.Errorf("non-streamed chat = %q, %v; streamed %q", whole.Message.Content, err, streamed.String())
	}

	var gen strings.Builder
	var gl ollama.GenerateResponse
	err = c.Generate(ctx, &ollama.GenerateRequest{Model: modelName, Prompt: "Once upon a time", Raw: true, Options: opts}, func(r ollama.GenerateResponse) error {
		gen.WriteString(r.Response)
		gl = r
		return nil
	})
	if err != nil || !gl.Done || gl.EvalCount != 12 || len(gl.Context) != gl.PromptEvalCount+12 || gen.Len() == 0 {
		t.Errorf("Generate: %v, final %+v, text %q", err, gl, gen.String())
	}
	// not raw: the prompt goes through the model's chat template with the system prompt
	var tl ollama.GenerateResponse
	err = c.Generate(ctx, &ollama.GenerateRequest{Model: modelName, Prompt: "Once upon a time", System: "Be brief.", Options: opts, Stream: &no},
		func(r ollama.GenerateResponse) error { tl = r; return nil })
	if err != nil || tl.PromptEvalCount <= gl.PromptEvalCount+10 || tl.Response == "" {
		t.Errorf("templated Generate: %v, %d prompt tokens (raw: %d)", err, tl.PromptEvalCount, gl.PromptEvalCount)
	}
	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 1 || ps.Models[0].Name != modelName || ps.Models[0].ContextLength != 256 {
		t.Errorf("ListRunning = %+v, %v", ps, err)
	}

	// errors the client can read
	err = c.Chat(ctx, &ollama.ChatRequest{Model: "nope", Messages: msgs}, func(ollama.ChatResponse) error { return nil })
	var se ollama.StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || !strings.Contains(se.ErrorMessage, "nope") {
		t.Errorf("unknown model: %v", err)
	}
}

func TestOpenAIClient(t *testing.T) {
	ts := startServer(t, Config{})
	c := openaiClient(ts)
	ctx := context.Background()

	models, err := c.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != modelName {
		t.Fatalf("Models.List = %+v, %v", models, err)
	}
	params := openai.ChatCompletionNewParams{
		Model:       modelName,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Say hello.")},
		Temperature: openai.Float(0),
		Seed:        openai.Int(3),
		MaxTokens:   openai.Int(10),
	}
	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal("chat:", err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].FinishReason != "length" || resp.Usage.CompletionTokens != 10 ||
		resp.Usage.TotalTokens != resp.Usage.PromptTokens+10 || resp.Choices[0].Message.Content == "" {
		t.Errorf("chat response = %+v", resp)
	}
	want := resp.Choices[0].Message.Content

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	var usageChunks int
	for stream.Next() {
		ch := stream.Current()
		acc.AddChunk(ch)
		if ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
			usageChunks++
			if len(ch.Choices) != 0 {
				t.Error("the usage chunk must have no choices")
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal("stream:", err)
	}
	if got := acc.Choices[0].Message.Content; got != want {
		t.Errorf("streamed %q, want %q", got, want)
	}
	if usageChunks != 1 || acc.Usage.CompletionTokens != 10 || acc.Choices[0].FinishReason != "length" {
		t.Errorf("usage chunks %d, usage %+v, finish %q", usageChunks, acc.Usage, acc.Choices[0].FinishReason)
	}

	// stop sequence: cut the greedy answer at a piece of itself
	runes := []rune(want)
	if len(runes) >= 4 {
		stop := string(runes[len(runes)/2 : len(runes)/2+2])
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
		params.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(stop)}
		r2, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got := r2.Choices[0].Message.Content; got != want[:strings.Index(want, stop)] || r2.Choices[0].FinishReason != "stop" {
			t.Errorf("stop %q: got %q (%s), want %q", stop, got, r2.Choices[0].FinishReason, want[:strings.Index(want, stop)])
		}
	}

	// legacy completions, streamed and not
	cp := openai.CompletionNewParams{
		Model:       modelName,
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("The quick brown fox")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	}
	cr, err := c.Completions.New(ctx, cp)
	if err != nil || cr.Choices[0].Text == "" || cr.Usage.CompletionTokens != 8 {
		t.Fatalf("completion = %+v, %v", cr, err)
	}
	cs := c.Completions.NewStreaming(ctx, cp)
	var text strings.Builder
	for cs.Next() {
		for _, ch := range cs.Current().Choices {
			text.WriteString(ch.Text)
		}
	}
	if cs.Err() != nil || text.String() != cr.Choices[0].Text {
		t.Errorf("streamed completion %q (%v), want %q", text.String(), cs.Err(), cr.Choices[0].Text)
	}

	// logprobs of the generated tokens; the same seed and settings give the same sample
	params.Stop = openai.ChatCompletionNewParamsStopUnion{}
	params.Logprobs = openai.Bool(true)
	params.Temperature = openai.Float(0.9)
	params.Seed = openai.Int(42)
	s1, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Choices[0].Message.Content != s2.Choices[0].Message.Content {
		t.Errorf("same seed, different samples: %q vs %q", s1.Choices[0].Message.Content, s2.Choices[0].Message.Content)
	}
	lps := s1.Choices[0].Logprobs.Content
	var joined strings.Builder
	for _, lp := range lps {
		joined.WriteString(lp.Token)
		if lp.Logprob > 0 {
			t.Errorf("log-probability %v > 0", lp.Logprob)
		}
	}
	if len(lps) != 10 || joined.String() != s1.Choices[0].Message.Content {
		t.Errorf("logprobs: %d entries spelling %q, content %q", len(lps), joined.String(), s1.Choices[0].Message.Content)
	}
	if m, err := c.Models.Get(ctx, modelName); err != nil || m.ID != modelName {
		t.Errorf("Models.Get = %+v, %v", m, err)
	}

	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nope", Messages: params.Messages})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
}

// TestScoring: echo+logprobs+max_tokens=0 returns the log-probability of
// every prompt token, equal to the engine's own one-pass scoring.
func TestScoring(t *testing.T) {
	ts := startServer(t, Config{})
	c := openaiClient(ts)
	const prompt = "The capital of France is Paris. The capital of Italy is Rome."
	cr, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:     modelName,
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens: openai.Int(0),
		Echo:      openai.Bool(true),
		Logprobs:  openai.Int(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	ch := cr.Choices[0]
	if ch.Text != prompt || strings.Join(ch.Logprobs.Tokens, "") != prompt || cr.Usage.CompletionTokens != 0 {
		t.Fatalf("echo = %q, tokens %q", ch.Text, ch.Logprobs.Tokens)
	}
	var ids []int32
	if err := json.Unmarshal([]byte(ch.Logprobs.JSON.ExtraFields["token_ids"].Raw()), &ids); err != nil {
		t.Fatal("token_ids:", err)
	}
	if !strings.Contains(ch.Logprobs.RawJSON(), `"token_logprobs":[null,`) {
		t.Error("the first token (no BOS in qwen2) must have a null log-probability")
	}
	// reference: the engine directly
	m, err := engine.Load(filepath.Join(testModelDir(t), modelName+".gguf"), engine.WithThreads(2), engine.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, err := m.NewCache(0).Score(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref) != len(ch.Logprobs.TokenLogprobs) {
		t.Fatalf("%d log-probs, engine %d", len(ch.Logprobs.TokenLogprobs), len(ref))
	}
	for i := 1; i < len(ref); i++ {
		if float32(ch.Logprobs.TokenLogprobs[i]) != ref[i] || ref[i] > 0 {
			t.Errorf("token %d: %v, engine %v", i, ch.Logprobs.TokenLogprobs[i], ref[i])
		}
	}
	if ch.Logprobs.TextOffset[1] != int64(len(ch.Logprobs.Tokens[0])) {
		t.Errorf("text_offset = %v", ch.Logprobs.TextOffset)
	}
}

// TestOverload: with one generation slot and no queue, a second request is
// refused at once with 429 (OpenAI) / 503 (Ollama) and Retry-After, and a
// cancelled stream frees its slot.
func TestOverloadAndCancel(t *testing.T) {
	ts := startServer(t, Config{Parallel: 1, Queue: -1, RetryAfter: 3 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := fmt.Sprintf(`{"model":%q,"prompt":"a b c","max_tokens":200,"stream":true,"temperature":0}`, modelName)
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: {") {
		t.Fatalf("first event %q, %v", line, err)
	}
	// the slot is busy now
	r2, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 429 || r2.Header.Get("Retry-After") != "3" || !strings.Contains(string(b2), "rate_limit_exceeded") {
		t.Errorf("busy /v1: %d %q %s", r2.StatusCode, r2.Header.Get("Retry-After"), b2)
	}
	r3, err := http.Post(ts.URL+"/api/generate", "application/json", strings.NewReader(fmt.Sprintf(`{"model":%q,"prompt":"x","raw":true}`, modelName)))
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := io.ReadAll(r3.Body)
	r3.Body.Close()
	if r3.StatusCode != 503 || r3.Header.Get("Retry-After") != "3" || !strings.Contains(string(b3), `"error"`) {
		t.Errorf("busy /api: %d %q %s", r3.StatusCode, r3.Header.Get("Retry-After"), b3)
	}
	// cancelling the first request stops its generation and frees the slot
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r4, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(
			fmt.Sprintf(`{"model":%q,"prompt":"x","max_tokens":1}`, modelName)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r4.Body)
		r4.Body.Close()
		if r4.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after cancel: %d", r4.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadModels: unusable files are reported by name and reason, never
// listed, and never stop the server.
func TestBadModels(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join(testModelDir(t), modelName+".gguf"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.gguf", good)
	write("garbage.gguf", []byte("this is not a gguf file at all"))
	write("truncated.gguf", good[:len(good)/3])
	write("notes.txt", []byte("ignored"))
	var w gguf.Writer // well-formed, but an architecture the engine lacks
	w.Add("general.architecture", "mamba")
	f, _ := os.Create(filepath.Join(dir, "mamba.gguf"))
	w.WriteTo(f)
	f.Close()

	ts := startServer(t, Config{ModelsDir: dir})
	c := openaiClient(ts)
	models, err := c.Models.List(context.Background())
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "good" {
		t.Fatalf("models = %+v, %v", models, err)
	}
	resp, err := http.Get(ts.URL + "/hypha/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var report struct {
		Models []struct {
			Name  string `json:"name"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"models"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&report); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, m := range report.Models {
		reasons[m.Name] = m.Error
	}
	for name, want := range map[string]string{"garbage": "garbage.gguf", "truncated": "truncated.gguf", "mamba": "mamba"} {
		if r := reasons[name]; !strings.Contains(r, want) {
			t.Errorf("%s: reason %q should name %q", name, r, want)
		}
	}
	if len(report.Models) != 4 || reasons["good"] != "" {
		t.Errorf("report = %+v", report)
	}
	// asking for a bad model says why
	_, err = c.Completions.New(context.Background(), openai.CompletionNewParams{Model: "garbage",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || !strings.Contains(ae.Message, "cannot be served") {
		t.Errorf("bad model: %v", err)
	}
}

// TestModelAppears: a model copied into the directory while the server runs
// is served without a restart.
func TestModelAppears(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, Config{ModelsDir: dir})
	c := ollamaClient(t, ts)
	if l, err := c.List(context.Background()); err != nil || len(l.Models) != 0 {
		t.Fatalf("List = %+v, %v", l, err)
	}
	b, err := os.ReadFile(filepath.Join(testModelDir(t), modelName+".gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "late.gguf"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := c.List(context.Background())
		if err == nil && len(l.Models) == 1 && l.Models[0].Name == "late" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("model not picked up: %+v, %v", l, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestNoModelsDir(t *testing.T) {
	ts := startServer(t, Config{ModelsDir: filepath.Join(t.TempDir(), "missing")})
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"data":[]`) {
		t.Errorf("/v1/models = %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(ts.URL + "/hypha/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "dir_error") || !strings.Contains(string(b), "missing") {
		t.Errorf("/hypha/models = %s", b)
	}
}

// TestCacheState: after a request, the prompt's chunk hashes (from
// /hypha/tokenize) are held in the cache (/hypha/cache), and deltas since a
// version report only what changed.
func TestCacheState(t *testing.T) {
	ts := startServer(t, Config{})
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 6)
	post := func(path, body string) map[string]json.RawMessage {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return m
	}
	get := func(q string) (st struct {
		Version uint64   `json:"version"`
		Full    bool     `json:"full"`
		Added   []string `json:"added"`
		Removed []string `json:"removed"`
		Chunk   int      `json:"chunk_tokens"`
	}) {
		resp, err := http.Get(ts.URL + "/hypha/cache?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	tk := post("/hypha/tokenize", fmt.Sprintf(`{"model":%q,"prompt":%q}`, modelName, prompt))
	var hashes []string
	json.Unmarshal(tk["chunk_hashes"], &hashes)
	if len(hashes) < 2 {
		t.Fatalf("tokenize: %s", tk["chunk_hashes"])
	}
	post("/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":2,"temperature":0}`, modelName, prompt))
	st := get("model=" + modelName)
	if !st.Full || st.Version == 0 || st.Chunk != 16 {
		t.Fatalf("state = %+v", st)
	}
	held := map[string]bool{}
	for _, h := range st.Added {
		held[h] = true
	}
	for _, h := range hashes {
		if !held[h] {
			t.Errorf("prompt chunk %s not in the cache state %v", h, st.Added)
		}
	}
	if d := get(fmt.Sprintf("model=%s&since=%d", modelName, st.Version)); d.Full || len(d.Added)+len(d.Removed) != 0 || d.Version != st.Version {
		t.Errorf("delta with no change = %+v", d)
	}
	other := strings.Repeat("Pack my box with five dozen liquor jugs! ", 6)
	post("/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":1,"temperature":0}`, modelName, other))
	d := get(fmt.Sprintf("model=%s&since=%d", modelName, st.Version))
	if d.Full || len(d.Added) == 0 || d.Version <= st.Version {
		t.Errorf("delta after a new prompt = %+v", d)
	}
	for _, h := range d.Added {
		if held[h] {
			t.Errorf("delta re-adds %s", h)
		}
	}
}

// TestKVBound: a prompt larger than the KV memory bound is a 400; a
// generation that outgrows it ends with finish_reason "length" (the last
// sampled token needs no KV slot, hence 41 of 40).
func TestKVBound(t *testing.T) {
	const perToken = 2 * 2 * 16 * 2 * 4 // layers * kv heads * head dim * (K,V) * 4 bytes
	ts := startServer(t, Config{CacheBytes: 40 * perToken})
	c := openaiClient(ts)
	long := strings.Repeat("word ", 80)
	_, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: modelName,
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(long)}, MaxTokens: openai.Int(4)})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "KV") {
		t.Errorf("prompt over the KV bound: %v", err)
	}
	r, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: modelName,
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("one two three")}, MaxTokens: openai.Int(100),
		Temperature: openai.Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Choices[0].FinishReason != "length" || r.Usage.TotalTokens > 41 || r.Usage.CompletionTokens < 20 {
		t.Errorf("generation past the KV bound: finish %q, usage %+v", r.Choices[0].FinishReason, r.Usage)
	}
}

// TestConcurrentGenerations: generations interleaved on the shared KV cache
// give exactly what each gives alone, and queued requests are served.
func TestConcurrentGenerations(t *testing.T) {
	ts := startServer(t, Config{Parallel: 3, Queue: 8})
	c := openaiClient(ts)
	prompts := []string{"Alpha beta gamma", "One two three four", "Alpha beta delta", "Rivers and mountains", "Alpha beta gamma"}
	gen := func(p string) (string, error) {
		r, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: modelName,
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)},
			MaxTokens: openai.Int(12), Temperature: openai.Float(0)})
		if err != nil {
			return "", err
		}
		return r.Choices[0].Text, nil
	}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		var err error
		if alone[i], err = gen(p); err != nil {
			t.Fatal(err)
		}
	}
	together := make([]string, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			together[i], errs[i] = gen(p)
		}()
	}
	wg.Wait()
	for i := range prompts {
		if errs[i] != nil || together[i] != alone[i] {
			t.Errorf("%q: concurrent %q (%v), alone %q", prompts[i], together[i], errs[i], alone[i])
		}
	}
}
