package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/univrs/hypha/internal/systest"
	"github.com/univrs/hypha/provisioning"
)

// Clove test LAN: box 0 asks, box 1 serves (the only engine), the other
// boxes only relay. With n=4 paths of L=2 relays and 8 relays, every
// anonymous request's paths are disjoint and use every relay exactly
// once, so killing any two relays cuts at most two paths and leaves at
// least k=2: delivery must still succeed, provably, for every request in
// flight.
const (
	cloveBoxes  = 10
	cloveN      = 4
	cloveK      = 2
	cloveL      = 2
	cloveAsker  = 0
	cloveServer = 1
)

// cloveLAN is a running community of appliances.
type cloveLAN struct {
	nw    *systest.Net
	boxes []*systest.Box
}

// startCloveLAN builds a test LAN of n·L+2 boxes (asker, server, exactly
// enough relays for disjoint paths) with the clove parameters (n, k, L)
// in the community manifest, starts every box and waits until every box
// sees every other one up and the asker's gateway lists the model.
func startCloveLAN(t *testing.T, ctx context.Context, n, k, L int) *cloveLAN {
	t.Helper()
	count := n*L + 2
	nw := systest.NewNet(t, "hyc", count)
	names := []string{"asker", "server"}
	for i := 2; i < count; i++ {
		names = append(names, fmt.Sprintf("relay%d", i-1))
	}
	boxes := nw.Boxes(t, names...)
	nw.NewCommunity(t, boxes, func(m *provisioning.Manifest) { m.Clove.N, m.Clove.K, m.Clove.L = n, k, L })
	boxes[cloveServer].WriteModel(t, "tiny", 7)
	for _, b := range boxes {
		nw.Start(t, b, systest.BoxOptions{Engine: b.Index == cloveServer})
	}
	l := &cloveLAN{nw: nw, boxes: boxes}
	l.waitAllUp(t, ctx, 2*time.Minute)
	nw.WaitModels(t, ctx, cloveAsker, time.Minute, "tiny")
	return l
}

// clovePeer is the part of the LAN page's /api/mesh view the test reads.
type clovePeer struct {
	ID, Name, State string
}

func (l *cloveLAN) peers(ctx context.Context, i int) ([]clovePeer, error) {
	var v struct {
		Mesh struct {
			Error string
			Data  struct{ Peers []clovePeer }
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.nw.GetJSON(rctx, i, "http://127.0.0.1:80/api/mesh", &v); err != nil {
		return nil, err
	}
	if v.Mesh.Error != "" {
		return nil, fmt.Errorf("mesh view: %s", v.Mesh.Error)
	}
	return v.Mesh.Data.Peers, nil
}

// waitAllUp waits until every box's LAN page lists all other boxes as up
// (the clove directory follows the membership), polling; it fails the
// test after d.
func (l *cloveLAN) waitAllUp(t *testing.T, ctx context.Context, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok := true
		for _, b := range l.boxes {
			ps, err := l.peers(ctx, b.Index)
			up := 0
			for _, p := range ps {
				if p.State == "up" {
					up++
				}
			}
			if err != nil || up < len(l.boxes)-1 {
				ok, last = false, fmt.Sprintf("%s sees %d of %d up (%v)", b.Name, up, len(l.boxes)-1, err)
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("mesh never fully up within %v: %s", d, last)
}

// What a clove node logs when it lets paths share relays, when it sends a
// request again over fresh paths and when a neighbour it was to send a
// frame to is unreachable (mesh/clove).
const (
	cloveOverlapNote = "anonymous requests over paths that share relays"
	cloveResendNote  = "resending over fresh paths"
	cloveUndelivered = "clove frame not delivered"
)

// cloveLogNotes logs what the box's clove node said (resends, overlapping
// paths) since byte mark of its log.
func cloveLogNotes(t *testing.T, b *systest.Box, mark int) {
	t.Helper()
	resends := 0
	for _, line := range strings.Split(b.Hyphad.Log()[mark:], "\n") {
		if strings.Contains(line, "component=clove") {
			t.Logf("%s: %s", b.Name, line)
		}
		if strings.Contains(line, cloveResendNote) {
			resends++
		}
	}
	t.Logf("%s resent %d requests over fresh paths", b.Name, resends)
}

// waitNotUp waits until box i's LAN page no longer lists b as up.
func (l *cloveLAN) waitNotUp(t *testing.T, ctx context.Context, i int, b *systest.Box, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ps, err := l.peers(ctx, i)
		if err == nil {
			up := false
			for _, p := range ps {
				up = up || p.ID == b.ID && p.State == "up"
			}
			if !up {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s still lists the killed %s as up after %v", l.boxes[i].Name, b.Name, d)
}

// cloveResult is one chat completion through a gateway.
type cloveResult struct {
	code   int
	body   []byte
	err    error
	start  time.Time
	end    time.Time
	tokens int
}

// ask posts a chat completion to box i's own gateway; anonymous adds
// "anonymous": true to the body.
func (l *cloveLAN) ask(ctx context.Context, i int, prompt string, maxTokens int, anonymous bool) cloveResult {
	return l.askVia(ctx, i, prompt, maxTokens, anonymous, false)
}

// askVia is ask, anonymous by the header X-Hypha-Anonymous: 1 when header
// is set.
func (l *cloveLAN) askVia(ctx context.Context, i int, prompt string, maxTokens int, anonymous, header bool) cloveResult {
	req := map[string]any{"model": "tiny", "messages": []map[string]string{{"role": "user", "content": prompt}},
		"max_tokens": maxTokens, "temperature": 0}
	if anonymous && !header {
		req["anonymous"] = true
	}
	b, _ := json.Marshal(req)
	r := cloveResult{start: time.Now()}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:11434/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		r.err = err
		return r
	}
	hreq.Header.Set("Content-Type", "application/json")
	if anonymous && header {
		hreq.Header.Set("X-Hypha-Anonymous", "1")
	}
	resp, err := l.nw.Client(i).Do(hreq)
	if err != nil {
		r.err, r.end = err, time.Now()
		return r
	}
	defer resp.Body.Close()
	r.body, r.err = io.ReadAll(resp.Body)
	r.code, r.end = resp.StatusCode, time.Now()
	var cc struct {
		Object string
		Usage  struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if r.err == nil && r.code == http.StatusOK {
		if err := json.Unmarshal(r.body, &cc); err != nil || cc.Object != "chat.completion" {
			r.err = fmt.Errorf("not a chat completion: %v: %s", err, r.body)
		}
		r.tokens = cc.Usage.CompletionTokens
	}
	return r
}

func (r cloveResult) ok() bool { return r.err == nil && r.code == http.StatusOK && r.tokens > 0 }

func (r cloveResult) String() string {
	return fmt.Sprintf("%d %v %d tokens in %v: %.200s", r.code, r.err, r.tokens, r.end.Sub(r.start).Round(time.Millisecond), r.body)
}

// views returns the raw JSON of box i's LAN page views that could name
// who asked for what: the ledger (who paid whom, with inference receipts)
// and inference (recent routing decisions).
func (l *cloveLAN) views(ctx context.Context, i int) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range []string{"ledger", "inference"} {
		var raw json.RawMessage
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.nw.GetJSON(rctx, i, "http://127.0.0.1:80/api/"+v, &raw)
		cancel()
		if err != nil {
			return nil, err
		}
		out[v] = string(raw)
	}
	return out, nil
}

// cloveNamesAsker lists where the serving box's LAN page views and log
// lines name the asker (by box name or peer ID). Membership lines of the
// mesh subsystem are left out: every member knows every other member is
// up; what must not appear is the asker in connection with a request.
func cloveNamesAsker(asker *systest.Box, views map[string]string, logText string) []string {
	var out []string
	for v, text := range views {
		if strings.Contains(text, asker.ID) || strings.Contains(text, `"`+asker.Name+`"`) {
			out = append(out, "LAN page /api/"+v+": "+text)
		}
	}
	for _, line := range strings.Split(logText, "\n") {
		if strings.Contains(line, "subsystem=mesh ") {
			continue
		}
		if strings.Contains(line, asker.ID) || strings.Contains(line, "name="+asker.Name) {
			out = append(out, "log: "+line)
		}
	}
	return out
}

// TestCloveAnonymousChatSurvivesRelayKills: ten appliances, each in its
// own network namespace. The asker's gateway sends chat completions
// marked "anonymous": true as cloves over four disjoint onion paths of
// two relays to the one box with an engine. Two relays are killed
// (SIGKILL) while four long requests are in flight; each still gets its
// answer over the surviving paths. Throughout, the serving box's ledger
// and log never name the asker; a direct request afterwards does (it
// pays the server), which shows the check can see the asker at all.
func TestCloveAnonymousChatSurvivesRelayKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ten appliances in network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t0 := time.Now()
	l := startCloveLAN(t, ctx, cloveN, cloveK, cloveL)
	t.Logf("ten boxes up and met in %v", time.Since(t0).Round(time.Millisecond))
	asker, server := l.boxes[cloveAsker], l.boxes[cloveServer]
	logMark := len(server.Hyphad.Log())
	askerMark := len(asker.Hyphad.Log())

	// One anonymous chat completion end to end.
	// One anonymous chat completion end to end; its duration sets when the
	// relays die below, so that the kill lands during the transfer on a
	// fast machine and on a slow one alike.
	const tokens = 40
	first := l.ask(ctx, cloveAsker, "Hello", tokens, true)
	if !first.ok() {
		t.Fatalf("anonymous chat completion through the asker's gateway: %v", first)
	}
	t.Logf("first anonymous request: %v", first)
	killAfter := min(max(first.end.Sub(first.start)/2, 100*time.Millisecond), 5*time.Second)

	// Four such requests at once (the engine serves them one after the
	// other); kill two relays halfway through the first one.
	const inFlight = 4
	results := make([]cloveResult, inFlight)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.ask(ctx, cloveAsker, fmt.Sprintf("Tell me a long story, number %d", i), tokens, true)
		}()
	}
	time.Sleep(killAfter)
	preKill := asker.Hyphad.Log()[askerMark:]
	killed := []*systest.Box{l.boxes[2], l.boxes[5]}
	for _, b := range killed {
		b.Kill()
	}
	killedAt := time.Now()
	wg.Wait()
	across := 0
	for i, r := range results {
		if !r.ok() {
			t.Errorf("request %d in flight when two relays died: %v", i, r)
			continue
		}
		t.Logf("request %d: %v", i, r)
		if r.end.After(killedAt) {
			across++
		}
	}
	if across < 2 {
		t.Errorf("only %d of %d requests were still in flight when the relays died %v after they started: the kill proves little", across, inFlight, killAfter)
	}
	// The proof needs disjoint paths: the asker says when it has to let
	// paths share relays. (Requests that pick their paths after the kill
	// avoid the dead relays, or, before the asker notices, still have all
	// eight and so disjoint paths.) Paths overlap before the kill only if a
	// relay looked down at that moment (the mesh replaces its connections
	// every 30 s); then two kills may leave fewer than k paths, and it is
	// the resend over fresh paths that answers: still required above.
	if strings.Contains(preKill, cloveOverlapNote) {
		t.Logf("the asker used overlapping paths before the kill (a relay looked down for a moment): fewer than k paths may have survived")
	}
	cloveLogNotes(t, asker, askerMark)

	// New requests after a third relay died: five relays left, so paths
	// share relays, but none goes through a dead one (the asker leaves out
	// members whose connection dropped): no node tries to forward a clove
	// to a dead relay.
	l.boxes[7].Kill()
	dead := []*systest.Box{l.boxes[2], l.boxes[5], l.boxes[7]}
	for _, b := range dead {
		l.waitNotUp(t, ctx, cloveAsker, b, 30*time.Second)
	}
	marks := map[*systest.Box]int{}
	for _, b := range l.boxes {
		if !b.Hyphad.Exited() {
			marks[b] = len(b.Hyphad.Log())
		}
	}
	for i := range 3 {
		// The second one is marked by the header, not the body (had it gone
		// direct, the server's ledger would name the asker: checked below).
		after := l.askVia(ctx, cloveAsker, fmt.Sprintf("Are you still there? %d", i), 8, true, i == 1)
		if !after.ok() {
			t.Fatalf("anonymous request %d after three relays died: %v", i, after)
		}
		t.Logf("after the kills: %v", after)
	}
	for b, mark := range marks {
		for _, line := range strings.Split(b.Hyphad.Log()[mark:], "\n") {
			for _, d := range dead {
				// Forward frames build paths; replies and acks still in
				// flight from before may fail on their old paths.
				if strings.Contains(line, cloveUndelivered) && strings.Contains(line, "to="+d.ID) && strings.Contains(line, "kind=forward") {
					t.Errorf("%s sent a clove to the dead %s: it was chosen for a path: %s", b.Name, d.Name, line)
				}
			}
		}
	}
	cloveLogNotes(t, asker, marks[asker])

	// Two more relays die while two long requests are being served: three
	// relays are left, and paths sharing relays may leave fewer than k ways
	// back for the reply; the asker then sends the request again over fresh
	// paths of the members left (same message, the server answers without
	// generating again). Both are answered.
	mark := len(asker.Hyphad.Log())
	late := make([]cloveResult, 2)
	for i := range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			late[i] = l.ask(ctx, cloveAsker, fmt.Sprintf("One more long story, number %d", i), tokens, true)
		}()
	}
	time.Sleep(killAfter)
	l.boxes[3].Kill()
	l.boxes[8].Kill()
	wg.Wait()
	for i, r := range late {
		if !r.ok() {
			t.Errorf("request %d in flight when the fourth and fifth relays died: %v", i, r)
			continue
		}
		t.Logf("with three relays left: %v", r)
	}
	cloveLogNotes(t, asker, mark)

	// The serving box never learned who asked.
	views, err := l.views(ctx, cloveServer)
	if err != nil {
		t.Fatalf("server's LAN page: %v", err)
	}
	if leaks := cloveNamesAsker(asker, views, server.Hyphad.Log()[logMark:]); len(leaks) > 0 {
		t.Fatalf("the serving box learned the asker of anonymous requests:\n%s", strings.Join(leaks, "\n"))
	}

	// A direct request pays the serving box: its ledger names the asker.
	// (Up to three tries: the mesh replaces its connections now and then,
	// which can cut a direct request; that is not what is tested here.)
	var direct cloveResult
	for range 3 {
		if direct = l.ask(ctx, cloveAsker, "Hello", 4, false); direct.ok() {
			break
		}
		time.Sleep(time.Second)
	}
	if !direct.ok() {
		t.Fatalf("direct request: %v", direct)
	}
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && len(seen) == 0; time.Sleep(500 * time.Millisecond) {
		if views, err = l.views(ctx, cloveServer); err == nil {
			seen = cloveNamesAsker(asker, map[string]string{"ledger": views["ledger"]}, "")
		}
	}
	if len(seen) == 0 {
		t.Fatalf("after a direct request the serving box's ledger still does not name the asker: %v %v", views["ledger"], err)
	}
}
