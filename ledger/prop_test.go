package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// world is a set of member nodes for one property-test run.
type world struct {
	t     *rapid.T
	dir   string
	clk   *fakeClock
	rules Rules
	nodes []*Node
	keys  []ed25519.PrivateKey
}

func newWorld(t *rapid.T, members int) *world {
	// Property runs open many stores; tmpfs keeps them fast where present.
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "ledger-prop-")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: dir, clk: newClock(), rules: DefaultRules()}
	w.rules.Limits = map[MemberID]Limits{}
	var commonsSeed [32]byte
	commonsSeed[0] = 0xC0
	w.rules.Commons = MemberOfKey(ed25519.NewKeyFromSeed(commonsSeed[:]))
	w.rules.FeeBasisPoints = rapid.Int64Range(0, 500).Draw(t, "fee_bp")
	for i := range members {
		var seed [32]byte
		seed[0], seed[1] = byte(i+1), 0x5e
		k := ed25519.NewKeyFromSeed(seed[:])
		w.keys = append(w.keys, k)
		w.rules.Limits[MemberOfKey(k)] = Limits{
			Min: -rapid.Int64Range(0, 20_000).Draw(t, fmt.Sprintf("min%d", i)),
			Max: rapid.Int64Range(0, 20_000).Draw(t, fmt.Sprintf("max%d", i)),
		}
	}
	for _, k := range w.keys {
		w.nodes = append(w.nodes, w.open(k))
	}
	return w
}

func (w *world) open(k ed25519.PrivateKey) *Node {
	n, err := Open(filepath.Join(w.dir, fmt.Sprintf("%s-%d.db", MemberOfKey(k).Short(), time.Now().UnixNano())), k, w.rules,
		WithNoSync(), WithClock(w.clk.Now), WithLogger(quietLogger()), WithPolicy(allowAll))
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *world) close(extra ...*Node) {
	for _, n := range append(slices.Clone(w.nodes), extra...) {
		if err := n.Check(); err != nil {
			w.t.Errorf("store of %s: %v", n.ID().Short(), err)
		}
		n.Close()
	}
	os.RemoveAll(w.dir)
}

func syncNodes(t *rapid.T, x, y *Node) {
	p1, p2 := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := y.Sync(ctx, p2); errc <- err }()
	_, err := x.Sync(ctx, p1)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if err != nil {
		t.Fatalf("sync %s<->%s: %v", x.ID().Short(), y.ID().Short(), err)
	}
}

// view is everything that must be identical on converged nodes.
func view(t *rapid.T, n *Node) []Account {
	acc, err := n.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, a := range acc {
		total += a.Balance
	}
	if total != 0 {
		t.Fatalf("balances on %s sum to %d", n.ID().Short(), total)
	}
	return acc
}

func allTxs(t *rapid.T, nodes ...*Node) []*Tx {
	seen := map[Hash]*Tx{}
	for _, n := range nodes {
		txs, err := n.Recent(1 << 30)
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range txs {
			seen[tx.ID()] = tx
		}
	}
	out := make([]*Tx, 0, len(seen))
	for _, tx := range seen {
		out = append(out, tx)
	}
	slices.SortFunc(out, func(a, b *Tx) int { x, y := a.ID(), b.ID(); return slices.Compare(x[:], y[:]) })
	return out
}

// TestPropertyZeroSumLimitsAndOrderIndependentMerge: random transfers
// between random members interleaved with random pairwise syncs; then the
// union of all transactions is applied to fresh nodes in shuffled,
// duplicated orders and chunkings, and all nodes are synced. Everywhere:
// total exactly zero, no member outside its limits, identical balances and
// chain heads, and balances equal to a direct recomputation from the set.
func TestPropertyZeroSumLimitsAndOrderIndependentMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, rapid.IntRange(2, 4).Draw(t, "members"))
		var observers []*Node
		defer func() { w.close(observers...) }()
		nOps := rapid.IntRange(1, 40).Draw(t, "ops")
		for range nOps {
			i := rapid.IntRange(0, len(w.nodes)-1).Draw(t, "i")
			j := rapid.IntRange(0, len(w.nodes)-1).Draw(t, "j")
			if i == j {
				continue
			}
			x, y := w.nodes[i], w.nodes[j]
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0:
				syncNodes(t, x, y)
			default:
				amount := rapid.Int64Range(1, 12_000).Draw(t, "amount")
				proposerIsPayer := rapid.Bool().Draw(t, "payer_proposes")
				prop, other := x, y
				if !proposerIsPayer {
					prop, other = y, x
				}
				_, err := transfer(prop, other, Terms{Payer: x.ID(), Payee: y.ID(), Amount: amount, Purpose: "p"})
				if err != nil && !errors.Is(err, ErrLimit) {
					t.Fatalf("transfer: %v", err)
				}
			}
			w.clk.Advance(time.Duration(rapid.IntRange(0, 5000).Draw(t, "ms")) * time.Millisecond)
			// Each member, on its own node, is within its limits.
			for _, n := range w.nodes {
				b, _ := n.Balance(n.ID())
				if lim := w.rules.LimitsFor(n.ID()); !lim.Allows(b) {
					t.Fatalf("member %s at %d outside [%d, %d]", n.ID().Short(), b, lim.Min, lim.Max)
				}
			}
		}
		txs := allTxs(t, w.nodes...)
		// Reference: balances recomputed directly from the set.
		ref := map[MemberID]int64{}
		for _, tx := range txs {
			for _, m := range []MemberID{tx.Body.Payer, tx.Body.Payee, tx.Body.Commons} {
				if m == tx.Body.Commons && tx.Body.Fee == 0 {
					continue
				}
				ref[m] += tx.Body.Delta(m)
			}
		}
		// Fresh observers ingest the set in random orders, with duplicates,
		// in random chunks.
		for o := range 2 {
			obs := w.open(w.keys[0]) // a member may run a second, empty store
			if o == 1 {
				var seed [32]byte
				seed[0] = 0x0b
				obs = w.open(ed25519.NewKeyFromSeed(seed[:]))
			}
			observers = append(observers, obs)
			order := rapid.Permutation(txs).Draw(t, "order")
			dups := rapid.SliceOfN(rapid.IntRange(0, max(len(txs)-1, 0)), 0, len(txs)).Draw(t, "dups")
			for _, d := range dups {
				if len(txs) > 0 {
					order = append(order, txs[d])
				}
			}
			for len(order) > 0 {
				k := rapid.IntRange(1, len(order)).Draw(t, "chunk")
				if _, err := obs.Ingest(order[:k]...); err != nil {
					t.Fatal(err)
				}
				order = order[k:]
			}
		}
		want := view(t, observers[0])
		if got := view(t, observers[1]); !slices.Equal(got, want) {
			t.Fatalf("observers disagree:\n%v\n%v", got, want)
		}
		for _, a := range want {
			if a.Balance != ref[a.Member] {
				t.Fatalf("balance of %s %d, recomputed %d", a.Member.Short(), a.Balance, ref[a.Member])
			}
			if lim := w.rules.LimitsFor(a.Member); a.Member != w.rules.Commons && !lim.Allows(a.Balance) {
				t.Fatalf("merged balance of %s %d outside [%d, %d]", a.Member.Short(), a.Balance, lim.Min, lim.Max)
			}
		}
		// Random pairwise syncs over streams converge everyone to the same.
		all := append(slices.Clone(w.nodes), observers...)
		for round := range 2 {
			perm := rapid.Permutation(all).Draw(t, fmt.Sprintf("sync_order%d", round))
			for k := 1; k < len(perm); k++ {
				syncNodes(t, perm[k-1], perm[k])
			}
		}
		for _, n := range all {
			if got := view(t, n); !slices.Equal(got, want) {
				t.Fatalf("%s after sync:\n%v\nwant\n%v", n.ID().Short(), got, want)
			}
		}
	})
}

// TestPropertyForksMergeOrderIndependently: arbitrary fully signed
// transactions with arbitrary chain positions (honest chains, forks, gaps,
// broken links) ingested in different orders and chunkings give identical
// balances, heads and quarantined members, and every proof verifies.
func TestPropertyForksMergeOrderIndependently(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, 3)
		defer w.close()
		txs := arbitraryTxs(t, w)
		type result struct {
			acc []Account
			q   []MemberID
		}
		var results []result
		for range 3 {
			var seed [32]byte
			seed[0] = 0x0b
			obs := w.open(ed25519.NewKeyFromSeed(seed[:]))
			order := rapid.Permutation(txs).Draw(t, "order")
			order = append(order, order[:rapid.IntRange(0, len(order)).Draw(t, "dups")]...)
			for len(order) > 0 {
				k := rapid.IntRange(1, len(order)).Draw(t, "chunk")
				if _, err := obs.Ingest(order[:k]...); err != nil {
					t.Fatal(err)
				}
				order = order[k:]
			}
			q, _ := obs.Quarantined()
			forks, _ := obs.Forks()
			for _, f := range forks {
				if err := f.Verify(); err != nil {
					t.Fatalf("stored proof does not verify: %v", err)
				}
				if !slices.Contains(q, f.Author()) {
					t.Fatalf("proof against %s who is not quarantined", f.Author().Short())
				}
			}
			results = append(results, result{view(t, obs), q})
			if err := obs.Check(); err != nil {
				t.Fatal(err)
			}
			obs.Close()
		}
		for _, r := range results[1:] {
			if !slices.Equal(r.acc, results[0].acc) || !slices.Equal(r.q, results[0].q) {
				t.Fatalf("orders disagree:\n%v %v\n%v %v", r.acc, r.q, results[0].acc, results[0].q)
			}
		}
	})
}

// arbitraryTxs draws fully signed transactions among the world's members
// with arbitrary chain positions: honest chains, forks, gaps, broken links.
func arbitraryTxs(t *rapid.T, w *world) []*Tx {
	type ent struct {
		m    MemberID
		seq  uint64
		hash Hash
	}
	var entries []ent
	var txs []*Tx
	n := rapid.IntRange(1, 25).Draw(t, "txs")
	for range n {
		i := rapid.IntRange(0, 2).Draw(t, "payer")
		j := (i + rapid.IntRange(1, 2).Draw(t, "payee_off")) % 3
		pos := func(who int) Position {
			m := MemberOfKey(w.keys[who])
			seq := uint64(rapid.IntRange(1, 4).Draw(t, "seq"))
			if seq == 1 {
				return Position{Seq: 1}
			}
			var cands []Hash
			for _, e := range entries {
				if e.m == m && e.seq == seq-1 {
					cands = append(cands, e.hash)
				}
			}
			cands = append(cands, Hash{0xee, byte(seq)})
			return Position{Seq: seq, Prev: rapid.SampledFrom(cands).Draw(t, "prev")}
		}
		b := Body{Payer: MemberOfKey(w.keys[i]), Payee: MemberOfKey(w.keys[j]), PayerPos: pos(i), PayeePos: pos(j),
			Amount: rapid.Int64Range(1, 1000).Draw(t, "amount"), Unit: "credit",
			Created: w.clk.Now(), Expires: w.clk.Now().Add(time.Minute)}
		if fee := rapid.Int64Range(0, 50).Draw(t, "fee"); fee > 0 {
			b.Fee, b.Commons = fee, w.rules.Commons
		}
		w.clk.Advance(time.Second)
		tx := signBoth(b, w.keys[i], w.keys[j])
		txs = append(txs, tx)
		for _, m := range []MemberID{b.Payer, b.Payee} {
			e, _ := tx.EntryFor(m)
			entries = append(entries, ent{m, e.Seq, e.Hash()})
		}
	}
	return txs
}

// TestPropertySyncConvergesWithForks: arbitrary signed transactions (with
// forks, gaps, broken links) spread over three nodes in random subsets;
// random-order pairwise syncs (two passes along a random chain of the
// nodes, forth and back) leave every node identical to a node that ingested
// everything: balances, heads, quarantined members.
func TestPropertySyncConvergesWithForks(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, 3)
		txs := arbitraryTxs(t, w)
		var seed [32]byte
		seed[0] = 0x0c
		ref := w.open(ed25519.NewKeyFromSeed(seed[:]))
		defer w.close(ref)
		if _, err := ref.Ingest(txs...); err != nil {
			t.Fatal(err)
		}
		parts := make([][]*Tx, len(w.nodes))
		for _, tx := range txs {
			owner := rapid.IntRange(0, len(w.nodes)-1).Draw(t, "owner") // someone holds each tx
			for i := range w.nodes {
				if i == owner || rapid.Bool().Draw(t, fmt.Sprintf("has%d", i)) {
					parts[i] = append(parts[i], tx)
				}
			}
		}
		for i, n := range w.nodes {
			if _, err := n.Ingest(parts[i]...); err != nil {
				t.Fatal(err)
			}
		}
		order := rapid.Permutation(w.nodes).Draw(t, "order")
		for pass := 0; pass < 2; pass++ {
			for k := 1; k < len(order); k++ {
				syncNodes(t, order[k-1], order[k])
			}
			slices.Reverse(order)
		}
		want := view(t, ref)
		wq, _ := ref.Quarantined()
		for _, n := range w.nodes {
			got := view(t, n)
			q, _ := n.Quarantined()
			if !slices.Equal(got, want) || !slices.Equal(q, wq) {
				t.Fatalf("%s after sync:\n%v %v\nwant\n%v %v", n.ID().Short(), got, q, want, wq)
			}
		}
	})
}

// TestPropertyOneSyncGivesTheUnion: after ONE sync between two nodes holding
// random subsets of arbitrary signed transactions (forks, gaps, broken
// links), both hold exactly the union: same balances, heads and quarantine
// as a node that ingested the union.
func TestPropertyOneSyncGivesTheUnion(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, 3)
		txs := arbitraryTxs(t, w)
		var seed [32]byte
		seed[0] = 0x0d
		ref := w.open(ed25519.NewKeyFromSeed(seed[:]))
		defer w.close(ref)
		x, y := w.nodes[0], w.nodes[1]
		var px, py, union []*Tx
		for _, tx := range txs {
			inX, inY := rapid.Bool().Draw(t, "x"), rapid.Bool().Draw(t, "y")
			if inX {
				px = append(px, tx)
			}
			if inY {
				py = append(py, tx)
			}
			if inX || inY {
				union = append(union, tx)
			}
		}
		for _, in := range []struct {
			n   *Node
			txs []*Tx
		}{{x, px}, {y, py}, {ref, union}} {
			if _, err := in.n.Ingest(in.txs...); err != nil {
				t.Fatal(err)
			}
		}
		syncNodes(t, x, y)
		want := view(t, ref)
		wq, _ := ref.Quarantined()
		for _, n := range []*Node{x, y} {
			got := view(t, n)
			q, _ := n.Quarantined()
			if !slices.Equal(got, want) || !slices.Equal(q, wq) {
				t.Fatalf("%s after one sync:\n%v %v\nwant\n%v %v", n.ID().Short(), got, q, want, wq)
			}
		}
	})
}
