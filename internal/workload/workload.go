// Package workload is the chat workload of the routing benchmarks and
// system tests (issue 5): several long system prompts chosen with a Zipf
// distribution, each conversation a few turns that carry the real
// previous replies, driven through an OpenAI-compatible endpoint by
// concurrent clients that measure time to first token and total latency.
//
// The same seed gives the same conversations, so different routing
// policies can be compared on exactly the same requests.
package workload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Conversation is one chat: a system prompt and the user turns.
type Conversation struct {
	System string
	Users  []string
	// SystemIndex is which of the workload's system prompts this is.
	SystemIndex int
}

// Spec describes a workload. Zero fields take the documented defaults.
type Spec struct {
	Systems       int     // distinct system prompts; default 5
	Conversations int     // default 15
	SystemWords   int     // words per system prompt; default 220 (~300 tokens)
	UserWords     int     // words per user turn; default 14
	MinTurns      int     // default 2
	MaxTurns      int     // default 3
	ZipfS         float64 // Zipf exponent over the system prompts (> 1); default 1.1
	Seed          uint64
}

var vocabulary = strings.Fields(`the river garden solar battery seed water soil village market bread
harvest winter summer cooperative credit ledger steward mesh node radio school clinic forest
orchard bees compost rain roof well pump tool library bicycle repair kitchen grain mill wind
sheep goat cheese wool loom clay kiln brick road bridge boat net fish salt honey apple pear`)

// Words returns n words drawn from a small village vocabulary.
func Words(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = vocabulary[r.IntN(len(vocabulary))]
	}
	return strings.Join(w, " ")
}

// Make returns the conversations of s, the same for the same s.
func Make(s Spec) []Conversation {
	if s.Systems <= 0 {
		s.Systems = 5
	}
	if s.Conversations <= 0 {
		s.Conversations = 15
	}
	if s.SystemWords <= 0 {
		s.SystemWords = 220
	}
	if s.UserWords <= 0 {
		s.UserWords = 14
	}
	if s.MinTurns <= 0 {
		s.MinTurns = 2
	}
	if s.MaxTurns < s.MinTurns {
		s.MaxTurns = max(s.MinTurns, 3)
	}
	if s.ZipfS <= 1 {
		s.ZipfS = 1.1
	}
	r := rand.New(rand.NewPCG(s.Seed, 99))
	sys := make([]string, s.Systems)
	for i := range sys {
		sys[i] = fmt.Sprintf("You are assistant number %d of the community. ", i) + Words(r, s.SystemWords)
	}
	var pick func() int
	if s.Systems == 1 {
		pick = func() int { return 0 }
	} else {
		z := rand.NewZipf(rand.New(rand.NewPCG(s.Seed, 100)), s.ZipfS, 1, uint64(s.Systems-1))
		pick = func() int { return int(z.Uint64()) }
	}
	out := make([]Conversation, s.Conversations)
	for i := range out {
		k := pick()
		c := Conversation{System: sys[k], SystemIndex: k}
		for range s.MinTurns + r.IntN(s.MaxTurns-s.MinTurns+1) {
			c.Users = append(c.Users, Words(r, s.UserWords)+"?")
		}
		out[i] = c
	}
	return out
}

// Message is one chat message of an OpenAI request.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Reply is one answered request.
type Reply struct {
	Text  string
	Node  string        // the X-Hypha-Node header: the node that served it ("" if none)
	TTFT  time.Duration // to the first SSE event (streaming) or the whole body
	Total time.Duration
	// Started reports that response bytes had reached the client (a
	// failed Reply with Started set was cut mid-stream).
	Started bool
}

// ErrCut: a streaming answer ended in an error event or without [DONE]
// after bytes had been sent.
var ErrCut = errors.New("stream cut after it started")

// Chat sends one OpenAI chat completion to base (e.g.
// http://127.0.0.1:11434) with greedy sampling and reads the whole
// answer; with stream it measures the time to the first SSE event. On
// error the Reply says whether bytes had been received.
func Chat(ctx context.Context, c *http.Client, base, model string, msgs []Message, maxTokens int, stream bool) (Reply, error) {
	body, err := json.Marshal(map[string]any{"model": model, "messages": msgs, "stream": stream, "max_tokens": maxTokens, "temperature": 0})
	if err != nil {
		return Reply{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return Reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("chat: %w", err)
	}
	defer resp.Body.Close()
	rep := Reply{Node: resp.Header.Get("X-Hypha-Node")}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return rep, fmt.Errorf("chat: status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if !stream {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		rep.Total = time.Since(start)
		rep.TTFT = rep.Total
		if err != nil {
			return rep, fmt.Errorf("chat: reading the answer: %w", err)
		}
		var cc struct {
			Choices []struct {
				Message Message `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(b, &cc); err != nil || len(cc.Choices) == 0 {
			return rep, fmt.Errorf("chat: answer is not a chat completion: %v: %.200s", err, b)
		}
		rep.Text = cc.Choices[0].Message.Content
		return rep, nil
	}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if !rep.Started {
			rep.Started, rep.TTFT = true, time.Since(start)
		}
		if line == "data: [DONE]" {
			rep.Total, rep.Text = time.Since(start), text.String()
			return rep, nil
		}
		var ch struct {
			Choices []struct {
				Delta Message `json:"delta"`
			} `json:"choices"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(line[6:]), &ch); err != nil {
			return rep, fmt.Errorf("chat: bad event %.200q: %w", line, err)
		}
		if ch.Error != nil {
			return rep, fmt.Errorf("chat: error event %q: %w", ch.Error.Message, ErrCut)
		}
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	err = sc.Err()
	if rep.Started {
		return rep, fmt.Errorf("chat: stream ended without [DONE] (%v): %w", err, ErrCut)
	}
	return rep, fmt.Errorf("chat: stream ended before any event: %v", err)
}

// Sample is one measured turn.
type Sample struct {
	Conv, Turn  int
	Node        string
	TTFT, Total time.Duration
}

// Target is where conversation conv's requests go: an HTTP client and a
// base URL.
type Target func(conv int) (*http.Client, string)

// Options say how Run drives a workload.
type Options struct {
	Model     string
	Clients   int // concurrent conversations; default 3
	MaxTokens int // per turn; default 4
	// Deadline stops starting new turns after it (zero: none).
	Deadline time.Time
	Target   Target
	// Failed, if set, is told about each failed request (from the
	// client's goroutine); the conversation then stops.
	Failed func(conv, turn int, err error)
}

// Run drives convs (indices first..first+len(convs)-1 in samples) with
// o.Clients concurrent clients, each running whole conversations turn by
// turn with streaming requests. It returns the samples and the number
// of failed requests. Safe to call concurrently.
func Run(ctx context.Context, convs []Conversation, first int, o Options) ([]Sample, int) {
	if o.Clients <= 0 {
		o.Clients = 3
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 4
	}
	work := make(chan int, len(convs))
	for i := range convs {
		work <- i
	}
	close(work)
	var mu sync.Mutex
	var out []Sample
	errs := 0
	var wg sync.WaitGroup
	for range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, conv := convs[i], first+i
				client, base := o.Target(conv)
				msgs := []Message{{Role: "system", Content: c.System}}
				for turn, u := range c.Users {
					if ctx.Err() != nil || (!o.Deadline.IsZero() && time.Now().After(o.Deadline)) {
						return
					}
					msgs = append(msgs, Message{Role: "user", Content: u})
					rep, err := Chat(ctx, client, base, o.Model, msgs, o.MaxTokens, true)
					mu.Lock()
					if err != nil {
						errs++
						mu.Unlock()
						if o.Failed != nil {
							o.Failed(conv, turn, err)
						}
						break
					}
					out = append(out, Sample{Conv: conv, Turn: turn, Node: rep.Node, TTFT: rep.TTFT, Total: rep.Total})
					mu.Unlock()
					msgs = append(msgs, Message{Role: "assistant", Content: rep.Text})
				}
			}
		}()
	}
	wg.Wait()
	return out, errs
}

// Stats summarises samples.
type Stats struct {
	N                     int
	MedianTTFT, P90TTFT   time.Duration
	MedianTotal, P90Total time.Duration
	MeanTotal             time.Duration
}

// Summarize computes the Stats of samples.
func Summarize(samples []Sample) Stats {
	s := Stats{N: len(samples)}
	if len(samples) == 0 {
		return s
	}
	var tt, tot []time.Duration
	var sum time.Duration
	for _, x := range samples {
		tt = append(tt, x.TTFT)
		tot = append(tot, x.Total)
		sum += x.Total
	}
	s.MedianTTFT, s.P90TTFT = Percentile(tt, 50), Percentile(tt, 90)
	s.MedianTotal, s.P90Total = Percentile(tot, 50), Percentile(tot, 90)
	s.MeanTotal = sum / time.Duration(len(samples))
	return s
}

// Percentile returns the p-th percentile (0-100) of ds, interpolating
// linearly between the closest ranks (p=50 is the median); 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	p = min(100, max(0, p))
	pos := p / 100 * float64(len(s)-1)
	lo := int(pos)
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	frac := pos - float64(lo)
	return s[lo] + time.Duration(frac*float64(s[lo+1]-s[lo]))
}
