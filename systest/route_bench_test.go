package systest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/univrs/hypha/internal/systest"
	"github.com/univrs/hypha/internal/workload"
)

// TestRouteBenchNetns is the must-show of issue 5: HR-tree routing vs
// round-robin vs least-loaded between real appliances in network
// namespaces, in one run. Three meshes of three appliances (one mesh per
// policy, hyphad -route POLICY; fresh engines and caches for each), each
// box a hyphad and an inferd (1 thread, KV cache bound to 1280 tokens)
// serving a generated model whose prompt processing dominates. The same
// Zipf workload runs on every mesh, in rounds of `clients` concurrent
// conversations, each round on every mesh in turn with the order
// rotating, so the meshes share the machine's load swings without
// competing. Conversation i enters at box i mod 3's gateway (every box
// serves its own users); HYPHA_BENCH_ENTRY=first sends everything to box
// 0's. Run with HYPHA_BENCH=1 (make bench-route-netns).
func TestRouteBenchNetns(t *testing.T) {
	if os.Getenv("HYPHA_BENCH") == "" {
		t.Skip("benchmark: set HYPHA_BENCH=1 (make bench-route-netns)")
	}
	const (
		model                              = "bench-llama"
		nodes, systems, clients, maxTokens = 3, 5, 3, 4
		kvBytes                            = 5 << 20 // 4 KiB per token: 1280 tokens per node, 3-4 conversations
	)
	convs := envInt("HYPHA_BENCH_CONVERSATIONS", 30)
	entryAll := os.Getenv("HYPHA_BENCH_ENTRY") != "first"
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	work := workload.Make(workload.Spec{Systems: systems, Conversations: convs, Seed: 2026})
	policies := []string{"hr-tree", "round-robin", "least-loaded"}

	type mesh struct {
		nw    *systest.Net
		boxes []*systest.Box
	}
	meshes := make([]mesh, len(policies))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var setupErr []string
	t0 := time.Now()
	for k, p := range policies {
		// each mesh on its own LAN: namespaces hyr<letter><pid>-n<i>
		nw := systest.NewNet(t, "hyr"+string(rune('a'+k)), nodes)
		boxes := nw.Boxes(t, "oak", "ash", "elm")
		nw.NewCommunity(t, boxes, nil)
		for _, b := range boxes {
			b.WriteModelSpec(t, model, systest.BenchModelSpec(11))
			nw.Start(t, b, systest.BoxOptions{Engine: true, InferdArgs: []string{"-kv-bytes", strconv.Itoa(kvBytes)},
				HyphadArgs: []string{"-route", p}})
		}
		meshes[k] = mesh{nw, boxes}
	}
	for _, m := range meshes {
		for i := range m.boxes {
			waitServing(t, ctx, m.nw, i, nodes, model, 3*time.Minute)
		}
	}
	// the model loads on first use: load it everywhere first so load
	// time is not measured
	for k, m := range meshes {
		for i := range m.boxes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := workload.Chat(ctx, m.nw.Client(i), inferdURL, model,
					[]workload.Message{{Role: "user", Content: "warm up"}}, 1, true); err != nil {
					mu.Lock()
					setupErr = append(setupErr, fmt.Sprintf("%s box %d: warm up: %v", policies[k], i, err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(setupErr) > 0 {
		t.Fatal(strings.Join(setupErr, "\n"))
	}
	t.Logf("3 meshes of %d appliances up and warm in %v", nodes, time.Since(t0).Round(time.Second))

	samples := make([][]workload.Sample, len(policies))
	errs := make([]int, len(policies))
	walls := make([]time.Duration, len(policies))
	deadline := time.Now().Add(30 * time.Minute)
	for round := 0; round*clients < len(work); round++ {
		batch := work[round*clients : min(len(work), (round+1)*clients)]
		for j := range policies {
			k := (round + j) % len(policies)
			m := meshes[k]
			start := time.Now()
			s, e := workload.Run(ctx, batch, round*clients, workload.Options{Model: model, Clients: clients, MaxTokens: maxTokens, Deadline: deadline,
				Target: func(conv int) (*http.Client, string) {
					if !entryAll {
						return m.nw.Client(0), gatewayURL
					}
					return m.nw.Client(conv % nodes), gatewayURL
				},
				Failed: func(conv, turn int, err error) {
					t.Logf("%s: conversation %d turn %d: %v", policies[k], conv, turn, err)
				}})
			walls[k] += time.Since(start)
			samples[k] = append(samples[k], s...)
			errs[k] += e
		}
	}

	var b strings.Builder
	entry := "every box's gateway (conversation i at box i mod 3)"
	if !entryAll {
		entry = "box 0's gateway"
	}
	fmt.Fprintf(&b, "network namespaces: 3 meshes (one per policy) of %d appliances (hyphad + inferd, 1 thread, KV %d MiB = %d tokens each)\n",
		nodes, kvBytes>>20, kvBytes/4096)
	fmt.Fprintf(&b, "workload: %d system prompts (~300 tokens, Zipf s=1.1), %d conversations of 2-3 turns, rounds of %d concurrent, %d output tokens, streamed, entering at %s\n",
		systems, convs, clients, maxTokens, entry)
	fmt.Fprintf(&b, "%-13s %8s %11s %9s %12s %9s %9s %7s  %s\n", "policy", "requests", "median TTFT", "p90 TTFT",
		"median total", "p90 total", "mean total", "wall", "decisions (all gateways)")
	stats := make([]workload.Stats, len(policies))
	for k, p := range policies {
		st := workload.Summarize(samples[k])
		stats[k] = st
		reasons := map[string]int{}
		for i := range meshes[k].boxes {
			v, err := getRoute(ctx, meshes[k].nw, i)
			if err != nil {
				t.Errorf("%s box %d: decisions: %v", p, i, err)
				continue
			}
			for _, d := range v.Decisions {
				reasons[d.Reason]++
			}
		}
		ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		fmt.Fprintf(&b, "%-13s %8d %11s %9s %12s %9s %9s %7s  %s (errors %d)\n", p, st.N, ms(st.MedianTTFT), ms(st.P90TTFT),
			ms(st.MedianTotal), ms(st.P90Total), ms(st.MeanTotal), walls[k].Round(time.Second), countList(reasons), errs[k])
	}
	// where the time goes: first turns (system prompt cached somewhere
	// at best) and later turns (the conversation so far cached on the
	// node that served it, if the request goes there)
	for k, p := range policies {
		var first, later []workload.Sample
		for _, x := range samples[k] {
			if x.Turn == 0 {
				first = append(first, x)
			} else {
				later = append(later, x)
			}
		}
		f, l := workload.Summarize(first), workload.Summarize(later)
		fmt.Fprintf(&b, "%-13s median TTFT of first turns %v (%d), of later turns %v (%d)\n", p,
			f.MedianTTFT.Round(time.Millisecond), f.N, l.MedianTTFT.Round(time.Millisecond), l.N)
	}
	ratio := func(name string, f func(workload.Stats) time.Duration) {
		h, rr, ll := f(stats[0]), f(stats[1]), f(stats[2])
		if rr <= 0 || ll <= 0 {
			return
		}
		fmt.Fprintf(&b, "%-12s hr-tree / round-robin = %.2f (%.0f%% lower), hr-tree / least-loaded = %.2f (%.0f%% lower)\n", name+":",
			float64(h)/float64(rr), 100*(1-float64(h)/float64(rr)), float64(h)/float64(ll), 100*(1-float64(h)/float64(ll)))
	}
	ratio("median TTFT", func(s workload.Stats) time.Duration { return s.MedianTTFT })
	ratio("p90 TTFT", func(s workload.Stats) time.Duration { return s.P90TTFT })
	ratio("median total", func(s workload.Stats) time.Duration { return s.MedianTotal })
	ratio("p90 total", func(s workload.Stats) time.Duration { return s.P90Total })
	fmt.Print(b.String())
	for k, p := range policies {
		if errs[k] > 0 {
			t.Errorf("%s: %d requests failed", p, errs[k])
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// countList prints counts sorted by key: "least-loaded:8 prefix:7".
func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
