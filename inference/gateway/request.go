package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/univrs/hypha/inference/chat"
)

// Kinds of inference request.
const (
	kindChat           = "chat"            // POST /v1/chat/completions
	kindCompletion     = "completion"      // POST /v1/completions
	kindOllamaChat     = "ollama-chat"     // POST /api/chat
	kindOllamaGenerate = "ollama-generate" // POST /api/generate
)

// inferReq is what the gateway reads from a request to route it; the body
// itself is forwarded unchanged.
type inferReq struct {
	Kind     string
	Model    string
	Messages []chat.Message // chat kinds (and generate unless Raw)
	Prompt   string         // completion / raw generate text
	IDs      []int32        // completion given as token ids, generate context
	Stream   bool
	Max      int    // generation limit, 0 = unknown
	User     string // OpenAI "user": a session hint
}

// content is an OpenAI message content: a string, null or text parts.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*c = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = content(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString(p.Text)
	}
	*c = content(sb.String())
	return nil
}

// decodeRequest reads the routing-relevant fields of an inference request
// body of the given kind. Untrusted input: errors name the field.
func decodeRequest(kind string, body []byte) (*inferReq, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("empty request body: %w", ErrBadRequest)
	}
	r := &inferReq{Kind: kind}
	bad := func(err error) (*inferReq, error) {
		return nil, fmt.Errorf("request body: %v: %w", err, ErrBadRequest)
	}
	switch kind {
	case kindChat:
		var q struct {
			Model    string `json:"model"`
			Messages []struct {
				Role    string  `json:"role"`
				Content content `json:"content"`
			} `json:"messages"`
			Stream       bool   `json:"stream"`
			MaxTokens    *int   `json:"max_tokens"`
			MaxCompletes *int   `json:"max_completion_tokens"`
			User         string `json:"user"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			return bad(err)
		}
		if len(q.Messages) == 0 {
			return nil, fmt.Errorf("messages: empty: %w", ErrBadRequest)
		}
		r.Model, r.Stream, r.User = q.Model, q.Stream, q.User
		for _, m := range q.Messages {
			role := m.Role
			if role == "developer" {
				role = "system"
			}
			r.Messages = append(r.Messages, chat.Message{Role: role, Content: string(m.Content)})
		}
		if q.MaxTokens != nil {
			r.Max = *q.MaxTokens
		}
		if q.MaxCompletes != nil {
			r.Max = *q.MaxCompletes
		}
	case kindCompletion:
		var q struct {
			Model     string          `json:"model"`
			Prompt    json.RawMessage `json:"prompt"`
			Stream    bool            `json:"stream"`
			MaxTokens *int            `json:"max_tokens"`
			User      string          `json:"user"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			return bad(err)
		}
		r.Model, r.Stream, r.User, r.Max = q.Model, q.Stream, q.User, 16
		if q.MaxTokens != nil {
			r.Max = *q.MaxTokens
		}
		var s string
		var ss []string
		var ids []int32
		var idss [][]int32
		switch {
		case len(q.Prompt) == 0 || string(q.Prompt) == "null":
		case json.Unmarshal(q.Prompt, &s) == nil:
			r.Prompt = s
		case json.Unmarshal(q.Prompt, &ss) == nil && len(ss) == 1:
			r.Prompt = ss[0]
		case json.Unmarshal(q.Prompt, &ids) == nil:
			r.IDs = ids
		case json.Unmarshal(q.Prompt, &idss) == nil && len(idss) == 1:
			r.IDs = idss[0]
		default:
			return nil, fmt.Errorf("prompt: must be a string, [string], token ids or [[token ids]]: %w", ErrBadRequest)
		}
	case kindOllamaChat:
		var q struct {
			Model    string `json:"model"`
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
			Stream  *bool `json:"stream"`
			Options struct {
				NumPredict *int `json:"num_predict"`
			} `json:"options"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			return bad(err)
		}
		r.Model, r.Stream = q.Model, q.Stream == nil || *q.Stream
		for _, m := range q.Messages {
			r.Messages = append(r.Messages, chat.Message{Role: strings.ToLower(m.Role), Content: m.Content})
		}
		if q.Options.NumPredict != nil {
			r.Max = *q.Options.NumPredict
		}
	case kindOllamaGenerate:
		var q struct {
			Model   string  `json:"model"`
			Prompt  string  `json:"prompt"`
			System  string  `json:"system"`
			Raw     bool    `json:"raw"`
			Context []int32 `json:"context"`
			Stream  *bool   `json:"stream"`
			Options struct {
				NumPredict *int `json:"num_predict"`
			} `json:"options"`
		}
		if err := json.Unmarshal(body, &q); err != nil {
			return bad(err)
		}
		r.Model, r.Stream, r.IDs = q.Model, q.Stream == nil || *q.Stream, q.Context
		if q.Raw {
			r.Prompt = q.Prompt
		} else {
			if q.System != "" {
				r.Messages = append(r.Messages, chat.Message{Role: "system", Content: q.System})
			}
			r.Messages = append(r.Messages, chat.Message{Role: "user", Content: q.Prompt})
		}
		if q.Options.NumPredict != nil {
			r.Max = *q.Options.NumPredict
		}
	default:
		return nil, fmt.Errorf("request kind %q unknown: %w", kind, ErrBadRequest)
	}
	if r.Max < 0 {
		r.Max = 0
	}
	return r, nil
}

// sessionKey names the conversation a request belongs to: the client's
// X-Hypha-Session header or OpenAI "user" field, else the model and the
// messages up to the first user turn (every turn of one chat repeats
// them). Completions without a hint have no session.
func sessionKey(r *inferReq, header string) string {
	h := sha256.New()
	switch {
	case header != "":
		fmt.Fprintf(h, "h\x00%s\x00%s", r.Model, header)
	case r.User != "":
		fmt.Fprintf(h, "u\x00%s\x00%s", r.Model, r.User)
	case len(r.Messages) > 0 && (r.Kind == kindChat || r.Kind == kindOllamaChat):
		fmt.Fprintf(h, "m\x00%s", r.Model)
		for _, m := range r.Messages {
			fmt.Fprintf(h, "\x00%s\x00%s", m.Role, m.Content)
			if m.Role == "user" {
				break
			}
		}
	default:
		return ""
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
