package sensors

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/univrs/hypha/sensors/drivers"
	"github.com/univrs/hypha/sensors/obs"
	"github.com/univrs/hypha/sensors/store"
)

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func fakePowercap(t *testing.T) string {
	root := t.TempDir()
	d := filepath.Join(root, "intel-rapl:0")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"name": "package-0", "max_energy_range_uj": "262143328850", "energy_uj": "1000000"} {
		if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func startService(t *testing.T, cfg Config, opts Options) (*Service, func()) {
	t.Helper()
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Error("second Close:", err)
		}
	}
	return s, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(s *Service, id string) SensorStatus {
	for _, st := range s.Status().Sensors {
		if st.ID == id {
			return st
		}
	}
	return SensorStatus{}
}

func simConfig() Config {
	c := DefaultConfig("test-node", obs.Place{Name: "garden", Latitude: 48.2, Longitude: 16.4}, 7)
	for i := range c.Sensors {
		c.Sensors[i].Interval = obs.Duration(time.Second)
	}
	return c
}

func TestSimulatedNodeEndToEnd(t *testing.T) {
	s, stop := startService(t, simConfig(), Options{StorePath: filepath.Join(t.TempDir(), "s.db"), PowercapRoot: fakePowercap(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer stop()
	waitFor(t, "every simulated stream", func() bool {
		n := 0
		for _, o := range s.Snapshot() {
			if o.Simulated {
				n++
			}
		}
		return n == 12 // air 3, pv 1, battery 3, load 1, soil 2, light 1, rain 1
	})
	if st := statusOf(s, "gpu"); st.State != StateAbsent {
		t.Errorf("gpu on a machine without NVIDIA: %+v", st)
	}
	if st := statusOf(s, "cpu"); st.State != StateOK {
		t.Errorf("cpu with RAPL: %+v", st)
	}
	snap := s.Snapshot()
	byStream := map[string]Observation{}
	for _, o := range snap {
		byStream[o.Stream] = o
	}
	if o := byStream["sim-air.air_temperature"]; o.Unit != "Cel" || !o.Simulated || o.SensorID != "sim-air" || o.Time.IsZero() {
		t.Errorf("air temperature observation %+v", o)
	}
	if o := byStream["cpu.cpu_energy"]; o.Simulated || o.Unit != "J" {
		t.Errorf("cpu energy observation %+v", o)
	}
	if name, est := s.Meter().Source(); name != "rapl" || est {
		t.Errorf("meter %s estimated=%v", name, est)
	}
	// Let the writer commit and check a series.
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ser, err := s.Series("sim-pv.pv_power", now.Add(-time.Hour), now.Add(time.Minute), time.Second)
	if err != nil || len(ser.Points) == 0 || !ser.Simulated {
		t.Fatalf("series %+v %v", ser, err)
	}

	// SensorThings.
	h := s.SensorThings("/sensorthings/v1.1")
	get := func(path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var v map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
		return rec.Code, v
	}
	code, ds := get("/sensorthings/v1.1/Datastreams('sim-air.air_temperature')")
	if code != 200 {
		t.Fatalf("datastream: %d %v", code, ds)
	}
	uom := ds["unitOfMeasurement"].(map[string]any)
	if uom["symbol"] != "Cel" || uom["definition"] != "http://unitsofmeasure.org/ucum.html#Cel" || ds["properties"].(map[string]any)["simulated"] != true || !strings.Contains(ds["name"].(string), "[simulated]") {
		t.Errorf("datastream %v", ds)
	}
	code, obsList := get("/sensorthings/v1.1/Datastreams('sim-air.air_temperature')/Observations?$top=2")
	vals, _ := obsList["value"].([]any)
	if code != 200 || len(vals) == 0 {
		t.Fatalf("observations %d %v", code, obsList)
	}
	if next, _ := obsList["@iot.nextLink"].(string); len(vals) == 2 && !strings.Contains(next, "%24skip=2") {
		t.Errorf("nextLink %q", next)
	}
	first := vals[0].(map[string]any)
	if first["parameters"].(map[string]any)["simulated"] != true {
		t.Errorf("observation not labelled simulated: %v", first)
	}
	code, one := get("/sensorthings/v1.1/Observations('" + url.PathEscape(first["@iot.id"].(string)) + "')")
	if code != 200 || one["result"] != first["result"] {
		t.Errorf("observation by id: %d %v", code, one)
	}
	if code, _ := get("/sensorthings/v1.1/Datastreams('nope.x')"); code != 404 {
		t.Errorf("unknown datastream: %d", code)
	}
	if code, _ := get("/sensorthings/v1.1/Datastreams('sim-air.air_temperature')/Observations?$filter=result%20gt%203"); code != 400 {
		t.Errorf("unsupported filter: %d", code)
	}
	code, things := get("/sensorthings/v1.1/Things")
	if code != 200 || things["@iot.count"].(float64) != 1 {
		t.Errorf("things %v", things)
	}

	// Prometheus output parses with the official parser.
	rec := httptest.NewRecorder()
	s.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	temp := fams["hypha_air_temperature_celsius"]
	if temp == nil || len(temp.Metric) != 1 {
		t.Fatalf("no air temperature metric: %v", fams)
	}
	lbl := map[string]string{}
	for _, l := range temp.Metric[0].Label {
		lbl[l.GetName()] = l.GetValue()
	}
	if lbl["simulated"] != "true" || lbl["sensor"] != "sim-air" || lbl["where"] != "garden" {
		t.Errorf("labels %v", lbl)
	}
	if f := fams["hypha_cpu_energy_joules_total"]; f == nil || f.GetType().String() != "COUNTER" {
		t.Errorf("cpu energy counter: %v", f)
	}
	if f := fams["hypha_battery_soc_ratio"]; f == nil || f.Metric[0].GetGauge().GetValue() > 1 {
		t.Errorf("soc ratio %v", f)
	}
}

// bmeOps is a BME280 trace: open plus n measurements.
func bmeOps(n int, data []byte) []i2ctest.IO {
	ops := []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: 0x76, W: []byte{0x88}, R: []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}},
		{Addr: 0x76, W: []byte{0xe1}, R: []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}},
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf2, 0x3, 0xf5, 0xa0, 0xf4, 0x6c}},
	}
	for i := 0; i < n; i++ {
		d := append([]byte(nil), data...)
		d[2] = byte(i * 16) // vary the pressure LSBs so values are not stuck
		ops = append(ops,
			i2ctest.IO{Addr: 0x76, W: []byte{0xf4, 0x6d}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf3}, R: []byte{0}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: d})
	}
	return ops
}

var bmeData = []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}

// deadBus fails every transaction like a bus where nobody answers; slow
// makes every transaction take that long first.
type flakyBus struct {
	i2ctest.Playback
	nackAfter int
	slow      time.Duration
	n         int
}

func (b *flakyBus) Tx(addr uint16, w, r []byte) error {
	time.Sleep(b.slow)
	b.n++
	if b.n > b.nackAfter {
		return &os.SyscallError{Syscall: "ioctl I2C_RDWR", Err: syscall.EREMOTEIO}
	}
	return b.Playback.Tx(addr, w, r)
}

func TestFailingSensorIsRetriedAndNeverStopsTheNode(t *testing.T) {
	var opens atomic.Int32
	env := drivers.Env{OpenI2C: func(name string) (i2c.BusCloser, error) {
		switch opens.Add(1) {
		case 1: // works for three readings, then stops answering mid-run
			return &flakyBus{Playback: i2ctest.Playback{Ops: bmeOps(3, bmeData), DontPanic: true}, nackAfter: 4 + 3*3}, nil
		case 2, 3: // still dead: the chip id read is not acknowledged
			return &flakyBus{nackAfter: 0}, nil
		default: // back
			return &flakyBus{Playback: i2ctest.Playback{Ops: bmeOps(100, bmeData), DontPanic: true}, nackAfter: 1 << 30}, nil
		}
	}}
	cfg := Config{Thing: obs.Thing{Name: "n"}, Sensors: []obs.SensorConfig{
		{ID: "air", Driver: "bme280", Interval: obs.Duration(time.Second)},
		{ID: "sim-pv", Driver: "sim", Measures: "pv", Interval: obs.Duration(time.Second)},
	}}
	logs := &syncBuf{}
	s, stop := startService(t, cfg, Options{Env: env, MinBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer stop()
	waitFor(t, "the sensor to fail", func() bool { return statusOf(s, "air").State == StateError })
	st := statusOf(s, "air")
	if !strings.Contains(st.Reason, "remote I/O error") || st.LastGood.IsZero() || st.Failures < 1 || st.NextRetry.IsZero() {
		t.Errorf("failing status %+v", st)
	}
	waitFor(t, "the sensor to recover", func() bool { return statusOf(s, "air").State == StateOK && opens.Load() >= 4 })
	if st := statusOf(s, "sim-pv"); st.State != StateOK {
		t.Errorf("the simulated sensor was affected: %+v", st)
	}
	out := logs.String()
	if n := strings.Count(out, "sensor failing"); n < 1 || n > 3 {
		t.Errorf("%d failure log lines, want 1..3 (one per distinct reason):\n%s", n, out)
	}
	if !strings.Contains(out, "sensor recovered") {
		t.Errorf("no recovery line:\n%s", out)
	}
}

func TestSlowSensorDoesNotBlockOthers(t *testing.T) {
	env := drivers.Env{OpenI2C: func(name string) (i2c.BusCloser, error) {
		// Every bus transaction takes 1.5 s: opening alone takes 6 s.
		return &flakyBus{Playback: i2ctest.Playback{Ops: bmeOps(10, bmeData), DontPanic: true}, nackAfter: 1 << 30, slow: 1500 * time.Millisecond}, nil
	}}
	cfg := Config{Thing: obs.Thing{Name: "n"}, Sensors: []obs.SensorConfig{
		{ID: "slow", Driver: "bme280", Interval: obs.Duration(time.Second)},
		{ID: "sim-air", Driver: "sim", Measures: "air", Interval: obs.Duration(time.Second)},
	}}
	s, stop := startService(t, cfg, Options{Env: env, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer stop()
	var goods []time.Time
	waitFor(t, "three readings of the fast sensor", func() bool {
		g := statusOf(s, "sim-air").LastGood
		if !g.IsZero() && (len(goods) == 0 || g.After(goods[len(goods)-1])) {
			goods = append(goods, g)
		}
		return len(goods) >= 3
	})
	if st := statusOf(s, "slow"); st.State != StateStarting {
		t.Errorf("slow sensor finished already? %+v", st)
	}
}

func TestStuckSensorReported(t *testing.T) {
	ops := bmeOps(0, nil)
	for i := 0; i < 5; i++ { // the same bytes every time
		ops = append(ops, i2ctest.IO{Addr: 0x76, W: []byte{0xf4, 0x6d}}, i2ctest.IO{Addr: 0x76, W: []byte{0xf3}, R: []byte{0}}, i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: bmeData})
	}
	var once atomic.Bool
	env := drivers.Env{OpenI2C: func(string) (i2c.BusCloser, error) {
		if once.Swap(true) {
			return &flakyBus{nackAfter: 0}, nil
		}
		return &i2ctest.Playback{Ops: ops, DontPanic: true}, nil
	}}
	cfg := Config{Thing: obs.Thing{Name: "n"}, Sensors: []obs.SensorConfig{{ID: "air", Driver: "bme280", Interval: obs.Duration(time.Second), StuckAfter: 3}}}
	s, stop := startService(t, cfg, Options{Env: env, MinBackoff: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer stop()
	waitFor(t, "stuck", func() bool { return statusOf(s, "air").State == StateError })
	if st := statusOf(s, "air"); !strings.Contains(st.Reason, "stuck value") || !strings.Contains(st.Reason, "3 times") {
		t.Errorf("status %+v", st)
	}
}

// TestNoBusesOnThisHost uses periph's real host.Init: on a PC or VM without
// I²C the node runs, the bus sensor reports why, the others work.
func TestNoBusesOnThisHost(t *testing.T) {
	if len(drivers.I2CBuses()) > 0 {
		t.Skip("this machine has I²C buses")
	}
	cfg := Config{Thing: obs.Thing{Name: "n"}, Sensors: []obs.SensorConfig{
		{ID: "air", Driver: "bme280", Interval: obs.Duration(time.Second)},
		{ID: "sim-air", Driver: "sim", Measures: "air", Interval: obs.Duration(time.Second)},
	}}
	s, stop := startService(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: time.Second})
	defer stop()
	waitFor(t, "statuses", func() bool {
		return statusOf(s, "air").State == StateError && statusOf(s, "sim-air").State == StateOK
	})
	r := s.Status()
	if !r.NoBuses {
		t.Errorf("report %+v", r)
	}
	if st := statusOf(s, "air"); !strings.Contains(st.Reason, obs.ErrNoBus.Error()) {
		t.Errorf("reason %q", st.Reason)
	}
}

func TestParseTimeFilter(t *testing.T) {
	a := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	from, to, err := ParseTimeFilter("phenomenonTime ge 2026-06-01T00:00:00Z and phenomenonTime lt 2026-06-02T00:00:00Z")
	if err != nil || !from.Equal(a) || !to.Equal(a.Add(24*time.Hour)) {
		t.Fatalf("%v %v %v", from, to, err)
	}
	for _, bad := range []string{"result gt 3", "phenomenonTime ge yesterday", "phenomenonTime ne 2026-06-01T00:00:00Z", "phenomenonTime ge", "phenomenonTime ge 0001-01-01T00:00:00Z"} {
		if _, _, err := ParseTimeFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseTimeFilter(f *testing.F) {
	f.Add("phenomenonTime ge 2026-06-01T00:00:00Z and phenomenonTime lt 2026-06-02T00:00:00Z")
	f.Add("phenomenonTime eq 2026-06-01T00:00:00.123456789+02:00")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		from, to, err := ParseTimeFilter(s)
		if err == nil && (from.Before(time.Unix(0, 0)) || to.After(time.Unix(0, 1<<62+1))) {
			t.Fatalf("%q -> %v..%v", s, from, to)
		}
	})
}

func TestSensorThingsRejectsWrites(t *testing.T) {
	s, err := New(simConfig(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := httptest.NewRecorder()
	s.SensorThings("/st").ServeHTTP(rec, httptest.NewRequest("POST", "/st/Things", strings.NewReader("{}")))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatal(rec.Code)
	}
	_, err = s.Series("x.y", time.Now(), time.Now().Add(time.Hour), 0)
	if err == nil {
		t.Fatal("series without a store")
	}
	if s.Status().Sensors[0].State != StateStarting {
		t.Fatal(s.Status().Sensors[0])
	}
}

// TestCancelFlushesToStore: after Run returns (SIGTERM in hyphad), every
// reading taken is in the store file.
func TestCancelFlushesToStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	cfg := Config{Thing: obs.Thing{Name: "n", Where: obs.Place{Latitude: 10, Longitude: 10}}, Sensors: []obs.SensorConfig{
		{ID: "sim-air", Driver: "sim", Measures: "air", Interval: obs.Duration(time.Second)},
	}}
	s, stop := startService(t, cfg, Options{StorePath: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	waitFor(t, "a reading", func() bool { return len(s.Snapshot()) == 3 })
	snap := s.Snapshot()
	stop() // cancel well before the writer's 1 s tick
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, o := range snap {
		l, err := st.Latest(o.Stream)
		if err != nil || !l.Time.Equal(o.Time) || l.Value != o.Value || !l.Simulated {
			t.Errorf("%s: stored %+v %v, snapshot %+v", o.Stream, l, err, o)
		}
	}
}
