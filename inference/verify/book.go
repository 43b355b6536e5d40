package verify

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/univrs/hypha/inference/route"
)

// Bounds of a Book: all reports, and the reports of any one verifier (so a
// committee member flooding reports cannot crowd out the others'). Add fails
// with ErrBookFull beyond them until Prune makes room.
const (
	MaxBookReports        = 1 << 20
	MaxReportsPerVerifier = 1 << 16
)

// perVerifierCap is MaxReportsPerVerifier; tests lower it.
var perVerifierCap = MaxReportsPerVerifier

// Point is a node's standing after one scored epoch.
type Point struct {
	Epoch      int64
	Credit     float64 // median credit across the committee's reports
	Verifiers  int     // reports the median was taken over
	Reputation float64 // R(T)
	Beta       float64 // β used for this epoch (below Params.Beta: punished)
	Abnormal   int     // abnormal epochs in the window ending here
}

// History is a node's reputation over time.
type History struct {
	Node    string
	Points  []Point // scored epochs, oldest first
	Current float64 // the last point's reputation, or Params.Initial
	Trusted bool    // Current >= Params.Threshold
	// Reason says, for people, why the node is not trusted ("" when it is).
	Reason string
	// Notes name the verifiers whose reports are ignored, and why.
	Notes []string
}

// Book holds the committee's reports and computes every node's reputation
// from them. The computation is a pure function of the reports held, the
// committee and the parameters: nodes holding the same reports compute the
// same numbers whatever order the reports arrived in.
//
// The rules, per node: R starts at Initial. An epoch is scored when more
// than half of the committee members other than the node itself reported
// on the node for it (a member's reports on itself never count; a quorum, so a
// minority of lying verifiers can neither score an epoch alone nor, when
// the honest members agree, move its median); other epochs are skipped,
// not counted as zero (an unreachable node is a routing matter). C(T) is
// the median of the reports (the mean of the middle two for an even
// count); the epoch is abnormal when C(T) < Abnormal. With c abnormal
// epochs among the last Window scored ones (|W| of them), β = Beta, or
// (Window+1)/(Window + c/Gamma + 2) when c/|W| > Gamma; R(T) = Alpha·R(T−1)
// + β·C(T) clamped to [0,1]; the node is trusted while R >= Threshold.
//
// A Book is safe for concurrent use.
type Book struct {
	p         Params
	community string

	mu        sync.Mutex // guards everything below
	now       func() time.Time
	verifiers map[string]bool
	reports   map[key]*Report
	byNode    map[string]map[int64][]*Report // node -> epoch -> reports
	perV      map[string]int                 // verifier -> reports held
	liars     map[string][2]*Report          // equivocating verifier -> the two conflicting reports
	gen       uint64                         // bumped on every change
	memo      map[string]memoEntry           // node -> last Reputation computation
	memoGen   uint64
	memoUpTo  int64 // the upTo epoch memo entries were computed for
}

type memoEntry struct{ rep float64 }

// NewBook returns an empty book for community's reports, with verifiers
// (peer ID strings) as the committee. Zero fields of p take their defaults.
func NewBook(p Params, community string, verifiers []string) *Book {
	b := &Book{p: p.withDefaults(), community: community, now: time.Now,
		reports: map[key]*Report{}, byNode: map[string]map[int64][]*Report{}, perV: map[string]int{},
		liars: map[string][2]*Report{}, memo: map[string]memoEntry{}}
	b.SetVerifiers(verifiers)
	return b
}

// Params are the book's parameters (defaults filled in).
func (b *Book) Params() Params { return b.p }

// SetNow replaces the clock (default time.Now); for tests and simulations.
func (b *Book) SetNow(now func() time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = now
	b.gen++
}

// SetVerifiers replaces the committee. Reports by peers outside it are
// ignored in every computation (and refused by Add) from then on.
func (b *Book) SetVerifiers(v []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.verifiers = map[string]bool{}
	for _, id := range v {
		b.verifiers[id] = true
	}
	b.gen++
}

// Add checks r and adds it. It refuses (with the error saying why) a bad
// signature or field, another community, a verifier outside the committee
// and an epoch that has not started (beyond the current epoch + 1, to
// allow for clock skew). A report already held gives added == false and no
// error. A different report by the same verifier for the same node and
// epoch is equivocation: Add returns ErrEquivocation and from then on all
// the verifier's reports are ignored (Since keeps serving the two
// conflicting reports so every node learns it). Reports of a known
// equivocator give added == false and no error.
func (b *Book) Add(r *Report) (added bool, err error) {
	if r == nil {
		return false, fmt.Errorf("add report: nil: %w", ErrMalformed)
	}
	if err := r.Check(); err != nil {
		return false, fmt.Errorf("add %w", err)
	}
	if r.Community != b.community {
		return false, fmt.Errorf("add report by %s: community %q, this is %q: %w", r.Verifier, r.Community, b.community, ErrWrongCommunity)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.verifiers[r.Verifier] {
		return false, fmt.Errorf("add report: %s: %w", r.Verifier, ErrNotCommittee)
	}
	if now := b.p.EpochOf(b.now()); r.Epoch > now+1 {
		return false, fmt.Errorf("add report by %s: epoch %d, current epoch is %d: %w", r.Verifier, r.Epoch, now, ErrFuture)
	}
	if _, ok := b.liars[r.Verifier]; ok {
		return false, nil
	}
	k := r.key()
	if old, ok := b.reports[k]; ok {
		if same(old, r) {
			return false, nil
		}
		b.markLiarLocked(old, r)
		return false, fmt.Errorf("add report by %s on %s epoch %d: it signed a different report for the same node and epoch (credit %.3f vs %.3f); its reports are ignored from now on: %w",
			r.Verifier, r.Node, r.Epoch, old.Credit, r.Credit, ErrEquivocation)
	}
	if len(b.reports) >= MaxBookReports {
		return false, fmt.Errorf("add report: %d reports held: %w", len(b.reports), ErrBookFull)
	}
	if b.perV[r.Verifier] >= perVerifierCap {
		return false, fmt.Errorf("add report: %d reports by %s held: %w", b.perV[r.Verifier], r.Verifier, ErrBookFull)
	}
	b.perV[r.Verifier]++
	b.reports[k] = r
	ep := b.byNode[r.Node]
	if ep == nil {
		ep = map[int64][]*Report{}
		b.byNode[r.Node] = ep
	}
	ep[r.Epoch] = append(ep[r.Epoch], r)
	b.gen++
	return true, nil
}

// markLiarLocked records the proof of equivocation and drops the verifier's
// other reports.
func (b *Book) markLiarLocked(a, c *Report) {
	// order the pair canonically so every node serves the same proof
	if string(c.signedBytes()) < string(a.signedBytes()) {
		a, c = c, a
	}
	b.liars[a.Verifier] = [2]*Report{a, c}
	for k, r := range b.reports {
		if k.verifier == a.Verifier {
			b.removeLocked(r)
		}
	}
	b.gen++
}

func (b *Book) removeLocked(r *Report) {
	delete(b.reports, r.key())
	if b.perV[r.Verifier]--; b.perV[r.Verifier] <= 0 {
		delete(b.perV, r.Verifier)
	}
	ep := b.byNode[r.Node]
	rs := slices.DeleteFunc(ep[r.Epoch], func(x *Report) bool { return x == r })
	if len(rs) == 0 {
		delete(ep, r.Epoch)
	} else {
		ep[r.Epoch] = rs
	}
	if len(ep) == 0 {
		delete(b.byNode, r.Node)
	}
}

// Since returns the reports of epochs >= epoch, plus every proof of
// equivocation, ordered by epoch, node and verifier (for anti-entropy sync;
// split into batches of MaxBatch for EncodeReports).
func (b *Book) Since(epoch int64) []*Report {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*Report
	for _, r := range b.reports {
		if r.Epoch >= epoch {
			out = append(out, r)
		}
	}
	for _, pair := range b.liars {
		out = append(out, pair[0], pair[1])
	}
	slices.SortFunc(out, func(x, y *Report) int {
		return cmp.Or(cmp.Compare(x.Epoch, y.Epoch), strings.Compare(x.Node, y.Node),
			strings.Compare(x.Verifier, y.Verifier), strings.Compare(string(x.signedBytes()), string(y.signedBytes())))
	})
	return out
}

// Nodes returns the nodes that have reports, sorted.
func (b *Book) Nodes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.byNode))
	for n := range b.byNode {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Prune drops the reports of epochs before before (proofs of equivocation
// are kept). Reputation is computed from the reports held, so prune only
// epochs old enough not to matter: after k scored epochs the weight of
// older ones is at most α^k.
func (b *Book) Prune(before int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, r := range b.reports {
		if k.epoch < before {
			b.removeLocked(r)
		}
	}
	b.gen++
}

// Reputation is node's reputation after the last finished epoch (reports
// of the current epoch are still arriving and do not count yet); Initial
// for a node without reports. It implements route.Reputation.
func (b *Book) Reputation(node route.NodeID) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	upTo := b.p.EpochOf(b.now()) - 1
	if b.memoGen != b.gen || b.memoUpTo != upTo {
		clear(b.memo)
		b.memoGen, b.memoUpTo = b.gen, upTo
	}
	if m, ok := b.memo[string(node)]; ok {
		return m.rep
	}
	rep := b.historyLocked(string(node), upTo).Current
	b.memo[string(node)] = memoEntry{rep}
	return rep
}

// Trusted reports whether node's Reputation is at least the threshold.
func (b *Book) Trusted(node route.NodeID) bool { return b.Reputation(node) >= b.p.Threshold }

// History computes node's reputation over the epochs <= upTo.
func (b *Book) History(node string, upTo int64) History {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.historyLocked(node, upTo)
}

func (b *Book) historyLocked(node string, upTo int64) History {
	p := b.p
	h := History{Node: node, Current: p.Initial}
	liars := make([]string, 0, len(b.liars))
	for v := range b.liars {
		liars = append(liars, v)
	}
	sort.Strings(liars)
	for _, v := range liars {
		pr := b.liars[v]
		h.Notes = append(h.Notes, fmt.Sprintf("verifier %s is ignored: it signed two different reports on %s for epoch %d", v, pr[0].Node, pr[0].Epoch))
	}
	ep := b.byNode[node]
	epochs := make([]int64, 0, len(ep))
	for e := range ep {
		if e <= upTo {
			epochs = append(epochs, e)
		}
	}
	slices.Sort(epochs)
	var flags []bool // abnormal per scored epoch
	credits := make([]float64, 0, len(b.verifiers))
	// A committee member does not judge itself: the members who can report
	// on node are the others.
	eligible := len(b.verifiers)
	if b.verifiers[node] {
		eligible--
	}
	for _, e := range epochs {
		credits = credits[:0]
		for _, r := range ep[e] {
			if b.verifiers[r.Verifier] && r.Verifier != node {
				credits = append(credits, r.Credit)
			}
		}
		if 2*len(credits) <= eligible {
			continue // no quorum: a minority of the committee alone cannot score an epoch
		}
		c := median(credits)
		flags = append(flags, c < p.Abnormal)
		win := flags[max(0, len(flags)-p.Window):]
		abn := 0
		for _, f := range win {
			if f {
				abn++
			}
		}
		beta := p.Beta
		if float64(abn)/float64(len(win)) > p.Gamma {
			beta = float64(p.Window+1) / (float64(p.Window) + float64(abn)/p.Gamma + 2)
		}
		h.Current = min(max(p.Alpha*h.Current+beta*c, 0), 1)
		h.Points = append(h.Points, Point{Epoch: e, Credit: c, Verifiers: len(credits), Reputation: h.Current, Beta: beta, Abnormal: abn})
	}
	h.Trusted = h.Current >= p.Threshold
	if !h.Trusted {
		if n := len(h.Points); n > 0 {
			last := h.Points[n-1]
			h.Reason = fmt.Sprintf("reputation %.2f is below the threshold %.2f: %d of the last %d epochs scored below %.2f (last: median credit %.2f from %d verifiers)",
				h.Current, p.Threshold, last.Abnormal, min(n, p.Window), p.Abnormal, last.Credit, last.Verifiers)
		} else {
			h.Reason = fmt.Sprintf("initial reputation %.2f is below the threshold %.2f", h.Current, p.Threshold)
		}
	}
	return h
}

// median of xs (sorted in place); the mean of the two middle values for an
// even count.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
