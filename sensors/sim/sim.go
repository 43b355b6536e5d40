// Package sim simulates the sensors of a small solar-powered node for
// machines without hardware (the VM, the demo): sun elevation for the
// node's latitude/longitude and date, clouds, PV power, battery state of
// charge integrating PV minus load, air temperature, humidity, pressure,
// light, CO2, rain events and soil moisture drying between them.
//
// Everything is a deterministic function of (config, place, origin, time):
// the same seed gives the same curves whatever the sampling schedule.
// Every value it produces must be labelled simulated by its caller.
//
// A Model is safe for concurrent use.
package sim

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/univrs/hypha/sensors/obs"
)

// Step is the integration step of battery and soil state.
const Step = 5 * time.Minute

// Model is a seeded simulation of one site.
type Model struct {
	cfg    obs.SimConfig
	lat    float64
	lon    float64
	origin time.Time

	mu      sync.Mutex
	cur     time.Time       // guarded by mu: time of st
	st      state           // guarded by mu
	valid   bool            // guarded by mu
	marks   map[int64]state // guarded by mu: state at each UTC midnight reached
	prev    state           // guarded by mu: state one step before cur
	hasPrev bool            // guarded by mu: prev is valid
}

// MaxSpan is the longest stretch the model integrates in one go; beyond
// it the state restarts two days before the requested time.
const MaxSpan = 400 * 24 * time.Hour

// maxMarks bounds the daily checkpoints kept for queries back in time.
const maxMarks = 800

type state struct {
	batteryWh  float64
	batteryW   float64 // last step's flow, + = charging
	soil       float64 // % volumetric
	rainMM     float64 // rain during the last step
	loadW      float64
	curtailedW float64
}

// New returns a model of the site at where, integrating state from origin
// (battery 60 %, soil 25 % at origin). Times before origin return the
// origin state.
func New(cfg obs.SimConfig, where obs.Place, origin time.Time) *Model {
	return &Model{cfg: cfg, lat: where.Latitude, lon: where.Longitude, origin: origin.Truncate(Step)}
}

// ---- deterministic noise ----

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hash returns a uniform number in [0,1) for (seed, stream, i).
func (m *Model) hash(stream, i int64) float64 {
	h := splitmix(uint64(m.cfg.Seed) ^ splitmix(uint64(stream)*0x632be59bd9b4e019^uint64(i)))
	return float64(h>>11) / (1 << 53)
}

// noise is smooth value noise in [0,1) with knots every period.
func (m *Model) noise(stream int64, t time.Time, period time.Duration) float64 {
	x := float64(t.UnixNano()) / float64(period)
	i := math.Floor(x)
	f := x - i
	f = f * f * (3 - 2*f)
	a, b := m.hash(stream, int64(i)), m.hash(stream, int64(i)+1)
	return a + (b-a)*f
}

func day(t time.Time) int64 { return t.Unix() / 86400 }

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// ---- sun ----

// SunElevation returns the sun's elevation in degrees at the site (NOAA
// general solar position approximation, accurate to a fraction of a degree).
func (m *Model) SunElevation(t time.Time) float64 {
	return SunElevation(m.lat, m.lon, t)
}

// SunElevation returns the sun's elevation in degrees at lat/lon at t.
func SunElevation(lat, lon float64, t time.Time) float64 {
	t = t.UTC()
	hour := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
	g := 2 * math.Pi / 365 * (float64(t.YearDay()-1) + (hour-12)/24)
	eot := 229.18 * (0.000075 + 0.001868*math.Cos(g) - 0.032077*math.Sin(g) - 0.014615*math.Cos(2*g) - 0.040849*math.Sin(2*g))
	decl := 0.006918 - 0.399912*math.Cos(g) + 0.070257*math.Sin(g) - 0.006758*math.Cos(2*g) + 0.000907*math.Sin(2*g) - 0.002697*math.Cos(3*g) + 0.00148*math.Sin(3*g)
	tst := hour*60 + eot + 4*lon
	ha := (tst/4 - 180) * math.Pi / 180
	phi := lat * math.Pi / 180
	cz := math.Sin(phi)*math.Sin(decl) + math.Cos(phi)*math.Cos(decl)*math.Cos(ha)
	return 90 - math.Acos(clamp(cz, -1, 1))*180/math.Pi
}

func (m *Model) sunSine(t time.Time) float64 {
	return math.Max(0, math.Sin(m.SunElevation(t)*math.Pi/180))
}

// CloudCover returns the cloud cover 0..1: a daily level around the
// configured cloudiness with passing clouds on a 40-minute scale.
func (m *Model) CloudCover(t time.Time) float64 {
	daily := m.cfg.Cloudiness + (m.hash(1, day(t))-0.5)*0.9
	return clamp(daily+(m.noise(2, t, 40*time.Minute)-0.5)*0.6, 0, 1)
}

// PVPower returns PV power in W: peak × sin(elevation) × clear-sky
// atmospheric transmission × (1 − 0.75 × cloud cover).
func (m *Model) PVPower(t time.Time) float64 {
	s := m.sunSine(t)
	if s <= 0 {
		return 0
	}
	airMass := 1 / math.Max(s, 0.05)
	trans := math.Pow(0.7, math.Pow(airMass, 0.678)) / 0.7
	return m.cfg.PVPeakWatts * s * trans * (1 - 0.75*m.CloudCover(t))
}

// Illuminance returns outdoor illuminance in lux.
func (m *Model) Illuminance(t time.Time) float64 {
	s := m.sunSine(t)
	// Civil twilight still gives a few lux.
	tw := clamp((m.SunElevation(t)+6)/6, 0, 1) * 400
	return 110000*s*(1-0.75*m.CloudCover(t)) + tw*(1-s)
}

// ---- weather ----

func (m *Model) seasonal(t time.Time) (mean, amplitude float64) {
	alat := math.Abs(m.lat)
	mean = 30 - 0.38*alat
	season := math.Cos(2 * math.Pi * float64(t.UTC().YearDay()-200) / 365)
	if m.lat < 0 {
		season = -season
	}
	return mean + 0.25*alat*season, 3 + 5*(1-m.cfg.Cloudiness)
}

// AirTemperature returns air temperature in °C: a seasonal mean, a diurnal
// cycle peaking at 15:00 solar time (damped by clouds), weather noise.
func (m *Model) AirTemperature(t time.Time) float64 {
	mean, amp := m.seasonal(t)
	solarHour := math.Mod(float64(t.UTC().Unix()%86400)/3600+m.lon/15+24, 24)
	diurnal := -math.Cos(2 * math.Pi * (solarHour - 3) / 24)
	cloud := m.CloudCover(t)
	weather := (m.noise(3, t, 36*time.Hour) - 0.5) * 8
	return mean + weather + amp*(1-0.5*cloud)*diurnal + (m.noise(4, t, 20*time.Minute)-0.5)*0.4
}

// RelativeHumidity returns relative humidity in %, high at night and when
// it rains.
func (m *Model) RelativeHumidity(t time.Time) float64 {
	mean, _ := m.seasonal(t)
	rh := 70 - 2.2*(m.AirTemperature(t)-mean) + 15*(m.CloudCover(t)-0.5) + (m.noise(5, t, 2*time.Hour)-0.5)*6
	if m.RainRate(t) > 0 {
		rh += 20
	}
	return clamp(rh, 15, 100)
}

// AirPressure returns pressure in hPa: fronts passing over days.
func (m *Model) AirPressure(t time.Time) float64 {
	return 1013 + (m.noise(6, t, 48*time.Hour)-0.5)*30 + (m.noise(7, t, 3*time.Hour)-0.5)*2
}

// CO2 returns CO2 in ppm near the node (indoor cabinet air).
func (m *Model) CO2(t time.Time) float64 {
	return 430 + 60*(1-m.sunSine(t)) + (m.noise(8, t, time.Hour)-0.5)*40
}

// RainRate returns the rain rate in mm/h. Each day may have one shower,
// more likely on cloudy days.
func (m *Model) RainRate(t time.Time) float64 {
	for _, d := range []int64{day(t) - 1, day(t)} {
		daily := m.cfg.Cloudiness + (m.hash(1, d)-0.5)*0.9
		if m.hash(9, d) > 0.1+0.4*clamp(daily, 0, 1) {
			continue
		}
		start := time.Unix(d*86400, 0).Add(time.Duration(m.hash(10, d) * 24 * float64(time.Hour)))
		dur := time.Duration((0.5 + 3.5*m.hash(11, d)) * float64(time.Hour))
		if !t.Before(start) && t.Before(start.Add(dur)) {
			return 0.5 + 6*m.hash(12, d)
		}
	}
	return 0
}

// SoilTemperature returns soil temperature at 10 cm in °C: the daily mean
// of the air with a small lagged diurnal wave.
func (m *Model) SoilTemperature(t time.Time) float64 {
	mean, amp := m.seasonal(t)
	solarHour := math.Mod(float64(t.UTC().Unix()%86400)/3600+m.lon/15+24, 24)
	weather := (m.noise(3, t.Add(-24*time.Hour), 36*time.Hour) - 0.5) * 6
	return mean + 1 + weather + 0.3*amp*(-math.Cos(2*math.Pi*(solarHour-6)/24))
}

// LoadPower returns the node's power draw in W.
func (m *Model) LoadPower(t time.Time) float64 {
	return m.cfg.LoadWatts * (0.75 + 0.5*m.noise(13, t, 15*time.Minute))
}

// ---- integrated state ----

func (m *Model) stepState(st state, t time.Time) state {
	h := Step.Hours()
	pv := m.PVPower(t)
	load := m.LoadPower(t)
	capWh := m.cfg.BatteryWh
	flow := pv - load // W into the battery before limits
	eff := 1.0
	if flow > 0 {
		eff = 0.92
	}
	next := st.batteryWh + flow*eff*h
	st.curtailedW = 0
	switch {
	case next > capWh:
		st.curtailedW = (next - capWh) / (eff * h)
		next = capWh
	case next < 0.1*capWh: // low-voltage disconnect sheds the load
		next = 0.1 * capWh
	}
	st.batteryW = (next - st.batteryWh) / h
	st.batteryWh = next
	st.loadW = load
	// Soil: rain wets (1 mm ≈ 0.25 % over a 40 cm root zone), evaporation
	// and transpiration dry it in daylight, slower as it dries.
	rain := m.RainRate(t) * h
	st.rainMM = rain
	et := 0.35 * m.sunSine(t) * math.Max(0.2, m.AirTemperature(t)/20) * h // mm
	st.soil += 0.25*rain - 0.25*et*clamp((st.soil-8)/(45-8), 0, 1)
	st.soil = clamp(st.soil, 8, 45)
	return st
}

// stateAt returns the integrated state at the step containing t.
func (m *Model) stateAt(t time.Time) state {
	m.mu.Lock()
	defer m.mu.Unlock()
	target := t.Truncate(Step)
	if m.valid && m.hasPrev && target.Equal(m.cur.Add(-Step)) {
		return m.prev
	}
	if !m.valid || target.Before(m.cur) {
		m.cur = m.origin
		m.st = state{batteryWh: 0.6 * m.cfg.BatteryWh, soil: 25}
		m.valid = true
		m.hasPrev = false
		// Restart from the last midnight checkpoint not after target.
		for d := day(target); d >= day(m.origin) && d > day(target)-maxMarks; d-- {
			if st, ok := m.marks[d]; ok {
				m.cur, m.st = time.Unix(d*86400, 0), st
				break
			}
		}
	}
	if m.marks == nil {
		m.marks = map[int64]state{}
	}
	if target.Sub(m.cur) > MaxSpan {
		// The clock jumped (a Pi without RTC boots in 1970, then NTP sets
		// it): restart two days before target instead of integrating decades.
		m.cur = target.Truncate(24 * time.Hour).Add(-48 * time.Hour)
		m.st = state{batteryWh: 0.6 * m.cfg.BatteryWh, soil: 25}
		m.hasPrev = false
		clear(m.marks)
	}
	for m.cur.Before(target) {
		m.cur = m.cur.Add(Step)
		m.prev, m.hasPrev = m.st, true
		m.st = m.stepState(m.st, m.cur)
		if m.cur.Unix()%86400 == 0 {
			d := day(m.cur)
			m.marks[d] = m.st
			delete(m.marks, d-maxMarks)
		}
	}
	return m.st
}

// Battery returns state of charge (%), battery power (W, + = charging) and
// voltage (V) of a 12 V LiFePO4 bank.
func (m *Model) Battery(t time.Time) (soc, watts, volts float64) {
	st := m.stateAt(t)
	soc = 100 * st.batteryWh / m.cfg.BatteryWh
	watts = st.batteryW
	volts = 12.6 + 0.9*soc/100 + watts*0.002
	return soc, watts, volts
}

// SoilMoisture returns the soil's volumetric water content in %.
func (m *Model) SoilMoisture(t time.Time) float64 { return m.stateAt(t).soil }

// Values returns the values a simulated sensor measuring `measures`
// (see obs.MeasuresFor("sim")) reads at t.
func (m *Model) Values(measures string, t time.Time) []obs.Value {
	switch measures {
	case "air":
		return []obs.Value{{Quantity: obs.AirTemperature, Value: m.AirTemperature(t)}, {Quantity: obs.RelativeHumidity, Value: m.RelativeHumidity(t)}, {Quantity: obs.AirPressure, Value: m.AirPressure(t)}}
	case "soil":
		return []obs.Value{{Quantity: obs.SoilMoisture, Value: m.SoilMoisture(t)}, {Quantity: obs.SoilTemperature, Value: m.SoilTemperature(t)}}
	case "pv":
		return []obs.Value{{Quantity: obs.PVPower, Value: m.PVPower(t)}}
	case "battery":
		soc, w, v := m.Battery(t)
		return []obs.Value{{Quantity: obs.BatterySoC, Value: soc}, {Quantity: obs.BatteryPower, Value: w}, {Quantity: obs.BatteryVoltage, Value: v}}
	case "load":
		return []obs.Value{{Quantity: obs.LoadPower, Value: m.LoadPower(t)}}
	case "light":
		return []obs.Value{{Quantity: obs.Illuminance, Value: m.Illuminance(t)}}
	case "co2":
		return []obs.Value{{Quantity: obs.CO2, Value: m.CO2(t)}}
	case "rain":
		return []obs.Value{{Quantity: obs.Rainfall, Value: m.stateAt(t).rainMM}}
	}
	return nil
}

// Device is a simulated sensor: it reads the model at the clock's time.
type Device struct {
	Model    *Model
	Measures string
	Now      func() time.Time // default time.Now
}

// Read returns the model's values now. It never fails.
func (d *Device) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	return d.Model.Values(d.Measures, now()), nil
}

// Close does nothing.
func (d *Device) Close() error { return nil }
