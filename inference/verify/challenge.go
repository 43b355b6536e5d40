package verify

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"unicode/utf8"
)

// Challenge is one disguised request: an OpenAI chat/completions body that
// a verifier sends to a serving node as if a villager asked.
type Challenge struct {
	Model     string
	Messages  []Message
	MaxTokens int
	Seed      int64 // sent when not 0
	Stream    bool  // ask for a streamed (SSE) answer, like most chat front ends
}

// Body is the request body: {"model", "messages", "max_tokens",
// "temperature": 0[, "seed"][, "stream": true]}. Greedy decoding makes an
// honest node's answer the reference model's argmax path, which is what
// Score.Credit measures. AnswerText reads the answer, streamed or not.
func (c Challenge) Body() []byte {
	type body struct {
		Model       string    `json:"model"`
		Messages    []Message `json:"messages"`
		MaxTokens   int       `json:"max_tokens"`
		Temperature float64   `json:"temperature"`
		Seed        int64     `json:"seed,omitempty"`
		Stream      bool      `json:"stream,omitempty"`
	}
	msgs := c.Messages
	if msgs == nil {
		msgs = []Message{}
	}
	b, _ := json.Marshal(body{Model: c.Model, Messages: msgs, MaxTokens: c.MaxTokens, Seed: c.Seed, Stream: c.Stream})
	return b
}

// Pattern is the shape of a real request, without its content.
type Pattern struct {
	Turns       int  // user messages
	System      bool // has a system (or developer) message
	PromptChars int  // characters of all user messages
	MaxTokens   int  // 0: the request set none
	Stream      bool // asked for a streamed answer
}

// maxPatternBody bounds the bodies PatternOf reads.
const maxPatternBody = 8 << 20

// PatternOf reads the shape of an OpenAI chat/completions body (or an
// Ollama /api/chat body: options.num_predict is its max_tokens; Ollama
// streams unless "stream": false, which PatternOf does not guess). It
// reports false for anything else: not JSON, no messages, no user message,
// content that is neither text nor text parts.
func PatternOf(body []byte) (Pattern, bool) {
	if len(body) > maxPatternBody {
		return Pattern{}, false
	}
	var req struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		MaxTokens           *int  `json:"max_tokens"`
		MaxCompletionTokens *int  `json:"max_completion_tokens"`
		Stream              *bool `json:"stream"`
		Options             *struct {
			NumPredict *int `json:"num_predict"`
		} `json:"options"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) == 0 {
		return Pattern{}, false
	}
	var p Pattern
	for _, m := range req.Messages {
		text, ok := contentText(m.Content)
		if !ok {
			return Pattern{}, false
		}
		switch m.Role {
		case "system", "developer":
			p.System = true
		case "user":
			p.Turns++
			p.PromptChars += utf8.RuneCountInString(text)
		case "assistant", "tool":
		default:
			return Pattern{}, false
		}
	}
	if p.Turns == 0 {
		return Pattern{}, false
	}
	switch {
	case req.MaxCompletionTokens != nil:
		p.MaxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		p.MaxTokens = *req.MaxTokens
	case req.Options != nil && req.Options.NumPredict != nil:
		p.MaxTokens = *req.Options.NumPredict
	}
	p.MaxTokens = max(p.MaxTokens, 0)
	p.Stream = req.Stream != nil && *req.Stream
	return p, true
}

// contentText is the text of a message content: a string, null, or an
// array of {"type": "text", "text": ...} parts.
func contentText(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", false
	}
	var sb strings.Builder
	for _, pt := range parts {
		sb.WriteString(pt.Text)
	}
	return sb.String(), true
}

// Bounds of generated challenges.
const (
	MinChallengeTokens = 8
	MaxChallengeTokens = 64
	maxPatterns        = 256
	maxTurns           = 4
)

// Pool generates challenges from the built-in prompts and the community's
// own (manifest verifiers.prompts), shaped like recent real traffic: the
// same number of turns, a system prompt or not, a similar length, and its
// max_tokens clamped to [MinChallengeTokens, MaxChallengeTokens]. Only the
// shape of real requests is kept, never their text.
//
// A Pool is safe for concurrent use.
type Pool struct {
	prompts []string // immutable after NewPool

	mu       sync.Mutex // guards everything below
	rng      *rand.Rand
	patterns []Pattern // ring of the last maxPatterns
	next     int       // ring position of the next Observe
}

// NewPool returns a pool of the built-in prompts plus extra (empty and
// duplicate prompts are dropped); seed makes its choices reproducible.
func NewPool(extra []string, seed int64) *Pool {
	p := &Pool{rng: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))}
	seen := map[string]bool{}
	for _, s := range append(append([]string(nil), builtinPrompts...), extra...) {
		s = strings.TrimSpace(s)
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		p.prompts = append(p.prompts, s)
	}
	return p
}

// Len is the number of prompts in the pool.
func (p *Pool) Len() int { return len(p.prompts) }

// Observe records the shape of a real request; the pool keeps the last 256.
func (p *Pool) Observe(pt Pattern) {
	if pt.Turns <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.patterns) < maxPatterns {
		p.patterns = append(p.patterns, pt)
		return
	}
	p.patterns[p.next] = pt
	p.next = (p.next + 1) % maxPatterns
}

// Next returns a new challenge for model: the shape of a random recent
// request (or a plain one-question shape before any was observed) filled
// with pool prompts.
func (p *Pool) Next(model string) Challenge {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pt Pattern
	if len(p.patterns) > 0 {
		pt = p.patterns[p.rng.IntN(len(p.patterns))]
	} else {
		pt = Pattern{Turns: 1, System: p.rng.IntN(4) == 0, MaxTokens: 16 + 8*p.rng.IntN(5)}
	}
	turns := min(max(pt.Turns, 1), maxTurns)
	c := Challenge{Model: model, MaxTokens: pt.MaxTokens, Stream: pt.Stream}
	if c.MaxTokens == 0 {
		c.MaxTokens = 32
	}
	c.MaxTokens = min(max(c.MaxTokens, MinChallengeTokens), MaxChallengeTokens)
	if pt.System {
		c.Messages = append(c.Messages, Message{Role: "system", Content: systemPrompts[p.rng.IntN(len(systemPrompts))]})
	}
	per := pt.PromptChars / turns
	for i := range turns {
		c.Messages = append(c.Messages, Message{Role: "user", Content: p.promptLocked(per)})
		if i < turns-1 {
			c.Messages = append(c.Messages, Message{Role: "assistant", Content: assistantTurns[p.rng.IntN(len(assistantTurns))]})
		}
	}
	return c
}

// promptLocked picks a prompt of about target characters (any when
// target <= 0): the closest of a few random candidates, joined with more
// when the target is long.
func (p *Pool) promptLocked(target int) string {
	if len(p.prompts) == 0 {
		return "Hello, how are you today?"
	}
	pick := func(want int) string {
		best := p.prompts[p.rng.IntN(len(p.prompts))]
		if want <= 0 {
			return best
		}
		for range 5 {
			c := p.prompts[p.rng.IntN(len(p.prompts))]
			if abs(utf8.RuneCountInString(c)-want) < abs(utf8.RuneCountInString(best)-want) {
				best = c
			}
		}
		return best
	}
	out := pick(target)
	for n := 1; n < 4 && target > 0 && utf8.RuneCountInString(out)*4 < target*3; n++ {
		out += "\n\n" + pick(target-utf8.RuneCountInString(out))
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// systemPrompts are typical system prompts of chat front ends.
var systemPrompts = []string{
	"You are a helpful assistant.",
	"You are a friendly assistant for our village. Answer briefly and plainly.",
	"Answer in a few sentences. If you are not sure, say so.",
	"You are a patient helper. Explain things simply.",
}

// assistantTurns fill the earlier assistant turns of multi-turn challenges.
var assistantTurns = []string{
	"Sure. Could you tell me a little more about what you need?",
	"That depends on a few things, but here is the short version: start small and check often.",
	"Good question. The usual advice is to keep it simple and ask a neighbour who has done it before.",
	"I can help with that. What have you tried so far?",
}

// builtinPrompts are everyday questions a villager might ask a local
// assistant: the default challenge pool.
var builtinPrompts = []string{
	"How often should I water tomato seedlings in hot weather?",
	"What is a simple way to keep bread fresh for longer without a fridge?",
	"Can you explain what a solar charge controller does?",
	"My goats keep escaping through the fence. What can I do?",
	"How do I make a basic compost heap?",
	"Write a short thank-you note to my neighbour who fixed my roof.",
	"What are signs that a chicken is sick?",
	"How long should I boil water to make it safe to drink?",
	"Explain in simple words how a battery stores energy.",
	"Give me three ideas for a cheap and healthy dinner with beans.",
	"What should I check before buying a second-hand bicycle?",
	"How can I tell if the soil in my garden is too acidic?",
	"Summarise the main steps of planting a fruit tree.",
	"What is the difference between a cold and the flu?",
	"How do I patch a hole in a rubber boot?",
	"Suggest a name for our community seed library.",
	"Why do leaves change colour in autumn?",
	"How can we share one washing machine fairly between five families?",
	"What is a good way to store potatoes through the winter?",
	"Write a short announcement for a village clean-up day on Saturday morning.",
	"How do I calculate how many solar panels I need for a small house?",
	"What can I plant in partial shade?",
	"My phone battery drains quickly. What could be the reason?",
	"Explain what a mesh network is to a child.",
	"How do I keep slugs away from my lettuce without poison?",
	"What is the best time of day to harvest herbs?",
	"Give me a simple recipe for flatbread.",
	"How can I make my house warmer in winter without spending much?",
	"What are the first steps of starting a beehive?",
	"How do I teach a dog to come when called?",
	"Is it safe to eat eggs after their best-before date?",
	"What should go into a basic first aid kit for a farm?",
	"How can I reduce the amount of water my garden needs?",
	"Write a polite message asking the council to repair the bridge.",
	"What are easy vegetables for a beginner to grow?",
	"How does rainwater harvesting work?",
	"Why is my sourdough not rising?",
	"How do I sharpen a kitchen knife with a whetstone?",
	"What is crop rotation and why does it help?",
	"Give me some tips for running a good community meeting.",
	"How can I tell when a melon is ripe?",
	"What causes mould on walls and how do I get rid of it?",
}
