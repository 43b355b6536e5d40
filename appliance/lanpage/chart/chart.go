// Package chart draws time-series charts as SVG on the server, so a phone
// with no internet and no JavaScript sees them. Charts are accessible: the
// SVG has role="img", a title and a description summarising each series
// (range and latest value); simulated series are drawn dashed and labelled
// "simulated" in the legend and in the description.
//
// Colours come from CSS classes (chart-s0 … chart-s5, chart-grid, chart-axis,
// chart-label), so the page's stylesheet themes them for dark and light mode.
// Render is safe for concurrent use.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Series is one line: a name, a unit (UCUM-ish: "W", "Wh", "%", "Cel") and
// points in any order (Render sorts a copy). NaN and ±Inf values break the line.
type Series struct {
	Name      string
	Unit      string
	Simulated bool
	Points    []Point
}

// Chart is what to draw. Zero From/To are taken from the data; zero Width and
// Height default to 640×220 (the SVG scales to its container).
type Chart struct {
	ID       string // unique on the page; prefixes element IDs
	Title    string
	Series   []Series
	From, To time.Time
	Width    int
	Height   int
	Area     bool // fill under the first series
	// Colour is the palette index of the first series (chart-s<Colour>);
	// the following series take the next ones.
	Colour   int
	Location *time.Location
}

// ErrNoSeries is returned for a chart with no series at all.
var ErrNoSeries = errors.New("chart: no series")

const (
	padL, padR, padB = 52, 16, 30
	maxPoints        = 1200
)

// Render writes the chart as one <svg> element.
func Render(w io.Writer, c Chart) error {
	if len(c.Series) == 0 {
		return ErrNoSeries
	}
	if c.Width <= 0 {
		c.Width = 640
	}
	if c.Height <= 0 {
		c.Height = 260
	}
	c.Width = min(max(c.Width, 200), 4000)
	c.Height = min(max(c.Height, 100), 2000)
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.ID == "" {
		c.ID = "chart"
	}
	id := sanitizeID(c.ID)

	// Copy, sort and clip the data; find the ranges.
	series := make([]Series, len(c.Series))
	var tmin, tmax time.Time
	vmin, vmax := math.Inf(1), math.Inf(-1)
	for i, s := range c.Series {
		pts := make([]Point, 0, len(s.Points))
		for _, p := range s.Points {
			if (!c.From.IsZero() && p.T.Before(c.From)) || (!c.To.IsZero() && p.T.After(c.To)) {
				continue
			}
			pts = append(pts, p)
		}
		slices.SortStableFunc(pts, func(a, b Point) int { return a.T.Compare(b.T) })
		for _, p := range pts {
			if tmin.IsZero() || p.T.Before(tmin) {
				tmin = p.T
			}
			if tmax.IsZero() || p.T.After(tmax) {
				tmax = p.T
			}
			if finite(p.V) {
				vmin, vmax = math.Min(vmin, p.V), math.Max(vmax, p.V)
			}
		}
		s.Points = pts
		series[i] = s
	}
	if !c.From.IsZero() {
		tmin = c.From
	}
	if !c.To.IsZero() {
		tmax = c.To
	}
	hasData := !math.IsInf(vmin, 1)
	if !hasData {
		vmin, vmax = 0, 1
	}
	if !tmax.After(tmin) {
		tmax = tmin.Add(time.Hour)
		if tmin.IsZero() {
			tmin = time.Unix(0, 0)
			tmax = tmin.Add(time.Hour)
		}
	}
	// Energy and most sensor values are ≥ 0: anchor at zero when near.
	if vmin >= 0 && vmin < vmax*0.6 {
		vmin = 0
	}
	lo, hi, step := niceRange(vmin, vmax)
	var grid []float64
	for i := 0; i <= 12; i++ {
		if v := lo + float64(i)*step; v <= hi+step/2 {
			grid = append(grid, v)
		}
	}

	// Legend: one row of items above the plot, wrapping when narrow.
	unit := commonUnit(series)
	type legendItem struct {
		x, y int
		name string
		cls  string
	}
	var legend []legendItem
	lx, ly := padL, 16
	for i, s := range series {
		name := s.Name
		if s.Unit != "" && s.Unit != unit {
			name += " (" + s.Unit + ")"
		}
		if s.Simulated {
			name += " (simulated)"
		}
		cls := fmt.Sprintf("chart-s%d", (i+c.Colour)%6)
		if s.Simulated {
			cls += " chart-sim"
		}
		w := 26 + 10*len([]rune(name)) + 14 // room for the phone font (20 px)
		if lx > padL && lx+w > c.Width-padR {
			lx, ly = padL, ly+18
		}
		legend = append(legend, legendItem{lx, ly, name, cls})
		lx += w
	}
	padT := ly + 16
	pw, ph := float64(c.Width-padL-padR), float64(c.Height-padT-padB)
	if ph < 20 {
		ph = 20
	}
	span := float64(tmax.Sub(tmin))
	x := func(t time.Time) float64 { return padL + pw*float64(t.Sub(tmin))/span }
	y := func(v float64) float64 { return float64(padT) + ph*(1-(v-lo)/(hi-lo)) }

	var b bytes.Buffer
	title := c.Title
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" preserveAspectRatio="xMidYMid meet">`, c.Width, c.Height, id, id)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(title), id, esc(describe(series, tmin, tmax, c.Location)))

	// Grid and value axis.
	b.WriteString(`<g class="chart-grid" aria-hidden="true">`)
	for _, v := range grid {
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, c.Width-padR, yy, yy)
	}
	b.WriteString(`</g><g class="chart-label" aria-hidden="true">`)
	for _, v := range grid {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y(v)+4, esc(fmtNum(v, step)))
	}
	if unit != "" {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-unit" text-anchor="end">%s</text>`, padL-6, padT-8, esc(unit))
	}
	// Time axis.
	for _, tk := range timeTicks(tmin, tmax, c.Location) {
		xx := x(tk.t)
		anchor := "middle"
		switch {
		case xx > float64(c.Width-padR)-45:
			continue // a label cut by the edge reads worse than none
		case xx < padL+30:
			anchor = "start"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s">%s</text>`, xx, c.Height-10, anchor, esc(tk.label))
	}
	b.WriteString(`</g>`)
	fmt.Fprintf(&b, `<line class="chart-axis" x1="%d" x2="%d" y1="%.1f" y2="%.1f" aria-hidden="true"/>`, padL, c.Width-padR, y(lo), y(lo))

	if !hasData {
		fmt.Fprintf(&b, `<text class="chart-empty" x="%.1f" y="%.1f" text-anchor="middle">no readings in this period</text>`, padL+pw/2, float64(padT)+ph/2)
	}
	// Series.
	anySim := false
	for i, s := range series {
		pts := downsample(s.Points, maxPoints)
		paths := polyline(pts, x, y)
		cls := fmt.Sprintf("chart-s%d", (i+c.Colour)%6)
		if s.Simulated {
			cls += " chart-sim"
			anySim = true
		}
		if c.Area && i == 0 {
			for _, seg := range paths {
				if len(seg) < 2 {
					continue
				}
				fmt.Fprintf(&b, `<path class="chart-area %s" d="M%.1f %.1f`, fmt.Sprintf("chart-s%d", (i+c.Colour)%6), seg[0][0], y(lo))
				for _, p := range seg {
					fmt.Fprintf(&b, "L%.1f %.1f", p[0], p[1])
				}
				fmt.Fprintf(&b, `L%.1f %.1fZ" aria-hidden="true"/>`, seg[len(seg)-1][0], y(lo))
			}
		}
		fmt.Fprintf(&b, `<g class="chart-line %s" aria-hidden="true">`, cls)
		for _, seg := range paths {
			if len(seg) == 1 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2"/>`, seg[0][0], seg[0][1])
				continue
			}
			b.WriteString(`<path d="`)
			for j, p := range seg {
				if j == 0 {
					fmt.Fprintf(&b, "M%.1f %.1f", p[0], p[1])
				} else {
					fmt.Fprintf(&b, "L%.1f %.1f", p[0], p[1])
				}
			}
			b.WriteString(`"/>`)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`<g class="chart-legend" aria-hidden="true">`)
	for _, it := range legend {
		fmt.Fprintf(&b, `<g class="chart-line %s"><path d="M%d %dh18"/></g><text class="chart-label" x="%d" y="%d">%s</text>`,
			it.cls, it.x, it.y-4, it.x+24, it.y, esc(it.name))
	}
	b.WriteString(`</g>`)
	if anySim {
		fmt.Fprintf(&b, `<text class="chart-simbadge" x="%d" y="%d" text-anchor="end">SIMULATED</text>`, c.Width-padR-4, padT+14)
	}
	b.WriteString(`</svg>`)
	_, err := w.Write(b.Bytes())
	return err
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// polyline turns points into path segments, breaking at non-finite values
// and at gaps longer than 4× the median spacing.
func polyline(pts []Point, x func(time.Time) float64, y func(float64) float64) [][][2]float64 {
	if len(pts) == 0 {
		return nil
	}
	var gaps []time.Duration
	for i := 1; i < len(pts); i++ {
		gaps = append(gaps, pts[i].T.Sub(pts[i-1].T))
	}
	var maxGap time.Duration = math.MaxInt64
	if len(gaps) >= 3 {
		s := slices.Clone(gaps)
		slices.Sort(s)
		if med := s[len(s)/2]; med > 0 {
			maxGap = 4 * med
		}
	}
	var segs [][][2]float64
	var cur [][2]float64
	for i, p := range pts {
		if !finite(p.V) || (i > 0 && p.T.Sub(pts[i-1].T) > maxGap) {
			if len(cur) > 0 {
				segs = append(segs, cur)
			}
			cur = nil
			if !finite(p.V) {
				continue
			}
		}
		cur = append(cur, [2]float64{x(p.T), y(p.V)})
	}
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	return segs
}

// downsample averages consecutive points into at most n buckets, keeping
// non-finite values as gaps.
func downsample(pts []Point, n int) []Point {
	if len(pts) <= n {
		return pts
	}
	per := (len(pts) + n - 1) / n
	out := make([]Point, 0, n)
	for i := 0; i < len(pts); i += per {
		end := min(i+per, len(pts))
		sum, cnt := 0.0, 0
		for _, p := range pts[i:end] {
			if finite(p.V) {
				sum += p.V
				cnt++
			}
		}
		mid := pts[(i+end)/2]
		if cnt == 0 {
			out = append(out, Point{mid.T, math.NaN()})
		} else {
			out = append(out, Point{mid.T, sum / float64(cnt)})
		}
	}
	return out
}

// niceRange widens [lo, hi] to multiples of a 1-2-5 step with about 4 steps.
func niceRange(lo, hi float64) (float64, float64, float64) {
	// Keep the arithmetic finite for absurd inputs.
	lo, hi = math.Max(lo, -1e300), math.Min(hi, 1e300)
	if hi < lo {
		hi = lo
	}
	if hi-lo < 1e-9*math.Max(1, math.Abs(hi)) {
		d := math.Max(math.Abs(hi)*0.1, 1)
		lo, hi = lo-d, hi+d
		if lo < 0 && hi-d >= 0 {
			lo = 0
		}
	}
	raw := (hi - lo) / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	var step float64
	switch r := raw / mag; {
	case r <= 1:
		step = mag
	case r <= 2:
		step = 2 * mag
	case r <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, step
}

func fmtNum(v, step float64) string {
	if math.Abs(v) < step/1e6 {
		v = 0
	}
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step)))
	}
	if math.Abs(v) >= 10000 && step >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', max(0, dec-3), 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

type tick struct {
	t     time.Time
	label string
}

// timeTicks picks about 4–7 round instants between a and b.
func timeTicks(a, b time.Time, loc *time.Location) []tick {
	a, b = a.In(loc), b.In(loc)
	span := b.Sub(a)
	steps := []struct {
		d      time.Duration
		months int
		layout string
	}{
		{time.Minute, 0, "15:04"}, {5 * time.Minute, 0, "15:04"}, {15 * time.Minute, 0, "15:04"},
		{30 * time.Minute, 0, "15:04"}, {time.Hour, 0, "15:04"}, {2 * time.Hour, 0, "15:04"},
		{3 * time.Hour, 0, "15:04"}, {6 * time.Hour, 0, "15:04"}, {12 * time.Hour, 0, "Jan 2 15h"},
		{24 * time.Hour, 0, "Jan 2"}, {2 * 24 * time.Hour, 0, "Jan 2"}, {7 * 24 * time.Hour, 0, "Jan 2"},
		{14 * 24 * time.Hour, 0, "Jan 2"}, {0, 1, "Jan"}, {0, 2, "Jan 2006"}, {0, 3, "Jan 2006"},
		{0, 6, "Jan 2006"}, {0, 12, "2006"}, {0, 60, "2006"}, {0, 600, "2006"},
	}
	for _, s := range steps {
		n := 0
		if s.months == 0 {
			n = int(span / s.d)
		} else {
			n = int(span / (time.Duration(s.months) * 30 * 24 * time.Hour))
		}
		if n > 6 {
			continue
		}
		var out []tick
		if s.months == 0 {
			var t time.Time
			if s.d >= 24*time.Hour {
				t = time.Date(a.Year(), a.Month(), a.Day(), 0, 0, 0, 0, loc)
			} else {
				t = a.Truncate(s.d)
			}
			for ; !t.After(b) && len(out) < 12; t = t.Add(s.d) {
				if !t.Before(a) {
					out = append(out, tick{t, t.Format(s.layout)})
				}
			}
		} else {
			// Calendar-aligned: every step-th month counted from January.
			t := time.Date(a.Year(), 1, 1, 0, 0, 0, 0, loc)
			if s.months > 12 {
				t = time.Date(a.Year()-a.Year()%(s.months/12), 1, 1, 0, 0, 0, 0, loc)
			}
			for i := 0; !t.After(b) && len(out) < 12 && i < 1000; i, t = i+1, t.AddDate(0, s.months, 0) {
				if !t.Before(a) {
					out = append(out, tick{t, t.Format(s.layout)})
				}
			}
		}
		return out
	}
	return []tick{{a, a.Format("2006")}, {b, b.Format("2006")}}
}

func commonUnit(ss []Series) string {
	if len(ss) == 0 {
		return ""
	}
	u := ss[0].Unit
	for _, s := range ss[1:] {
		if s.Unit != u {
			return ""
		}
	}
	return u
}

func describe(ss []Series, a, b time.Time, loc *time.Location) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "From %s to %s. ", a.In(loc).Format("2 Jan 2006 15:04"), b.In(loc).Format("2 Jan 2006 15:04"))
	for _, s := range ss {
		lo, hi, last, n := math.Inf(1), math.Inf(-1), math.NaN(), 0
		for _, p := range s.Points {
			if finite(p.V) {
				lo, hi, last = math.Min(lo, p.V), math.Max(hi, p.V), p.V
				n++
			}
		}
		sim := ""
		if s.Simulated {
			sim = " (simulated)"
		}
		if n == 0 {
			fmt.Fprintf(&sb, "%s%s: no readings. ", s.Name, sim)
			continue
		}
		fmt.Fprintf(&sb, "%s%s: %d readings, lowest %s, highest %s, latest %s %s. ", s.Name, sim, n,
			strconv.FormatFloat(lo, 'g', 4, 64), strconv.FormatFloat(hi, 'g', 4, 64), strconv.FormatFloat(last, 'g', 4, 64), s.Unit)
	}
	return strings.TrimSpace(sb.String())
}

func esc(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xFFFE || r == 0xFFFF {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return html.EscapeString(s)
}

func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 128 && (r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "chart"
	}
	return b.String()
}
