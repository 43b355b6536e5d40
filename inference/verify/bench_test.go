package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
)

// BenchmarkVerifyVsPerToken measures how many 32-token answers one
// verifier can check per minute against the same inference server, model
// and answers, two ways, in one run:
//
//   - score: Hypha's POST /hypha/score, the whole answer teacher-forced in
//     one forward pass (one request per answer);
//   - pertoken: PlanetServe's method, one request per answer token
//     (prompt + answer[:i] as token ids, max_tokens 1, logprobs), the way
//     its verifier drives llama.cpp's server. Our server reuses the cached
//     prefix between those requests as llama.cpp's cache_prompt does, so
//     each costs about one decode step plus the HTTP round trip.
//
// Each method has its own server whose KV cache holds about one
// conversation, so every verification starts cold, as on a verifier whose
// engine never saw the challenge (the serving node answered it).
//
// It reports verifications per minute for both and their ratio, and checks
// that the two methods agree (the per-token requests' greedy log-probability
// equals /hypha/score's best_logprobs at every position). Models: the
// default hypha-kjv-tiny, and with -verify.big a generated 8-layer,
// 512-wide llama model with llama's 32,000-token vocabulary (~43 M
// parameters, Q8_0).
var benchBig = flag.Bool("verify.big", false, "also benchmark a generated ~43M-parameter llama-shaped model")

const benchAnswers, benchTokens = 6, 32

func BenchmarkVerifyVsPerToken(b *testing.B) {
	ref, _ := modelDirs(b)
	type model struct{ name, dir string }
	models := []model{{"hypha-kjv-tiny", ref}}
	if *benchBig {
		dir := b.TempDir()
		err := testmodel.Write(filepath.Join(dir, modelName+".gguf"), testmodel.Spec{Arch: "llama",
			VocabFile: "../tokenizer/testdata/ggml-vocab-llama-spm.gguf", Layers: 8, Dim: 512, FFN: 1536, Heads: 8, KVHeads: 2,
			ContextLen: 512, Type: gguf.TensorQ8_0, Seed: 3})
		if err != nil {
			b.Fatal(err)
		}
		models = append(models, model{"llama-8x512-q8", dir})
	}
	// the answers: the reference model's own greedy answers to challenges
	refURL := startInferd(b, ref)
	texts := benchAnswerTexts(b, refURL)
	for _, m := range models {
		b.Run(m.name, func(b *testing.B) {
			params, size, kvPerToken := modelSize(b, filepath.Join(m.dir, modelName+".gguf"))
			// a KV cache of about one conversation: each verification starts cold
			oneConversation := kvPerToken * 160
			scoreURL, tokURL := startInferdCache(b, m.dir, oneConversation), startInferdCache(b, m.dir, oneConversation)
			cases := benchCases(b, startInferd(b, m.dir), texts)
			score := func(url string) {
				for _, c := range cases {
					if _, err := scoreRequest(url, c.messages, c.text); err != nil {
						b.Fatal(err)
					}
				}
			}
			perToken := func(url string) [][]float64 {
				out := make([][]float64, len(cases))
				for i, c := range cases {
					for j := range c.answer {
						lp, err := perTokenRequest(url, append(append([]int32(nil), c.prompt...), c.answer[:j]...))
						if err != nil {
							b.Fatal(err)
						}
						out[i] = append(out[i], lp)
					}
				}
				return out
			}
			// load the models
			if _, err := scoreRequest(scoreURL, []Message{{Role: "user", Content: "warm up"}}, "yes"); err != nil {
				b.Fatal(err)
			}
			if _, err := perTokenRequest(tokURL, cases[0].prompt[:1]); err != nil {
				b.Fatal(err)
			}
			var tScore, tTok time.Duration
			tokens := 0
			for _, c := range cases {
				tokens += len(c.answer)
			}
			var got [][]float64
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				score(scoreURL)
				tScore += time.Since(t0)
				t0 = time.Now()
				got = perToken(tokURL)
				tTok += time.Since(t0)
			}
			b.StopTimer()
			// the two methods agree: the per-token greedy logprob is /hypha/score's best
			for i, c := range cases {
				for j := range c.best {
					if !math.IsNaN(got[i][j]) && math.Abs(got[i][j]-c.best[j]) > 2e-3 {
						b.Fatalf("answer %d token %d: per-token greedy logprob %v, /hypha/score best %v", i, j, got[i][j], c.best[j])
					}
				}
			}
			n := float64(b.N * len(cases))
			perMin := func(d time.Duration) float64 { return n / d.Minutes() }
			b.ReportMetric(perMin(tScore), "score-verif/min")
			b.ReportMetric(perMin(tTok), "pertoken-verif/min")
			b.ReportMetric(tTok.Seconds()/tScore.Seconds(), "speedup-x")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s: %d parameters, %d bytes; %d answers of %.1f tokens (prompts %.1f tokens): /hypha/score %.1f verifications/min, per-token %.1f/min, %.1fx",
				m.name, params, size, len(cases), float64(tokens)/float64(len(cases)), meanPrompt(cases), perMin(tScore), perMin(tTok), tTok.Seconds()/tScore.Seconds())
		})
	}
}

type benchCase struct {
	messages []Message
	text     string
	prompt   []int32 // rendered prompt tokens (as /hypha/tokenize)
	answer   []int32 // answer tokens (as /hypha/score)
	best     []float64
}

func meanPrompt(cs []benchCase) float64 {
	n := 0
	for _, c := range cs {
		n += len(c.prompt)
	}
	return float64(n) / float64(len(cs))
}

type benchText struct {
	messages []Message
	text     string
}

// benchAnswerTexts asks the reference model for greedy answers to pool
// challenges; answers that end early get more text so every one can be
// cut to benchTokens tokens.
func benchAnswerTexts(b *testing.B, url string) []benchText {
	pool := NewPool(nil, 5)
	filler := " And the LORD spake unto Moses, saying, Speak unto the children of Israel, that they bring me an offering."
	var out []benchText
	for len(out) < benchAnswers {
		ch := pool.Next(modelName)
		ch.MaxTokens = benchTokens + 8
		body, err := httpSender{"ref": url}.Send(context.Background(), "ref", ch.Body())
		if err != nil {
			b.Fatal(err)
		}
		text, err := AnswerText(body)
		if err != nil && err != ErrNoAnswer {
			text = ""
		}
		out = append(out, benchText{ch.Messages, strings.TrimSpace(text) + filler})
	}
	return out
}

// benchCases cuts every answer to the first word boundary at which it
// reaches benchTokens tokens under the server's tokenizer.
func benchCases(b *testing.B, url string, texts []benchText) []benchCase {
	var out []benchCase
	for _, t := range texts {
		words := strings.Fields(t.text)
		var sc scoreResult
		var err error
		lo, hi := 1, len(words) // smallest word count reaching benchTokens
		for lo < hi {
			mid := (lo + hi) / 2
			if sc, err = scoreRequest(url, t.messages, strings.Join(words[:mid], " ")); err != nil {
				b.Fatal(err)
			}
			if len(sc.Tokens) >= benchTokens {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		text := strings.Join(words[:lo], " ")
		if sc, err = scoreRequest(url, t.messages, text); err != nil {
			b.Fatal(err)
		}
		var tk struct {
			Tokens []int32 `json:"tokens"`
		}
		if err := postJSON(url+"/hypha/tokenize", map[string]any{"model": modelName, "messages": t.messages}, &tk); err != nil {
			b.Fatal(err)
		}
		out = append(out, benchCase{messages: t.messages, text: text, prompt: tk.Tokens, answer: sc.Tokens, best: sc.BestLogprobs})
	}
	return out
}

type scoreResult struct {
	Tokens       []int32   `json:"tokens"`
	BestLogprobs []float64 `json:"best_logprobs"`
	MeanLogprob  float64   `json:"mean_logprob"`
}

func scoreRequest(url string, msgs []Message, text string) (scoreResult, error) {
	var r scoreResult
	err := postJSON(url+"/hypha/score", map[string]any{"model": modelName, "messages": msgs, "response": text}, &r)
	return r, err
}

// perTokenRequest is one request of PlanetServe's per-token method: the
// log-probability of the greedy next token after prompt.
func perTokenRequest(url string, prompt []int32) (float64, error) {
	var r struct {
		Choices []struct {
			Logprobs struct {
				TokenLogprobs []float64 `json:"token_logprobs"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	if err := postJSON(url+"/v1/completions", map[string]any{"model": modelName, "prompt": prompt, "max_tokens": 1,
		"temperature": 0, "logprobs": 1}, &r); err != nil {
		return 0, err
	}
	if len(r.Choices) != 1 || len(r.Choices[0].Logprobs.TokenLogprobs) > 1 {
		return 0, fmt.Errorf("per-token answer %+v", r)
	}
	if len(r.Choices[0].Logprobs.TokenLogprobs) == 0 {
		return math.NaN(), nil // the greedy next token ends the turn: our server reports no logprob for it
	}
	return r.Choices[0].Logprobs.TokenLogprobs[0], nil
}

func postJSON(url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, rb)
	}
	return json.Unmarshal(rb, out)
}

// modelSize is the parameter count, file size and KV cache bytes per token
// (float32 K and V, as the engine keeps them) of a GGUF file.
func modelSize(b *testing.B, path string) (params uint64, size, kvPerToken int64) {
	f, err := gguf.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, t := range f.Tensors {
		params += t.Elements()
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	arch, _ := f.String("general.architecture")
	layers, _ := f.Uint(arch + ".block_count")
	dim, _ := f.Uint(arch + ".embedding_length")
	heads, _ := f.Uint(arch + ".attention.head_count")
	kvHeads, _ := f.Uint(arch + ".attention.head_count_kv")
	if heads == 0 || kvHeads == 0 {
		b.Fatalf("%s: no head counts", path)
	}
	return params, st.Size(), int64(layers * kvHeads * (dim / heads) * 2 * 4)
}
