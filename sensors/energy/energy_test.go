package energy

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/univrs/hypha/sensors/obs"
)

// fakePowercap builds a powercap tree like a two-socket Intel machine.
func fakePowercap(t *testing.T) (root string, set func(zone string, uj uint64)) {
	t.Helper()
	root = t.TempDir()
	mk := func(zone, name string, max, uj uint64) {
		d := filepath.Join(root, zone)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range map[string]string{"name": name + "\n", "max_energy_range_uj": strconv.FormatUint(max, 10) + "\n", "energy_uj": strconv.FormatUint(uj, 10) + "\n"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("intel-rapl:0", "package-0", 262143328850, 262143000000)
	mk("intel-rapl:0:0", "core", 262143328850, 5)
	mk("intel-rapl:1", "package-1", 262143328850, 1000)
	mk("intel-rapl-mmio:0", "package-0", 262143328850, 7)
	mk("intel-rapl:2", "psys", 262143328850, 9)
	set = func(zone string, uj uint64) {
		if err := os.WriteFile(filepath.Join(root, zone, "energy_uj"), []byte(strconv.FormatUint(uj, 10)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, set
}

func TestRAPLSumsPackagesAndHandlesWrap(t *testing.T) {
	root, set := fakePowercap(t)
	r, err := OpenRAPL(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.zones) != 2 {
		t.Fatalf("zones %d, want the 2 packages only", len(r.zones))
	}
	set("intel-rapl:0", 262143328850) // +328850 µJ
	set("intel-rapl:1", 2001000)      // +2 J
	j, err := r.Joules()
	if err != nil || math.Abs(j-(0.32885+2)) > 1e-9 {
		t.Fatalf("joules %v %v", j, err)
	}
	set("intel-rapl:0", 999) // wrapped: +1 (to max) +1 (to 0) +999 µJ
	j, err = r.Joules()
	if err != nil || math.Abs(j-(0.32885+2+0.001)) > 1e-9 {
		t.Fatalf("after wrap: joules %.9f %v", j, err)
	}
}

func TestRAPLAbsent(t *testing.T) {
	if _, err := OpenRAPL(filepath.Join(t.TempDir(), "none")); !errors.Is(err, obs.ErrNotPresent) {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := OpenRAPL(t.TempDir()); !errors.Is(err, obs.ErrNotPresent) {
		t.Errorf("no zones: %v", err)
	}
}

func TestNVMLAbsentIsNotAnError(t *testing.T) {
	g, err := OpenNVML()
	if err == nil {
		defer g.Close()
		t.Skip("this machine has an NVIDIA GPU with an energy counter")
	}
	if !errors.Is(err, obs.ErrNotPresent) {
		t.Fatalf("OpenNVML on a machine without NVIDIA: %v, want ErrNotPresent", err)
	}
}

func TestParseProcStat(t *testing.T) {
	b := []byte("cpu  4705 150 1120 16250 520 30 45 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n")
	v, err := ParseProcStat(b)
	if want := float64(4705+150+1120+30+45+7) / 100; err != nil || v != want {
		t.Fatalf("%v %v want %v", v, err, want)
	}
	for _, bad := range []string{"", "cpu 1 2\n", "cpu a b c d e f g\n", "intr 5\n"} {
		if _, err := ParseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("cpu  4705 150 1120 16250 520 30 45 7 0 0\n"))
	f.Add([]byte("cpu 18446744073709551615 18446744073709551615 0 0 0 0 0 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseProcStat(b)
		if err == nil && (v < 0 || math.IsNaN(v)) {
			t.Fatalf("%q -> %v", b, v)
		}
	})
}

func TestEstimate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stat")
	write := func(user int) {
		if err := os.WriteFile(p, []byte("cpu  "+strconv.Itoa(user)+" 0 0 100 0 0 0 0 0 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1000)
	e := &Estimate{TDPWatts: 20, Stat: p, CPUs: 4}
	if j, err := e.Joules(); err != nil || j != 0 {
		t.Fatal(j, err)
	}
	write(1400) // 4 CPU seconds busy: 4 × 20 W / 4 CPUs = 20 J
	if j, err := e.Joules(); err != nil || j != 20 {
		t.Fatal(j, err)
	}
}

// fakeCounter is a settable counter: the hardware edge of the meter.
type fakeCounter struct {
	mu  sync.Mutex
	j   float64
	err error
}

func (f *fakeCounter) Joules() (float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.j, f.err
}
func (f *fakeCounter) add(d float64) { f.mu.Lock(); f.j += d; f.mu.Unlock() }

func TestMeterSplitsOverlappingWindows(t *testing.T) {
	c := &fakeCounter{j: 1000}
	m := NewMeter(c, false, "rapl")
	a := m.Start()
	c.add(10) // only a is open
	b := m.Start()
	c.add(10) // a and b share
	ea := a.Stop()
	c.add(6) // only b
	eb := b.Stop()
	if ea.Joules != 15 || eb.Joules != 11 || ea.Estimated || ea.Source != "rapl" {
		t.Fatalf("a %+v b %+v", ea, eb)
	}
	if again := a.Stop(); again != ea {
		t.Fatalf("second Stop %+v", again)
	}
	c.add(100) // nobody open: nobody pays
	w := m.Start()
	if e := w.Stop(); e.Joules != 0 {
		t.Fatalf("idle energy charged: %+v", e)
	}
}

func TestMeterConcurrentSumsToCounter(t *testing.T) {
	c := &fakeCounter{}
	m := NewMeter(c, true, "cpu-time×tdp")
	m.Start().Stop() // initialise
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sum float64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := m.Start()
			c.add(1)
			e := w.Stop()
			if !e.Estimated {
				t.Error("estimate not flagged")
			}
			mu.Lock()
			sum += e.Joules
			mu.Unlock()
		}()
	}
	wg.Wait()
	if math.Abs(sum-50) > 1e-9 {
		t.Fatalf("windows got %v J, counter measured 50 J", sum)
	}
}

func TestMeterCounterError(t *testing.T) {
	c := &fakeCounter{}
	m := NewMeter(c, false, "rapl")
	w := m.Start()
	c.mu.Lock()
	c.err = errors.New("read energy_uj: input/output error")
	c.mu.Unlock()
	if e := w.Stop(); e.Err == "" {
		t.Fatalf("error not reported: %+v", e)
	}
}
