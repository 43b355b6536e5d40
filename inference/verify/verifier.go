package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Sender delivers a challenge body to a serving node as an ordinary chat
// request (hyphad: as cloves, so the node cannot tell it from a villager's)
// and returns the answer body. Implementations must be safe for
// concurrent use.
type Sender interface {
	Send(ctx context.Context, node string, body []byte) ([]byte, error)
}

// AnswerScorer scores an answer under the reference model; Scorer is the
// implementation backed by inferd.
type AnswerScorer interface {
	Score(ctx context.Context, model string, messages []Message, response string) (Score, error)
}

// Verifier runs one committee member's checks. Fill the fields, then call
// Verify for each serving node once per epoch. A Verifier is safe for
// concurrent use when its Sender and Scorer are.
type Verifier struct {
	Community string
	Key       crypto.PrivKey // the verifier's node key; reports are signed with it
	Params    Params         // Challenges per node and epoch (zero: default)
	Pool      *Pool
	Scorer    AnswerScorer
	Send      Sender
	Now       func() time.Time // nil: time.Now
}

// Verify sends Params.Challenges challenges for model to node, scores the
// answers and returns the signed report for epoch. An answer without text
// scores 0. Challenges the node did not answer (transport errors) or the
// local engine could not score are left out; when none is left Verify
// returns an error and no report (an unreachable node is a routing matter,
// not a reputation one).
func (v *Verifier) Verify(ctx context.Context, epoch int64, node, model string) (*Report, error) {
	if v.Pool == nil || v.Scorer == nil || v.Send == nil || v.Key == nil {
		return nil, fmt.Errorf("verify %s: Verifier needs Key, Pool, Scorer and Send", node)
	}
	n := v.Params.withDefaults().Challenges
	var sumCredit, sumPPL float64
	scored := 0
	var lastErr error
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify %s: %w", node, err)
		}
		ch := v.Pool.Next(model)
		body, err := v.Send.Send(ctx, node, ch.Body())
		if err != nil {
			lastErr = fmt.Errorf("sending a challenge: %w", err)
			continue
		}
		text, err := AnswerText(body)
		if err != nil && !errors.Is(err, ErrNoAnswer) {
			lastErr = err
			continue
		}
		credit, ppl := 0.0, 0.0
		if text != "" {
			s, err := v.Scorer.Score(ctx, model, ch.Messages, text)
			if err != nil {
				lastErr = err
				continue
			}
			credit, ppl = s.Credit, s.Perplexity
		}
		sumCredit += credit
		sumPPL += min(ppl, math.MaxFloat64/float64(n))
		scored++
	}
	if scored == 0 {
		return nil, fmt.Errorf("verify %s: none of %d challenges scored: %w", node, n, lastErr)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	r := &Report{Version: ReportVersion, Community: v.Community, Epoch: epoch, Node: node, Model: model,
		Credit: min(max(sumCredit/float64(scored), 0), 1), Challenges: scored, Perplexity: sumPPL / float64(scored),
		Time: now().UnixMilli()}
	if err := r.Sign(v.Key); err != nil {
		return nil, fmt.Errorf("verify %s: %w", node, err)
	}
	return r, nil
}

// AnswerText extracts the answer text of a chat response body: OpenAI's
// choices[0].message.content or Ollama's message.content. An answer with
// no text is ErrNoAnswer; a body of neither shape is ErrMalformed.
func AnswerText(body []byte) (string, error) {
	var a struct {
		Choices []struct {
			Message struct {
				Content *string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Message *struct {
			Content *string `json:"content"`
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", fmt.Errorf("answer: %.60q is not a chat response: %w", body, ErrMalformed)
	}
	var c *string
	switch {
	case len(a.Choices) > 0:
		c = a.Choices[0].Message.Content
	case a.Message != nil:
		c = a.Message.Content
	default:
		return "", fmt.Errorf("answer: %.60q has neither choices nor message: %w", body, ErrMalformed)
	}
	if c == nil || *c == "" {
		return "", fmt.Errorf("answer: %w", ErrNoAnswer)
	}
	return *c, nil
}
