package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
)

// Message is one chat message of a challenge.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Score is one answer's score under the reference model.
type Score struct {
	Tokens          int     // response tokens scored
	MeanLogprob     float64 // mean log P(token | everything before it)
	MeanBestLogprob float64 // mean log P(the reference's most likely token) at the same positions
	Perplexity      float64 // exp(-MeanLogprob)
	// Credit is exp(MeanLogprob − MeanBestLogprob) in [0,1]: 1 when every
	// token was the reference model's most likely token (an honest greedy
	// answer), falling towards 0 the less the reference agrees. Tokens that
	// merely merge several greedy tokens (Merged of them) count as agreed.
	Credit float64
	Merged int
}

// CreditOf is exp(meanLogprob − meanBestLogprob) clamped to [0,1] (0 for
// NaN input).
func CreditOf(meanLogprob, meanBestLogprob float64) float64 {
	c := math.Exp(meanLogprob - meanBestLogprob)
	if math.IsNaN(c) || c < 0 {
		return 0
	}
	return min(c, 1)
}

// maxScoreAnswer bounds the scoring endpoint's answer (a few numbers per
// token of a challenge answer).
const maxScoreAnswer = 16 << 20

// Scorer scores answers with a local inferd's POST /hypha/score (one
// forward pass per answer). The zero Client means http.DefaultClient. A
// Scorer is a plain value, safe for concurrent use.
type Scorer struct {
	BaseURL string // e.g. http://127.0.0.1:11435
	Client  *http.Client
}

// Score scores response as the answer to messages under model. An empty
// response is ErrNoAnswer; an engine that cannot score it (unknown model,
// too long for the context, ...) is ErrScore with the engine's message.
func (s Scorer) Score(ctx context.Context, model string, messages []Message, response string) (Score, error) {
	if response == "" {
		return Score{}, fmt.Errorf("score: %w", ErrNoAnswer)
	}
	body, err := json.Marshal(map[string]any{"model": model, "messages": messages, "response": response})
	if err != nil {
		return Score{}, fmt.Errorf("score: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.BaseURL, "/")+"/hypha/score", bytes.NewReader(body))
	if err != nil {
		return Score{}, fmt.Errorf("score: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return Score{}, fmt.Errorf("score: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxScoreAnswer+1))
	if err != nil {
		return Score{}, fmt.Errorf("score: reading the answer: %w", err)
	}
	if len(b) > maxScoreAnswer {
		return Score{}, fmt.Errorf("score: answer larger than %d bytes: %w", maxScoreAnswer, ErrScore)
	}
	var a struct {
		Tokens          []int32  `json:"tokens"`
		MeanLogprob     *float64 `json:"mean_logprob"`
		MeanBestLogprob *float64 `json:"mean_best_logprob"`
		Perplexity      float64  `json:"perplexity"`
		Credit          *float64 `json:"credit"` // merge-aware, from inferd
		Merged          int      `json:"merged_tokens"`
		Error           string   `json:"error"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return Score{}, fmt.Errorf("score: %s answered %d with a body that is not JSON (%.80q): %w", req.URL, resp.StatusCode, b, ErrScore)
	}
	if resp.StatusCode != http.StatusOK {
		return Score{}, fmt.Errorf("score: %s answered %d: %s: %w", req.URL, resp.StatusCode, a.Error, ErrScore)
	}
	if a.MeanLogprob == nil || a.MeanBestLogprob == nil || len(a.Tokens) == 0 {
		return Score{}, fmt.Errorf("score: %s answered without mean_logprob, mean_best_logprob or tokens: %w", req.URL, ErrScore)
	}
	credit := CreditOf(*a.MeanLogprob, *a.MeanBestLogprob)
	if a.Credit != nil {
		// The engine forgave re-tokenization merges (the answer came back as
		// text: greedy "\n","\n" reads back as one "\n\n" token).
		credit = min(1, max(0, *a.Credit))
		if math.IsNaN(*a.Credit) {
			credit = 0
		}
	}
	return Score{Tokens: len(a.Tokens), MeanLogprob: *a.MeanLogprob, MeanBestLogprob: *a.MeanBestLogprob,
		Perplexity: a.Perplexity, Credit: credit, Merged: a.Merged}, nil
}
