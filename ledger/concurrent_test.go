package ledger

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestConcurrentPaymentsKeepInvariants: several nodes pay each other from
// many goroutines at once over streams. Exchanges collide (locked chains,
// stale heads) and are refused with a reason, never half-applied; in the end
// every node's own balance is within its limits, and after syncing all nodes
// agree, with a total of zero.
func TestConcurrentPaymentsKeepInvariants(t *testing.T) {
	clk := newClock()
	rules := testRules()
	rules.DefaultLimits = Limits{Min: -3000, Max: 4000}
	var nodes []*Node
	for range 4 {
		nodes = append(nodes, newNode(t, rules, clk, WithPolicy(allowAll)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, map[string]int{}
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 15 {
				i, j := rng.IntN(len(nodes)), rng.IntN(len(nodes))
				if i == j {
					continue
				}
				x, y := nodes[i], nodes[j]
				terms := Terms{Payer: x.ID(), Payee: y.ID(), Amount: int64(1 + rng.IntN(900))}
				if rng.IntN(3) == 0 { // the payee bills
					x, y = y, x
				}
				p1, p2 := net.Pipe()
				go func() { y.ServeCountersign(ctx, p2); p2.Close() }()
				_, err := x.Pay(ctx, p1, terms)
				p1.Close()
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrChainLocked):
					refused["locked"]++
				case errors.Is(err, ErrWrongPrev):
					refused["stale head"]++
				case errors.Is(err, ErrLimit):
					refused["limit"]++
				default:
					mu.Unlock()
					t.Errorf("pay: %v", err)
					return
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d paid, refused: %v", ok, refused)
	if ok == 0 {
		t.Fatal("no payment went through")
	}
	for _, n := range nodes {
		if p, _ := n.Pending(); p != nil {
			t.Errorf("%s left with an outstanding proposal", n.ID().Short())
		}
		b, _ := n.Balance(n.ID())
		if !rules.DefaultLimits.Allows(b) {
			t.Errorf("%s at %d, outside its limits", n.ID().Short(), b)
		}
	}
	for round := 0; round < 2; round++ {
		for k := 1; k < len(nodes); k++ {
			syncPair(t, nodes[k-1], nodes[k])
		}
		slices.Reverse(nodes)
	}
	want, _ := nodes[0].Accounts()
	var total int64
	for _, a := range want {
		total += a.Balance
	}
	if total != 0 {
		t.Fatalf("total %d", total)
	}
	for _, n := range nodes[1:] {
		if got, _ := n.Accounts(); !slices.Equal(got, want) {
			t.Errorf("%s disagrees:\n%v\n%v", n.ID().Short(), got, want)
		}
		if q, _ := n.Quarantined(); len(q) != 0 {
			t.Errorf("honest nodes forked: %v", q)
		}
	}
}
