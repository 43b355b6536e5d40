package ledger

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// tcpPeer serves a node's sync and countersign protocols on 127.0.0.1.
type tcpPeer struct {
	n         *Node
	syncAddr  string
	signAddr  string
	listeners []net.Listener
}

func startPeer(t *testing.T, ctx context.Context, n *Node) *tcpPeer {
	p := &tcpPeer{n: n}
	serve := func(handle func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.listeners = append(p.listeners, ln)
		t.Cleanup(func() { ln.Close() })
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
	p.syncAddr = serve(func(c net.Conn) {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		n.Sync(sctx, c)
	})
	p.signAddr = serve(func(c net.Conn) {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		n.ServeCountersign(sctx, c)
	})
	return p
}

func (p *tcpPeer) syncWith(t *testing.T, ctx context.Context, o *tcpPeer) {
	t.Helper()
	c, err := net.Dial("tcp", o.syncAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := p.n.Sync(sctx, c); err != nil {
		t.Fatalf("sync %s -> %s: %v", p.n.ID().Short(), o.n.ID().Short(), err)
	}
}

func (p *tcpPeer) pay(ctx context.Context, o *tcpPeer, terms Terms) (*Tx, error) {
	c, err := net.Dial("tcp", o.signAddr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return p.n.Pay(sctx, c, terms)
}

// TestPartitionTransactHealConverge: four nodes over TCP on 127.0.0.1 split
// into two partitions; both sides transact (and A double-spends with a
// second copy of its store on the other side); after healing, pairwise
// syncs converge every node to identical balances and heads, and every
// node holds a verified proof against A.
func TestPartitionTransactHealConverge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clk := newClock()
	rules := testRules()
	a, b, c, d := newNode(t, rules, clk), newNode(t, rules, clk), newNode(t, rules, clk), newNode(t, rules, clk)
	pa, pb, pc, pd := startPeer(t, ctx, a), startPeer(t, ctx, b), startPeer(t, ctx, c), startPeer(t, ctx, d)
	all := []*tcpPeer{pa, pb, pc, pd}

	// Before the partition everyone trades and syncs.
	for i, x := range all {
		y := all[(i+1)%len(all)]
		if _, err := x.pay(ctx, y, Terms{Payer: x.n.ID(), Payee: y.n.ID(), Amount: 100, Purpose: "before"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < len(all); i++ {
		all[i-1].syncWith(t, ctx, all[i])
	}
	// A's second copy goes to the other side of the partition.
	aTwin := twin(t, a, clk)
	pat := startPeer(t, ctx, aTwin)

	// Partition {A, B} | {C, D, A's twin}.
	for range 5 {
		if _, err := pa.pay(ctx, pb, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 70, Purpose: "left"}); err != nil {
			t.Fatal(err)
		}
		if _, err := pb.pay(ctx, pa, Terms{Payer: b.ID(), Payee: a.ID(), Amount: 20, Purpose: "left"}); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.pay(ctx, pd, Terms{Payer: c.ID(), Payee: d.ID(), Amount: 30, Purpose: "right"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	pa.syncWith(t, ctx, pb)
	pc.syncWith(t, ctx, pd)
	// The double-spend: A's twin spends A's chain positions again with D.
	if _, err := pat.pay(ctx, pd, Terms{Payer: a.ID(), Payee: d.ID(), Amount: 300, Purpose: "double"}); err != nil {
		t.Fatal(err)
	}
	pd.syncWith(t, ctx, pc)
	if q, _ := c.Quarantined(); len(q) != 0 {
		t.Fatalf("fork visible before healing: %v", q)
	}

	// Heal: a chain of syncs in both directions.
	order := []*tcpPeer{pb, pd, pa, pc}
	for round := 0; round < 2; round++ {
		for i := 1; i < len(order); i++ {
			order[i-1].syncWith(t, ctx, order[i])
		}
		slices.Reverse(order)
	}
	want, err := a.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, ac := range want {
		total += ac.Balance
	}
	if total != 0 {
		t.Fatalf("total %d", total)
	}
	for _, p := range all {
		got, _ := p.n.Accounts()
		if !slices.Equal(got, want) {
			t.Errorf("%s did not converge:\n%v\nwant\n%v", p.n.ID().Short(), got, want)
		}
		q, _ := p.n.Quarantined()
		if len(q) != 1 || q[0] != a.ID() {
			t.Errorf("%s quarantines %v, want [A]", p.n.ID().Short(), q)
		}
		forks, _ := p.n.Forks()
		if len(forks) == 0 {
			t.Errorf("%s holds no proof", p.n.ID().Short())
		}
		for _, f := range forks {
			if err := f.Verify(); err != nil || f.Author() != a.ID() {
				t.Errorf("%s: proof against %s: %v", p.n.ID().Short(), f.Author().Short(), err)
			}
		}
	}
	// After healing, nobody countersigns with A; the others still trade.
	if _, err := pa.pay(ctx, pc, Terms{Payer: a.ID(), Payee: c.ID(), Amount: 1}); !errors.Is(err, ErrQuarantined) {
		t.Errorf("A paying C after the proof: %v, want ErrQuarantined", err)
	}
	if _, err := pb.pay(ctx, pc, Terms{Payer: b.ID(), Payee: c.ID(), Amount: 1}); err != nil {
		t.Errorf("B paying C: %v", err)
	}
}
