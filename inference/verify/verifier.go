package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
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

// AnswerText extracts the answer text of a chat response body, as a node
// sends it (untrusted): an OpenAI chat completion (choices[0].message
// .content), an OpenAI stream of Server-Sent Events (the
// choices[0].delta.content of every "data:" event up to [DONE]), an Ollama
// chat answer (message.content) or an Ollama stream (one JSON object per
// line). An answer with no text is ErrNoAnswer; anything else is
// ErrMalformed.
func AnswerText(body []byte) (string, error) {
	trimmed := bytes.TrimSpace(body)
	if bytes.HasPrefix(trimmed, []byte("data:")) {
		return sseText(trimmed)
	}
	var a chatAnswer
	if err := json.Unmarshal(trimmed, &a); err != nil {
		if bytes.HasPrefix(trimmed, []byte("{")) && bytes.Contains(trimmed, []byte("\n")) {
			return ndjsonText(trimmed)
		}
		return "", fmt.Errorf("answer: %.60q is not a chat response: %w", body, ErrMalformed)
	}
	text, ok := a.text()
	if !ok {
		return "", fmt.Errorf("answer: %.60q has neither choices nor message: %w", body, ErrMalformed)
	}
	if text == "" {
		return "", fmt.Errorf("answer: %w", ErrNoAnswer)
	}
	return text, nil
}

// chatAnswer is any of the four answer shapes (one object or one event).
type chatAnswer struct {
	Choices []struct {
		Message *struct {
			Content *string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Content *string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Message *struct {
		Content *string `json:"content"`
	} `json:"message"`
	Error json.RawMessage `json:"error"`
}

// text is the answer's text and whether the object has an answer shape.
func (a *chatAnswer) text() (string, bool) {
	var c *string
	switch {
	case len(a.Choices) > 0 && a.Choices[0].Message != nil:
		c = a.Choices[0].Message.Content
	case len(a.Choices) > 0 && a.Choices[0].Delta != nil:
		c = a.Choices[0].Delta.Content
	case len(a.Choices) > 0:
		return "", true // e.g. a final event with finish_reason only
	case a.Message != nil:
		c = a.Message.Content
	default:
		return "", false
	}
	if c == nil {
		return "", true
	}
	return *c, true
}

func sseText(body []byte) (string, error) {
	var sb strings.Builder
	for i, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // blank separators, comments, event: lines
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			break
		}
		var ev chatAnswer
		if err := json.Unmarshal(data, &ev); err != nil {
			return "", fmt.Errorf("answer: event on line %d (%.60q) is not JSON: %w", i+1, data, ErrMalformed)
		}
		if len(ev.Error) > 0 {
			return "", fmt.Errorf("answer: the stream ended with an error %.80s: %w", ev.Error, ErrMalformed)
		}
		if _, ok := ev.text(); !ok && len(ev.Choices) == 0 {
			continue // usage-only events
		}
		t, _ := ev.text()
		sb.WriteString(t)
	}
	if sb.Len() == 0 {
		return "", fmt.Errorf("answer: %w", ErrNoAnswer)
	}
	return sb.String(), nil
}

func ndjsonText(body []byte) (string, error) {
	var sb strings.Builder
	for i, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var ev chatAnswer
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", fmt.Errorf("answer: line %d (%.60q) is not JSON: %w", i+1, line, ErrMalformed)
		}
		if len(ev.Error) > 0 {
			return "", fmt.Errorf("answer: the stream ended with an error %.80s: %w", ev.Error, ErrMalformed)
		}
		t, ok := ev.text()
		if !ok {
			return "", fmt.Errorf("answer: line %d (%.60q) is not a chat answer: %w", i+1, line, ErrMalformed)
		}
		sb.WriteString(t)
	}
	if sb.Len() == 0 {
		return "", fmt.Errorf("answer: %w", ErrNoAnswer)
	}
	return sb.String(), nil
}
