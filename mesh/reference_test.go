package mesh

// The reference for the mesh benchmarks: the same libp2p stack with stock
// behaviour (PSK, TCP, noise, yamux, mDNS, GossipSub; no liveness pings,
// no link watch, no relay fallback, no anti-entropy), run through the same
// partition scenario in the same run, so the figures come with a ratio.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

type stockNotifee struct{ h host.Host }

func (s stockNotifee) HandlePeerFound(ai peer.AddrInfo) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.h.Connect(ctx, ai)
}

type stockAnn struct {
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
	At   int64  `json:"at"`
}

// runStockChild is the child body for HYM_STOCK=1.
func runStockChild(seed int, psk []byte, emit func(childMsg)) int {
	sk, _ := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(seed)}, 32)))
	h, err := libp2p.New(libp2p.Identity(sk), libp2p.PrivateNetwork(pnet.PSK(psk)),
		libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001"), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	if err != nil {
		emit(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	defer h.Close()
	report := func(p peer.ID) {
		st, reach := "suspect", "none"
		for _, c := range h.Network().ConnsToPeer(p) {
			st = "up"
			if isRelayed(c) && reach == "none" {
				reach = "relayed"
			} else if !isRelayed(c) {
				reach = "direct"
			}
		}
		emit(childMsg{Ev: "member", Peer: p.String(), State: st, Reach: reach})
	}
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { go report(c.RemotePeer()) },
		DisconnectedF: func(_ network.Network, c network.Conn) { go report(c.RemotePeer()) },
	})
	svc := mdns.NewMdnsService(h, ServiceName(psk), stockNotifee{h})
	if err := svc.Start(); err != nil {
		emit(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	defer svc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		emit(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	topic, _ := ps.Join(AnnounceTopic)
	sub, _ := topic.Subscribe()
	go func() {
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			var a stockAnn
			if json.Unmarshal(msg.Data, &a) != nil || a.Node == h.ID().String() {
				continue
			}
			emit(childMsg{Ev: "ann", Origin: a.Node, Seq: a.Seq, Via: "gossip", At: a.At})
		}
	}()
	var mu sync.Mutex
	var seq uint64
	announce := func(int) {
		mu.Lock()
		seq++
		a := stockAnn{Node: h.ID().String(), Seq: seq, At: time.Now().UnixMilli()}
		mu.Unlock()
		b, _ := json.Marshal(a)
		_ = topic.Publish(ctx, b)
		emit(childMsg{Ev: "ann", Origin: a.Node, Seq: a.Seq, Via: "self", At: a.At})
	}
	announce(0)
	emit(childMsg{Ev: "ready", ID: h.ID().String()})
	return childCommands(emit, announce, func(p string) childMsg { return childMsg{Ev: "echo", Peer: p, Err: "stock node: no echo"} }, func() uint64 { return 0 })
}

// TestNetnsReference runs one partition scenario twice in the same run:
// with this package and with stock libp2p (see above). A long cut (40s)
// shows the stock stack's detection time; the ratios go to BENCHMARKS.md.
// Only under HYM_BENCH=1 (make bench-mesh): it takes ~3 minutes.
func TestNetnsReference(t *testing.T) {
	if os.Getenv("HYM_BENCH") == "" {
		t.Skip("reference comparison: set HYM_BENCH=1 (make bench-mesh)")
	}
	type result struct {
		detect, reup      time.Duration
		detected, reached bool
		during, duringGot int
		lost, total       int
		full              bool
		discovery         time.Duration
		links             int // member views up after discovery (20 = full)
	}
	run := func(stock bool) result {
		tp := newTopo(t, 5)
		tp.directLink(0, 1)
		var cs []*child
		for i := range 5 {
			cs = append(cs, startChildKind(t, tp.nodes[i], i+21, hex.EncodeToString(psk(7)), "", stock))
		}
		started := time.Now()
		var r result
		for deadline := started.Add(30 * time.Second); ; time.Sleep(25 * time.Millisecond) {
			links := 0
			for _, c := range cs {
				links += c.upCount()
			}
			r.links = links
			if links == 20 {
				r.full, r.discovery = true, time.Since(started)
				break
			}
			if time.Now().After(deadline) {
				if !stock {
					t.Fatalf("mesh: full membership not reached in 30s (%d/20 views up)", links)
				}
				break
			}
		}
		markBaseline(cs)
		for _, c := range cs {
			c.send(childMsg{Cmd: "announce_every", MS: 250})
		}
		time.Sleep(2 * time.Second)
		n0, n3 := cs[0], cs[3]
		others := cs[2:]
		cut := time.Now()
		tp.setLink(0, false)
		time.Sleep(40 * time.Second)
		r.detected, r.reached = true, true
		for _, o := range others {
			at, ok := firstAfter(o, n0.id, cut, func(m childMsg) bool { return m.Reach != "direct" })
			r.detected = r.detected && ok
			r.detect = max(r.detect, at.Sub(cut))
			at, ok = firstAfter(o, n0.id, cut, func(m childMsg) bool { return m.State == "up" && m.Reach == "relayed" })
			r.reached = r.reached && ok
			r.reup = max(r.reup, at.Sub(cut))
		}
		for _, m := range n3.received(n0.id) {
			if m.At >= cut.UnixMilli() && m.At < cut.Add(40*time.Second).UnixMilli() {
				r.duringGot++
			}
		}
		for _, m := range n0.received(n0.id) {
			if m.At >= cut.UnixMilli() && m.At < cut.Add(40*time.Second).UnixMilli() {
				r.during++
			}
		}
		tp.setLink(0, true)
		time.Sleep(15 * time.Second)
		stopAnnouncing(t, cs)
		time.Sleep(12 * time.Second) // one anti-entropy period and a bit
		_, r.lost = allDelivered(cs)
		for _, c := range cs {
			r.total += len(ownSeqs(c)) * (len(cs) - 1)
		}
		for _, c := range cs {
			c.stop()
		}
		tp.cleanup()
		return r
	}
	mesh, stock := run(false), run(true)
	show := func(ok bool, d time.Duration) string {
		if !ok {
			return "not within 40 s"
		}
		return ms(d)
	}
	disc := func(r result) string {
		if !r.full {
			return fmt.Sprintf("not within 30 s (%d/20 member views up)", r.links)
		}
		return ms(r.discovery)
	}
	figure(t, "reference_full_membership", fmt.Sprintf("mesh %s, stock libp2p %s", disc(mesh), disc(stock)))
	figure(t, "reference_detection", fmt.Sprintf("mesh %s, stock libp2p %s", show(mesh.detected, mesh.detect), show(stock.detected, stock.detect)))
	figure(t, "reference_reachable_again_via_relay", fmt.Sprintf("mesh %s, stock libp2p %s", show(mesh.reached, mesh.reup), show(stock.reached, stock.reup)))
	figure(t, "reference_n0_to_n3_during_40s_cut", fmt.Sprintf("mesh %d/%d, stock libp2p %d/%d", mesh.duringGot, mesh.during, stock.duringGot, stock.during))
	figure(t, "reference_lost_for_good", fmt.Sprintf("mesh %d/%d, stock libp2p %d/%d", mesh.lost, mesh.total, stock.lost, stock.total))
}
