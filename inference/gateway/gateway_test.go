package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ollama "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/univrs/hypha/inference/chat"
	"github.com/univrs/hypha/inference/route"
)

func postJSON(t testing.TB, u string, body any) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func lastDecision(t testing.TB, g *Gateway) route.Decision {
	t.Helper()
	ds := g.Router().Decisions()
	if len(ds) == 0 {
		t.Fatal("no decision recorded")
	}
	return ds[len(ds)-1]
}

// TestClients: the real Ollama and OpenAI Go clients against a gateway of
// a 3-node mesh; usage is reported; a conversation's turns stay on one node.
func TestClients(t *testing.T) {
	var mu sync.Mutex
	var usages []Usage
	nodes := startCluster(t, clusterOpts{nodes: 3, modelsDir: tinyModels(t), usage: func(u Usage) {
		mu.Lock()
		usages = append(usages, u)
		mu.Unlock()
	}})
	gw := nodes[0]
	ctx := context.Background()

	u, _ := url.Parse(gw.gwURL)
	oc := ollama.NewClient(u, http.DefaultClient)
	if err := oc.Heartbeat(ctx); err != nil {
		t.Fatal("Heartbeat:", err)
	}
	list, err := oc.List(ctx)
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != tinyModel {
		t.Fatalf("List = %+v, %v", list, err)
	}
	show, err := oc.Show(ctx, &ollama.ShowRequest{Model: tinyModel})
	if err != nil || !strings.Contains(show.Template, "<|im_start|>") {
		t.Fatalf("Show = %+v, %v", show, err)
	}
	opts := map[string]any{"temperature": 0, "num_predict": 6, "seed": 1}
	msgs := []ollama.Message{{Role: "system", Content: "You are the village helper. Be brief."}, {Role: "user", Content: "Say hello."}}
	var streamed strings.Builder
	var final ollama.ChatResponse
	if err := oc.Chat(ctx, &ollama.ChatRequest{Model: tinyModel, Messages: msgs, Options: opts}, func(r ollama.ChatResponse) error {
		streamed.WriteString(r.Message.Content)
		if r.Done {
			final = r
		}
		return nil
	}); err != nil {
		t.Fatal("Chat:", err)
	}
	if streamed.Len() == 0 || final.EvalCount == 0 || final.PromptEvalCount == 0 {
		t.Fatalf("chat: %q %+v", streamed.String(), final.Metrics)
	}
	first := lastDecision(t, gw.gw)
	// the next turn of the same conversation stays on its node
	msgs = append(msgs, ollama.Message{Role: "assistant", Content: streamed.String()}, ollama.Message{Role: "user", Content: "Again."})
	if err := oc.Chat(ctx, &ollama.ChatRequest{Model: tinyModel, Messages: msgs, Options: opts}, func(ollama.ChatResponse) error { return nil }); err != nil {
		t.Fatal("Chat turn 2:", err)
	}
	if d := lastDecision(t, gw.gw); d.Node != first.Node || d.Reason != "session" {
		t.Fatalf("turn 2 went to %s (%s), turn 1 to %s", d.Node, d.Reason, first.Node)
	}
	var gen strings.Builder
	stream := false
	if err := oc.Generate(ctx, &ollama.GenerateRequest{Model: tinyModel, Prompt: "Tell me about soil.", Stream: &stream, Options: opts},
		func(r ollama.GenerateResponse) error { gen.WriteString(r.Response); return nil }); err != nil || gen.Len() == 0 {
		t.Fatalf("Generate: %q %v", gen.String(), err)
	}

	c := openai.NewClient(option.WithBaseURL(gw.gwURL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	models, err := c.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != tinyModel {
		t.Fatalf("Models = %+v, %v", models, err)
	}
	params := openai.ChatCompletionNewParams{Model: tinyModel, MaxTokens: openai.Int(6), Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Name a tree.")}}
	cc, err := c.Chat.Completions.New(ctx, params)
	if err != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Content == "" || cc.Usage.CompletionTokens == 0 {
		t.Fatalf("chat completion: %+v, %v", cc, err)
	}
	st := c.Chat.Completions.NewStreaming(ctx, params)
	var sb strings.Builder
	for st.Next() {
		if ch := st.Current(); len(ch.Choices) > 0 {
			sb.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := st.Err(); err != nil || sb.String() != cc.Choices[0].Message.Content {
		t.Fatalf("streamed %q (err %v), non-streamed %q (same seed, greedy)", sb.String(), err, cc.Choices[0].Message.Content)
	}
	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: tinyModel, MaxTokens: openai.Int(4),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}})
	if err != nil || len(comp.Choices) != 1 {
		t.Fatalf("completion: %+v, %v", comp, err)
	}

	// Usage is reported after the response is written: the client can
	// see the end of its answer before the last report lands.
	for i := 0; i < 100; i++ {
		mu.Lock()
		n := len(usages)
		mu.Unlock()
		if n >= 6 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(usages) != 6 {
		for _, u := range usages {
			t.Logf("usage: %+v", u)
		}
		t.Fatalf("%d usage reports, want 6 (one per generation)", len(usages))
	}
	for _, u := range usages {
		if u.Model != tinyModel || u.PromptTokens == 0 || u.Node == "" || u.Latency <= 0 || nodeIndex(nodes, u.Node) < 0 {
			t.Errorf("usage %+v", u)
		}
	}
	if u := usages[3]; u.OutputTokens != int(cc.Usage.CompletionTokens) || u.Estimated {
		t.Errorf("chat completion usage %+v, API said %d", u, cc.Usage.CompletionTokens)
	}

	// unknown model and bad JSON: errors in the API's own shape
	resp, b := postJSON(t, gw.gwURL+"/v1/chat/completions", map[string]any{"model": "nope", "messages": []map[string]string{{"role": "user", "content": "x"}}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `"message"`) {
		t.Errorf("unknown model: %d %s", resp.StatusCode, b)
	}
	r2, err := http.Post(gw.gwURL+"/api/chat", "application/json", strings.NewReader(`{"model":`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"error":"request body`) {
		t.Errorf("bad JSON: %d %s", r2.StatusCode, b)
	}
}

// TestPrefixFromCacheState: a prompt evaluated directly on node 2's inferd
// shows up in its /hypha/cache; the gateway of node 0 pulls it over the
// stream protocol and routes a longer prompt with that prefix to node 2,
// expecting exactly the cached chunks (the gateway tokenizes as inferd).
func TestPrefixFromCacheState(t *testing.T) {
	nodes := startCluster(t, clusterOpts{nodes: 3, modelsDir: tinyModels(t)})
	sys := strings.Repeat("The community garden shares water, seeds and solar power among neighbours. ", 8)
	msgs := []map[string]string{{"role": "system", "content": sys}, {"role": "user", "content": "What do we share?"}}
	resp, b := postJSON(t, nodes[2].infURL+"/v1/chat/completions", map[string]any{"model": tinyModel, "messages": msgs, "max_tokens": 1})
	if resp.StatusCode != 200 {
		t.Fatalf("direct request: %d %s", resp.StatusCode, b)
	}
	// the gateway's tokens are inferd's tokens
	resp, b = postJSON(t, nodes[2].infURL+"/hypha/tokenize", map[string]any{"model": tinyModel, "messages": msgs})
	var tk struct{ Tokens []int32 }
	if err := json.Unmarshal(b, &tk); err != nil || resp.StatusCode != 200 {
		t.Fatalf("tokenize: %d %s", resp.StatusCode, b)
	}
	p, err := nodes[0].gw.prompts.get(tinyModel)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := p.tokens(&inferReq{Kind: kindChat, Model: tinyModel, Messages: []chat.Message{{Role: "system", Content: sys}, {Role: "user", Content: "What do we share?"}}})
	if err != nil || !slices.Equal(mine, tk.Tokens) {
		t.Fatalf("gateway tokens differ from inferd's:\n%v\n%v (%v)", mine, tk.Tokens, err)
	}
	nodes[0].gw.Poll(context.Background())
	node2 := route.NodeID(nodes[2].host.ID().String())
	if nodes[0].gw.Router().Tree.Size(node2, tinyModel) == 0 {
		t.Fatal("node 2's cache state did not reach node 0's tree")
	}
	msgs[1]["content"] = "What do we share? Name three things please."
	resp, b = postJSON(t, nodes[0].gwURL+"/v1/chat/completions", map[string]any{"model": tinyModel, "messages": msgs, "max_tokens": 2})
	if resp.StatusCode != 200 {
		t.Fatalf("gateway request: %d %s", resp.StatusCode, b)
	}
	d := lastDecision(t, nodes[0].gw)
	if d.Node != node2 || d.Reason != "prefix" || d.Cached < len(tk.Tokens)/route.ChunkTokens*route.ChunkTokens-route.ChunkTokens {
		t.Fatalf("decision %+v; want node 2 by prefix with ~%d cached tokens", d, len(tk.Tokens))
	}
	if resp.Header.Get("X-Hypha-Node") != string(node2) {
		t.Fatalf("served by %q", resp.Header.Get("X-Hypha-Node"))
	}
}

// TestExternalEngineRecorded: an external engine (here another inferd
// reached by URL, as llama-server would be) reports no cache state; the
// gateway records what it sent there and routes the prefix back to it.
func TestExternalEngineRecorded(t *testing.T) {
	// the external engine: an inferd nobody polls for cache state
	ext := startCluster(t, clusterOpts{nodes: 1, modelsDir: tinyModels(t)})
	extURL := ext[0].infURL
	g, err := New(Config{Externals: []External{{Name: "gpu-box", URL: extURL}}, ModelsDir: tinyModels(t),
		Router: route.NewRouter(), PollInterval: time.Hour, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g.Poll(context.Background())
	srv, gURL := serve(t, g)
	t.Cleanup(func() { srv.Close() })
	if ns := g.Nodes(); len(ns) != 1 || !ns[0].Healthy || ns[0].Kind != "external" {
		t.Fatalf("nodes %+v", ns)
	}
	sys := strings.Repeat("Rain water is collected from the roofs. ", 10)
	for i, q := range []string{"How?", "Where is it stored?"} {
		resp, b := postJSON(t, gURL+"/v1/chat/completions", map[string]any{"model": tinyModel, "max_tokens": 1,
			"messages": []map[string]string{{"role": "system", "content": sys}, {"role": "user", "content": q}}, "user": fmt.Sprint(i)})
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	d := lastDecision(t, g)
	if d.Node != "gpu-box" || d.Reason != "prefix" || d.Cached == 0 {
		t.Fatalf("second request: %+v, want a recorded prefix on gpu-box", d)
	}
}

// TestKillNodeMidWorkload: a node dies while requests run. Every request
// that had not yet received bytes is retried elsewhere and succeeds; only
// streams already under way may fail, and then visibly.
func TestKillNodeMidWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a node under load")
	}
	nodes := startCluster(t, clusterOpts{nodes: 3, modelsDir: tinyModels(t), policy: route.RoundRobin})
	const clients, perClient = 4, 4
	var ok, partial, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	var started atomic.Int64
	killAt := int64(clients * perClient / 3)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				if started.Add(1) == killAt {
					go func() { // kill node 2 while it serves a request
						id := route.NodeID(nodes[2].host.ID().String())
						for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
							if slices.ContainsFunc(nodes[0].gw.Router().Loads(), func(l route.NodeLoad) bool { return l.Node == id && l.InFlight > 0 }) {
								break
							}
						}
						nodes[2].kill()
					}()
				}
				stream := (c+i)%2 == 0
				body, _ := json.Marshal(map[string]any{"model": tinyModel, "max_tokens": 48, "stream": stream, // long enough to be in flight when the kill lands
					"messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("client %d question %d about the weather", c, i)}}})
				resp, err := http.Post(nodes[0].gwURL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("status %d: %s", resp.StatusCode, b))
					mu.Unlock()
				case rerr != nil || bytes.Contains(b, []byte(`"error"`)):
					if !stream || len(b) == 0 {
						failed.Add(1)
					} else {
						partial.Add(1) // bytes had been sent: the client sees the error
					}
				case stream && !bytes.Contains(b, []byte("data: [DONE]")):
					failed.Add(1)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("ok %d, partial (stream cut after bytes were sent) %d, failed %d", ok.Load(), partial.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed that could have been retried: %v", failed.Load(), failures)
	}
	retries := 0
	for _, d := range nodes[0].gw.Router().Decisions() {
		if d.Reason == "retry" {
			retries++
		}
	}
	t.Logf("%d retries", retries)
	if retries+int(partial.Load()) == 0 {
		t.Fatal("the killed node was serving a request, yet nothing was retried or cut")
	}
}

// TestPeerRefusesOtherPaths: a peer can only reach inference endpoints of
// this node's inferd.
func TestPeerRefusesOtherPaths(t *testing.T) {
	nodes := startCluster(t, clusterOpts{nodes: 2, modelsDir: tinyModels(t)})
	g := nodes[0].gw
	for _, p := range []string{"/hypha/route", "/../etc/passwd", "/v1/models/../../x"} {
		_, err := g.sendPeer(context.Background(), nodes[1].host.ID(), http.MethodGet, p, nil, nil)
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "not an inference endpoint") {
			t.Errorf("%s: err = %v", p, err)
		}
	}
	resp, err := g.sendPeer(context.Background(), nodes[1].host.ID(), http.MethodGet, "/v1/models", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), tinyModel) {
		t.Fatalf("%d %s %v", resp.StatusCode, b, err)
	}
}

func TestDecodeRequest(t *testing.T) {
	r, err := decodeRequest(kindChat, []byte(`{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"user","content":"hi"}]}`))
	if err != nil || r.Model != "m" || !r.Stream || r.Max != 5 || len(r.Messages) != 2 || r.Messages[0].Role != "system" || r.Messages[0].Content != "ab" {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = decodeRequest(kindOllamaGenerate, []byte(`{"model":"m","prompt":"p","system":"s","context":[1,2]}`))
	if err != nil || !r.Stream || len(r.Messages) != 2 || len(r.IDs) != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = decodeRequest(kindCompletion, []byte(`{"model":"m","prompt":[[1,2,3]]}`))
	if err != nil || len(r.IDs) != 3 || r.Max != 16 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, tc := range []struct{ kind, body, want string }{
		{kindChat, ``, "empty request body"},
		{kindChat, `{"model":"m","messages":[]}`, "messages: empty"},
		{kindChat, `{"model":1}`, "request body: json: cannot unmarshal number"},
		{kindCompletion, `{"prompt":{}}`, "prompt: must be a string"},
		{kindOllamaChat, `[`, "request body: unexpected end of JSON input"},
	} {
		if _, err := decodeRequest(tc.kind, []byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s %s: err = %v, want %q", tc.kind, tc.body, err, tc.want)
		}
	}
}

func TestWireRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	body := bytes.Repeat([]byte("x"), maxDataBytes+10)
	if err := writeRequest(&buf, reqHead{Method: "POST", Path: "/api/chat", Header: http.Header{"Content-Type": {"application/json"}}}, body); err != nil {
		t.Fatal(err)
	}
	h, got, err := readRequest(bufio.NewReader(&buf))
	if err != nil || h.Path != "/api/chat" || !bytes.Equal(got, body) || h.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%+v %d %v", h, len(got), err)
	}
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte{'X', 0, 0, 0, 0}, "frame type 0x58 unknown"},
		{[]byte{'H', 0xff, 0, 0, 0}, "exceeds"},
		{[]byte{'H', 0, 0, 0, 9, '{'}, "payload cut short"},
		{[]byte{'D', 0, 0, 0, 0}, "first frame is 'D'"},
		{append([]byte{'H', 0, 0, 0, 2}, "{}"...), `request  "": not an inference endpoint`},
	} {
		_, _, err := readRequest(bufio.NewReader(bytes.NewReader(tc.in)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	var buf bytes.Buffer
	_ = writeRequest(&buf, reqHead{Method: "POST", Path: "/v1/chat/completions"}, []byte(`{"model":"m"}`))
	f.Add(buf.Bytes())
	f.Add([]byte{'H', 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{'E', 0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := readRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if !allowedPath(h.Method, h.Path) || len(body) > MaxBodyBytes {
			t.Fatalf("accepted %+v with %d bytes", h, len(body))
		}
	})
}

func FuzzResponse(f *testing.F) {
	var buf bytes.Buffer
	hb, _ := json.Marshal(respHead{Status: 200})
	_ = writeFrame(&buf, frameHead, hb)
	_ = writeFrame(&buf, frameData, []byte("data: x\n\n"))
	_ = writeFrame(&buf, frameEnd, nil)
	f.Add(buf.Bytes())
	f.Add([]byte{'E', 0, 0, 0, 3, 'b', 'a', 'd'})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		h, err := readResponseHead(br)
		if err != nil {
			return
		}
		if h.Status < 100 || h.Status > 999 {
			t.Fatalf("status %d accepted", h.Status)
		}
		_, _ = io.Copy(io.Discard, &bodyReader{r: br})
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(kindChat, []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(kindCompletion, []byte(`{"model":"m","prompt":[1,2]}`))
	f.Add(kindOllamaGenerate, []byte(`{"model":"m","prompt":"p","raw":true}`))
	f.Add(kindOllamaChat, []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":-3}}`))
	f.Fuzz(func(t *testing.T, kind string, b []byte) {
		r, err := decodeRequest(kind, b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error without ErrBadRequest: %v", err)
			}
			return
		}
		if r.Max < 0 {
			t.Fatal("negative limit")
		}
		_ = sessionKey(r, "")
		_ = textHashes(r)
	})
}
