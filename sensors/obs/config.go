package obs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ConfigVersion is the version of Config this code writes. Decode accepts
// every version up to it and migrates older ones.
const ConfigVersion = 1

// Config is a node's sensor configuration, persisted as JSON on /perm.
// A Config is a plain value: copy it freely, do not share one being edited.
type Config struct {
	// Version of the file format; 0 means "written before versioning" and
	// is migrated (v0 files had no thing and no version).
	Version int `json:"version"`
	// Thing is this node as a SensorThings Thing.
	Thing Thing `json:"thing"`
	// Sensors are the configured sensors, real and simulated.
	Sensors []SensorConfig `json:"sensors"`
	// Simulation tunes the simulated sensors (driver "sim").
	Simulation SimConfig `json:"simulation"`
	// Storage tunes retention of the time-series store.
	Storage StorageConfig `json:"storage"`
	// Energy tunes the energy meter.
	Energy EnergyConfig `json:"energy"`
}

// Thing names the node and where it is.
type Thing struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Where       Place  `json:"where"`
}

// Place is where something is. Latitude/Longitude are WGS84 degrees; both
// zero means unknown.
type Place struct {
	Name      string  `json:"name,omitempty"`
	Latitude  float64 `json:"latitude,omitempty"`
	Longitude float64 `json:"longitude,omitempty"`
}

// Known reports whether the place has coordinates.
func (p Place) Known() bool { return p.Latitude != 0 || p.Longitude != 0 }

// SensorConfig configures one sensor.
type SensorConfig struct {
	// ID is stable and unique on the node: [a-z0-9][a-z0-9_-]{0,31}.
	ID string `json:"id"`
	// Driver is one of Drivers.
	Driver string `json:"driver"`
	// Label is what a person sees ("Greenhouse air").
	Label string `json:"label,omitempty"`
	// Measures says what the sensor measures; allowed values depend on the
	// driver (see MeasuresFor).
	Measures string `json:"measures,omitempty"`
	// Where the sensor is.
	Where Place `json:"where"`
	// Bus is the periph bus name ("" = the first I²C bus, "1" = /dev/i2c-1)
	// or "w1" for the kernel 1-wire bus.
	Bus string `json:"bus,omitempty"`
	// Address is the I²C address (JSON number or "0x76").
	Address Address `json:"address,omitempty"`
	// Interval between samples; default 60s.
	Interval Duration `json:"interval,omitempty"`
	// OneWireID is the DS18B20 ROM id as the kernel names it ("28-0000070e41ac").
	OneWireID string `json:"onewire_id,omitempty"`
	// ResolutionBits of a DS18B20 (9..12, default 12).
	ResolutionBits int `json:"resolution_bits,omitempty"`
	// ShuntOhms and MaxAmps calibrate an INA219 (defaults 0.1 Ω, 3.2 A).
	ShuntOhms float64 `json:"shunt_ohms,omitempty"`
	MaxAmps   float64 `json:"max_amps,omitempty"`
	// ReverseCurrent negates an INA219's current and power, for a shunt
	// wired the other way round (a battery must read + when charging).
	ReverseCurrent bool `json:"reverse_current,omitempty"`
	// Channel of an ADS1x15 (0..3, single-ended) and the full-scale voltage
	// the probe can reach (default 3.3 V).
	Channel        int     `json:"channel,omitempty"`
	FullScaleVolts float64 `json:"full_scale_volts,omitempty"`
	// Calibration maps probe volts to % volumetric water content, piecewise
	// linear between points. At least two points with distinct volts.
	Calibration []CalPoint `json:"calibration,omitempty"`
	// StuckAfter is how many identical consecutive values of a noisy
	// quantity mark the sensor as stuck (default 30, negative disables).
	StuckAfter int `json:"stuck_after,omitempty"`
	// Disabled sensors are listed but never opened.
	Disabled bool `json:"disabled,omitempty"`
}

// CalPoint is one calibration point of a soil moisture probe.
type CalPoint struct {
	Volts   float64 `json:"volts"`
	Percent float64 `json:"percent"`
}

// SimConfig tunes the simulator. Everything it produces is labelled simulated.
type SimConfig struct {
	// Seed makes the simulation deterministic (same seed, same curves).
	Seed int64 `json:"seed"`
	// PVPeakWatts is the PV array's peak power (default 100 W).
	PVPeakWatts float64 `json:"pv_peak_watts,omitempty"`
	// BatteryWh is the battery capacity (default 1200 Wh).
	BatteryWh float64 `json:"battery_wh,omitempty"`
	// LoadWatts is the mean load (default 25 W).
	LoadWatts float64 `json:"load_watts,omitempty"`
	// Cloudiness 0..1 is the mean cloud cover (default 0.4).
	Cloudiness float64 `json:"cloudiness,omitempty"`
}

// StorageConfig tunes the time-series store's retention.
type StorageConfig struct {
	// Raw samples are kept this long (default 7 days).
	Raw Duration `json:"raw_retention,omitempty"`
	// FiveMinute aggregates are kept this long (default 31 days).
	FiveMinute Duration `json:"five_minute_retention,omitempty"`
	// Hourly aggregates are kept this long (default 5 years).
	Hourly Duration `json:"hourly_retention,omitempty"`
	// Daily aggregates are kept this long (0 = forever).
	Daily Duration `json:"daily_retention,omitempty"`
}

// EnergyConfig tunes the energy meter.
type EnergyConfig struct {
	// TDPWatts is used to estimate CPU energy when RAPL is absent: joules =
	// CPU seconds × TDPWatts / number of CPUs. Default 15 W.
	TDPWatts float64 `json:"tdp_watts,omitempty"`
}

// Drivers lists the driver names a SensorConfig may use.
var Drivers = []string{"bme280", "bmp280", "ds18b20", "ina219", "ads1115", "ads1015", "scd4x", "bh1750", "rapl", "nvml", "sim"}

// MeasuresFor returns the allowed Measures values of a driver; the first is
// the default.
func MeasuresFor(driver string) []string {
	switch driver {
	case "bme280", "bmp280", "scd4x":
		return []string{"air"}
	case "ds18b20":
		return []string{"soil", "water", "air"}
	case "ina219":
		return []string{"pv", "battery", "load"}
	case "ads1115", "ads1015":
		return []string{"soil_moisture"}
	case "bh1750":
		return []string{"light"}
	case "rapl":
		return []string{"cpu"}
	case "nvml":
		return []string{"gpu"}
	case "sim":
		return []string{"air", "soil", "pv", "battery", "load", "light", "co2", "rain"}
	}
	return nil
}

// Quantities returns the quantities a configured sensor produces.
func (s SensorConfig) Quantities() []string {
	switch s.Driver {
	case "bme280":
		return []string{AirTemperature, RelativeHumidity, AirPressure}
	case "bmp280":
		return []string{AirTemperature, AirPressure}
	case "scd4x":
		return []string{CO2, AirTemperature, RelativeHumidity}
	case "ds18b20":
		switch s.Measures {
		case "water":
			return []string{WaterTemperature}
		case "air":
			return []string{AirTemperature}
		}
		return []string{SoilTemperature}
	case "ina219":
		switch s.Measures {
		case "battery":
			return []string{BatteryPower, BatteryVoltage, BatteryCurrent}
		case "load":
			return []string{LoadPower, LoadVoltage, LoadCurrent}
		}
		return []string{PVPower, PVVoltage, PVCurrent}
	case "ads1115", "ads1015":
		return []string{SoilMoisture, ProbeVoltage}
	case "bh1750":
		return []string{Illuminance}
	case "rapl":
		return []string{CPUEnergy, CPUPower}
	case "nvml":
		return []string{GPUEnergy, GPUPower}
	case "sim":
		switch s.Measures {
		case "air":
			return []string{AirTemperature, RelativeHumidity, AirPressure}
		case "soil":
			return []string{SoilMoisture, SoilTemperature}
		case "pv":
			return []string{PVPower}
		case "battery":
			return []string{BatterySoC, BatteryPower, BatteryVoltage}
		case "load":
			return []string{LoadPower}
		case "light":
			return []string{Illuminance}
		case "co2":
			return []string{CO2}
		case "rain":
			return []string{Rainfall}
		}
	}
	return nil
}

// Simulated reports whether the sensor is simulated.
func (s SensorConfig) Simulated() bool { return s.Driver == "sim" }

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Decode parses a JSON config, migrates older versions, fills defaults and
// validates. Unknown fields are errors (a typo must not silently disable a
// sensor). The error names the field or sensor that is wrong.
func Decode(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decode sensor config: %w: %v", ErrBadConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("decode sensor config: %w: trailing data after the JSON object", ErrBadConfig)
	}
	if c.Version > ConfigVersion || c.Version < 0 {
		return Config{}, fmt.Errorf("decode sensor config: %w: version %d (this build reads up to %d)", ErrBadConfig, c.Version, ConfigVersion)
	}
	if c.Version == 0 {
		c = migrateV0(c)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("decode sensor config: %w", err)
	}
	return c, nil
}

// migrateV0 upgrades an unversioned config: v0 had no thing; its name was
// "hypha" and its place was the first sensor's place.
func migrateV0(c Config) Config {
	c.Version = 1
	if c.Thing.Name == "" {
		c.Thing.Name = "hypha"
	}
	if !c.Thing.Where.Known() && len(c.Sensors) > 0 {
		c.Thing.Where = c.Sensors[0].Where
	}
	return c
}

// Encode returns the config as indented JSON with the current version.
func (c Config) Encode() ([]byte, error) {
	c.Version = ConfigVersion
	return json.MarshalIndent(c, "", "  ")
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Thing.Name == "" {
		c.Thing.Name = "hypha"
	}
	if c.Simulation.PVPeakWatts == 0 {
		c.Simulation.PVPeakWatts = 100
	}
	if c.Simulation.BatteryWh == 0 {
		c.Simulation.BatteryWh = 1200
	}
	if c.Simulation.LoadWatts == 0 {
		c.Simulation.LoadWatts = 25
	}
	if c.Simulation.Cloudiness == 0 {
		c.Simulation.Cloudiness = 0.4
	}
	if c.Storage.Raw == 0 {
		c.Storage.Raw = Duration(7 * 24 * time.Hour)
	}
	if c.Storage.FiveMinute == 0 {
		c.Storage.FiveMinute = Duration(31 * 24 * time.Hour)
	}
	if c.Storage.Hourly == 0 {
		c.Storage.Hourly = Duration(5 * 365 * 24 * time.Hour)
	}
	if c.Energy.TDPWatts == 0 {
		c.Energy.TDPWatts = 15
	}
	for i := range c.Sensors {
		s := &c.Sensors[i]
		if s.Interval == 0 {
			s.Interval = Duration(time.Minute)
		}
		if m := MeasuresFor(s.Driver); s.Measures == "" && len(m) > 0 {
			s.Measures = m[0]
		}
		if s.Label == "" {
			s.Label = s.ID
		}
		if s.StuckAfter == 0 {
			s.StuckAfter = 30
		}
		if !s.Where.Known() && s.Where.Name == "" {
			s.Where = c.Thing.Where
		}
		switch s.Driver {
		case "ds18b20":
			if s.ResolutionBits == 0 {
				s.ResolutionBits = 12
			}
		case "ina219":
			if s.ShuntOhms == 0 {
				s.ShuntOhms = 0.1
			}
			if s.MaxAmps == 0 {
				s.MaxAmps = 3.2
			}
		case "ads1115", "ads1015":
			if s.FullScaleVolts == 0 {
				s.FullScaleVolts = 3.3
			}
		}
		if s.Address == 0 {
			s.Address = defaultAddress(s.Driver)
		}
	}
}

func defaultAddress(driver string) Address {
	switch driver {
	case "bme280", "bmp280":
		return 0x76
	case "ina219":
		return 0x40
	case "ads1115", "ads1015":
		return 0x48
	case "scd4x":
		return 0x62
	case "bh1750":
		return 0x23
	}
	return 0
}

// Validate checks a config after SetDefaults. The error names the sensor
// and field.
func (c Config) Validate() error {
	if err := validPlace("thing.where", c.Thing.Where); err != nil {
		return err
	}
	if c.Simulation.PVPeakWatts < 0 || c.Simulation.BatteryWh <= 0 || c.Simulation.LoadWatts < 0 ||
		c.Simulation.Cloudiness < 0 || c.Simulation.Cloudiness > 1 || !finite(c.Simulation.PVPeakWatts, c.Simulation.BatteryWh, c.Simulation.LoadWatts, c.Simulation.Cloudiness) {
		return fmt.Errorf("%w: simulation: pv_peak_watts, load_watts >= 0, battery_wh > 0, cloudiness in [0,1]", ErrBadConfig)
	}
	if c.Storage.Raw < Duration(time.Hour) || c.Storage.FiveMinute < Duration(time.Hour) || c.Storage.Hourly < Duration(24*time.Hour) || c.Storage.Daily < 0 {
		return fmt.Errorf("%w: storage: raw and five_minute retention >= 1h, hourly >= 24h, daily >= 0", ErrBadConfig)
	}
	if !(c.Energy.TDPWatts > 0 && c.Energy.TDPWatts < 10000) {
		return fmt.Errorf("%w: energy.tdp_watts %v: want 0 < W < 10000", ErrBadConfig, c.Energy.TDPWatts)
	}
	seen := map[string]bool{}
	for i, s := range c.Sensors {
		if !idRE.MatchString(s.ID) {
			return fmt.Errorf("%w: sensors[%d].id %q: want [a-z0-9][a-z0-9_-]{0,31}", ErrBadConfig, i, s.ID)
		}
		if seen[s.ID] {
			return fmt.Errorf("%w: sensors[%d].id %q: duplicate", ErrBadConfig, i, s.ID)
		}
		seen[s.ID] = true
		if err := s.validate(); err != nil {
			return fmt.Errorf("%w: sensor %q: %v", ErrBadConfig, s.ID, err)
		}
	}
	return nil
}

func (s SensorConfig) validate() error {
	allowed := MeasuresFor(s.Driver)
	if allowed == nil {
		return fmt.Errorf("driver %q: want one of %s", s.Driver, strings.Join(Drivers, ", "))
	}
	ok := false
	for _, m := range allowed {
		ok = ok || m == s.Measures
	}
	if !ok {
		return fmt.Errorf("measures %q: driver %s measures one of %s", s.Measures, s.Driver, strings.Join(allowed, ", "))
	}
	if err := validPlace("where", s.Where); err != nil {
		return err
	}
	if s.Interval < Duration(time.Second) || s.Interval > Duration(24*time.Hour) {
		return fmt.Errorf("interval %s: want 1s..24h", time.Duration(s.Interval))
	}
	if len(s.Label) > 64 {
		return fmt.Errorf("label: longer than 64 bytes")
	}
	switch s.Driver {
	case "bme280", "bmp280":
		if s.Address != 0x76 && s.Address != 0x77 {
			return fmt.Errorf("address %s: a BMx280 answers at 0x76 or 0x77", s.Address)
		}
	case "ina219":
		if s.Address < 0x40 || s.Address > 0x4f {
			return fmt.Errorf("address %s: an INA219 answers at 0x40..0x4f", s.Address)
		}
		if !(s.ShuntOhms > 0.0001 && s.ShuntOhms < 100) || !(s.MaxAmps > 0.001 && s.MaxAmps < 100) {
			return fmt.Errorf("shunt_ohms %v / max_amps %v out of range", s.ShuntOhms, s.MaxAmps)
		}
	case "ads1115", "ads1015":
		if s.Address < 0x48 || s.Address > 0x4b {
			return fmt.Errorf("address %s: an ADS1x15 answers at 0x48..0x4b", s.Address)
		}
		if s.Channel < 0 || s.Channel > 3 {
			return fmt.Errorf("channel %d: want 0..3", s.Channel)
		}
		if !(s.FullScaleVolts > 0 && s.FullScaleVolts <= 6.144) {
			return fmt.Errorf("full_scale_volts %v: want 0 < V <= 6.144", s.FullScaleVolts)
		}
		if _, err := NewCalibration(s.Calibration); err != nil {
			return err
		}
	case "scd4x":
		if s.Address != 0x62 {
			return fmt.Errorf("address %s: an SCD4x answers at 0x62", s.Address)
		}
	case "bh1750":
		if s.Address != 0x23 && s.Address != 0x5c {
			return fmt.Errorf("address %s: a BH1750 answers at 0x23 or 0x5c", s.Address)
		}
	case "ds18b20":
		if s.ResolutionBits < 9 || s.ResolutionBits > 12 {
			return fmt.Errorf("resolution_bits %d: want 9..12", s.ResolutionBits)
		}
		if _, err := ParseOneWireID(s.OneWireID); err != nil {
			return err
		}
	}
	return nil
}

func validPlace(field string, p Place) error {
	if !finite(p.Latitude, p.Longitude) || p.Latitude < -90 || p.Latitude > 90 || p.Longitude < -180 || p.Longitude > 180 {
		return fmt.Errorf("%w: %s: latitude %v / longitude %v out of range", ErrBadConfig, field, p.Latitude, p.Longitude)
	}
	if len(p.Name) > 128 {
		return fmt.Errorf("%w: %s.name: longer than 128 bytes", ErrBadConfig, field)
	}
	return nil
}

func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

var oneWireRE = regexp.MustCompile(`^28-[0-9a-f]{12}$`)

// ParseOneWireID parses a DS18B20 id as the kernel names it
// ("28-0000070e41ac") and returns the 64-bit ROM code including the CRC
// byte, as periph's onewire.Address expects.
func ParseOneWireID(id string) (uint64, error) {
	if !oneWireRE.MatchString(id) {
		return 0, fmt.Errorf("onewire_id %q: want 28- and 12 lowercase hex digits", id)
	}
	serial, err := strconv.ParseUint(id[3:], 16, 64)
	if err != nil {
		return 0, fmt.Errorf("onewire_id %q: %v", id, err)
	}
	rom := [8]byte{0x28}
	for i := 0; i < 6; i++ {
		rom[1+i] = byte(serial >> (8 * i))
	}
	rom[7] = crc8(rom[:7])
	var a uint64
	for i := 7; i >= 0; i-- {
		a = a<<8 | uint64(rom[i])
	}
	return a, nil
}

// crc8 is the Dallas/Maxim 1-wire CRC.
func crc8(b []byte) byte {
	var crc byte
	for _, v := range b {
		for i := 0; i < 8; i++ {
			mix := (crc ^ v) & 1
			crc >>= 1
			if mix != 0 {
				crc ^= 0x8c
			}
			v >>= 1
		}
	}
	return crc
}

// Address is an I²C address; JSON accepts a number or a "0x.." string.
type Address uint16

func (a Address) String() string { return fmt.Sprintf("%#02x", uint16(a)) }

// MarshalJSON writes the address as "0x76".
func (a Address) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

// UnmarshalJSON accepts 118, "118" or "0x76".
func (a *Address) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := strconv.ParseUint(s, 0, 16)
	if err != nil || v > 0x7f {
		return fmt.Errorf("address %s: want a 7-bit I²C address such as \"0x76\"", b)
	}
	*a = Address(v)
	return nil
}

// Duration is a time.Duration that reads "30s" or a number of seconds.
type Duration time.Duration

// MarshalJSON writes the duration as "1m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "90s", "2h" or 90 (seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("duration %s: %v", b, err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %s: %v", b, err)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || !(f >= 0 && f < 100*365*24*3600) {
		return fmt.Errorf("duration %s: want a string like \"30s\" or seconds", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
