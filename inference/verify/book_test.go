package verify

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/univrs/hypha/inference/route"
)

var _ route.Reputation = (*Book)(nil)

// Verifier key indices 0..3, node key indices 8..11.
const nodeBase = 8

// TestPlanetServeRun reproduces the run in PlanetServe's paper: a node
// scored 0.8 for five epochs reaches R 0.797; then credits of 0.1 give
// 0.379, 0.187, 0.102 (the window punishes the second and third).
func TestPlanetServeRun(t *testing.T) {
	b := newTestBook(t, Params{}, committee(t, 0, 1, 2))
	credits := []float64{0.8, 0.8, 0.8, 0.8, 0.8, 0.1, 0.1, 0.1}
	for e, c := range credits {
		for v := range 3 {
			if _, err := b.Add(report(t, v, nodeBase, int64(e+1), c)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, node := testKey(t, nodeBase)
	h := b.History(node, 999)
	if len(h.Points) != len(credits) {
		t.Fatalf("%d points, want %d", len(h.Points), len(credits))
	}
	for i, want := range map[int]float64{4: 0.797, 5: 0.379, 6: 0.187, 7: 0.102} {
		if got := h.Points[i].Reputation; math.Abs(got-want) > 0.0006 {
			t.Errorf("epoch %d: R = %.4f, want %.3f", i+1, got, want)
		}
	}
	if p := h.Points[5]; p.Beta != 0.6 || p.Abnormal != 1 {
		t.Errorf("first cheating epoch: β %v abnormal %d, want 0.6 and 1 (1/5 is not above γ)", p.Beta, p.Abnormal)
	}
	if p := h.Points[6]; math.Abs(p.Beta-6.0/17) > 1e-12 || p.Abnormal != 2 {
		t.Errorf("second cheating epoch: β %v abnormal %d, want 6/17 and 2", p.Beta, p.Abnormal)
	}
	if h.Trusted || h.Current != h.Points[7].Reputation {
		t.Errorf("after three cheating epochs: trusted %v current %v", h.Trusted, h.Current)
	}
	want := "reputation 0.10 is below the threshold 0.20: 3 of the last 5 epochs scored below 0.40 (last: median credit 0.10 from 3 verifiers)"
	if h.Reason != want {
		t.Errorf("reason %q\nwant   %q", h.Reason, want)
	}
	// the router's view counts finished epochs only
	if r := b.Reputation(route.NodeID(node)); r != h.Current {
		t.Errorf("Reputation = %v, History says %v", r, h.Current)
	}
	if b.Trusted(route.NodeID(node)) {
		t.Error("Trusted says yes")
	}
	_, unknown := testKey(t, 15)
	if r := b.Reputation(route.NodeID(unknown)); r != 0.5 {
		t.Errorf("unknown node: %v, want Initial 0.5", r)
	}
}

func TestMedianAndQuorum(t *testing.T) {
	b := newTestBook(t, Params{}, committee(t, 0, 1, 2, 3))
	_, node := testKey(t, nodeBase)
	add := func(v int, e int64, c float64) {
		t.Helper()
		if _, err := b.Add(report(t, v, nodeBase, e, c)); err != nil {
			t.Fatal(err)
		}
	}
	// epoch 1: 4 reports -> mean of the middle two
	add(0, 1, 0.9)
	add(1, 1, 0.1)
	add(2, 1, 0.5)
	add(3, 1, 0.7)
	// epoch 2: 2 of 4: no quorum, skipped
	add(0, 2, 0.0)
	add(1, 2, 0.0)
	// epoch 3: 3 of 4 -> the middle one
	add(0, 3, 1)
	add(1, 3, 0.2)
	add(2, 3, 0.6)
	h := b.History(node, 999)
	if len(h.Points) != 2 || h.Points[0].Epoch != 1 || h.Points[1].Epoch != 3 {
		t.Fatalf("points %+v", h.Points)
	}
	if h.Points[0].Credit != 0.6 || h.Points[0].Verifiers != 4 || h.Points[1].Credit != 0.6 || h.Points[1].Verifiers != 3 {
		t.Errorf("medians %+v", h.Points)
	}
	// upTo bounds the epochs used
	if h1 := b.History(node, 2); len(h1.Points) != 1 || h1.Current != h.Points[0].Reputation {
		t.Errorf("History upTo 2 = %+v", h1)
	}
	// a committee change: reports of former members no longer count
	b.SetVerifiers(committee(t, 0, 1))
	if h2 := b.History(node, 999); len(h2.Points) != 3 || h2.Points[1].Credit != 0 {
		t.Errorf("after shrinking the committee to 0 and 1: %+v", h2.Points)
	}
}

func TestAddRefuses(t *testing.T) {
	b := newTestBook(t, Params{}, committee(t, 0, 1, 2))
	good := report(t, 0, nodeBase, 5, 0.9)
	if added, err := b.Add(good); !added || err != nil {
		t.Fatalf("first add: %v %v", added, err)
	}
	if added, err := b.Add(good); added || err != nil {
		t.Fatalf("duplicate: %v %v, want false, nil", added, err)
	}
	copyOf := *good
	if added, err := b.Add(&copyOf); added || err != nil {
		t.Fatalf("same report, another copy: %v %v", added, err)
	}
	other := report(t, 0, nodeBase, 5, 0.9)
	other.Community = "another"
	_ = other.Sign(keys[0])
	future := report(t, 1, nodeBase, 1002, 0.9)
	outsider := report(t, 5, nodeBase, 5, 0.9)
	forged := report(t, 1, nodeBase, 5, 0.9)
	forged.Credit = 0.1
	for _, c := range []struct {
		name string
		r    *Report
		want error
	}{
		{"other community", other, ErrWrongCommunity},
		{"future", future, ErrFuture},
		{"outsider", outsider, ErrNotCommittee},
		{"forged", forged, ErrBadSignature},
		{"nil", nil, ErrMalformed},
	} {
		if added, err := b.Add(c.r); added || !errors.Is(err, c.want) {
			t.Errorf("%s: %v %v, want %v", c.name, added, err, c.want)
		}
	}
	if added, err := b.Add(report(t, 1, nodeBase, 1001, 0.9)); !added || err != nil {
		t.Errorf("next epoch (clock skew allowance): %v %v", added, err)
	}
}

// TestEquivocation: a verifier that signs two different reports for the
// same node and epoch is ignored from then on, on every node that hears
// the two reports (Since serves them), and History says so.
func TestEquivocation(t *testing.T) {
	vs := committee(t, 0, 1, 2)
	b := newTestBook(t, Params{}, vs)
	_, node := testKey(t, nodeBase)
	for e := int64(1); e <= 3; e++ {
		for v := range 3 {
			c := 0.9
			if v == 2 {
				c = 0.0 // the later liar, before it is caught, drags nothing (median)
			}
			b.Add(report(t, v, nodeBase, e, c))
		}
	}
	before := b.History(node, 999)
	b.Add(report(t, 2, nodeBase+1, 3, 0.5))
	added, err := b.Add(report(t, 2, nodeBase+1, 3, 0.6))
	if added || !errors.Is(err, ErrEquivocation) {
		t.Fatalf("conflicting report: %v %v", added, err)
	}
	if added, err := b.Add(report(t, 2, nodeBase, 4, 0.9)); added || err != nil {
		t.Errorf("report of a known equivocator: %v %v, want ignored", added, err)
	}
	after := b.History(node, 999)
	if len(after.Notes) != 1 || !strings.Contains(after.Notes[0], vs[2]+" is ignored: it signed two different reports") {
		t.Errorf("notes %q", after.Notes)
	}
	for i, p := range after.Points {
		if p.Verifiers != 2 || p.Credit != 0.9 {
			t.Errorf("point %d after the liar was dropped: %+v (before: %+v)", i, p, before.Points[i])
		}
	}
	// another node learns of it from Since alone
	b2 := newTestBook(t, Params{}, vs)
	var sawErr bool
	for _, r := range b.Since(0) {
		if _, err := b2.Add(r); errors.Is(err, ErrEquivocation) {
			sawErr = true
		}
	}
	if !sawErr || !reflect.DeepEqual(b2.History(node, 999), after) {
		t.Errorf("a node syncing from Since computes %+v, want %+v", b2.History(node, 999), after)
	}
}

func TestPrune(t *testing.T) {
	b := newTestBook(t, Params{}, committee(t, 0))
	for e := int64(1); e <= 10; e++ {
		b.Add(report(t, 0, nodeBase, e, 1))
	}
	b.Prune(8)
	if rs := b.Since(0); len(rs) != 3 || rs[0].Epoch != 8 {
		t.Fatalf("after Prune(8): %d reports from epoch %d", len(rs), rs[0].Epoch)
	}
	if n := b.Nodes(); len(n) != 1 {
		t.Errorf("nodes %v", n)
	}
	b.Prune(100)
	if n := b.Nodes(); len(n) != 0 {
		t.Errorf("nodes after pruning everything: %v", n)
	}
}

// world is a generated history of committee reports.
type world struct {
	nodes   int
	epochs  int64
	credits map[[2]int64][]float64 // (node, epoch) -> credit per honest verifier; absent: not scored
}

func (w world) reports(t *rapid.T, liar int, lie float64) []*Report {
	var out []*Report
	for n := range w.nodes {
		for e := int64(1); e <= w.epochs; e++ {
			cs, ok := w.credits[[2]int64{int64(n), e}]
			if !ok {
				continue
			}
			for v, c := range cs {
				out = append(out, report(t, v, nodeBase+n, e, c))
			}
			if liar >= 0 {
				out = append(out, report(t, liar, nodeBase+n, e, lie))
			}
		}
	}
	return out
}

// drawWorld: 1..4 nodes over 1..12 epochs, 3 honest verifiers; credit
// draws one value per node and epoch, spread adds per-verifier noise.
func drawWorld(t *rapid.T, credit func(t *rapid.T, node int) float64, spread float64) world {
	w := world{nodes: rapid.IntRange(1, 4).Draw(t, "nodes"), epochs: int64(rapid.IntRange(1, 12).Draw(t, "epochs")),
		credits: map[[2]int64][]float64{}}
	for n := range w.nodes {
		for e := int64(1); e <= w.epochs; e++ {
			if rapid.IntRange(0, 5).Draw(t, "skip") == 0 {
				continue // an epoch where the node was not verified
			}
			c := credit(t, n)
			cs := make([]float64, 3)
			for v := range cs {
				cs[v] = min(max(c+rapid.Float64Range(-spread, spread).Draw(t, "noise"), 0), 1)
			}
			w.credits[[2]int64{int64(n), e}] = cs
		}
	}
	return w
}

func histories(t tb, rs []*Report, verifiers []string, nodes int) []History {
	b := newTestBook(t, Params{}, verifiers)
	for _, r := range rs {
		if _, err := b.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	var out []History
	for n := range nodes {
		_, id := testKey(t, nodeBase+n)
		out = append(out, b.History(id, 999))
	}
	return out
}

func statuses(hs []History) string {
	var sb strings.Builder
	for _, h := range hs {
		for _, p := range h.Points {
			fmt.Fprintf(&sb, "%d:%v ", p.Epoch, p.Reputation >= 0.2)
		}
		sb.WriteString("| ")
	}
	return sb.String()
}

// TestLyingVerifierChangesNothing: one verifier that always reports 0 (or
// always 1) beside three honest ones that agree leaves every node's
// reputation exactly as the honest three alone make it.
func TestLyingVerifierChangesNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, func(t *rapid.T, _ int) float64 { return rapid.Float64Range(0, 1).Draw(t, "credit") }, 0)
		lie := rapid.SampledFrom([]float64{0, 1}).Draw(t, "lie")
		honest := histories(t, w.reports(t, -1, 0), committee(t, 0, 1, 2), w.nodes)
		withLiar := histories(t, w.reports(t, 3, lie), committee(t, 0, 1, 2, 3), w.nodes)
		for i := range honest {
			a, b := honest[i], withLiar[i]
			if len(a.Points) != len(b.Points) || a.Current != b.Current || a.Trusted != b.Trusted {
				t.Fatalf("node %d: honest committee %+v, with a liar reporting %v: %+v", i, a, lie, b)
			}
		}
	})
}

// TestLyingVerifierWithNoise: when the honest verifiers disagree a little
// (±0.05) about nodes that are clearly honest (credit >= 0.85) or clearly
// cheating (<= 0.15), a liar moves the median only within the honest
// reports and no node's trusted status changes at any epoch.
func TestLyingVerifierWithNoise(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cheat := rapid.SliceOfN(rapid.Bool(), 4, 4).Draw(t, "cheaters")
		w := drawWorld(t, func(t *rapid.T, n int) float64 {
			if cheat[n] {
				return rapid.Float64Range(0.05, 0.1).Draw(t, "credit")
			}
			return rapid.Float64Range(0.9, 0.95).Draw(t, "credit")
		}, 0.05)
		lie := rapid.SampledFrom([]float64{0, 1}).Draw(t, "lie")
		honest := statuses(histories(t, w.reports(t, -1, 0), committee(t, 0, 1, 2), w.nodes))
		withLiar := statuses(histories(t, w.reports(t, 3, lie), committee(t, 0, 1, 2, 3), w.nodes))
		if honest != withLiar {
			t.Fatalf("trusted per epoch, honest committee: %s\nwith a liar reporting %v:        %s", honest, lie, withLiar)
		}
	})
}

// TestAddOrderDoesNotMatter: the same reports (an equivocation among them
// sometimes) added in any order give the same histories and the same Since.
func TestAddOrderDoesNotMatter(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, func(t *rapid.T, _ int) float64 { return rapid.Float64Range(0, 1).Draw(t, "credit") }, 0.3)
		rs := w.reports(t, 3, rapid.Float64Range(0, 1).Draw(t, "liar credit"))
		if rapid.Bool().Draw(t, "equivocate") && len(rs) > 0 {
			r := *rs[rapid.IntRange(0, len(rs)-1).Draw(t, "which")]
			r.Credit = 1 - r.Credit + 0.001
			r.Credit = min(r.Credit, 1)
			for k := range 4 {
				if _, id := testKey(t, k); id == r.Verifier {
					if err := r.Sign(keys[k]); err != nil {
						t.Fatal(err)
					}
				}
			}
			rs = append(rs, &r)
		}
		perm := rapid.Permutation(rs).Draw(t, "order")
		vs := committee(t, 0, 1, 2, 3)
		a, b := newTestBook(t, Params{}, vs), newTestBook(t, Params{}, vs)
		for _, r := range rs {
			a.Add(r)
		}
		for _, r := range perm {
			b.Add(r)
		}
		for n := range w.nodes {
			_, id := testKey(t, nodeBase+n)
			if ha, hb := a.History(id, 999), b.History(id, 999); !reflect.DeepEqual(ha, hb) {
				t.Fatalf("node %d:\n%+v\n%+v", n, ha, hb)
			}
		}
		if sa, sb := EncodeReports(a.Since(0)), EncodeReports(b.Since(0)); string(sa) != string(sb) {
			t.Fatal("Since differs")
		}
	})
}

// TestHonestNodeNeverFlagged: credits >= 0.9 from a quorum every epoch
// keep a node trusted at every epoch, with no reason given.
func TestHonestNodeNeverFlagged(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, func(t *rapid.T, _ int) float64 { return rapid.Float64Range(0.9, 1).Draw(t, "credit") }, 0)
		for _, h := range histories(t, w.reports(t, -1, 0), committee(t, 0, 1, 2), w.nodes) {
			for _, p := range h.Points {
				if p.Reputation < 0.2 || p.Beta != 0.6 || p.Abnormal != 0 {
					t.Fatalf("honest node at epoch %d: %+v", p.Epoch, p)
				}
			}
			if !h.Trusted || h.Reason != "" {
				t.Fatalf("honest node flagged: %+v", h)
			}
		}
	})
}

// TestCheatingNodeFlagged: a node scored <= 0.1 is untrusted from its
// fifth scored epoch on (in fact from its second), starting at Initial.
func TestCheatingNodeFlagged(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, func(t *rapid.T, _ int) float64 { return rapid.Float64Range(0, 0.1).Draw(t, "credit") }, 0)
		for _, h := range histories(t, w.reports(t, -1, 0), committee(t, 0, 1, 2), w.nodes) {
			for i, p := range h.Points {
				if i >= 1 && p.Reputation >= 0.2 {
					t.Fatalf("cheating node still trusted at its scored epoch %d: %+v", i+1, h.Points)
				}
			}
			if len(h.Points) >= 2 && (h.Trusted || h.Reason == "") {
				t.Fatalf("cheating node: %+v", h)
			}
		}
	})
}

func TestPerVerifierBound(t *testing.T) {
	saved := perVerifierCap
	perVerifierCap = 40
	defer func() { perVerifierCap = saved }()
	b := newTestBook(t, Params{}, committee(t, 0, 1))
	b.SetNow(func() time.Time { return b.Params().EpochStart(1 << 20) })
	k, _ := testKey(t, 0)
	_, node := testKey(t, nodeBase)
	r := Report{Version: ReportVersion, Community: community, Node: node, Model: "m", Credit: 1, Challenges: 1}
	for e := range int64(perVerifierCap) {
		r.Epoch = e
		c := r
		if err := c.Sign(k); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Add(&c); err != nil {
			t.Fatal(err)
		}
	}
	r.Epoch = 1 << 19
	if err := r.Sign(k); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(&r); !errors.Is(err, ErrBookFull) {
		t.Fatalf("report %d of one verifier: %v", perVerifierCap+1, err)
	}
	if added, err := b.Add(report(t, 1, nodeBase, 999, 1)); !added || err != nil {
		t.Fatalf("another verifier's report: %v %v", added, err)
	}
	b.Prune(10)
	if _, err := b.Add(&r); err != nil {
		t.Fatalf("after Prune: %v", err)
	}
}

// TestQuorumLeavesOutTheNodeItself: a committee member is judged by the
// others only. With four members, two reports on a member are a quorum of
// the three who can judge it, and the member's own glowing report on
// itself is ignored.
func TestQuorumLeavesOutTheNodeItself(t *testing.T) {
	b := newTestBook(t, DefaultParams(), committee(t, 0, 1, 2, 3))
	_, target := testKey(t, 0)
	for _, v := range []int{1, 2} {
		if _, err := b.Add(report(t, v, 0, 999, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Add(report(t, 0, 0, 999, 1)); err != nil { // self-praise
		t.Fatal(err)
	}
	h := b.History(target, 999)
	if len(h.Points) != 1 || h.Points[0].Verifiers != 2 || h.Points[0].Credit != 0 {
		t.Fatalf("history %+v: want one scored epoch from the two others, credit 0", h)
	}
	// One report of the three who can judge is no quorum.
	_, other := testKey(t, 5)
	b2 := newTestBook(t, DefaultParams(), committee(t, 0, 1, 2, 3))
	b2.Add(report(t, 1, 5, 999, 0))
	b2.Add(report(t, 2, 5, 999, 0))
	if h := b2.History(other, 999); len(h.Points) != 0 {
		t.Fatalf("two of four members scored a non-member: %+v", h)
	}
}
