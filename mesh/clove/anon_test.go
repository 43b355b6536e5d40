package clove

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Sender anonymity against colluding relays, as a degree of anonymity
// (Díaz et al. 2002): d = H(posterior over senders) / log2(honest nodes - 1).
//
// Adversary: a random fraction f of the nodes collude (the sender and the
// serving node are honest). They share everything their relays observe
// (predecessor and successor, which is all peel reveals), link the packets
// of one request across paths by timing, know L, and know which nodes serve
// (so a colluding exit knows it is the exit). Pessimistically, whenever the
// exit of a path colludes they also learn the exact position of every
// colluding relay on that path.
//
// Per path with colluders: X = the honest predecessor of the earliest
// colluding relay (position p, chain of c colluders). If positions are known,
// X is the sender iff p = 1. Otherwise p is uncertain in 1..L-c with prior
// weight (1-f)^(p-1), so P(X = sender) = 1 / sum_{i=1}^{L-c} (1-f)^(i-1).
// Honest nodes seen as successors of colluders, and predecessors known to
// sit at p > 1, are relays and leave the candidate set. Paths are combined
// as independent evidence: P(s) ∝ prod_j (s == X_j ? q_j : (1-q_j)/(U-1)).
// Paths are disjoint, so an X seen on two paths is the sender.
//
// With a shared entry (Params.SharedEntry) a colluding relay knows whether
// it is the entry (it gets all N packets of the request from one peer), so
// X is the sender exactly when the entry colludes.
func anonymityDegree(net *simNet, rng *rand.Rand, f float64, n, L, requests int, shared bool) (deg, exposed float64) {
	pick := pickPaths
	if shared {
		pick = pickSharedEntry
	}
	N := len(net.ids)
	colluding := map[peer.ID]bool{}
	for _, i := range rng.Perm(N)[:int(math.Round(f*float64(N)))] {
		colluding[net.ids[i].ID()] = true
	}
	honest := N - len(colluding)
	hmax := math.Log2(float64(honest - 1)) // the serving node is not the sender
	for r := 0; r < requests; r++ {
		var sender, dest peer.ID
		for sender == "" || sender == dest || colluding[sender] || colluding[dest] {
			sender, dest = net.ids[rng.IntN(N)].ID(), net.ids[rng.IntN(N)].ID()
		}
		paths, err := pick(net.cands, sender, dest, n, L)
		if err != nil {
			panic(err)
		}
		type clue struct {
			x peer.ID
			q float64
		}
		var clues []clue
		relays := map[peer.ID]bool{dest: true} // honest nodes known not to be the sender
		for _, path := range paths {
			hop := func(i int) peer.ID { // position i in 0..L+1: sender, relays, dest
				switch {
				case i == 0:
					return sender
				case i == L+1:
					return dest
				}
				return path[i-1].ID
			}
			p := 0
			for i := 1; i <= L; i++ {
				if colluding[hop(i)] {
					p = i
					break
				}
			}
			if p == 0 {
				continue
			}
			for i := 1; i <= L; i++ { // successors of colluders are relays (or dest)
				if colluding[hop(i)] && !colluding[hop(i+1)] {
					relays[hop(i+1)] = true
				}
			}
			c := 0
			for p+c <= L && colluding[hop(p+c)] {
				c++
			}
			x := hop(p - 1)
			var q float64
			if shared {
				if p == 1 {
					q = 1
				}
			} else if colluding[hop(L)] { // the exit colludes: positions known
				if p == 1 {
					q = 1
				}
			} else {
				var sum float64
				for i := 1; i <= L-c; i++ {
					sum += math.Pow(1-f, float64(i-1))
				}
				q = 1 / sum
			}
			if q == 0 {
				relays[x] = true
				continue
			}
			clues = append(clues, clue{x, q})
		}
		U := float64(honest - len(relays))
		// Weight of each named candidate and of every unnamed one.
		named := map[peer.ID]float64{}
		for _, cl := range clues {
			if !relays[cl.x] {
				named[cl.x] = 1
			}
		}
		rest := 1.0
		for _, cl := range clues {
			if relays[cl.x] {
				continue
			}
			other := (1 - cl.q) / math.Max(U-1, 1)
			for x := range named {
				if x == cl.x {
					named[x] *= cl.q
				} else {
					named[x] *= other
				}
			}
			rest *= other
		}
		unnamed := U - float64(len(named))
		total := rest * unnamed
		for _, w := range named {
			total += w
		}
		var h, maxP float64
		for _, w := range named {
			if pr := w / total; pr > 0 {
				h -= pr * math.Log2(pr)
				maxP = math.Max(maxP, pr)
			}
		}
		if unnamed > 0 && rest > 0 {
			pr := rest / total
			h -= unnamed * pr * math.Log2(pr)
			maxP = math.Max(maxP, pr)
		}
		deg += h / hmax
		if maxP >= 0.99 {
			exposed++
		}
	}
	return deg / float64(requests), exposed / float64(requests)
}

// TestSimulateAnonymity reports the degree of sender anonymity over 1000
// nodes for colluding fractions up to 20%, for cloves (n=4, L=3) and, as a
// reference computed with the same estimator, a single onion path (n=1).
func TestSimulateAnonymity(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	net := newSimNet(t, *simNodes)
	rng := rand.New(rand.NewPCG(3, 4))
	requests := 10 * *simRequests
	var table strings.Builder
	fmt.Fprintf(&table, "\n| paths n | L | entry | colluding | degree of anonymity | sender exposed |\n|---|---|---|---|---|---|\n")
	for _, c := range []struct {
		n, L   int
		shared bool
	}{{4, 3, false}, {4, 3, true}, {1, 3, false}, {4, 2, false}} {
		prev := 1.0
		entry := "disjoint"
		if c.shared {
			entry = "shared"
		}
		var at10 float64
		for _, f := range []float64{0, 0.05, 0.10, 0.20} {
			d, ex := anonymityDegree(net, rng, f, c.n, c.L, requests, c.shared)
			fmt.Fprintf(&table, "| %d | %d | %s | %.0f%% | %.3f | %.3f |\n", c.n, c.L, entry, 100*f, d, ex)
			if f == 0.10 {
				at10 = d
			}
			if d < 0 || d > 1+1e-9 || math.IsNaN(d) {
				t.Fatalf("degree %v out of [0,1]", d)
			}
			if f == 0 && (d < 1-1e-9 || ex != 0) {
				t.Fatalf("no colluders: degree %v, exposed %v; want 1 and 0", d, ex)
			}
			if d > prev+0.02 {
				t.Errorf("n=%d L=%d: degree rose from %.3f to %.3f as colluders grew", c.n, c.L, prev, d)
			}
			prev = d
		}
		if c.shared && at10 < 0.8 {
			t.Errorf("shared entry at 10%% colluders: degree %.3f, want about 1-f", at10)
		}
	}
	t.Log(table.String())
}
