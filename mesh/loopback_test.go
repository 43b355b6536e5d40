package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HYM_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("t", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// loopNode starts a node on 127.0.0.1 with mDNS and the link watch off.
func loopNode(t *testing.T, seed byte, psk []byte, boot ...*Node) *Node {
	t.Helper()
	var bs []string
	for _, b := range boot {
		bs = append(bs, fmt.Sprintf("%s/p2p/%s", b.Host().Addrs()[0], b.ID()))
	}
	n, err := New(context.Background(), Config{
		Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)), PSK: psk,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: bs,
		DisableMDNS: true, DisableLinkWatch: true,
		PingInterval: time.Second, PingTimeout: time.Second, SyncInterval: 2 * time.Second,
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

func psk(b byte) []byte { return bytes.Repeat([]byte{b}, PSKSize) }

// waitFor polls cond every 50ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func upSet(n *Node) map[peer.ID]Member {
	out := map[peer.ID]Member{}
	for _, m := range n.Members() {
		if m.State == StateUp {
			out[m.ID] = m
		}
	}
	return out
}

func TestConfigErrors(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	for _, tc := range []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no key", Config{PSK: psk(1)}, "Key is 0 bytes"},
		{"short psk", Config{Key: key, PSK: []byte("x")}, "PSK is 1 bytes, want 32"},
		{"bad listen", Config{Key: key, PSK: psk(1), ListenAddrs: []string{"tcp:4001"}}, `listen address "tcp:4001"`},
		{"history", Config{Key: key, PSK: psk(1), History: 5000}, "History 5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), tc.cfg)
			if !errors.Is(err, ErrBadConfig) || !bytes.Contains([]byte(err.Error()), []byte(tc.msg)) {
				t.Fatalf("got %v, want ErrBadConfig mentioning %q", err, tc.msg)
			}
		})
	}
}

// TestLoopbackMesh: three nodes, B and C know only A (bootstrap), find each
// other through the private DHT, exchange announcements by gossip, and a
// stream of another subsystem works between them. Close is idempotent.
func TestLoopbackMesh(t *testing.T) {
	a := loopNode(t, 1, psk(7))
	b := loopNode(t, 2, psk(7), a)
	c := loopNode(t, 3, psk(7), a)
	sub := c.Subscribe(64)
	defer sub.Close()

	waitFor(t, 60*time.Second, "B and C to find each other through the DHT", func() bool {
		_, bc := upSet(b)[c.ID()]
		_, cb := upSet(c)[b.ID()]
		return bc && cb && len(upSet(a)) == 2
	})
	m := upSet(b)[c.ID()]
	if m.Reach != ReachDirect || len(m.Addrs) == 0 {
		t.Fatalf("B sees C as %+v, want direct with addresses", m)
	}
	waitFor(t, 10*time.Second, "an RTT measurement", func() bool { return upSet(b)[c.ID()].RTT > 0 })
	if st := a.Status(); st.Counts["up"] != 2 || len(st.Members) != 2 || st.Self.ID != a.ID() {
		t.Fatalf("A's status = %+v", st)
	}
	if js, err := json.Marshal(a.Status()); err != nil || !bytes.Contains(js, []byte(`"state":"up","reach":"direct"`)) {
		t.Fatalf("status JSON %s, %v", js, err)
	}

	if err := b.Announce(Announcement{Name: "bee", Roles: []string{"inference"}, Load: 0.3}); err != nil {
		t.Fatal(err)
	}
	if self := b.Self(); self.Name != "bee" || self.Announcement.Seq != 1 || len(self.Addrs) == 0 {
		t.Fatalf("Self = %+v", self)
	}
	if err := b.Announce(Announcement{Location: &Location{Lat: 100}}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("announce with latitude 100: %v, want ErrBadMessage", err)
	}
	waitFor(t, 10*time.Second, "C to receive B's announcement", func() bool {
		a := upSet(c)[b.ID()].Announcement
		return a != nil && a.Name == "bee" && a.Seq == 1
	})
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case e := <-sub.C:
			got = e.Kind == EventAnnouncement && e.Announcement.Node == b.ID().String()
		case <-deadline:
			t.Fatal("no announcement event on C's subscription")
		}
	}

	// Another subsystem's protocol over the mesh.
	c.SetStreamHandler("/test/echo/1", func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	s, err := b.NewStream(context.Background(), c.ID(), "/test/echo/1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = s.Write([]byte("hello"))
	_ = s.CloseWrite()
	got, _ := io.ReadAll(s)
	if string(got) != "hello" {
		t.Fatalf("echo = %q", got)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := c.Announce(Announcement{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("announce after close: %v", err)
	}
	waitFor(t, 15*time.Second, "B to see C gone", func() bool {
		for _, m := range b.Members() {
			if m.ID == c.ID() {
				return m.State != StateUp
			}
		}
		return false
	})
}

// TestLoopbackWrongPSK: a node with another community key dials a member
// and is never admitted on either side.
func TestLoopbackWrongPSK(t *testing.T) {
	a := loopNode(t, 1, psk(7))
	b := loopNode(t, 2, psk(7), a)
	x := loopNode(t, 9, psk(8), a) // knows A's address, wrong key
	waitFor(t, 30*time.Second, "B to join", func() bool { return len(upSet(a)) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := x.Host().Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Host().Addrs()}); err == nil {
		t.Fatal("a node with the wrong PSK completed a connection")
	}
	time.Sleep(3 * time.Second) // let X's bootstrap redials run too
	for _, n := range []*Node{a, b} {
		for _, m := range n.Members() {
			if m.ID == x.ID() {
				t.Fatalf("%s admitted the outsider: %+v", n.ID(), m)
			}
		}
	}
	if ms := x.Members(); len(ms) != 0 {
		t.Fatalf("outsider sees members %+v", ms)
	}
}

// TestUplinkOptions: a node with the uplink options (hole punching, AutoNAT
// v2, port mapping) starts and joins like any other.
func TestUplinkOptions(t *testing.T) {
	a := loopNode(t, 1, psk(7))
	n, err := New(context.Background(), Config{
		Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32)), PSK: psk(7), Uplink: true,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, DisableMDNS: true, DisableLinkWatch: true,
		Bootstrap: []string{fmt.Sprintf("%s/p2p/%s", a.Host().Addrs()[0], a.ID())}, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitFor(t, 20*time.Second, "the uplink node to join", func() bool { _, ok := upSet(a)[n.ID()]; return ok })
}

// TestPubsubWatchdog: a member that announced but is no longer on the
// announcement topic (what go-libp2p-pubsub #128/#419 does after a stale
// duplicate connection closes) gets its connections reset and redialled.
func TestPubsubWatchdog(t *testing.T) {
	old := watchdogAfter
	watchdogAfter = time.Second
	defer func() { watchdogAfter = old }()
	a := loopNode(t, 1, psk(7))
	b := loopNode(t, 2, psk(7), a)
	if err := b.Announce(Announcement{Name: "bee"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "A to have B's announcement", func() bool { return upSet(a)[b.ID()].Announcement != nil })
	sub := a.Subscribe(64)
	defer sub.Close()
	b.sub.Cancel() // B leaves the topic while staying connected
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if e.Kind == EventMember && e.Member.ID == b.ID() && e.Member.State == StateSuspect {
				return // A reset the connection
			}
		case <-deadline:
			t.Fatal("A never reset its connection to B, which left the topic")
		}
	}
}

// TestBootstrapWithoutDHT: configured bootstrap peers are dialled even
// with the DHT off, whichever peer ID is lower.
func TestBootstrapWithoutDHT(t *testing.T) {
	a := loopNode(t, 1, psk(7))
	for _, seed := range []byte{2, 3} {
		n, err := New(context.Background(), Config{
			Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)), PSK: psk(7), DisableDHT: true,
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, DisableMDNS: true, DisableLinkWatch: true,
			Bootstrap: []string{fmt.Sprintf("%s/p2p/%s", a.Host().Addrs()[0], a.ID())}, Logger: testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		start := time.Now()
		waitFor(t, 10*time.Second, "the node to join its bootstrap peer", func() bool { _, ok := upSet(a)[n.ID()]; return ok })
		t.Logf("seed %d joined in %v", seed, time.Since(start))
	}
}

// TestConnectionOutlivesPingStreams: go-libp2p's ping handler ends every
// ping stream after 30 s. A healthy connection must survive that (the
// liveness pinger replaces its stream), not be closed as dead and redialed
// every 31 s, cutting every stream in flight on it.
func TestConnectionOutlivesPingStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("watches a connection for 40 s")
	}
	a := loopNode(t, 1, psk(7))
	b := loopNode(t, 2, psk(7), a)
	waitFor(t, 30*time.Second, "A and B to meet", func() bool {
		_, ab := upSet(a)[b.ID()]
		return ab
	})
	conns := a.Host().Network().ConnsToPeer(b.ID())
	if len(conns) == 0 {
		t.Fatal("no connection from A to B")
	}
	first := conns[0]
	sub := a.Subscribe(64)
	defer sub.Close()
	timeout := time.After(40 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if e.Kind == EventMember && e.Member.ID == b.ID() && e.Member.State != StateUp {
				t.Fatalf("B became %s at %v: the connection was dropped", e.Member.State, e.Time)
			}
		case <-timeout:
			if first.IsClosed() {
				t.Fatal("the first connection was closed within 40 s although both ends were healthy")
			}
			if rtt := upSet(a)[b.ID()].RTT; rtt <= 0 {
				t.Fatalf("no RTT after 40 s: %v", rtt)
			}
			return
		}
	}
}
