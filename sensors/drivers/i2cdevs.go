package drivers

import (
	"context"
	"fmt"
	"strings"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"
	"periph.io/x/devices/v3/bh1750"
	"periph.io/x/devices/v3/bmxx80"
	"periph.io/x/devices/v3/ina219"
	"periph.io/x/devices/v3/scd4x"

	"github.com/univrs/hypha/sensors/obs"
)

// ---- BME280 / BMP280 ----

type bmx280 struct {
	closer
	dev   *bmxx80.Dev
	isBME bool
}

func openBMx280(cfg obs.SensorConfig, env Env) (Device, error) {
	bus, err := env.openI2C(cfg.Bus)
	if err != nil {
		return nil, err
	}
	dev, err := bmxx80.NewI2C(bus, uint16(cfg.Address), &bmxx80.DefaultOpts)
	if err != nil {
		_ = bus.Close()
		if strings.Contains(err.Error(), "chip id") {
			return nil, fmt.Errorf("open %s at %s: %w: %v", cfg.Driver, cfg.Address, obs.ErrWrongChip, err)
		}
		return nil, fmt.Errorf("open %s at %s: %w", cfg.Driver, cfg.Address, err)
	}
	found := strings.ToLower(strings.SplitN(dev.String(), "{", 2)[0])
	if found != cfg.Driver {
		// A BMP280 configured as BME280 would report no humidity; a BMP180
		// has another register map. Say what is really there.
		_ = bus.Close()
		return nil, fmt.Errorf("open %s at %s: %w: found %s", cfg.Driver, cfg.Address, obs.ErrWrongChip, strings.ToUpper(found))
	}
	d := &bmx280{dev: dev, isBME: found == "bme280"}
	d.fn = func() error { _ = dev.Halt(); return bus.Close() }
	return d, nil
}

func (d *bmx280) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var e physic.Env
	if err := d.dev.Sense(&e); err != nil {
		return nil, fmt.Errorf("read bmx280: %w", err)
	}
	t := e.Temperature.Celsius()
	p := float64(e.Pressure) / float64(physic.Pascal) / 100
	// Datasheet operating ranges; the compensated value of a skipped
	// measurement (raw 0x80000) lands outside them.
	if err := inRange("temperature", t, -40, 85, "°C"); err != nil {
		return nil, fmt.Errorf("read bmx280: %w", err)
	}
	if err := inRange("pressure", p, 300, 1100, "hPa"); err != nil {
		return nil, fmt.Errorf("read bmx280: %w", err)
	}
	vals := []obs.Value{{Quantity: obs.AirTemperature, Value: t}}
	if d.isBME {
		h := float64(e.Humidity) / float64(physic.PercentRH)
		if err := inRange("humidity", h, 0, 100, "%"); err != nil {
			return nil, fmt.Errorf("read bmx280: %w", err)
		}
		vals = append(vals, obs.Value{Quantity: obs.RelativeHumidity, Value: h})
	}
	return append(vals, obs.Value{Quantity: obs.AirPressure, Value: p}), nil
}

// ---- INA219 ----

type ina struct {
	closer
	dev      *ina219.Dev
	measures string
	reverse  bool
}

func openINA219(cfg obs.SensorConfig, env Env) (Device, error) {
	bus, err := env.openI2C(cfg.Bus)
	if err != nil {
		return nil, err
	}
	dev, err := ina219.New(bus, &ina219.Opts{
		Address:       int(cfg.Address),
		SenseResistor: physic.ElectricResistance(cfg.ShuntOhms * float64(physic.Ohm)),
		MaxCurrent:    physic.ElectricCurrent(cfg.MaxAmps * float64(physic.Ampere)),
	})
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("open ina219 at %s: %w", cfg.Address, err)
	}
	d := &ina{dev: dev, measures: cfg.Measures, reverse: cfg.ReverseCurrent}
	d.fn = bus.Close
	return d, nil
}

func (d *ina) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pm, err := d.dev.Sense()
	if err != nil {
		return nil, fmt.Errorf("read ina219: %w", err)
	}
	v := float64(pm.Voltage) / float64(physic.Volt)
	a := float64(pm.Current) / float64(physic.Ampere)
	// The power register is unsigned; give it the current's sign so a
	// discharging battery reads negative.
	w := float64(pm.Power) / float64(physic.Watt)
	if a < 0 {
		w = -w
	}
	if d.reverse {
		a, w = -a, -w
	}
	if err := inRange("bus voltage", v, 0, 32, "V"); err != nil {
		return nil, fmt.Errorf("read ina219: %w", err)
	}
	var qp, qv, qa string
	switch d.measures {
	case "battery":
		qp, qv, qa = obs.BatteryPower, obs.BatteryVoltage, obs.BatteryCurrent
	case "load":
		qp, qv, qa = obs.LoadPower, obs.LoadVoltage, obs.LoadCurrent
	default:
		qp, qv, qa = obs.PVPower, obs.PVVoltage, obs.PVCurrent
	}
	return []obs.Value{{Quantity: qp, Value: w}, {Quantity: qv, Value: v}, {Quantity: qa, Value: a}}, nil
}

// ---- ADS1115 / ADS1015 soil moisture ----

type ads struct {
	closer
	pin ads1x15.PinADC
	cal obs.Calibration
	max int32
}

func openADS1x15(cfg obs.SensorConfig, env Env) (Device, error) {
	cal, err := obs.NewCalibration(cfg.Calibration)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: %v", cfg.Driver, obs.ErrBadConfig, err)
	}
	bus, err := env.openI2C(cfg.Bus)
	if err != nil {
		return nil, err
	}
	opts := &ads1x15.Opts{I2cAddress: uint16(cfg.Address)}
	var dev *ads1x15.Dev
	max := int32(32767)
	if cfg.Driver == "ads1015" {
		dev, err = ads1x15.NewADS1015(bus, opts)
		max = 32767 &^ 0xf // 12-bit result, left aligned
	} else {
		dev, err = ads1x15.NewADS1115(bus, opts)
	}
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("open %s at %s: %w", cfg.Driver, cfg.Address, err)
	}
	fs := physic.ElectricPotential(cfg.FullScaleVolts * float64(physic.Volt))
	pin, err := dev.PinForChannel(ads1x15.Channel0+ads1x15.Channel(cfg.Channel), fs, 1*physic.Hertz, ads1x15.BestQuality)
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("open %s channel %d: %w", cfg.Driver, cfg.Channel, err)
	}
	d := &ads{pin: pin, cal: cal, max: max}
	d.fn = func() error { _ = pin.Halt(); return bus.Close() }
	return d, nil
}

func (d *ads) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := d.pin.Read()
	if err != nil {
		return nil, fmt.Errorf("read soil probe: %w", err)
	}
	if s.Raw >= d.max || s.Raw <= -d.max {
		return nil, fmt.Errorf("read soil probe: %w: ADC saturated (raw %d): probe disconnected or not powered", obs.ErrStuck, s.Raw)
	}
	volts := float64(s.V) / float64(physic.Volt)
	if volts < -0.05 {
		return nil, fmt.Errorf("read soil probe: %.3f V: negative (probe wired to the wrong input or ground)", volts)
	}
	pct, _ := d.cal.Percent(volts)
	return []obs.Value{{Quantity: obs.SoilMoisture, Value: pct}, {Quantity: obs.ProbeVoltage, Value: volts}}, nil
}

// ---- SCD4x CO2 ----

type scd struct {
	closer
	dev *scd4x.Dev
}

func openSCD4x(cfg obs.SensorConfig, env Env) (Device, error) {
	bus, err := env.openI2C(cfg.Bus)
	if err != nil {
		return nil, err
	}
	dev, err := scd4x.NewI2C(bus, uint16(cfg.Address))
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("open scd4x at %s: %w", cfg.Address, err)
	}
	d := &scd{dev: dev}
	d.fn = func() error { _ = dev.Halt(); return bus.Close() }
	return d, nil
}

func (d *scd) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var e scd4x.Env
	if err := d.dev.Sense(&e); err != nil {
		return nil, fmt.Errorf("read scd4x: %w", err)
	}
	co2 := float64(e.CO2)
	if co2 == 0 {
		return nil, fmt.Errorf("read scd4x: %w: 0 ppm (no valid measurement)", obs.ErrStuck)
	}
	if err := inRange("CO2", co2, 0, 40000, "ppm"); err != nil {
		return nil, fmt.Errorf("read scd4x: %w", err)
	}
	t := e.Temperature.Celsius()
	h := float64(e.Humidity) / float64(physic.PercentRH)
	if err := inRange("temperature", t, -10, 60, "°C"); err != nil {
		return nil, fmt.Errorf("read scd4x: %w", err)
	}
	return []obs.Value{{Quantity: obs.CO2, Value: co2}, {Quantity: obs.AirTemperature, Value: t}, {Quantity: obs.RelativeHumidity, Value: h}}, nil
}

// ---- BH1750 light ----

type bh struct {
	closer
	dev *bh1750.Dev
}

func openBH1750(cfg obs.SensorConfig, env Env) (Device, error) {
	bus, err := env.openI2C(cfg.Bus)
	if err != nil {
		return nil, err
	}
	dev, err := bh1750.NewI2C(bus, uint16(cfg.Address))
	if err != nil {
		_ = bus.Close()
		return nil, fmt.Errorf("open bh1750 at %s: %w", cfg.Address, err)
	}
	d := &bh{dev: dev}
	d.fn = func() error { _ = dev.Halt(); return bus.Close() }
	return d, nil
}

func (d *bh) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := d.dev.Sense()
	if err != nil {
		return nil, fmt.Errorf("read bh1750: %w", err)
	}
	// periph reports the value in its LuminousFlux type; the number is lux.
	return []obs.Value{{Quantity: obs.Illuminance, Value: float64(l) / float64(physic.Lumen)}}, nil
}
