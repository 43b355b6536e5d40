package clove

import (
	"bytes"
	"crypto/ecdh"
	"flag"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

var (
	simNodes    = flag.Int("sim.nodes", 1000, "nodes in TestSimulateDelivery")
	simRequests = flag.Int("sim.requests", 60, "requests per cell in TestSimulateDelivery")
	simFull     = flag.Bool("sim.full", false, "sweep failure 0..10% and four (n,k,L) settings")
)

// simNet is an in-process community: real identities, real path choice,
// real cloves and real onion packets, with the network replaced by function
// calls and some nodes down.
type simNet struct {
	ids    []*Identity
	byID   map[peer.ID]*Identity
	cands  map[peer.ID]Candidate
	failed map[peer.ID]bool
}

func newSimNet(t testing.TB, n int) *simNet {
	s := &simNet{byID: map[peer.ID]*Identity{}, cands: map[peer.ID]Candidate{}}
	for i := 0; i < n; i++ {
		_, id := newTestIdentity(t)
		s.ids = append(s.ids, id)
		s.byID[id.ID()] = id
		s.cands[id.ID()] = id.Candidate()
	}
	return s
}

// fail marks a random fraction f of the nodes as down.
func (s *simNet) fail(rng *rand.Rand, f float64) {
	s.failed = map[peer.ID]bool{}
	for _, i := range rng.Perm(len(s.ids))[:int(math.Round(f*float64(len(s.ids))))] {
		s.failed[s.ids[i].ID()] = true
	}
}

// request sends req from sender to dest the way Node.Request does, with
// the sender unaware of which relays are down: one attempt, then up to
// p.Retries resends over paths avoiding the relays of unacknowledged paths
// (a path is acknowledged when all its relays are up). It returns the
// rebuilt reply or an error.
func (s *simNet) request(p Params, sender, dest *Identity, req []byte) ([]byte, error) {
	cands := maps.Clone(s.cands)
	for try := 0; ; try++ {
		out, silent, err := s.attempt(p, cands, sender, dest, req)
		if err == nil || try >= max(p.Retries, 0) || len(silent) == 0 {
			return out, err
		}
		for _, path := range silent {
			for _, c := range path {
				delete(cands, c.ID)
			}
		}
	}
}

func (s *simNet) attempt(p Params, cands map[peer.ID]Candidate, sender, dest *Identity, req []byte) ([]byte, [][]Candidate, error) {
	paths, err := pickPaths(cands, sender.ID(), dest.ID(), p.N, p.L)
	if err != nil {
		return nil, nil, err
	}
	var silent [][]Candidate
	cloves, err := Split(req, p.N, p.K)
	if err != nil {
		return nil, nil, err
	}
	size := p.sizeClass(headerLen(p.L) + 4 + cloves[0].EncodedLen())
	H := p.L + 1
	type arrived struct {
		path      int
		relayKeys []hopKeys // what each relay kept for the reply
		destKeys  hopKeys
	}
	var got []Clove
	var arr []arrived
	senderKeys := make([][]hopKeys, len(paths))
	for j, path := range paths {
		hops := make([]pathHop, 0, H)
		for _, c := range append(append([]Candidate(nil), path...), s.cands[dest.ID()]) {
			pub, _ := ecdh.X25519().NewPublicKey(c.Key[:])
			hops = append(hops, pathHop{id: c.ID, pub: pub})
		}
		cb, _ := cloves[j].MarshalBinary()
		pkt, keys, err := buildPacket(hops, 1, cb, size)
		if err != nil {
			return nil, silent, err
		}
		senderKeys[j] = keys
		a := arrived{path: j}
		alive := true
		for i, h := range hops {
			if s.failed[h.id] {
				alive = false
				break
			}
			pe, err := peel(s.byID[h.id].priv, pkt, H)
			if err != nil {
				return nil, silent, fmt.Errorf("hop %d: %w", i, err)
			}
			if len(pe.out) != len(pkt) && pe.r.kind == hopForward {
				return nil, silent, fmt.Errorf("hop %d changed the packet size", i)
			}
			if pe.r.kind == hopDeliver {
				c, err := DecodeClove(pe.out)
				if err != nil {
					return nil, silent, err
				}
				got = append(got, c)
				a.destKeys = pe.keys
				break
			}
			a.relayKeys = append(a.relayKeys, pe.keys)
			pkt = pe.out
		}
		if alive {
			arr = append(arr, a)
		} else {
			silent = append(silent, path)
		}
	}
	msg, _, err := Combine(got)
	if err != nil {
		return nil, silent, fmt.Errorf("serving node: %w", err)
	}
	reply, err := SplitID(cloves[0].ID, append([]byte("re: "), msg...), p.N, p.K)
	if err != nil {
		return nil, silent, err
	}
	var back []Clove
	for i, a := range arr {
		rb, _ := reply[i].MarshalBinary()
		body, err := sealReply(&a.destKeys, frameReply, rb, p.sizeClass(4+len(rb)+tagLen))
		if err != nil {
			return nil, silent, err
		}
		for r := len(a.relayKeys) - 1; r >= 0; r-- { // static failures: the path is still up
			replyLayer(&a.relayKeys[r].reply, frameReply, body, body)
		}
		out, err := openReply(senderKeys[a.path], frameReply, body)
		if err != nil {
			return nil, silent, err
		}
		c, err := DecodeClove(out)
		if err != nil {
			return nil, silent, err
		}
		back = append(back, c)
	}
	out, _, err := Combine(back)
	return out, silent, err
}

// deliveryExpected is P(at least k of n paths of L relays are all up) when
// each relay is down with probability f.
func deliveryExpected(n, k, L int, f float64) float64 {
	p := math.Pow(1-f, float64(L))
	var sum float64
	for i := k; i <= n; i++ {
		sum += binom(n, i) * math.Pow(p, float64(i)) * math.Pow(1-p, float64(n-i))
	}
	return sum
}

func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

// TestSimulateDelivery measures the delivery rate of anonymous requests in
// a community of -sim.nodes nodes (default 1000) when a fraction of them
// is down and senders do not know which. Each request runs the real code
// end to end (path choice, S-IDA, onion build and peel at every hop, reply
// layers, rebuild); only the network is function calls. The measured rate
// must match the binomial expectation (delivery fails only when fewer than
// k paths survive) within 5 standard deviations.
func TestSimulateDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	type cfg struct{ n, k, L int }
	cfgs := []cfg{{4, 3, 3}, {4, 2, 3}}
	fails := []float64{0, 0.03, 0.10}
	if *simFull {
		cfgs = []cfg{{4, 3, 3}, {4, 3, 2}, {4, 2, 3}, {5, 3, 3}}
		fails = []float64{0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.10}
	}
	net := newSimNet(t, *simNodes)
	rng := rand.New(rand.NewPCG(1, 2))
	var table strings.Builder
	fmt.Fprintf(&table, "\n| n,k,L | failed | delivered, no resend | expected | delivered, 1 resend |\n|---|---|---|---|---|\n")
	for _, c := range cfgs {
		p := DefaultParams()
		p.N, p.K, p.L = c.n, c.k, c.L
		for _, f := range fails {
			net.fail(rng, f)
			ok, okResend := 0, 0
			for r := 0; r < *simRequests; r++ {
				var sender, dest *Identity
				for sender == nil || dest == nil || sender == dest || net.failed[sender.ID()] || net.failed[dest.ID()] {
					sender, dest = net.ids[rng.IntN(len(net.ids))], net.ids[rng.IntN(len(net.ids))]
				}
				req := []byte(fmt.Sprintf("request %d", r))
				for _, retries := range []int{-1, 1} {
					p.Retries = retries
					out, err := net.request(p, sender, dest, req)
					if err != nil {
						continue
					}
					if !bytes.Equal(out, append([]byte("re: "), req...)) {
						t.Fatalf("wrong reply %q", out)
					}
					if retries < 0 {
						ok++
					} else {
						okResend++
					}
				}
			}
			rate := float64(ok) / float64(*simRequests)
			rateResend := float64(okResend) / float64(*simRequests)
			// Down relays are drawn without replacement from a finite set;
			// with f*N of N down, the binomial is a close approximation.
			want := deliveryExpected(c.n, c.k, c.L, f)
			sd := math.Sqrt(want*(1-want)/float64(*simRequests)) + 1e-9
			fmt.Fprintf(&table, "| %d,%d,%d | %.1f%% | %.3f | %.3f | %.3f |\n", c.n, c.k, c.L, 100*f, rate, want, rateResend)
			// The two runs draw different paths, so allow for chance.
			if rateResend < rate-0.05 {
				t.Errorf("n=%d k=%d L=%d f=%.2f: resending delivered less (%.3f < %.3f)", c.n, c.k, c.L, f, rateResend, rate)
			}
			if math.Abs(rate-want) > 5*sd+0.01 {
				t.Errorf("n=%d k=%d L=%d f=%.2f: delivered %.3f, expected %.3f", c.n, c.k, c.L, f, rate, want)
			}
		}
	}
	t.Log(table.String())
}
