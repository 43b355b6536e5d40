package verify

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestPatternOf(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       Pattern
		ok         bool
	}{
		{"openai", `{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"héllo"}],"max_tokens":100,"stream":true}`,
			Pattern{Turns: 1, System: true, PromptChars: 5, MaxTokens: 100, Stream: true}, true},
		{"multi-turn parts", `{"messages":[{"role":"user","content":[{"type":"text","text":"ab"},{"type":"text","text":"cd"}]},
			{"role":"assistant","content":"x"},{"role":"user","content":"efg"}],"max_completion_tokens":7}`,
			Pattern{Turns: 2, PromptChars: 7, MaxTokens: 7}, true},
		{"ollama", `{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":20}}`,
			Pattern{Turns: 1, PromptChars: 2, MaxTokens: 20}, true},
		{"no max", `{"messages":[{"role":"developer","content":"x"},{"role":"user","content":null}]}`, Pattern{Turns: 1, System: true}, true},
		{"negative max", `{"messages":[{"role":"user","content":"x"}],"max_tokens":-5}`, Pattern{Turns: 1, PromptChars: 1}, true},
		{"not json", `{`, Pattern{}, false},
		{"completion", `{"prompt":"hello"}`, Pattern{}, false},
		{"no user", `{"messages":[{"role":"system","content":"x"}]}`, Pattern{}, false},
		{"bad role", `{"messages":[{"role":"wizard","content":"x"}]}`, Pattern{}, false},
		{"bad content", `{"messages":[{"role":"user","content":7}]}`, Pattern{}, false},
	} {
		got, ok := PatternOf([]byte(c.body))
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func FuzzPatternOf(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}],"max_tokens":100}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"ab"}]}],"options":{"num_predict":3}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := PatternOf(b)
		if !ok {
			if p != (Pattern{}) {
				t.Fatalf("not a pattern but %+v", p)
			}
			return
		}
		if p.Turns < 1 || p.PromptChars < 0 || p.MaxTokens < 0 {
			t.Fatalf("pattern %+v", p)
		}
		// a challenge shaped like it is a valid chat body again
		pool := NewPool(nil, 1)
		pool.Observe(p)
		c := pool.Next("m")
		if q, ok := PatternOf(c.Body()); !ok || q.Turns != min(p.Turns, maxTurns) || q.System != p.System || q.Stream != p.Stream {
			t.Fatalf("challenge for %+v reads as %+v %v", p, q, ok)
		}
	})
}

func TestPoolDefaults(t *testing.T) {
	p := NewPool([]string{"  How do I mend a fishing net?  ", "", builtinPrompts[0]}, 1)
	if p.Len() != len(builtinPrompts)+1 || len(builtinPrompts) < 40 {
		t.Fatalf("pool of %d prompts (builtin %d)", p.Len(), len(builtinPrompts))
	}
	seen := map[string]bool{}
	for range 200 {
		c := p.Next("tiny")
		if c.Model != "tiny" || c.MaxTokens < MinChallengeTokens || c.MaxTokens > MaxChallengeTokens {
			t.Fatalf("challenge %+v", c)
		}
		last := c.Messages[len(c.Messages)-1]
		if last.Role != "user" || last.Content == "" {
			t.Fatalf("last message %+v", last)
		}
		seen[last.Content] = true
		var body struct {
			Temperature *float64 `json:"temperature"`
			MaxTokens   int      `json:"max_tokens"`
		}
		if err := json.Unmarshal(c.Body(), &body); err != nil || body.Temperature == nil || *body.Temperature != 0 || body.MaxTokens != c.MaxTokens {
			t.Fatalf("body %s: %v", c.Body(), err)
		}
	}
	if !seen["How do I mend a fishing net?"] || len(seen) < 30 {
		t.Errorf("200 challenges used %d distinct prompts, community prompt used: %v", len(seen), seen["How do I mend a fishing net?"])
	}
	// the same seed gives the same challenges
	a, b := NewPool(nil, 9), NewPool(nil, 9)
	for range 10 {
		if string(a.Next("m").Body()) != string(b.Next("m").Body()) {
			t.Fatal("same seed, different challenges")
		}
	}
}

// TestPoolFollowsTraffic: challenges take the shape of observed requests
// (turns, system prompt, length, clamped max_tokens) and never their text.
func TestPoolFollowsTraffic(t *testing.T) {
	p := NewPool(nil, 2)
	secret := "my bank PIN is 4242, remind me " + strings.Repeat("please ", 40)
	real := `{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"` + secret + `"},{"role":"assistant","content":"ok"},{"role":"user","content":"` + secret + `"}],"max_tokens":500}`
	pt, ok := PatternOf([]byte(real))
	if !ok {
		t.Fatal("real request not read")
	}
	p.Observe(pt)
	var chars []int
	for range 50 {
		c := p.Next("m")
		if strings.Contains(string(c.Body()), "PIN") {
			t.Fatal("challenge carries real traffic's text")
		}
		got, _ := PatternOf(c.Body())
		if got.Turns != 2 || !got.System || c.MaxTokens != MaxChallengeTokens {
			t.Fatalf("challenge shape %+v max_tokens %d, want 2 turns, system, %d", got, c.MaxTokens, MaxChallengeTokens)
		}
		chars = append(chars, got.PromptChars)
	}
	mean := 0
	for _, c := range chars {
		mean += c
	}
	mean /= len(chars)
	want := 2 * utf8.RuneCountInString(secret)
	if mean < want/2 || mean > want*2 {
		t.Errorf("challenges average %d prompt characters, real request %d", mean, want)
	}
	p.Observe(Pattern{Turns: 1, PromptChars: 10, MaxTokens: 1})
	p.Observe(Pattern{Turns: 0}) // not a chat request: ignored
	short := false
	for range 50 {
		if c := p.Next("m"); c.MaxTokens == MinChallengeTokens {
			short = true
		}
	}
	if !short {
		t.Error("max_tokens 1 was never clamped up to the minimum")
	}
}

func TestPoolRingAndConcurrency(t *testing.T) {
	p := NewPool(nil, 3)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				p.Observe(Pattern{Turns: 1 + (g+i)%3, MaxTokens: 16})
				p.Next("m")
			}
		}()
	}
	wg.Wait()
	p.mu.Lock()
	n := len(p.patterns)
	p.mu.Unlock()
	if n != maxPatterns {
		t.Errorf("%d patterns kept, want %d", n, maxPatterns)
	}
}

func TestAnswerText(t *testing.T) {
	for _, c := range []struct {
		name, body, want string
		err              error
	}{
		{"openai", `{"choices":[{"index":0,"message":{"role":"assistant","content":"Water daily."}}]}`, "Water daily.", nil},
		{"openai indented", "{\n  \"choices\": [\n {\"message\": {\"content\": \"Hi\"}}]\n}", "Hi", nil},
		{"openai empty", `{"choices":[{"message":{"role":"assistant","content":""}}]}`, "", ErrNoAnswer},
		{"openai null", `{"choices":[{"message":{"role":"assistant","content":null}}]}`, "", ErrNoAnswer},
		{"ollama", `{"model":"m","message":{"role":"assistant","content":"Yes."},"done":true}`, "Yes.", nil},
		{"sse", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Wa\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"ter.\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n" +
			"data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\ndata: [DONE]\n\n", "Water.", nil},
		{"sse error", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n", "", ErrMalformed},
		{"sse junk", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {nope\n\n", "", ErrMalformed},
		{"sse empty", "data: [DONE]\n\n", "", ErrNoAnswer},
		{"ollama stream", "{\"message\":{\"content\":\"Ye\"},\"done\":false}\n{\"message\":{\"content\":\"s.\"},\"done\":false}\n{\"message\":{\"content\":\"\"},\"done\":true}\n", "Yes.", nil},
		{"ollama stream junk", "{\"message\":{\"content\":\"Ye\"}}\n{\"foo\":1}\n", "", ErrMalformed},
		{"not json", `hello`, "", ErrMalformed},
		{"other object", `{"foo":1}`, "", ErrMalformed},
	} {
		got, err := AnswerText([]byte(c.body))
		if got != c.want || (c.err == nil) != (err == nil) || (c.err != nil && !errors.Is(err, c.err)) {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, err, c.want, c.err)
		}
	}
}

func FuzzAnswerText(f *testing.F) {
	f.Add([]byte(`{"choices":[{"message":{"content":"Water daily."}}]}`))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"Wa\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("{\"message\":{\"content\":\"Ye\"}}\n{\"message\":{\"content\":\"s\"}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		text, err := AnswerText(b)
		if err != nil {
			if text != "" || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrNoAnswer)) {
				t.Fatalf("%q with error %v", text, err)
			}
			return
		}
		if text == "" {
			t.Fatal("empty text without ErrNoAnswer")
		}
	})
}
