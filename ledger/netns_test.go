//go:build linux

package ledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// nsNet is a small test network: one network namespace per node, each with
// a veth into a bridge in a "switch" namespace. Names carry the "ldg" prefix
// and the test's pid so parallel test packages never collide.
type nsNet struct {
	t      *testing.T
	prefix string
	nodes  int
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newNSNet(t *testing.T, nodes int) *nsNet {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 not installed (make deps installs it)")
	}
	n := &nsNet{t: t, prefix: fmt.Sprintf("ldg%d", os.Getpid()%100000), nodes: nodes}
	sw := n.sw()
	if out, err := exec.Command("ip", "netns", "add", sw).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for i := range nodes {
			exec.Command("ip", "netns", "del", n.ns(i)).Run()
		}
		exec.Command("ip", "netns", "del", sw).Run()
	})
	ipCmd(t, "-n", sw, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", sw, "link", "set", "br0", "up")
	for i := range nodes {
		ns := n.ns(i)
		ipCmd(t, "netns", "add", ns)
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", n.port(i), "netns", sw)
		ipCmd(t, "-n", sw, "link", "set", n.port(i), "master", "br0", "up")
		ipCmd(t, "-n", ns, "addr", "add", n.addr(i)+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	}
	return n
}

func (n *nsNet) sw() string        { return n.prefix + "-sw" }
func (n *nsNet) ns(i int) string   { return fmt.Sprintf("%s-n%d", n.prefix, i) }
func (n *nsNet) port(i int) string { return fmt.Sprintf("p%d", i) }
func (n *nsNet) addr(i int) string { return fmt.Sprintf("10.77.0.%d", i+1) }

// cut and heal take node i's switch port down and up: a partition.
func (n *nsNet) cut(i int)  { ipCmd(n.t, "-n", n.sw(), "link", "set", n.port(i), "down") }
func (n *nsNet) heal(i int) { ipCmd(n.t, "-n", n.sw(), "link", "set", n.port(i), "up") }

// in runs fn on an OS thread switched into node i's namespace, so the
// sockets fn creates live there. The thread is discarded afterwards.
func (n *nsNet) in(i int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(n.ns(i))
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsPeer is a ledger node serving sync and countersign in a namespace.
type nsPeer struct {
	n        *Node
	idx      int
	syncAddr string
	signAddr string
}

func (nw *nsNet) start(ctx context.Context, idx int, node *Node, port int) *nsPeer {
	p := &nsPeer{n: node, idx: idx}
	listen := func(port int, handle func(net.Conn)) string {
		var ln net.Listener
		err := nw.in(idx, func() error {
			var err error
			ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", nw.addr(idx), port))
			return err
		})
		if err != nil {
			nw.t.Fatal(err)
		}
		nw.t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					handle(c)
				}()
			}
		}()
		return ln.Addr().String()
	}
	p.syncAddr = listen(port, func(c net.Conn) {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		node.Sync(sctx, c)
	})
	p.signAddr = listen(port+1, func(c net.Conn) {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		node.ServeCountersign(sctx, c)
	})
	return p
}

func (nw *nsNet) dial(from int, addr string) (net.Conn, error) {
	var c net.Conn
	err := nw.in(from, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	})
	return c, err
}

func (nw *nsNet) sync(ctx context.Context, x, y *nsPeer) error {
	c, err := nw.dial(x.idx, y.syncAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = x.n.Sync(sctx, c)
	return err
}

func (nw *nsNet) pay(ctx context.Context, x, y *nsPeer, terms Terms) (*Tx, error) {
	c, err := nw.dial(x.idx, y.signAddr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return x.n.Pay(sctx, c, terms)
}

// TestNetnsPartitionHealDoubleSpend: three nodes, each in its own network
// namespace behind a bridge. Node 2 is cut off; on one side A and B trade,
// on the other C trades with a copy of A's store (A double-spends). After
// the link comes back, syncs converge all three to identical balances and
// heads, and each holds a verified proof against A.
func TestNetnsPartitionHealDoubleSpend(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces: not in -short")
	}
	nw := newNSNet(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clk := newClock()
	rules := testRules()
	a, b, c := newNode(t, rules, clk), newNode(t, rules, clk), newNode(t, rules, clk)
	pa, pb, pc := nw.start(ctx, 0, a, 7000), nw.start(ctx, 1, b, 7000), nw.start(ctx, 2, c, 7000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := nw.pay(ctx, pa, pb, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 100})
	must(err)
	_, err = nw.pay(ctx, pb, pc, Terms{Payer: b.ID(), Payee: c.ID(), Amount: 50})
	must(err)
	_, err = nw.pay(ctx, pc, pa, Terms{Payer: c.ID(), Payee: a.ID(), Amount: 20})
	must(err)
	must(nw.sync(ctx, pa, pb))
	must(nw.sync(ctx, pb, pc))
	// A's second copy, synced from A, will run in C's namespace.
	aTwin := openNode(t, t.TempDir(), a.key, rules, clk)
	pt := nw.start(ctx, 2, aTwin, 7100)
	must(nw.sync(ctx, pt, pa))

	nw.cut(2)
	if err := nw.sync(ctx, pa, pc); err == nil {
		t.Fatal("sync across the partition succeeded")
	}
	for range 3 {
		_, err = nw.pay(ctx, pa, pb, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 40, Purpose: "left"})
		must(err)
		_, err = nw.pay(ctx, pb, pa, Terms{Payer: b.ID(), Payee: a.ID(), Amount: 15, Purpose: "left"})
		must(err)
		_, err = nw.pay(ctx, pt, pc, Terms{Payer: a.ID(), Payee: c.ID(), Amount: 60, Purpose: "right"})
		must(err)
		clk.Advance(time.Second)
	}
	must(nw.sync(ctx, pt, pc))
	if q, _ := c.Quarantined(); len(q) != 0 {
		t.Fatalf("C sees a fork before healing: %v", q)
	}

	nw.heal(2)
	deadline := time.Now().Add(20 * time.Second)
	for nw.sync(ctx, pa, pc) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no connectivity 20s after healing")
		}
		time.Sleep(200 * time.Millisecond)
	}
	must(nw.sync(ctx, pb, pc))
	must(nw.sync(ctx, pa, pb))
	want, err := a.Accounts()
	must(err)
	for _, p := range []*nsPeer{pa, pb, pc} {
		got, err := p.n.Accounts()
		must(err)
		if !slices.Equal(got, want) {
			t.Errorf("node %d did not converge:\n%v\nwant\n%v", p.idx, got, want)
		}
		q, _ := p.n.Quarantined()
		forks, _ := p.n.Forks()
		if len(q) != 1 || q[0] != a.ID() || len(forks) == 0 {
			t.Fatalf("node %d: quarantined %v, %d proofs", p.idx, q, len(forks))
		}
		for _, f := range forks {
			if err := f.Verify(); err != nil {
				t.Errorf("node %d: proof: %v", p.idx, err)
			}
		}
	}
	var total int64
	for _, ac := range want {
		total += ac.Balance
	}
	if total != 0 {
		t.Errorf("total %d", total)
	}
	if _, err := nw.pay(ctx, pa, pc, Terms{Payer: a.ID(), Payee: c.ID(), Amount: 1}); !errors.Is(err, ErrQuarantined) {
		t.Errorf("A paying C after the proof: %v, want ErrQuarantined", err)
	}
}
