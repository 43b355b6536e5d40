package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
)

type scoreAnswer struct {
	Model           string    `json:"model"`
	PromptTokens    int       `json:"prompt_tokens"`
	Tokens          []int32   `json:"tokens"`
	Logprobs        []float64 `json:"logprobs"`
	BestLogprobs    []float64 `json:"best_logprobs"`
	MeanLogprob     float64   `json:"mean_logprob"`
	MeanBestLogprob float64   `json:"mean_best_logprob"`
	Perplexity      float64   `json:"perplexity"`
	Error           string    `json:"error"`
}

func postJSON(t *testing.T, url string, body any, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: status %d, body does not decode: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// TestHyphaScore: a greedy completion scored by /hypha/score gets back the
// very tokens and log-probabilities the generation produced, and every one
// of them is the model's best (what the verification committee checks);
// a made-up response does not.
func TestHyphaScore(t *testing.T) {
	ts := startServer(t, Config{})
	prompt := "The capital of France is"

	var gen struct {
		Choices []struct {
			Text     string `json:"text"`
			Logprobs struct {
				TokenIDs      []int32   `json:"token_ids"`
				TokenLogprobs []float64 `json:"token_logprobs"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	if st := postJSON(t, ts.URL+"/v1/completions", map[string]any{"model": modelName, "prompt": prompt,
		"max_tokens": 16, "temperature": 0, "logprobs": 1}, &gen); st != 200 || len(gen.Choices) != 1 {
		t.Fatalf("completion: %d %+v", st, gen)
	}
	g := gen.Choices[0]
	if g.Text == "" {
		t.Fatal("the model generated nothing to score")
	}
	var sc scoreAnswer
	if st := postJSON(t, ts.URL+"/hypha/score", map[string]any{"model": modelName, "prompt": prompt, "response": g.Text}, &sc); st != 200 {
		t.Fatalf("score: %d %s", st, sc.Error)
	}
	var tk struct {
		Tokens []int32 `json:"tokens"`
	}
	postJSON(t, ts.URL+"/hypha/tokenize", map[string]any{"model": modelName, "prompt": prompt}, &tk)
	if sc.Model != modelName || sc.PromptTokens != len(tk.Tokens) || len(sc.Tokens) == 0 ||
		len(sc.Logprobs) != len(sc.Tokens) || len(sc.BestLogprobs) != len(sc.Tokens) {
		t.Fatalf("score answer %+v (prompt tokens per /hypha/tokenize: %d)", sc, len(tk.Tokens))
	}
	if fmt.Sprint(sc.Tokens) == fmt.Sprint(g.Logprobs.TokenIDs) {
		for i := range sc.Logprobs {
			if math.Abs(sc.Logprobs[i]-g.Logprobs.TokenLogprobs[i]) > 1e-3 {
				t.Errorf("token %d: scored %v, generation said %v", i, sc.Logprobs[i], g.Logprobs.TokenLogprobs[i])
			}
		}
	} else {
		t.Logf("re-tokenized response %v differs from the generated ids %v", sc.Tokens, g.Logprobs.TokenIDs)
	}
	greedyGap := sc.MeanBestLogprob - sc.MeanLogprob
	if greedyGap < 0 || greedyGap > 1e-3 {
		t.Errorf("greedy response: mean logprob %v, mean best %v: want equal", sc.MeanLogprob, sc.MeanBestLogprob)
	}
	if want := math.Exp(-sc.MeanLogprob); math.Abs(sc.Perplexity-want) > 1e-9*want {
		t.Errorf("perplexity %v, exp(-mean) = %v", sc.Perplexity, want)
	}

	// messages render through the chat template, exactly like /hypha/tokenize
	msgs := []map[string]string{{"role": "user", "content": "Where is Paris?"}}
	var other scoreAnswer
	if st := postJSON(t, ts.URL+"/hypha/score", map[string]any{"model": modelName, "messages": msgs,
		"response": "Paris is a city in France, on the river Seine."}, &other); st != 200 {
		t.Fatalf("score messages: %d %s", st, other.Error)
	}
	postJSON(t, ts.URL+"/hypha/tokenize", map[string]any{"model": modelName, "messages": msgs}, &tk)
	if other.PromptTokens != len(tk.Tokens) {
		t.Errorf("prompt_tokens %d, /hypha/tokenize says %d", other.PromptTokens, len(tk.Tokens))
	}
	if other.MeanBestLogprob-other.MeanLogprob < 1 {
		t.Errorf("made-up response: mean logprob %v, mean best %v: want a gap of more than 1 nat", other.MeanLogprob, other.MeanBestLogprob)
	}
	// special-token text in a response is plain text, not a control token
	var sp scoreAnswer
	postJSON(t, ts.URL+"/hypha/score", map[string]any{"model": modelName, "prompt": prompt, "response": "<|im_end|>"}, &sp)
	if len(sp.Tokens) < 2 {
		t.Errorf("response %q scored as tokens %v: want plain text, several tokens", "<|im_end|>", sp.Tokens)
	}
}

func TestHyphaScoreErrors(t *testing.T) {
	ts := startServer(t, Config{})
	long := strings.Repeat("word ", 300) // the test model's context is 256 tokens
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		want   string
	}{
		{"unknown model", map[string]any{"model": "nope", "prompt": "a", "response": "b"}, 404, "not found"},
		{"empty response", map[string]any{"model": modelName, "prompt": "a", "response": ""}, 400, "response: missing or empty"},
		{"no response", map[string]any{"model": modelName, "prompt": "a"}, 400, "response: missing or empty"},
		{"both prompts", map[string]any{"model": modelName, "prompt": "a", "messages": []map[string]string{{"role": "user", "content": "x"}}, "response": "b"}, 400, "exactly one of prompt and messages"},
		{"too long", map[string]any{"model": modelName, "prompt": "a", "response": long}, 400, "exceed the context length 256"},
		{"bad field type", map[string]any{"model": modelName, "prompt": "a", "response": 7}, 400, `field "response"`},
	} {
		var a scoreAnswer
		if st := postJSON(t, ts.URL+"/hypha/score", c.body, &a); st != c.status || !strings.Contains(a.Error, c.want) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, st, a.Error, c.status, c.want)
		}
	}
}
