package systest

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	cloveBench = flag.Bool("clove.bench", false, "run TestCloveLatencyNetns (make bench-clove-netns)")
	cloveReqs  = flag.Int("clove.requests", 30, "requests of each kind per setting in TestCloveLatencyNetns")
	cloveNKL   = flag.String("clove.nkl", "4,2,2;5,3,3", "clove settings n,k,L to measure, separated by ';' (n·L+2 boxes each)")
	cloveToks  = flag.String("clove.tokens", "1,32", "max_tokens values to measure, comma separated")
)

// TestCloveLatencyNetns measures the latency of an anonymous chat
// completion against a direct one through the same gateway (the asker's)
// to the same serving box, with real appliances in network namespaces:
// for each (n, k, L) a fresh LAN of n·L+2 boxes, then for each max_tokens
// value the requests alternate direct / anonymous so both see the same
// machine load. It reports the median and p90 of each and their ratios.
// Run with make bench-clove-netns; skipped otherwise.
func TestCloveLatencyNetns(t *testing.T) {
	if !*cloveBench {
		t.Skip("a benchmark: make bench-clove-netns (go test -run TestCloveLatencyNetns ./systest -args -clove.bench)")
	}
	var toks []int
	for _, f := range strings.Split(*cloveToks, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			t.Fatalf("-clove.tokens %q: %q is not a positive count", *cloveToks, f)
		}
		toks = append(toks, v)
	}
	var report []string
	for _, set := range strings.Split(*cloveNKL, ";") {
		var n, k, L int
		if _, err := fmt.Sscanf(strings.TrimSpace(set), "%d,%d,%d", &n, &k, &L); err != nil {
			t.Fatalf("-clove.nkl %q: %q is not n,k,L: %v", *cloveNKL, set, err)
		}
		t.Run(fmt.Sprintf("n%d_k%d_L%d", n, k, L), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			l := startCloveLAN(t, ctx, n, k, L)
			for _, mt := range toks {
				// Warm up: the engine's model load, connections, caches.
				for i := range 3 {
					for _, anon := range []bool{false, true} {
						if r := l.ask(ctx, cloveAsker, fmt.Sprintf("warm up %d", i), mt, anon); !r.ok() {
							t.Fatalf("warm-up request (anonymous %v): %v", anon, r)
						}
					}
				}
				var direct, anon, added []time.Duration
				failed := map[bool]int{}
				for i := range *cloveReqs {
					prompt := fmt.Sprintf("Question %d: how is the weather in the valley?", i)
					pair := map[bool]time.Duration{}
					for _, a := range []bool{i%2 == 0, i%2 != 0} { // alternate which goes first
						r := l.ask(ctx, cloveAsker, prompt, mt, a)
						if !r.ok() {
							t.Logf("request %d (anonymous %v) failed: %v", i, a, r)
							failed[a]++
							continue
						}
						pair[a] = r.end.Sub(r.start)
						if a {
							anon = append(anon, pair[a])
						} else {
							direct = append(direct, pair[a])
						}
					}
					if len(pair) == 2 { // same prompt, same answer, back to back
						added = append(added, pair[true]-pair[false])
					}
				}
				if len(direct) < *cloveReqs/2 || len(anon) < *cloveReqs/2 {
					t.Fatalf("too many failures: %d direct, %d anonymous of %d", failed[false], failed[true], *cloveReqs)
				}
				dm, dp := cloveQuantiles(direct)
				am, ap := cloveQuantiles(anon)
				pm, _ := cloveQuantiles(added)
				line := fmt.Sprintf("| %d,%d,%d | %d | %d | %s | %s | %s | %s | %.2f | %.2f | %s | %d / %d |", n, k, L, n*L+2, mt,
					cloveMS(dm), cloveMS(dp), cloveMS(am), cloveMS(ap), float64(am)/float64(dm), float64(ap)/float64(dp), cloveMS(pm),
					failed[false], failed[true])
				t.Log(line)
				report = append(report, line)
			}
		})
	}
	t.Logf("%d requests of each kind per row, alternating; times from the asker's namespace, whole HTTP round trip;\n"+
		"added = median over pairs (same prompt back to back) of anonymous minus direct\n"+
		"| n,k,L | boxes | max_tokens | direct median | direct p90 | anonymous median | anonymous p90 | x median | x p90 | added (median of pairs) | failed direct / anonymous |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|\n%s", *cloveReqs, strings.Join(report, "\n"))
}

// cloveQuantiles returns the median and the 90th percentile (nearest rank).
func cloveQuantiles(d []time.Duration) (median, p90 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.5), rank(0.9)
}

func cloveMS(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
