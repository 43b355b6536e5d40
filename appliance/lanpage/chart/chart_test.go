package chart

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

func wellFormed(t testing.TB, svg []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("SVG not well-formed: %v\n%.400s", err, svg)
		}
	}
}

func hourly(n int, f func(i int) float64) []Point {
	pts := make([]Point, n)
	for i := range pts {
		pts[i] = Point{t0.Add(time.Duration(i) * time.Hour), f(i)}
	}
	return pts
}

func TestRender(t *testing.T) {
	var b bytes.Buffer
	err := Render(&b, Chart{ID: "solar", Title: "Solar & used <W>", Area: true, Series: []Series{
		{Name: "Solar", Unit: "W", Simulated: true, Points: hourly(48, func(i int) float64 { return math.Max(0, 400*math.Sin(float64(i%24-6)/12*math.Pi)) })},
		{Name: "Used", Unit: "W", Points: hourly(48, func(int) float64 { return 60 })},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	wellFormed(t, b.Bytes())
	for _, want := range []string{
		`role="img"`, `aria-labelledby="solar-t solar-d"`, `<title id="solar-t">Solar &amp; used &lt;W&gt;</title>`,
		"Solar (simulated): 48 readings, lowest 0, highest 400", "Used: 48 readings", "SIMULATED", "chart-sim", "chart-area",
		">400<", ">0<", "Nov 21 12h", "Nov 22 00h",
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Count(svg, "<path d=\"M") < 2 {
		t.Error("expected a path per series")
	}
}

func TestRenderGapsAndEdges(t *testing.T) {
	// A gap of 10 hours in hourly data and a NaN break the line in three.
	pts := hourly(30, func(i int) float64 { return float64(i) })
	pts = append(pts[:10], pts[20:]...)
	pts[15].V = math.NaN()
	var b bytes.Buffer
	if err := Render(&b, Chart{Series: []Series{{Name: "x", Points: pts}}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), `<path d="M`) - 1; n != 3 { // minus the legend's
		t.Errorf("%d segments, want 3", n)
	}
	// No data: an honest message, not an empty frame.
	b.Reset()
	if err := Render(&b, Chart{Series: []Series{{Name: "Soil"}}, From: t0, To: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "no readings in this period") || !strings.Contains(b.String(), "Soil: no readings") {
		t.Errorf("empty chart: %s", b.String())
	}
	wellFormed(t, b.Bytes())
	if err := Render(io.Discard, Chart{}); !errors.Is(err, ErrNoSeries) {
		t.Errorf("no series: %v", err)
	}
	// A constant series and a single point still get a sensible axis.
	b.Reset()
	Render(&b, Chart{Series: []Series{{Name: "c", Points: []Point{{t0, 21.5}}}}})
	wellFormed(t, b.Bytes())
	if !strings.Contains(b.String(), "<circle") {
		t.Error("a single point should be drawn as a dot")
	}
}

func TestTimeTicks(t *testing.T) {
	tests := []struct {
		span  time.Duration
		first string
	}{
		{2 * time.Hour, "00:00"},
		{48 * time.Hour, "Nov 21 00h"},
		{30 * 24 * time.Hour, "Nov 21"},
		{365 * 24 * time.Hour, "Jan 2027"},
	}
	for _, tc := range tests {
		ticks := timeTicks(t0, t0.Add(tc.span), time.UTC)
		if len(ticks) < 2 || len(ticks) > 8 {
			t.Errorf("span %v: %d ticks", tc.span, len(ticks))
			continue
		}
		if ticks[0].label != tc.first {
			t.Errorf("span %v: first tick %q, want %q", tc.span, ticks[0].label, tc.first)
		}
	}
}

func TestNiceRange(t *testing.T) {
	for _, tc := range []struct{ lo, hi, wlo, whi, step float64 }{
		{0, 387, 0, 400, 100}, {21.3, 26.1, 20, 28, 2}, {0, 0.93, 0, 1, 0.5}, {-12, 8, -15, 10, 5},
	} {
		lo, hi, step := niceRange(tc.lo, tc.hi)
		if lo != tc.wlo || hi != tc.whi || step != tc.step {
			t.Errorf("niceRange(%v, %v) = %v %v %v, want %v %v %v", tc.lo, tc.hi, lo, hi, step, tc.wlo, tc.whi, tc.step)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{48, 288, 8760} {
		pts := hourly(n, func(i int) float64 { return math.Sin(float64(i)) * 100 })
		c := Chart{Series: []Series{{Name: "a", Unit: "W", Points: pts}, {Name: "b", Unit: "W", Points: pts}}}
		b.Run(fmt.Sprintf("%d_points", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Render(io.Discard, c)
			}
		})
	}
}

// FuzzRender: series come from sensors and the store; any values and times
// must give a well-formed SVG, never a panic or an endless loop.
func FuzzRender(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0x59, 0, 0, 0, 0, 0, 0}, "Solar", false)
	f.Add(bytes.Repeat([]byte{0x7f, 0xf0, 0, 0, 0, 0, 0, 1}, 8), "x<&>\x00", true)
	f.Add(bytes.Repeat([]byte{0xff}, 64), "", true)
	f.Fuzz(func(t *testing.T, data []byte, name string, area bool) {
		var pts []Point
		for len(data) >= 16 && len(pts) < 2000 {
			sec := int64(binary.BigEndian.Uint64(data)) % (1 << 40)
			v := math.Float64frombits(binary.BigEndian.Uint64(data[8:]))
			pts = append(pts, Point{time.Unix(sec, 0), v})
			data = data[16:]
		}
		var b bytes.Buffer
		if err := Render(&b, Chart{Title: name, Area: area, Series: []Series{{Name: name, Unit: name, Points: pts}, {Name: "b", Points: pts[:len(pts)/2]}}}); err != nil {
			t.Fatal(err)
		}
		wellFormed(t, b.Bytes())
	})
}
