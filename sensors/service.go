// Package sensors runs a node's ecological sensors and energy meters: it
// opens the configured sensors (periph.io drivers, RAPL, NVML, or the
// simulator), samples each on its own goroutine so a slow or broken sensor
// never blocks the others, stores readings in a bbolt time-series store,
// keeps a status per sensor (ok / error with reason / last good reading),
// and serves readings as OGC SensorThings JSON, Prometheus metrics,
// snapshots for the ledger and series for charts.
//
// A failing sensor is retried with exponential backoff and logged at most
// once per change of reason (plus a reminder every 15 minutes); it never
// stops the node. Simulated readings are labelled simulated everywhere.
package sensors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/univrs/hypha/sensors/drivers"
	"github.com/univrs/hypha/sensors/energy"
	"github.com/univrs/hypha/sensors/obs"
	"github.com/univrs/hypha/sensors/sim"
	"github.com/univrs/hypha/sensors/store"
)

// Aliases so that callers import only this package.
type (
	// Config is the versioned sensor configuration (see obs.Config).
	Config = obs.Config
	// SensorConfig configures one sensor.
	SensorConfig = obs.SensorConfig
	// Observation is the latest reading of one stream.
	Observation = obs.Observation
	// Series is a chart series.
	Series = store.Series
	// Point is one point of a Series.
	Point = store.Point
	// Energy is the result of a metered window.
	Energy = energy.Energy
)

// DecodeConfig parses and validates a JSON config (see obs.Decode).
func DecodeConfig(b []byte) (Config, error) { return obs.Decode(b) }

// DefaultConfig is the configuration of a node without a sensor config:
// the CPU and GPU energy counters (reported absent where missing) and a
// simulated weather station, solar system and soil probe, all labelled
// simulated. where is the node's place (for the sun's course).
func DefaultConfig(name string, where obs.Place, seed int64) Config {
	c := Config{Version: obs.ConfigVersion, Thing: obs.Thing{Name: name, Description: "Hypha node", Where: where}}
	c.Simulation.Seed = seed
	c.Sensors = []obs.SensorConfig{
		{ID: "cpu", Driver: "rapl", Label: "CPU package energy"},
		{ID: "gpu", Driver: "nvml", Label: "GPU energy"},
		{ID: "sim-air", Driver: "sim", Measures: "air", Label: "Air (simulated)"},
		{ID: "sim-pv", Driver: "sim", Measures: "pv", Label: "Solar panel (simulated)"},
		{ID: "sim-battery", Driver: "sim", Measures: "battery", Label: "Battery (simulated)"},
		{ID: "sim-load", Driver: "sim", Measures: "load", Label: "Load (simulated)"},
		{ID: "sim-soil", Driver: "sim", Measures: "soil", Label: "Soil (simulated)"},
		{ID: "sim-light", Driver: "sim", Measures: "light", Label: "Light (simulated)"},
		{ID: "sim-rain", Driver: "sim", Measures: "rain", Label: "Rain gauge (simulated)", Interval: obs.Duration(sim.Step)},
	}
	c.SetDefaults()
	return c
}

// Options wire a Service to its environment. The zero value uses the real
// host: periph buses, /sys/class/powercap, /proc/stat, time.Now, no store.
type Options struct {
	// Logger receives short, rate-limited lines (default slog.Default()).
	Logger *slog.Logger
	// StorePath is the bbolt file (e.g. /perm/hypha/sensors.db); "" keeps
	// only the latest readings in memory and Series fails.
	StorePath string
	// Env is where drivers find buses (tests use periph playback buses).
	Env drivers.Env
	// PowercapRoot overrides /sys/class/powercap.
	PowercapRoot string
	// ProcStat overrides /proc/stat for the CPU-time energy estimate.
	ProcStat string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SimOrigin is when the simulator's battery and soil start (default:
	// midnight UTC two days before New).
	SimOrigin time.Time
	// MinBackoff and MaxBackoff bound retry delays of failing sensors
	// (defaults 5 s and 10 min).
	MinBackoff, MaxBackoff time.Duration
	// OpenNVML overrides GPU discovery (tests).
	OpenNVML func() (GPU, error)
}

// GPU is the part of NVML the service uses.
type GPU interface {
	energy.Counter
	Watts() (float64, error)
	Close() error
}

// State of a sensor.
const (
	StateStarting = "starting"
	StateOK       = "ok"
	StateError    = "error"
	StateAbsent   = "absent" // an optional source that this machine lacks
	StateDisabled = "disabled"
)

// SensorStatus is what the LAN page shows for one sensor.
type SensorStatus struct {
	ID        string    `json:"id"`
	Driver    string    `json:"driver"`
	Label     string    `json:"label"`
	Measures  string    `json:"measures"`
	Where     obs.Place `json:"where"`
	Simulated bool      `json:"simulated"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	LastGood  time.Time `json:"last_good,omitzero"`
	LastError time.Time `json:"last_error,omitzero"`
	// Failures counts consecutive failed attempts.
	Failures  int       `json:"failures,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
	Streams   []string  `json:"streams"`
}

// Report is the state of the whole subsystem.
type Report struct {
	// I2CBuses found by periph; empty with NoBuses true on a PC (both
	// are set once Run has looked).
	I2CBuses []string `json:"i2c_buses"`
	NoBuses  bool     `json:"no_buses"`
	// Energy describes the per-request meter.
	EnergySource    string         `json:"energy_source"`
	EnergyEstimated bool           `json:"energy_estimated"`
	Sensors         []SensorStatus `json:"sensors"`
	// Store problems (clock not set, disk full) and dropped readings.
	StoreError string `json:"store_error,omitempty"`
	Dropped    uint64 `json:"dropped,omitempty"`
}

// Service samples, stores and serves sensor readings. Create it with New,
// start it with Run, stop it by cancelling Run's context, then Close.
// All methods are safe for concurrent use.
type Service struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	store  *store.Store // nil without StorePath
	model  *sim.Model
	meter  *energy.Meter
	rapl   *energy.RAPL // nil when absent
	gpu    GPU          // nil when absent
	buses  []string     // guarded by mu
	probed bool         // guarded by mu: buses were looked for

	queue chan obs.Reading

	mu       sync.Mutex
	status   map[string]*SensorStatus   // guarded by mu
	latest   map[string]obs.Observation // guarded by mu
	dropped  uint64                     // guarded by mu
	storeErr string                     // guarded by mu

	running atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and prepares the service; nothing is opened on a bus
// until Run. It fails only on an invalid config or an unusable store file.
func New(cfg Config, opts Options) (*Service, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sensors: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Minute
	}
	if opts.SimOrigin.IsZero() {
		opts.SimOrigin = opts.Now().UTC().Truncate(24 * time.Hour).Add(-48 * time.Hour)
	}
	s := &Service{
		cfg: cfg, opts: opts, log: opts.Logger.With("subsystem", "sensors"), now: opts.Now,
		model:  sim.New(cfg.Simulation, cfg.Thing.Where, opts.SimOrigin),
		queue:  make(chan obs.Reading, 4096),
		status: map[string]*SensorStatus{},
		latest: map[string]obs.Observation{},
	}
	for _, sc := range cfg.Sensors {
		st := &SensorStatus{ID: sc.ID, Driver: sc.Driver, Label: sc.Label, Measures: sc.Measures, Where: sc.Where, Simulated: sc.Simulated(), State: StateStarting}
		for _, q := range sc.Quantities() {
			st.Streams = append(st.Streams, obs.StreamID(sc.ID, q))
		}
		if sc.Disabled {
			st.State = StateDisabled
		}
		s.status[sc.ID] = st
	}
	// Energy: RAPL when present, else the CPU-time estimate; NVML added.
	var cpu energy.Counter
	source, estimated := "rapl", false
	if r, err := energy.OpenRAPL(opts.PowercapRoot); err == nil {
		s.rapl, cpu = r, r
	} else {
		s.log.Info("cpu energy: RAPL absent, estimating from CPU time × TDP", "tdp_watts", cfg.Energy.TDPWatts, "reason", err)
		cpu = &energy.Estimate{TDPWatts: cfg.Energy.TDPWatts, Stat: opts.ProcStat}
		source, estimated = "cpu-time×tdp", true
	}
	openGPU := opts.OpenNVML
	if openGPU == nil {
		openGPU = func() (GPU, error) { return energy.OpenNVML() }
	}
	if s.wants("nvml") {
		if g, err := openGPU(); err == nil {
			s.gpu = g
			cpu = energy.Sum{cpu, g}
			source += "+nvml"
		} else {
			s.log.Info("gpu energy: NVML absent", "reason", err)
		}
	}
	s.meter = energy.NewMeter(cpu, estimated, source)
	if opts.StorePath != "" {
		st, err := store.Open(opts.StorePath, store.Options{
			Raw: cfg.Storage.Raw.Std(), FiveMinute: cfg.Storage.FiveMinute.Std(),
			Hourly: cfg.Storage.Hourly.Std(), Daily: cfg.Storage.Daily.Std(), Now: opts.Now,
		})
		if err != nil {
			if s.gpu != nil {
				_ = s.gpu.Close()
			}
			return nil, fmt.Errorf("sensors: %w", err)
		}
		s.store = st
	}
	return s, nil
}

func (s *Service) wants(driver string) bool {
	for _, sc := range s.cfg.Sensors {
		if sc.Driver == driver && !sc.Disabled {
			return true
		}
	}
	return false
}

// Meter returns the per-request energy meter (RAPL, else estimated, plus
// NVML when present).
func (s *Service) Meter() *energy.Meter { return s.meter }

// Config returns the configuration in use (defaults filled).
func (s *Service) Config() Config { return s.cfg }

// Run samples every enabled sensor until ctx is cancelled, then flushes
// pending readings to the store. It returns nil on cancellation.
func (s *Service) Run(ctx context.Context) error {
	if s.running.Swap(true) {
		return errors.New("sensors: Run called twice")
	}
	if err := drivers.HostInit(); err != nil && s.needsI2C() {
		s.log.Warn("periph host init failed; bus sensors will report it", "err", err)
	}
	buses := drivers.I2CBuses()
	s.mu.Lock()
	s.buses, s.probed = buses, true
	s.mu.Unlock()
	if len(buses) == 0 && s.needsI2C() && s.opts.Env.OpenI2C == nil {
		s.log.Warn("no I²C bus on this machine; I²C sensors stay in error", "hint", "Raspberry Pi: dtparam=i2c_arm=on")
	}
	var wg sync.WaitGroup
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); s.writer(ctx) }()
	for _, sc := range s.cfg.Sensors {
		if sc.Disabled {
			continue
		}
		wg.Add(1)
		go func(sc obs.SensorConfig) {
			defer wg.Done()
			s.runSensor(ctx, sc)
		}(sc)
	}
	wg.Wait()
	<-writerDone
	return nil
}

func (s *Service) needsI2C() bool {
	for _, sc := range s.cfg.Sensors {
		switch sc.Driver {
		case "sim", "rapl", "nvml":
		default:
			if !sc.Disabled {
				return true
			}
		}
	}
	return false
}

// Close closes the store and NVML. Call it after Run returned. Idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.gpu != nil {
			errs = append(errs, s.gpu.Close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// open opens the device of a sensor config.
func (s *Service) open(sc obs.SensorConfig) (drivers.Device, error) {
	switch sc.Driver {
	case "sim":
		return &sim.Device{Model: s.model, Measures: sc.Measures, Now: s.now}, nil
	case "rapl":
		if s.rapl == nil {
			return nil, fmt.Errorf("rapl: %w", obs.ErrNotPresent)
		}
		return &counterDevice{c: s.rapl, energyQ: obs.CPUEnergy, powerQ: obs.CPUPower, now: s.now}, nil
	case "nvml":
		if s.gpu == nil {
			return nil, fmt.Errorf("nvml: %w", obs.ErrNotPresent)
		}
		return &counterDevice{c: s.gpu, watts: s.gpu.Watts, energyQ: obs.GPUEnergy, powerQ: obs.GPUPower, now: s.now}, nil
	}
	return drivers.Open(sc, s.opts.Env)
}

// counterDevice turns a cumulative energy counter into energy and power
// readings.
type counterDevice struct {
	c       energy.Counter
	watts   func() (float64, error)
	energyQ string
	powerQ  string
	now     func() time.Time
	lastJ   float64
	lastT   time.Time
}

func (d *counterDevice) Read(ctx context.Context) ([]obs.Value, error) {
	j, err := d.c.Joules()
	if err != nil {
		return nil, err
	}
	t := d.now()
	vals := []obs.Value{{Quantity: d.energyQ, Value: j}}
	switch {
	case d.watts != nil:
		w, err := d.watts()
		if err != nil {
			return nil, err
		}
		vals = append(vals, obs.Value{Quantity: d.powerQ, Value: w})
	case !d.lastT.IsZero() && t.After(d.lastT):
		vals = append(vals, obs.Value{Quantity: d.powerQ, Value: (j - d.lastJ) / t.Sub(d.lastT).Seconds()})
	}
	d.lastJ, d.lastT = j, t
	return vals, nil
}

func (d *counterDevice) Close() error { return nil }

// runSensor is one sensor's loop: open, read every interval, back off on
// failure, reopen after a read error (the chip may have been reset).
func (s *Service) runSensor(ctx context.Context, sc obs.SensorConfig) {
	var dev drivers.Device
	defer func() {
		if dev != nil {
			_ = dev.Close()
		}
	}()
	lim := &logLimiter{}
	stuck := map[string]*stuckCounter{}
	failures := 0
	interval := sc.Interval.Std()
	for {
		var err error
		if dev == nil {
			dev, err = s.open(sc)
		}
		var vals []obs.Value
		if err == nil {
			vals, err = dev.Read(ctx)
		}
		if err == nil && !sc.Simulated() {
			err = checkStuck(sc, stuck, vals)
		}
		if ctx.Err() != nil {
			return
		}
		now := s.now()
		var wait time.Duration
		if err != nil {
			if dev != nil {
				_ = dev.Close()
				dev = nil
			}
			if errors.Is(err, obs.ErrNotPresent) {
				s.setAbsent(sc.ID, err)
				s.log.Info("sensor absent", "sensor", sc.ID, "reason", err.Error())
				return
			}
			failures++
			wait = backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
			s.setFailure(sc.ID, err, now, failures, now.Add(wait))
			if msg, ok := lim.allow(err.Error(), now); ok {
				s.log.Warn("sensor failing", "sensor", sc.ID, "driver", sc.Driver, "failures", failures, "retry_in", wait.String(), "err", msg)
			}
		} else {
			if failures > 0 {
				s.log.Info("sensor recovered", "sensor", sc.ID, "after_failures", failures)
				lim.reset()
			}
			failures = 0
			s.record(sc, vals, now)
			wait = interval - now.Sub(now.Truncate(interval)) // align to the interval
			if wait <= 0 {
				wait = interval
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func backoff(min, max time.Duration, failures int) time.Duration {
	d := min
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

type stuckCounter struct {
	v float64
	n int
}

func checkStuck(sc obs.SensorConfig, seen map[string]*stuckCounter, vals []obs.Value) error {
	if sc.StuckAfter < 0 {
		return nil
	}
	for _, v := range vals {
		q, ok := obs.LookupQuantity(v.Quantity)
		if !ok || !q.Noisy {
			continue
		}
		c := seen[v.Quantity]
		if c == nil {
			c = &stuckCounter{}
			seen[v.Quantity] = c
		}
		if c.n > 0 && c.v == v.Value {
			c.n++
		} else {
			c.v, c.n = v.Value, 1
		}
		if c.n >= sc.StuckAfter {
			return fmt.Errorf("%w: %s has read exactly %g %s %d times in a row", obs.ErrStuck, v.Quantity, v.Value, q.UnitSymbol, c.n)
		}
	}
	return nil
}

// logLimiter lets a failure be logged when its text changes, and otherwise
// once per 15 minutes.
type logLimiter struct {
	last   string
	at     time.Time
	repeat int
}

func (l *logLimiter) allow(msg string, now time.Time) (string, bool) {
	if msg != l.last || now.Sub(l.at) >= 15*time.Minute {
		out := msg
		if msg == l.last && l.repeat > 0 {
			out = fmt.Sprintf("%s (and %d times since the last log line)", msg, l.repeat)
		}
		l.last, l.at, l.repeat = msg, now, 0
		return out, true
	}
	l.repeat++
	return "", false
}

func (l *logLimiter) reset() { *l = logLimiter{} }

func (s *Service) setAbsent(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[id]
	st.State, st.Reason = StateAbsent, err.Error()
}

func (s *Service) setFailure(id string, err error, now time.Time, failures int, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[id]
	st.State, st.Reason, st.LastError, st.Failures, st.NextRetry = StateError, err.Error(), now, failures, next
}

func (s *Service) record(sc obs.SensorConfig, vals []obs.Value, now time.Time) {
	simulated := sc.Simulated()
	s.mu.Lock()
	st := s.status[sc.ID]
	st.State, st.Reason, st.LastGood, st.Failures, st.NextRetry = StateOK, "", now, 0, time.Time{}
	for _, v := range vals {
		q, _ := obs.LookupQuantity(v.Quantity)
		id := obs.StreamID(sc.ID, v.Quantity)
		s.latest[id] = obs.Observation{Stream: id, SensorID: sc.ID, Quantity: v.Quantity, Value: v.Value, Unit: q.UnitSymbol, Time: now, Simulated: simulated}
	}
	s.mu.Unlock()
	if s.store == nil {
		return
	}
	for _, v := range vals {
		r := obs.Reading{Stream: obs.StreamID(sc.ID, v.Quantity), Time: now, Value: v.Value, Simulated: simulated}
		select {
		case s.queue <- r:
		default:
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	}
}

// writer batches queued readings into store transactions (at most 1 s or
// 500 readings per batch) and prunes hourly.
func (s *Service) writer(ctx context.Context) {
	if s.store == nil {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lim := &logLimiter{}
	var batch []store.Sample
	lastPrune := time.Time{}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		err := s.store.Write(batch)
		s.mu.Lock()
		if err != nil {
			s.storeErr = err.Error()
			s.dropped += uint64(len(batch))
		} else {
			s.storeErr = ""
		}
		s.mu.Unlock()
		if err != nil {
			if msg, ok := lim.allow(err.Error(), s.now()); ok {
				s.log.Warn("sensor store write failed; readings dropped", "n", len(batch), "err", msg)
			}
		}
		batch = batch[:0]
		if now := s.now(); now.Sub(lastPrune) > time.Hour && !now.Before(store.MinTime) {
			lastPrune = now
			if n, err := s.store.Prune(now); err != nil {
				s.log.Warn("sensor store prune failed", "err", err)
			} else if n > 0 {
				s.log.Debug("sensor store pruned", "keys", n)
			}
		}
	}
	for {
		select {
		case r := <-s.queue:
			batch = append(batch, store.Sample{Stream: r.Stream, Time: r.Time, Value: r.Value, Simulated: r.Simulated})
			if len(batch) >= 500 {
				flush()
			}
		case <-tick.C:
			flush()
		case <-ctx.Done():
		drain:
			for {
				select {
				case r := <-s.queue:
					batch = append(batch, store.Sample{Stream: r.Stream, Time: r.Time, Value: r.Value, Simulated: r.Simulated})
				default:
					break drain
				}
			}
			flush()
			return
		}
	}
}

// Flush waits until every reading queued so far is written (tests, and
// before a ledger snapshot is compared with stored series).
func (s *Service) Flush(ctx context.Context) error {
	for len(s.queue) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	// One more writer tick makes sure the last batch was committed.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(1100 * time.Millisecond):
	}
	return nil
}

// Snapshot returns the latest reading of every stream, sorted by stream id,
// for a ledger entry. Each carries its UCUM unit, time, sensor id and
// simulated flag.
func (s *Service) Snapshot() []Observation {
	s.mu.Lock()
	out := make([]Observation, 0, len(s.latest))
	for _, o := range s.latest {
		out = append(out, o)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

// Series returns a chart series of a stream (see store.Store.Series): the
// resolution (raw, 5 min, 1 h, 1 d) is picked from step and retention.
func (s *Service) Series(stream string, from, to time.Time, step time.Duration) (Series, error) {
	if s.store == nil {
		return Series{}, fmt.Errorf("series %q: no store configured", stream)
	}
	return s.store.Series(stream, from, to, step)
}

// Status reports buses, the energy meter and every sensor.
func (s *Service) Status() Report {
	name, est := s.meter.Source()
	r := Report{EnergySource: name, EnergyEstimated: est}
	s.mu.Lock()
	r.I2CBuses, r.NoBuses = append([]string(nil), s.buses...), s.probed && len(s.buses) == 0
	r.StoreError, r.Dropped = s.storeErr, s.dropped
	for _, sc := range s.cfg.Sensors {
		st := *s.status[sc.ID]
		st.Streams = append([]string(nil), st.Streams...)
		r.Sensors = append(r.Sensors, st)
	}
	s.mu.Unlock()
	return r
}

// LoadConfigFile reads and validates a JSON config file. A missing file
// is not an error: found is false and the caller uses DefaultConfig.
func LoadConfigFile(path string) (cfg Config, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("load sensor config: %w", err)
	}
	cfg, err = obs.Decode(b)
	if err != nil {
		return Config{}, true, fmt.Errorf("load sensor config %s: %w", path, err)
	}
	return cfg, true, nil
}
