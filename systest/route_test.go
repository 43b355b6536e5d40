package systest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/univrs/hypha/internal/systest"
	"github.com/univrs/hypha/internal/workload"
)

// Routing by cached prefix (issue 5) between real appliances: each box a
// hyphad (gateway on :11434, mesh on :4001) and an inferd with a
// generated model, in its own network namespace.

const (
	gatewayURL = "http://127.0.0.1:11434" // a box's own gateway, from inside its namespace
	inferdURL  = "http://127.0.0.1:11435" // a box's own engine
	// gatewayPoll is how often hyphad's gateway pulls its peers' cache
	// states (gateway.Config.PollInterval's default).
	gatewayPoll = 2 * time.Second
)

// routeView is a gateway's GET /hypha/route.
type routeView struct {
	Policy string `json:"policy"`
	Nodes  []struct {
		ID      string   `json:"id"`
		Healthy bool     `json:"healthy"`
		Models  []string `json:"models"`
	} `json:"nodes"`
	Loads []struct {
		Node     string `json:"node"`
		InFlight int    `json:"in_flight"`
	} `json:"loads"`
	Decisions []decision `json:"decisions"`
}

type decision struct {
	Node    string `json:"node"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
	Cached  int    `json:"cached_tokens"`
	Prompt  int    `json:"prompt_tokens"`
	Attempt int    `json:"attempt"`
}

func getRoute(ctx context.Context, nw *systest.Net, i int) (routeView, error) {
	var v routeView
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := nw.GetJSON(rctx, i, gatewayURL+"/hypha/route", &v)
	return v, err
}

// routeMesh starts one appliance per name, each with an engine serving
// the model write puts on it, every hyphad with -route policy, and waits
// until every gateway sees every box serving model.
func routeMesh(t *testing.T, ctx context.Context, prefix, policy, model string, write func(*systest.Box), inferdArgs []string, names ...string) (*systest.Net, []*systest.Box) {
	t.Helper()
	nw := systest.NewNet(t, prefix, len(names))
	boxes := nw.Boxes(t, names...)
	nw.NewCommunity(t, boxes, nil)
	for _, b := range boxes {
		write(b)
	}
	for _, b := range boxes {
		nw.Start(t, b, systest.BoxOptions{Engine: true, InferdArgs: inferdArgs, HyphadArgs: []string{"-route", policy}})
	}
	for i := range boxes {
		waitServing(t, ctx, nw, i, len(boxes), model, 3*time.Minute)
	}
	return nw, boxes
}

// waitServing waits until box i's gateway has n healthy nodes serving
// model (its own engine and the peers it met over the mesh).
func waitServing(t *testing.T, ctx context.Context, nw *systest.Net, i, n int, model string, d time.Duration) {
	t.Helper()
	var last string
	for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(300 * time.Millisecond) {
		v, err := getRoute(ctx, nw, i)
		if err != nil {
			last = err.Error()
			continue
		}
		k := 0
		for _, nd := range v.Nodes {
			if nd.Healthy && slices.ContainsFunc(nd.Models, func(m string) bool { return strings.TrimSuffix(m, ":latest") == model }) {
				k++
			}
		}
		if k >= n {
			return
		}
		last = fmt.Sprintf("%d healthy nodes serve %s: %+v", k, model, v.Nodes)
	}
	t.Fatalf("box %d's gateway never saw %d nodes serving %s within %v: %s", i, n, model, d, last)
}

// lastDecision is box i's gateway's newest routing decision.
func lastDecision(t *testing.T, ctx context.Context, nw *systest.Net, i int) decision {
	t.Helper()
	v, err := getRoute(ctx, nw, i)
	if err != nil || len(v.Decisions) == 0 {
		t.Fatalf("box %d's routing decisions: %v (%d)", i, err, len(v.Decisions))
	}
	return v.Decisions[len(v.Decisions)-1]
}

func nameOf(boxes []*systest.Box, id string) string {
	for _, b := range boxes {
		if b.ID == id {
			return b.Name
		}
	}
	return fmt.Sprintf("unknown node %q", id)
}

// TestRouteMesh runs three appliances with the HR-tree rule (the
// default) and checks, on the same mesh, that requests follow cached
// prefixes and then that killing a serving box loses no request that
// could have been retried.
func TestRouteMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs appliances in network namespaces and kills one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	nw, boxes := routeMesh(t, ctx, "hyr", "hr-tree", routeModel, func(b *systest.Box) { b.WriteModel(t, routeModel, 7) }, nil, "oak", "ash", "elm")
	t.Logf("mesh of 3 appliances up in %v", time.Since(t0).Round(time.Millisecond))
	if !t.Run("FollowsCachedPrefix", func(t *testing.T) { followsCachedPrefix(t, ctx, nw, boxes) }) {
		return
	}
	t.Run("KillServingBox", func(t *testing.T) { killServingBox(t, ctx, nw, boxes) })
}

const routeModel = "tiny"

// followsCachedPrefix: (1) a system prompt that one box's engine already
// holds brings a new conversation, sent to another box's gateway, to that
// box; (2) a conversation's second turn stays on the node of its first
// (session), and its third turn, sent to a different box's gateway that
// never saw the conversation, still goes there (found by the node's cache
// state, pulled over the mesh). Behaviour, not speed: the waits only let
// the gateways pull cache states (every 2 s).
func followsCachedPrefix(t *testing.T, ctx context.Context, nw *systest.Net, boxes []*systest.Box) {
	const model = routeModel
	convs := workload.Make(workload.Spec{Systems: 2, Conversations: 2, SystemWords: 120, MinTurns: 3, MaxTurns: 3, Seed: 5})
	// two system prompts that share no chunk
	sysA, sysB := convs[0].System, "You keep the clinic's records. "+workload.Words(rand.New(rand.NewPCG(5, 6)), 120)
	chat := func(box int, base string, msgs []workload.Message) workload.Reply {
		t.Helper()
		rep, err := workload.Chat(ctx, nw.Client(box), base, model, msgs, 3, false)
		if err != nil {
			t.Fatalf("chat on box %d (%s): %v", box, base, err)
		}
		return rep
	}
	settle := func() { time.Sleep(2*gatewayPoll + time.Second) } // every gateway pulled the new cache state

	// (1) elm's engine alone holds system prompt A (sent to it directly,
	// not through any gateway); a new conversation with A at oak's
	// gateway goes to elm.
	chat(2, inferdURL, []workload.Message{{Role: "system", Content: sysA}, {Role: "user", Content: "Who keeps the seed library?"}})
	settle()
	rep := chat(0, gatewayURL, []workload.Message{{Role: "system", Content: sysA}, {Role: "user", Content: "When is the market?"}})
	d := lastDecision(t, ctx, nw, 0)
	if rep.Node != boxes[2].ID || d.Reason != "prefix" || d.Cached < d.Prompt/2 {
		t.Fatalf("a conversation with the system prompt cached on elm went to %s (decision %+v), want elm by prefix", nameOf(boxes, rep.Node), d)
	}

	// (2) a conversation at ash's gateway: the second turn sticks to the
	// first turn's node, the third, asked at oak's gateway, follows it.
	msgs := []workload.Message{{Role: "system", Content: sysB}, {Role: "user", Content: convs[1].Users[0]}}
	first := chat(1, gatewayURL, msgs)
	msgs = append(msgs, workload.Message{Role: "assistant", Content: first.Text}, workload.Message{Role: "user", Content: convs[1].Users[1]})
	second := chat(1, gatewayURL, msgs)
	d2 := lastDecision(t, ctx, nw, 1)
	if second.Node != first.Node || d2.Reason != "session" {
		t.Fatalf("turn 1 went to %s, turn 2 to %s (decision %+v): want the same node by session",
			nameOf(boxes, first.Node), nameOf(boxes, second.Node), d2)
	}
	settle()
	msgs = append(msgs, workload.Message{Role: "assistant", Content: second.Text}, workload.Message{Role: "user", Content: convs[1].Users[2]})
	third := chat(0, gatewayURL, msgs)
	d = lastDecision(t, ctx, nw, 0)
	if third.Node != first.Node || d.Reason != "prefix" {
		t.Fatalf("turn 3 at another gateway went to %s (decision %+v), want %s (holds turns 1-2) by prefix",
			nameOf(boxes, third.Node), d, nameOf(boxes, first.Node))
	}
	// all of turn 2's prompt but the chunk (16 tokens) where its reply
	// began, which the engine generated and the client re-sent as text
	if want := d2.Prompt - 32; d.Cached < want {
		t.Fatalf("turn 3: %d of %d prompt tokens expected cached, want at least %d (turn 2's prompt was %d)", d.Cached, d.Prompt, want, d2.Prompt)
	}
	t.Logf("system prompt on elm: routed to elm by prefix; conversation on %s: turn 2 by session, turn 3 from oak by prefix (%d/%d tokens cached)",
		nameOf(boxes, first.Node), d.Cached, d.Prompt)
}

// outcome is one request of the kill test.
type outcome struct {
	client, seq int
	stream      bool
	node        string
	err         error
	started     bool // response bytes had reached the client
	afterKill   bool // sent after the kill
}

// killServingBox: clients chat (half the requests streaming) through
// the gateways of oak and ash while elm, which serves part of the
// traffic, loses power (its switch port goes down and its hyphad and
// inferd get SIGKILL, so the peers hear nothing more from it). No request
// fails that could have been retried: every non-streaming request and
// every stream that had not yet sent a byte succeeds (retried on another
// box); streams already under way end in an error event, never silently,
// and are counted.
func killServingBox(t *testing.T, ctx context.Context, nw *systest.Net, boxes []*systest.Box) {
	const model = routeModel
	victim := boxes[2]
	t0 := time.Now()
	const perGateway, perClient, maxTokens = 3, 4, 32 // 32 tokens: long enough to be in flight when the kill lands
	convs := workload.Make(workload.Spec{Systems: 3, Conversations: 2 * perGateway, SystemWords: 40, MinTurns: perClient, MaxTurns: perClient, Seed: 9})
	var (
		mu       sync.Mutex
		outcomes []outcome
		done     atomic.Int64
		killed   atomic.Bool
		wg       sync.WaitGroup
	)
	// elm's engine alone holds the workload's system prompts, so the
	// gateways send it work by prefix (under a loaded machine, least-loaded
	// alone may leave it idle and the kill would hit nothing).
	warmed := map[string]bool{}
	for _, cv := range convs {
		if warmed[cv.System] {
			continue
		}
		warmed[cv.System] = true
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		_, err := workload.Chat(wctx, nw.Client(victim.Index), inferdURL, model,
			[]workload.Message{{Role: "system", Content: cv.System}, {Role: "user", Content: "Hello"}}, 1, false)
		wcancel()
		if err != nil {
			t.Fatalf("warming elm's cache: %v", err)
		}
	}
	time.Sleep(2 * gatewayPoll) // the gateways pull elm's cache state
	for c := range 2 * perGateway {
		box := c % 2 // oak's and ash's gateways; elm's clients would die with it
		wg.Add(1)
		go func() {
			defer wg.Done()
			conv := convs[c]
			msgs := []workload.Message{{Role: "system", Content: conv.System}}
			for i, u := range conv.Users {
				o := outcome{client: c, seq: i, stream: (c+i)%2 == 0, afterKill: killed.Load()}
				msgs = append(msgs, workload.Message{Role: "user", Content: u})
				rctx, rcancel := context.WithTimeout(ctx, time.Minute)
				rep, err := workload.Chat(rctx, nw.Client(box), gatewayURL, model, msgs, maxTokens, o.stream)
				rcancel()
				o.node, o.err, o.started = rep.Node, err, rep.Started
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				done.Add(1)
				if err != nil {
					msgs = msgs[:1] // start a fresh conversation with the same system prompt
					continue
				}
				msgs = append(msgs, workload.Message{Role: "assistant", Content: rep.Text})
			}
		}()
	}

	// The kill: once a few requests are done and the two gateways have
	// requests in flight on elm, pull elm's power.
	inFlight := func() int {
		k := 0
		for _, i := range []int{0, 1} {
			v, err := getRoute(ctx, nw, i)
			if err != nil {
				continue
			}
			for _, l := range v.Loads {
				if l.Node == victim.ID {
					k += l.InFlight
				}
			}
		}
		return k
	}
	var atKill int
	start := time.Now()
	for time.Since(start) < 90*time.Second && done.Load() < int64(2*perGateway*perClient) {
		if done.Load() >= 3 {
			// two in flight (one generating, one queued behind it) so
			// the kill surely lands on work; after 5 s, or once half the
			// workload is done, one will do
			if atKill = inFlight(); atKill >= 2 || (atKill == 1 && (time.Since(start) > 5*time.Second || done.Load() >= int64(perGateway*perClient))) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if atKill == 0 {
		t.Fatalf("elm never served a request of the workload (%d requests done)", done.Load())
	}
	// A power cut: the cable goes dead and the programs with it, so no
	// FIN or RST reaches the peers; they notice by the mesh's liveness
	// pings and by requests that get no answer.
	nw.Cut(victim.Index)
	victim.Kill()
	killed.Store(true)
	t.Logf("killed elm %v into the workload with %d requests in flight on it, %d requests done", time.Since(t0).Round(time.Millisecond), atKill, done.Load())
	wg.Wait()
	t.Logf("workload done in %v", time.Since(t0).Round(time.Millisecond))

	var ok, cut, churn, afterKill int
	var failed []string
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			ok++
			if o.afterKill {
				afterKill++
			}
			if o.node == victim.ID && o.afterKill {
				failed = append(failed, fmt.Sprintf("client %d request %d, sent after the kill, answered by the dead elm", o.client, o.seq))
			}
		case o.stream && o.started && errors.Is(o.err, workload.ErrCut):
			// Under way when its node's connection went: nothing can be
			// retried once bytes reached the client, which was told so in
			// its stream (an error event, not a silent end).
			if o.node == victim.ID {
				cut++
				t.Logf("client %d request %d: stream cut on elm after it started: %v", o.client, o.seq, o.err)
			} else {
				churn++
				t.Logf("client %d request %d: stream cut on healthy %s after it started (the mesh dropped a live connection): %v",
					o.client, o.seq, nameOf(boxes, o.node), o.err)
			}
		default:
			failed = append(failed, fmt.Sprintf("client %d request %d (stream %v, started %v, node %s): %v",
				o.client, o.seq, o.stream, o.started, nameOf(boxes, o.node), o.err))
		}
	}
	retries := 0
	for _, i := range []int{0, 1} {
		v, err := getRoute(ctx, nw, i)
		if err != nil {
			t.Fatalf("box %d's routing decisions: %v", i, err)
		}
		for _, d := range v.Decisions {
			if d.Attempt > 1 {
				retries++
			}
		}
	}
	t.Logf("%d requests: %d succeeded (%d sent after the kill), %d streams cut mid-answer on elm, %d on a healthy box, %d failed; %d retried on another box",
		len(outcomes), ok, afterKill, cut, churn, len(failed), retries)
	if len(failed) > 0 {
		t.Fatalf("%d requests failed that could have been retried:\n%s", len(failed), strings.Join(failed, "\n"))
	}
	if len(outcomes) != 2*perGateway*perClient {
		t.Fatalf("%d requests answered, want %d", len(outcomes), 2*perGateway*perClient)
	}
	if retries+cut == 0 {
		t.Fatalf("elm had %d requests in flight when it died, yet nothing was retried or cut", atKill)
	}
	if afterKill == 0 {
		t.Fatal("no request was sent after the kill: the test did not see the mesh carry on without elm")
	}
}
