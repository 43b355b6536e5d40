package lanpage

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"html"
	"html/template"
	"math"
	"sort"
	"strings"
)

// The mesh drawn as a mycelial network: nodes are glowing fruiting points,
// links are hyphal threads whose width and glow follow traffic, with a moving
// pulse in the direction credit flows. Positions and the small side branches
// are derived from peer IDs, so the picture is stable between refreshes.

type myNode struct {
	id, name string
	state    PeerState
	self     bool
	load     float64
	x, y     float64
	roles    []string
}

const myW, myH = 800.0, 540.0

// unit returns a deterministic number in [0,1) from s and salt.
func unit(s string, salt int) float64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	h.Write([]byte{'#', byte(salt), byte(salt >> 8), byte(salt >> 16), byte(salt >> 24)})
	return float64(h.Sum64()%10000) / 10000
}

func renderMycelium(self NodeInfo, m Mesh) template.HTML {
	nodes := []*myNode{{id: self.PeerID, name: self.Name, state: PeerUp, self: true, x: myW / 2, y: myH / 2, roles: self.Roles}}
	peers := append([]Peer(nil), m.Peers...)
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	byID := map[string]*myNode{self.PeerID: nodes[0]}
	n := len(peers)
	for i, p := range peers {
		if _, dup := byID[p.ID]; dup || p.ID == "" {
			continue
		}
		ring := 1.0
		if n > 9 && i%2 == 1 { // two rings when crowded
			ring = 0.62
		}
		a := 2*math.Pi*float64(i)/math.Max(float64(n), 1) + (unit(p.ID, 1)-0.5)*0.5 - math.Pi/2
		r := ring * (0.82 + 0.16*unit(p.ID, 2))
		nd := &myNode{id: p.ID, name: p.Name, state: p.State, load: p.Load, roles: p.Roles,
			x: myW/2 + math.Cos(a)*r*(myW/2-90), y: myH/2 + math.Sin(a)*r*(myH/2-62)}
		nodes = append(nodes, nd)
		byID[p.ID] = nd
	}
	links := m.Links
	if links == nil {
		for _, p := range peers {
			if p.State != PeerDown {
				links = append(links, Link{From: self.PeerID, To: p.ID, State: p.State, RTT: p.RTT})
			}
		}
	}
	maxTraffic := 1.0
	for _, l := range links {
		maxTraffic = math.Max(maxTraffic, l.TrafficBps)
	}

	up, down := 0, 0
	for _, p := range peers {
		if p.State == PeerDown {
			down++
		} else {
			up++
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg class="mycelium" viewBox="0 0 %g %g" role="img" aria-labelledby="myc-t myc-d">`, myW, myH)
	fmt.Fprintf(&b, `<title id="myc-t">The mesh of %s as a mycelial network</title>`, esc(self.Name))
	var desc strings.Builder
	fmt.Fprintf(&desc, "%s at the centre; %d other nodes, %d reachable, %d down. ", self.Name, len(peers), up, down)
	for _, l := range links {
		a, b := byID[l.From], byID[l.To]
		if a == nil || b == nil {
			continue
		}
		fmt.Fprintf(&desc, "Thread %s to %s: %s, %s", a.name, b.name, l.State, humanRate(l.TrafficBps))
		if l.CreditRate != 0 {
			from, to := a.name, b.name
			if l.CreditRate < 0 {
				from, to = to, from
			}
			fmt.Fprintf(&desc, ", credit %s→%s %.1f per hour", from, to, math.Abs(l.CreditRate))
		}
		desc.WriteString(". ")
	}
	fmt.Fprintf(&b, `<desc id="myc-d">%s</desc>`, esc(strings.TrimSpace(desc.String())))
	b.WriteString(`<defs><filter id="myc-glow" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="4"/></filter>` +
		`<radialGradient id="myc-spore"><stop offset="0" class="myc-spore-in"/><stop offset="1" class="myc-spore-out"/></radialGradient>` +
		`<radialGradient id="myc-soil" cx="50%" cy="50%" r="65%"><stop offset="0" class="myc-soil-in"/><stop offset="1" class="myc-soil-out"/></radialGradient></defs>`)
	fmt.Fprintf(&b, `<rect class="myc-bg" width="%g" height="%g" rx="18" fill="url(#myc-soil)"/>`, myW, myH)

	// Side branches: fine hyphae exploring the soil around each node.
	b.WriteString(`<g class="myc-branches" aria-hidden="true">`)
	// A crowded mesh gets sparser branches, to keep the picture (and each
	// live update) small on a phone.
	depth, spare := 3, 5
	if len(nodes) > 12 {
		depth, spare = 2, 2
	}
	for _, nd := range nodes {
		k := spare + int(unit(nd.id, 3)*5)
		if nd.self {
			k += 4
		}
		for i := 0; i < k; i++ {
			a := 2*math.Pi*float64(i)/float64(k) + unit(nd.id, 10+i)*0.9
			branch(&b, nd.id, i, nd.x, nd.y, a, 34+unit(nd.id, 30+i)*40, depth, nd.state == PeerDown)
		}
	}
	b.WriteString(`</g>`)

	// Threads between nodes.
	b.WriteString(`<g class="myc-threads" aria-hidden="true">`)
	for _, l := range links {
		a, c := byID[l.From], byID[l.To]
		if a == nil || c == nil || a == c {
			continue
		}
		key := l.From + "|" + l.To
		dx, dy := c.x-a.x, c.y-a.y
		dist := math.Hypot(dx, dy)
		bend := (unit(key, 1) - 0.5) * 0.5 * dist
		mx, my := (a.x+c.x)/2-dy/dist*bend, (a.y+c.y)/2+dx/dist*bend
		path := func(off float64) string {
			return fmt.Sprintf("M%.1f %.1fQ%.1f %.1f %.1f %.1f", a.x, a.y, mx-dy/dist*off, my+dx/dist*off, c.x, c.y)
		}
		t := l.TrafficBps / maxTraffic
		w := 1.4 + 4.5*math.Sqrt(t)
		state := "up"
		switch l.State {
		case PeerDown:
			state = "down"
		case PeerDegraded:
			state = "degraded"
		}
		fmt.Fprintf(&b, `<g class="myc-link myc-%s">`, state)
		if state != "down" {
			fmt.Fprintf(&b, `<path class="myc-glow" d="%s" stroke-width="%.1f" filter="url(#myc-glow)"/>`, path(0), w*2.4)
		}
		// Several strands braided into one cord, like a mycelial rhizomorph.
		for s := -1; s <= 1; s++ {
			sw := w
			if s != 0 {
				sw = math.Max(0.6, w*0.35)
			}
			fmt.Fprintf(&b, `<path class="myc-thread" d="%s" stroke-width="%.1f"/>`, path(float64(s)*(4+w)), sw)
		}
		if state != "down" && (l.TrafficBps > 0 || l.CreditRate != 0) {
			cls, d := "myc-flow", path(0)
			if l.CreditRate != 0 {
				cls += " myc-credit"
			}
			if l.CreditRate < 0 {
				d = fmt.Sprintf("M%.1f %.1fQ%.1f %.1f %.1f %.1f", c.x, c.y, mx, my, a.x, a.y)
			}
			speed := "slow"
			if t > 0.66 {
				speed = "fast"
			} else if t > 0.2 {
				speed = "mid"
			}
			fmt.Fprintf(&b, `<path class="%s myc-%s myc-d%d" d="%s" stroke-width="%.1f"/>`, cls, speed, int(unit(key, 5)*4), d, math.Max(2, w*0.8))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</g>`)

	// Nodes.
	b.WriteString(`<g class="myc-nodes">`)
	for _, nd := range nodes {
		r := 11.0 + 6*math.Min(1, nd.load)
		if nd.self {
			r = 20
		}
		state := string(nd.state)
		if state == "" {
			state = "up"
		}
		cls := "myc-node myc-" + esc(state)
		if nd.self {
			cls += " myc-self"
		}
		fmt.Fprintf(&b, `<g class="%s" aria-hidden="true">`, cls)
		if nd.state != PeerDown {
			fmt.Fprintf(&b, `<circle class="myc-halo" cx="%.1f" cy="%.1f" r="%.1f"/>`, nd.x, nd.y, r*2.2)
		}
		fmt.Fprintf(&b, `<circle class="myc-core" cx="%.1f" cy="%.1f" r="%.1f"/>`, nd.x, nd.y, r)
		ly := nd.y + r + 17
		if nd.y > myH-70 {
			ly = nd.y - r - 9
		}
		fmt.Fprintf(&b, `<text class="myc-label" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, nd.x, ly, esc(nd.name))
		b.WriteString(`</g>`)
	}
	b.WriteString(`</g></svg>`)
	return template.HTML(b.String())
}

// branch draws a forking hypha of depth d from (x, y) at angle a.
func branch(b *bytes.Buffer, id string, salt int, x, y, a, length float64, d int, dim bool) {
	if d == 0 || length < 6 {
		return
	}
	bendA := a + (unit(id, salt*7+d)-0.5)*0.9
	x2, y2 := x+math.Cos(a)*length, y+math.Sin(a)*length
	cx, cy := x+math.Cos(bendA)*length*0.55, y+math.Sin(bendA)*length*0.55
	x2, y2 = math.Max(4, math.Min(myW-4, x2)), math.Max(4, math.Min(myH-4, y2))
	cls := "myc-hypha"
	if dim {
		cls += " myc-dim"
	}
	fmt.Fprintf(b, `<path class="%s" d="M%.1f %.1fQ%.1f %.1f %.1f %.1f" stroke-width="%.1f"/>`, cls, x, y, cx, cy, x2, y2, 0.4+0.35*float64(d))
	spread := 0.35 + unit(id, salt*13+d)*0.5
	branch(b, id, salt*3+1, x2, y2, a-spread, length*0.62, d-1, dim)
	if unit(id, salt*17+d) > 0.35 {
		branch(b, id, salt*3+2, x2, y2, a+spread, length*0.55, d-1, dim)
	}
}

func humanRate(bps float64) string {
	switch {
	case bps <= 0:
		return "idle"
	case bps < 1e3:
		return fmt.Sprintf("%.0f B/s", bps)
	case bps < 1e6:
		return fmt.Sprintf("%.1f kB/s", bps/1e3)
	default:
		return fmt.Sprintf("%.1f MB/s", bps/1e6)
	}
}

func esc(s string) string { return html.EscapeString(s) }
