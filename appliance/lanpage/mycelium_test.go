package lanpage

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func wellFormedSVG(t testing.TB, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("mesh SVG not well-formed: %v\n%.300s", err, s)
		}
	}
}

func TestMycelium(t *testing.T) {
	self := NodeInfo{Name: "riverbend-1", PeerID: "self"}
	m := Mesh{Peers: []Peer{
		{ID: "a", Name: "mill-gpu", State: PeerUp, RTT: 3 * time.Millisecond},
		{ID: "b", Name: "school-pi", State: PeerDegraded},
		{ID: "c", Name: "orchard-pi", State: PeerDown},
	}}
	svg := string(renderMycelium(self, m))
	wellFormedSVG(t, svg)
	// Without links, one thread per peer that is not down.
	if n := strings.Count(svg, `<g class="myc-link`); n != 2 {
		t.Errorf("%d threads, want 2 (down peers get none)", n)
	}
	for _, want := range []string{`role="img"`, "3 other nodes, 2 reachable, 1 down", "Thread riverbend-1 to mill-gpu: up, idle", "myc-self", "myc-down"} {
		if !strings.Contains(svg, want) {
			t.Errorf("mesh SVG lacks %q", want)
		}
	}
	// Credit flowing To→From reverses the pulse and says so.
	m.Links = []Link{{From: "self", To: "a", State: PeerUp, TrafficBps: 2e6, CreditRate: -4}}
	svg = string(renderMycelium(self, m))
	if !strings.Contains(svg, "credit mill-gpu→riverbend-1 4.0 per hour") || !strings.Contains(svg, "myc-credit") || !strings.Contains(svg, "2.0 MB/s") {
		t.Errorf("credit flow not drawn/described:\n%.2000s", svg)
	}
	// Stable between refreshes (the live update replaces it only on change).
	if a, b := renderMycelium(self, m), renderMycelium(self, m); a != b {
		t.Error("the picture is not deterministic")
	}
}

// FuzzMycelium: peer names and IDs come from mesh announcements of other
// boxes; whatever they say must end up escaped in a well-formed picture.
func FuzzMycelium(f *testing.F) {
	f.Add("mill-gpu\x00a\nschool-pi\x00b", uint8(3), 1.5e6, -2.0)
	f.Add("<script>alert(1)</script>\x00\"'&\n\x00\n", uint8(0), 0.0, 0.0)
	f.Add(strings.Repeat("n\x00i\n", 40), uint8(7), 1e12, 1e9)
	f.Fuzz(func(t *testing.T, spec string, states uint8, traffic, credit float64) {
		var m Mesh
		for i, line := range strings.Split(spec, "\n") {
			if i >= 64 {
				break
			}
			name, id, _ := strings.Cut(line, "\x00")
			st := []PeerState{PeerUp, PeerDegraded, PeerDown, "weird\"state"}[(int(states)+i)%4]
			m.Peers = append(m.Peers, Peer{ID: id, Name: name, State: st, Load: traffic})
			m.Links = append(m.Links, Link{From: "self", To: id, State: st, TrafficBps: traffic, CreditRate: credit})
		}
		svg := string(renderMycelium(NodeInfo{Name: "self<name>", PeerID: "self"}, m))
		wellFormedSVG(t, svg)
		if strings.Contains(svg, "<script") {
			t.Fatal("unescaped markup from a peer name")
		}
	})
}

func BenchmarkMycelium(b *testing.B) {
	for _, n := range []int{5, 20, 60} {
		var m Mesh
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("12D3KooWpeer%04d", i)
			m.Peers = append(m.Peers, Peer{ID: id, Name: fmt.Sprintf("node-%d", i), State: PeerUp, Load: 0.3})
			m.Links = append(m.Links, Link{From: "self", To: id, State: PeerUp, TrafficBps: float64(i) * 1e4, CreditRate: 1})
		}
		b.Run(fmt.Sprintf("%d_peers", n), func(b *testing.B) {
			var size int
			for b.Loop() {
				size = len(renderMycelium(NodeInfo{Name: "self", PeerID: "self"}, m))
			}
			b.ReportMetric(float64(size), "svg-bytes")
		})
	}
}
