package verify

import (
	"sync"
	"testing"

	"github.com/univrs/hypha/inference/route"
)

// TestBookConcurrentUse: Add, Reputation, History, Since, Prune and
// SetVerifiers from several goroutines (run with -race), ending in the same
// state as adding everything in one goroutine.
func TestBookConcurrentUse(t *testing.T) {
	vs := committee(t, 0, 1, 2)
	var rs []*Report
	for e := int64(1); e <= 20; e++ {
		for v := range 3 {
			for n := range 3 {
				rs = append(rs, report(t, v, nodeBase+n, e, float64((int(e)+v+n)%10)/10))
			}
		}
	}
	b := newTestBook(t, Params{}, vs)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(rs); i += 4 {
				b.Add(rs[i])
				_, node := testKey(t, nodeBase+i%3)
				b.Reputation(route.NodeID(node))
				if i%17 == 0 {
					b.History(node, 999)
					b.Since(int64(i % 20))
					b.Nodes()
					b.Prune(0)
					b.SetVerifiers(vs)
				}
			}
		}()
	}
	wg.Wait()
	ref := newTestBook(t, Params{}, vs)
	for _, r := range rs {
		ref.Add(r)
	}
	for n := range 3 {
		_, node := testKey(t, nodeBase+n)
		if a, c := b.History(node, 999), ref.History(node, 999); a.Current != c.Current || len(a.Points) != len(c.Points) {
			t.Errorf("node %d: concurrent %v over %d epochs, sequential %v over %d", n, a.Current, len(a.Points), c.Current, len(c.Points))
		}
	}
}
