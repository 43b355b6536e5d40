package clove

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// obsLog collects the observations of every node of a cluster.
type obsLog struct {
	mu  sync.Mutex
	all []Observation
}

func (l *obsLog) add(o Observation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, o)
}

func (l *obsLog) snapshot() []Observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

func (l *obsLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = nil
}

// waitFor polls cond every 10 ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cluster is count real libp2p hosts on 127.0.0.1, each running a Node:
// index 0 asks, index 1 serves, the rest relay.
type cluster struct {
	hosts []host.Host
	ids   []*Identity
	nodes []*Node
	obs   *obsLog
}

const asker, server = 0, 1

func newCluster(t testing.TB, count int, p Params, h Handler) *cluster {
	t.Helper()
	c := &cluster{obs: &obsLog{}}
	var mem StaticMembership
	for i := 0; i < count; i++ {
		priv, id := newTestIdentity(t)
		hst, err := libp2p.New(libp2p.Identity(priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.DisableRelay(), libp2p.ResourceManager(&network.NullResourceManager{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hst.Close() })
		c.hosts = append(c.hosts, hst)
		c.ids = append(c.ids, id)
		mem = append(mem, id.Candidate())
	}
	for _, a := range c.hosts {
		for _, b := range c.hosts {
			if a != b {
				a.Peerstore().AddAddrs(b.ID(), b.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, hst := range c.hosts {
		opts := []Option{WithLogger(log), WithObserver(c.obs.add)}
		if i == server {
			opts = append(opts, WithHandler(h))
		}
		n, err := NewNode(hst, c.ids[i], mem, p, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		c.nodes = append(c.nodes, n)
	}
	return c
}

// settle waits until the asker has seen the 4 acks and 4 reply cloves of
// one request. The request returns after K reply cloves; later frames
// are dropped by the asker as an unknown session.
func (c *cluster) settle(t *testing.T) {
	t.Helper()
	defer func() {
		if t.Failed() {
			for _, o := range c.obs.snapshot() {
				t.Logf("%s %s ack=%v from %s to %s err=%v", c.name(o.Node), o.Event, o.Ack, c.name(o.From), c.name(o.To), o.Err)
			}
		}
	}()
	waitFor(t, 5*time.Second, "4 acks and 4 reply cloves at the asker", func() bool {
		n := 0
		for _, o := range c.obs.snapshot() {
			if o.Node == c.hosts[asker].ID() && (o.Event == "answer" || o.Event == "drop" && errors.Is(o.Err, ErrUnknownSession)) {
				n++
			}
		}
		return n == 8
	})
}

func (c *cluster) paths(idx [][]int) [][]Candidate {
	out := make([][]Candidate, len(idx))
	for i, p := range idx {
		for _, j := range p {
			out[i] = append(out[i], c.ids[j].Candidate())
		}
	}
	return out
}

func (c *cluster) name(id peer.ID) string {
	for i, h := range c.hosts {
		if h.ID() == id {
			return fmt.Sprintf("node%d", i)
		}
	}
	return "?" + id.String()
}

func echo(ctx context.Context, req []byte) ([]byte, error) {
	return append([]byte("answer to: "), req...), nil
}

func testParams() Params {
	p := DefaultParams()
	p.L = 2
	p.Expiry = 10 * time.Second
	return p
}

// TestRelaysSeeOnlyNeighbours sends one request over chosen paths and
// checks what every node observed: each relay only its predecessor and
// successor, the serving node never the asker, one packet size on every
// link and different bytes on every link.
func TestRelaysSeeOnlyNeighbours(t *testing.T) {
	c := newCluster(t, 10, testParams(), echo)
	idx := [][]int{{2, 3}, {4, 5}, {6, 7}, {8, 9}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := bytes.Repeat([]byte("what grows in dry soil? "), 40)
	got, err := c.nodes[asker].requestOver(ctx, c.ids[server].Candidate(), c.paths(idx), req)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("answer to: "), req...); !bytes.Equal(got, want) {
		t.Fatalf("reply %q", got)
	}
	// The reply may be rebuilt before the 4th reply clove arrives.
	c.settle(t)
	lateAnswer := func(o Observation) bool {
		return o.Event == "drop" && o.Node == c.hosts[asker].ID() && errors.Is(o.Err, ErrUnknownSession)
	}
	obs := c.obs.snapshot()
	id := func(i int) peer.ID { return c.hosts[i].ID() }
	neighbours := map[peer.ID][2]peer.ID{} // relay -> {pred, succ}
	for _, p := range idx {
		chain := append(append([]int{asker}, p...), server)
		for i := 1; i < len(chain)-1; i++ {
			neighbours[id(chain[i])] = [2]peer.ID{id(chain[i-1]), id(chain[i+1])}
		}
	}
	fwdSizes, replySizes, ackSizes := map[int]int{}, map[int]int{}, map[int]int{}
	var fwd, rep, acks [][]byte
	for _, o := range obs {
		switch o.Event {
		case "relay", "reply":
			nb, ok := neighbours[o.Node]
			if !ok {
				t.Fatalf("%s relayed but is on no path", c.name(o.Node))
			}
			want := nb
			if o.Event == "reply" {
				want = [2]peer.ID{nb[1], nb[0]}
			}
			if o.From != want[0] || o.To != want[1] {
				t.Errorf("%s %s: from %s to %s, want from %s to %s", c.name(o.Node), o.Event,
					c.name(o.From), c.name(o.To), c.name(want[0]), c.name(want[1]))
			}
		case "deliver":
			if o.Node != id(server) {
				t.Errorf("%s got a delivery", c.name(o.Node))
			}
			if o.From == id(asker) {
				t.Error("the serving node received a packet straight from the asker")
			}
		case "answer":
			if o.Node != id(asker) {
				t.Errorf("%s got an answer", c.name(o.Node))
			}
		case "drop":
			if lateAnswer(o) {
				break
			}
			t.Errorf("%s dropped a frame from %s: %v", c.name(o.Node), c.name(o.From), o.Err)
		}
		if o.Node == id(server) && (o.From == id(asker) || o.To == id(asker)) {
			t.Errorf("the serving node observed the asker (%s)", o.Event)
		}
		switch o.Event {
		case "relay", "deliver":
			fwdSizes[len(o.Data)]++
			fwd = append(fwd, o.Data)
		case "reply", "answer", "drop":
			if o.Ack {
				ackSizes[len(o.Data)]++
				acks = append(acks, o.Data)
				break
			}
			replySizes[len(o.Data)]++
			rep = append(rep, o.Data)
		}
	}
	if len(fwdSizes) != 1 || len(replySizes) != 1 || len(ackSizes) != 1 {
		t.Errorf("packet sizes differ between links: forward %v reply %v ack %v", fwdSizes, replySizes, ackSizes)
	}
	if len(fwd) != 4*3 || len(rep) != 4*3 || len(acks) != 4*3 {
		t.Errorf("%d forward, %d reply and %d ack links observed, want 12 each", len(fwd), len(rep), len(acks))
	}
	for _, set := range [][][]byte{fwd, rep, acks} {
		for i := range set {
			for j := i + 1; j < len(set); j++ {
				if bytes.Equal(set[i], set[j]) {
					t.Fatal("two links carried identical bytes")
				}
			}
		}
	}
}

// TestRelayKilled: with n=4, k=3 one path may die, before or during the
// request; with two paths dead the request fails.
func TestRelayKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 10 libp2p hosts")
	}
	slow := func(ctx context.Context, req []byte) ([]byte, error) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return echo(ctx, req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newCluster(t, 10, testParams(), slow)

	// During: kill a relay while the serving node works; every relay is on
	// one of the 4 random paths (4 x 2 = 8 relays).
	c.obs.reset()
	done := make(chan error, 1)
	go func() {
		got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("during"))
		if err == nil && string(got) != "answer to: during" {
			err = fmt.Errorf("reply %q", got)
		}
		done <- err
	}()
	waitFor(t, 10*time.Second, "a delivery", func() bool {
		for _, o := range c.obs.snapshot() {
			if o.Event == "deliver" {
				return true
			}
		}
		return false
	})
	_ = c.nodes[9].Close()
	_ = c.hosts[9].Close()
	if err := <-done; err != nil {
		t.Fatalf("relay killed during the request: %v", err)
	}

	// Before: the dead relay is still in the membership view.
	for i := 0; i < 3; i++ {
		got, err := c.nodes[asker].requestOver(ctx, c.ids[server].Candidate(),
			c.paths([][]int{{9, 2}, {3, 4}, {5, 6}, {7, 8}}), []byte("before"))
		if err != nil || string(got) != "answer to: before" {
			t.Fatalf("first relay of a path dead: %q, %v", got, err)
		}
		got, err = c.nodes[asker].requestOver(ctx, c.ids[server].Candidate(),
			c.paths([][]int{{2, 9}, {3, 4}, {5, 6}, {7, 8}}), []byte("before"))
		if err != nil || string(got) != "answer to: before" {
			t.Fatalf("second relay of a path dead: %q, %v", got, err)
		}
	}

	// Two paths dead: fewer than k cloves can arrive.
	_ = c.nodes[8].Close()
	_ = c.hosts[8].Close()
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	_, err := c.nodes[asker].requestOver(short, c.ids[server].Candidate(),
		c.paths([][]int{{2, 9}, {3, 8}, {5, 6}, {7, 4}}), []byte("two dead"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("two of four paths dead: err %v, want deadline exceeded", err)
	}
}

// TestReplyStateExpires: relays hold reply state only until the packet's
// deadline. A reply from the right successor on the right link is dropped
// once it has passed, the serving node does not answer after it, and every
// table empties.
func TestReplyStateExpires(t *testing.T) {
	p := testParams()
	p.Expiry = 5 * time.Second // long enough to reach every relay on a loaded machine
	p.AckTimeout = time.Second
	release := make(chan struct{})
	late := func(ctx context.Context, req []byte) ([]byte, error) {
		<-release // ignores ctx on purpose
		return []byte("too late"), nil
	}
	c := newCluster(t, 10, p, late)
	c.connectAll(t)
	defer close(release)
	done := make(chan error, 1)
	go func() {
		_, err := c.nodes[asker].Request(context.Background(), c.hosts[server].ID(), []byte("q"))
		done <- err
	}()
	// While the handler works every relay holds one session.
	type held struct {
		relay int
		key   linkKey
	}
	var sessions []held
	waitFor(t, p.Expiry, "a session at every relay", func() bool {
		sessions = sessions[:0]
		for i := 2; i < len(c.nodes); i++ {
			n := c.nodes[i]
			n.mu.Lock()
			for k := range n.sessions {
				sessions = append(sessions, held{i, k})
			}
			n.mu.Unlock()
		}
		return len(sessions) == 8
	})
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	waitFor(t, 3*time.Second, "empty tables", func() bool {
		for _, n := range c.nodes {
			if s := n.Stats(); s != (Stats{Resends: s.Resends}) {
				return false
			}
		}
		return true
	})
	// The exits' successor (the serving node) now replies on its links.
	c.obs.reset()
	sent := 0
	for _, h := range sessions {
		if h.key.peer == c.hosts[server].ID() {
			rawSend(t, c.hosts[server], c.hosts[h.relay].ID(), frame{kind: frameReply, link: h.key.link, data: make([]byte, 1024)})
			sent++
		}
	}
	if sent != 4 {
		t.Fatalf("%d exit sessions, want 4", sent)
	}
	waitFor(t, 5*time.Second, "4 drops", func() bool { return len(c.obs.snapshot()) >= 4 })
	for _, o := range c.obs.snapshot() {
		if o.Event != "drop" || !errors.Is(o.Err, ErrUnknownSession) {
			t.Errorf("%s: %s %v, want a drop for an unknown session", c.name(o.Node), o.Event, o.Err)
		}
	}
}

// rawSend writes one frame from host from to host to.
func rawSend(t *testing.T, from host.Host, to peer.ID, f frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := from.NewStream(ctx, to, ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(f.marshal()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

// TestReplayAndTamperRejected resends packets a relay and the serving node
// already handled, and a copy with one bit flipped.
func TestReplayAndTamperRejected(t *testing.T) {
	c := newCluster(t, 10, testParams(), echo)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("once")); err != nil {
		t.Fatal(err)
	}
	c.settle(t)
	var relayed, delivered Observation
	for _, o := range c.obs.snapshot() {
		switch o.Event {
		case "relay":
			relayed = o
		case "deliver":
			delivered = o
		}
	}
	c.obs.reset()
	for _, o := range []Observation{relayed, delivered} {
		rawSend(t, c.hosts[asker], o.Node, frame{kind: frameForward, link: newLink(), data: o.Data})
		bad := bytes.Clone(o.Data)
		bad[len(bad)/2] ^= 4
		rawSend(t, c.hosts[asker], o.Node, frame{kind: frameForward, link: newLink(), data: bad})
	}
	rawSend(t, c.hosts[asker], relayed.Node, frame{kind: frameReply, link: newLink(), data: make([]byte, 1024)})
	want := []error{ErrReplay, ErrTampered, ErrReplay, ErrTampered, ErrUnknownSession}
	waitFor(t, 5*time.Second, "5 drops", func() bool { return len(c.obs.snapshot()) >= len(want) })
	var got []error
	for _, o := range c.obs.snapshot() {
		if o.Event != "drop" {
			t.Fatalf("%s handled a bad frame: %s", c.name(o.Node), o.Event)
		}
		got = append(got, o.Err)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(e error) bool { return errors.Is(e, w) }) {
			t.Errorf("no drop with %v among %v", w, got)
		}
	}
}

func TestRemoteErrorAndSizes(t *testing.T) {
	fail := func(ctx context.Context, req []byte) ([]byte, error) {
		if len(req) == 0 {
			return nil, errors.New("empty prompt")
		}
		return bytes.Repeat(req[:1], 3*len(req)), nil
	}
	c := newCluster(t, 10, testParams(), fail)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), nil)
	if !errors.Is(err, ErrRemote) || !bytes.Contains([]byte(err.Error()), []byte("empty prompt")) {
		t.Fatalf("err %v, want ErrRemote with the handler's text", err)
	}
	sizes := []int{1, 1 << 10, 16 << 10, 200 << 10}
	if testing.Short() {
		sizes = sizes[:3]
	}
	for _, size := range sizes {
		req := bytes.Repeat([]byte{'z'}, size)
		got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), req)
		if err != nil || len(got) != 3*size {
			t.Fatalf("%d bytes: got %d bytes, %v", size, len(got), err)
		}
	}
	if _, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), make([]byte, c.nodes[asker].Params().MaxMessage()+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized request: err %v", err)
	}
	if _, err := c.nodes[asker].Request(ctx, c.hosts[asker].ID(), []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("request to self: err %v", err)
	}
	// A node without a handler refuses deliveries.
	c.obs.reset()
	short, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if _, err := c.nodes[asker].Request(short, c.hosts[2].ID(), []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request to a non-serving node: err %v", err)
	}
	refused := 0
	for _, o := range c.obs.snapshot() {
		if o.Node == c.hosts[2].ID() && errors.Is(o.Err, ErrNotServing) {
			refused++
		}
	}
	if refused == 0 {
		t.Error("the non-serving node did not refuse the cloves")
	}
	p := testParams()
	p.L = 3 // 4 x 3 = 12 relays needed, 8 known
	c2 := newCluster(t, 10, p, echo)
	if _, err := c2.nodes[asker].Request(ctx, c2.hosts[server].ID(), []byte("x")); !errors.Is(err, ErrNoPaths) {
		t.Fatalf("too few relays: err %v", err)
	}
}

// TestResendOverFreshPaths: when fewer than K paths are acknowledged in
// AckTimeout, the request goes out again over paths that avoid every relay
// of the silent paths, and is answered.
func TestResendOverFreshPaths(t *testing.T) {
	p := testParams()
	p.AckTimeout = 2 * time.Second  // the working paths must ack in time, even on a loaded machine
	c := newCluster(t, 18, p, echo) // 16 relays
	for _, dead := range []int{2, 4} {
		_ = c.nodes[dead].Close()
		_ = c.hosts[dead].Close()
	}
	first := c.paths([][]int{{3, 2}, {5, 4}, {6, 7}, {8, 9}}) // two paths through dead relays
	var calls []map[peer.ID]Candidate
	c.nodes[asker].pick = func(cands map[peer.ID]Candidate, self, dest peer.ID, count, L int) ([][]Candidate, error) {
		calls = append(calls, maps.Clone(cands))
		if len(calls) == 1 {
			return first, nil
		}
		return pickPaths(cands, self, dest, count, L)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("again"))
	if err != nil || string(got) != "answer to: again" {
		t.Fatalf("got %q, %v", got, err)
	}
	if len(calls) != 2 || c.nodes[asker].Stats().Resends != 1 {
		t.Fatalf("%d path choices, %d resends; want 2 and 1", len(calls), c.nodes[asker].Stats().Resends)
	}
	for _, i := range []int{2, 3, 4, 5} {
		if _, ok := calls[1][c.hosts[i].ID()]; ok {
			t.Errorf("node%d of a silent path offered again", i)
		}
	}
	for _, i := range []int{6, 7, 8, 9} {
		if _, ok := calls[1][c.hosts[i].ID()]; !ok {
			t.Errorf("node%d of an acknowledged path excluded", i)
		}
	}
}

// TestResendServesOnce: a resend reuses the message id, so when the first
// attempt was only slow the serving node still runs the handler once, and
// reply cloves from both attempts' paths rebuild the reply.
func TestResendServesOnce(t *testing.T) {
	p := testParams()
	p.AckTimeout = 10 * time.Millisecond // resend before any (delayed) ack comes back
	p.Retries = 3
	var mu sync.Mutex
	calls := 0
	h := func(ctx context.Context, req []byte) ([]byte, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		return echo(ctx, req)
	}
	c := newCluster(t, 26, p, h) // 24 relays: 3 attempts of 4 x 2 fit
	c.nodes[server].ackDelay = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("once"))
	if err != nil || string(got) != "answer to: once" {
		t.Fatalf("got %q, %v", got, err)
	}
	if r := c.nodes[asker].Stats().Resends; r < 1 {
		t.Fatalf("%d resends, want at least 1 (AckTimeout 10ms)", r)
	}
	time.Sleep(300 * time.Millisecond) // let late cloves arrive
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("handler ran %d times, want once", calls)
	}
}

// connectAll opens a connection between every pair of hosts.
func (c *cluster) connectAll(tb testing.TB) {
	for i, a := range c.hosts {
		for _, b := range c.hosts[i+1:] {
			if err := a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// TestSmallCommunityOverlap: 6 nodes cannot give 4 disjoint paths of 2
// relays; with AllowOverlap they share the 4 relays and the request works.
func TestSmallCommunityOverlap(t *testing.T) {
	p := testParams()
	c := newCluster(t, 6, p, echo)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("x")); !errors.Is(err, ErrNoPaths) {
		t.Fatalf("disjoint paths in 6 nodes: err %v, want ErrNoPaths", err)
	}
	p.AllowOverlap = true
	c2 := newCluster(t, 6, p, echo)
	for i := 0; i < 3; i++ {
		got, err := c2.nodes[asker].Request(ctx, c2.hosts[server].ID(), []byte("small"))
		if err != nil || string(got) != "answer to: small" {
			t.Fatalf("overlapping paths: %q, %v", got, err)
		}
	}
	paths, err := pickOverlapping(map[peer.ID]Candidate{c.hosts[2].ID(): c.ids[2].Candidate(), c.hosts[3].ID(): c.ids[3].Candidate()},
		c.hosts[asker].ID(), c.hosts[server].ID(), 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		if path[0].ID == path[1].ID {
			t.Fatal("a relay twice on one path")
		}
	}
	if _, err := pickOverlapping(map[peer.ID]Candidate{c.hosts[2].ID(): c.ids[2].Candidate()},
		c.hosts[asker].ID(), c.hosts[server].ID(), 4, 2); !errors.Is(err, ErrNoPaths) {
		t.Fatalf("one relay for paths of 2: err %v", err)
	}
}

// TestSharedEntry: with Params.SharedEntry every path starts at the same
// relay, so the asker talks to one relay only; the request is answered.
func TestSharedEntry(t *testing.T) {
	p := testParams()
	p.SharedEntry = true
	c := newCluster(t, 10, p, echo)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("via one entry"))
	if err != nil || string(got) != "answer to: via one entry" {
		t.Fatalf("got %q, %v", got, err)
	}
	c.settle(t)
	entries := map[peer.ID]int{}
	for _, o := range c.obs.snapshot() {
		if o.Event == "relay" && o.From == c.hosts[asker].ID() {
			entries[o.Node]++
		}
	}
	if len(entries) != 1 {
		t.Fatalf("asker sent to %d relays, want 1", len(entries))
	}
	for _, n := range entries {
		if n != 4 {
			t.Fatalf("entry relayed %d packets, want 4", n)
		}
	}
}

// TestSendRetriesOnce: the mesh replaces connections it thinks dead, so a
// frame send can fail once to a live neighbour. The first relays of two
// paths (of four, K=3, no resends) fail their first forward: without the
// one retry only two paths would deliver. With the fault every time, the
// request cannot be answered.
func TestSendRetriesOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int // per faulty relay
		answered bool
	}{{"first send fails", 1, true}, {"every send fails", 1 << 30, false}} {
		t.Run(tc.name, func(t *testing.T) {
			p := testParams()
			p.Retries = -1
			c := newCluster(t, 10, p, echo)
			paths := c.paths([][]int{{2, 3}, {4, 5}, {6, 7}, {8, 9}})
			c.nodes[asker].pick = func(map[peer.ID]Candidate, peer.ID, peer.ID, int, int) ([][]Candidate, error) {
				return paths, nil
			}
			var mu sync.Mutex
			tries := map[int]int{}
			for _, r := range []int{2, 4} {
				c.nodes[r].sendFault = func(to peer.ID) error {
					mu.Lock()
					defer mu.Unlock()
					if to != c.hosts[r+1].ID() { // only forwards to the next relay
						return nil
					}
					tries[r]++
					if tries[r] <= tc.failures {
						return errors.New("connection replaced (test fault)")
					}
					return nil
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("retry"))
			if tc.answered && (err != nil || string(got) != "answer to: retry") {
				t.Fatalf("got %q, %v; want the answer", got, err)
			}
			if !tc.answered && err == nil {
				t.Fatalf("answered %q with two of four paths broken and K=3", got)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range []int{2, 4} {
				if tries[r] != 2 {
					t.Errorf("node%d tried its forward %d times, want 2", r, tries[r])
				}
			}
		})
	}
}

// TestResendWhenRelaysLeave: the serving node got the request (all four
// paths acked) and is still working when the relays of two paths die and
// leave the asker's membership: with K=3 only two paths could bring reply
// cloves back. The asker sends the request again over fresh paths of
// members; the serving node answers them with the same reply, without
// running the handler twice, long before the request would expire.
func TestResendWhenRelaysLeave(t *testing.T) {
	p := testParams()
	started := make(chan struct{})
	var calls atomic.Int32
	slow := func(ctx context.Context, req []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			close(started)
		}
		select { // long enough for the relays to die and the asker to notice
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
		return echo(ctx, req)
	}
	c := newCluster(t, 14, p, slow) // 12 relays
	var dir Directory
	for _, id := range c.ids {
		if err := dir.Add(id.Candidate()); err != nil {
			t.Fatal(err)
		}
	}
	c.nodes[asker].mem = &dir
	first := c.paths([][]int{{2, 3}, {4, 5}, {6, 7}, {8, 9}})
	picks := 0
	c.nodes[asker].pick = func(cands map[peer.ID]Candidate, self, dest peer.ID, count, L int) ([][]Candidate, error) {
		if picks++; picks == 1 {
			return first, nil
		}
		for _, dead := range []int{3, 5} {
			if _, ok := cands[c.hosts[dead].ID()]; ok {
				t.Errorf("node%d, gone from the membership, offered for fresh paths", dead)
			}
		}
		return pickPaths(cands, self, dest, count, L)
	}
	go func() {
		<-started
		for _, dead := range []int{3, 5} { // one relay on each of two paths
			_ = c.nodes[dead].Close()
			_ = c.hosts[dead].Close()
			dir.Remove(c.hosts[dead].ID())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second) // Expiry is 10 s
	defer cancel()
	got, err := c.nodes[asker].Request(ctx, c.hosts[server].ID(), []byte("still there?"))
	if err != nil || string(got) != "answer to: still there?" {
		t.Fatalf("got %q, %v; want the answer over fresh paths", got, err)
	}
	if r := c.nodes[asker].Stats().Resends; r != 1 || picks != 2 {
		t.Errorf("%d resends, %d path choices; want 1 and 2", r, picks)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
}
