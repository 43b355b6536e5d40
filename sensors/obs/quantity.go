// Package obs holds the vocabulary shared by every part of sensors/: what a
// quantity is (with its UCUM unit and Prometheus name), a reading, an
// observation, the versioned node sensor configuration and the sentinel
// errors. It imports nothing else from sensors/, so drivers, the simulator,
// the store and the APIs can all depend on it.
package obs

import "sort"

// Quantity describes one observed property: how it is named, the UCUM unit
// its values are stored and shown in, and how it is exported to Prometheus.
// Quantities are immutable values; the table below is read-only.
type Quantity struct {
	// Name is the stable identifier used in stream ids ("air_temperature").
	Name string
	// Description is a sentence for SensorThings ObservedProperty.
	Description string
	// UnitName, UnitSymbol (UCUM case-sensitive code) and UnitDefinition
	// form the SensorThings unitOfMeasurement.
	UnitName, UnitSymbol, UnitDefinition string
	// PromName is the Prometheus metric name in base units.
	PromName string
	// PromFactor converts a stored value to the Prometheus base unit
	// (percent -> ratio is 0.01, hPa -> Pa is 100).
	PromFactor float64
	// Counter is true for monotonically increasing totals (…_total).
	Counter bool
	// Noisy is true when a real sensor never repeats the exact same value
	// many times in a row; a long run of identical values then means the
	// sensor is stuck.
	Noisy bool
}

const ucumBase = "http://unitsofmeasure.org/ucum.html#"

func q(name, desc, unitName, sym, prom string, factor float64, counter, noisy bool) Quantity {
	return Quantity{Name: name, Description: desc, UnitName: unitName, UnitSymbol: sym,
		UnitDefinition: ucumBase + sym, PromName: prom, PromFactor: factor, Counter: counter, Noisy: noisy}
}

// Quantity names. A driver emits values of these quantities; the stream id is
// "<sensor id>.<quantity name>".
const (
	AirTemperature   = "air_temperature"
	RelativeHumidity = "relative_humidity"
	AirPressure      = "air_pressure"
	SoilTemperature  = "soil_temperature"
	WaterTemperature = "water_temperature"
	SoilMoisture     = "soil_moisture"
	ProbeVoltage     = "probe_voltage"
	CO2              = "co2"
	Illuminance      = "illuminance"
	PVPower          = "pv_power"
	PVVoltage        = "pv_voltage"
	PVCurrent        = "pv_current"
	BatteryPower     = "battery_power"
	BatteryVoltage   = "battery_voltage"
	BatteryCurrent   = "battery_current"
	BatterySoC       = "battery_soc"
	LoadPower        = "load_power"
	LoadVoltage      = "load_voltage"
	LoadCurrent      = "load_current"
	CPUEnergy        = "cpu_energy"
	CPUPower         = "cpu_power"
	GPUEnergy        = "gpu_energy"
	GPUPower         = "gpu_power"
	Rainfall         = "rainfall"
)

var quantities = map[string]Quantity{
	AirTemperature:   q(AirTemperature, "Air temperature", "degree Celsius", "Cel", "hypha_air_temperature_celsius", 1, false, true),
	RelativeHumidity: q(RelativeHumidity, "Relative humidity of the air", "percent", "%", "hypha_relative_humidity_ratio", 0.01, false, true),
	AirPressure:      q(AirPressure, "Atmospheric pressure", "hectopascal", "hPa", "hypha_air_pressure_pascals", 100, false, true),
	SoilTemperature:  q(SoilTemperature, "Soil temperature", "degree Celsius", "Cel", "hypha_soil_temperature_celsius", 1, false, true),
	WaterTemperature: q(WaterTemperature, "Water temperature", "degree Celsius", "Cel", "hypha_water_temperature_celsius", 1, false, true),
	SoilMoisture:     q(SoilMoisture, "Volumetric soil water content", "percent", "%", "hypha_soil_moisture_ratio", 0.01, false, false),
	ProbeVoltage:     q(ProbeVoltage, "Raw voltage of a soil moisture probe", "volt", "V", "hypha_probe_voltage_volts", 1, false, false),
	CO2:              q(CO2, "Carbon dioxide concentration (mole fraction)", "parts per million", "[ppm]", "hypha_co2_ratio", 1e-6, false, true),
	Illuminance:      q(Illuminance, "Illuminance", "lux", "lx", "hypha_illuminance_lux", 1, false, false),
	PVPower:          q(PVPower, "Solar PV power produced", "watt", "W", "hypha_pv_power_watts", 1, false, false),
	PVVoltage:        q(PVVoltage, "Solar PV voltage", "volt", "V", "hypha_pv_voltage_volts", 1, false, false),
	PVCurrent:        q(PVCurrent, "Solar PV current", "ampere", "A", "hypha_pv_current_amperes", 1, false, false),
	BatteryPower:     q(BatteryPower, "Battery power (positive = charging)", "watt", "W", "hypha_battery_power_watts", 1, false, false),
	BatteryVoltage:   q(BatteryVoltage, "Battery voltage", "volt", "V", "hypha_battery_voltage_volts", 1, false, false),
	BatteryCurrent:   q(BatteryCurrent, "Battery current (positive = charging)", "ampere", "A", "hypha_battery_current_amperes", 1, false, false),
	BatterySoC:       q(BatterySoC, "Battery state of charge", "percent", "%", "hypha_battery_soc_ratio", 0.01, false, false),
	LoadPower:        q(LoadPower, "Power drawn by the load", "watt", "W", "hypha_load_power_watts", 1, false, false),
	LoadVoltage:      q(LoadVoltage, "Load supply voltage", "volt", "V", "hypha_load_voltage_volts", 1, false, false),
	LoadCurrent:      q(LoadCurrent, "Load current", "ampere", "A", "hypha_load_current_amperes", 1, false, false),
	CPUEnergy:        q(CPUEnergy, "CPU package energy since the meter started", "joule", "J", "hypha_cpu_energy_joules_total", 1, true, false),
	CPUPower:         q(CPUPower, "CPU package power", "watt", "W", "hypha_cpu_power_watts", 1, false, false),
	GPUEnergy:        q(GPUEnergy, "GPU energy since the meter started", "joule", "J", "hypha_gpu_energy_joules_total", 1, true, false),
	GPUPower:         q(GPUPower, "GPU power", "watt", "W", "hypha_gpu_power_watts", 1, false, false),
	Rainfall:         q(Rainfall, "Rain fallen during the sample interval", "millimetre", "mm", "hypha_rainfall_millimetres", 1, false, false),
}

// LookupQuantity returns the quantity with the given name.
func LookupQuantity(name string) (Quantity, bool) {
	qt, ok := quantities[name]
	return qt, ok
}

// Quantities returns every known quantity sorted by name.
func Quantities() []Quantity {
	out := make([]Quantity, 0, len(quantities))
	for _, qt := range quantities {
		out = append(out, qt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
