// Package drivers opens configured sensors through periph.io and reads them
// as obs.Values in UCUM units. Each driver checks what the chip answers
// (chip id, CRC, reset values, datasheet ranges) so a broken sensor reports
// a reason instead of a wrong number.
//
// A Device is used by one goroutine at a time (the sampler gives each sensor
// its own goroutine); Close is idempotent.
package drivers

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/devices/v3/ds248x"
	"periph.io/x/host/v3"

	"github.com/univrs/hypha/sensors/obs"
)

// Device is one opened sensor.
type Device interface {
	// Read measures once. It may block for the sensor's conversion time
	// (up to a few seconds for an SCD4x) and honours ctx only between bus
	// transactions.
	Read(ctx context.Context) ([]obs.Value, error)
	// Close releases the bus. It is idempotent.
	Close() error
}

// Env is where drivers find their buses. The zero Env uses the host's real
// buses (periph host.Init, /dev/i2c-*, /sys/bus/w1); tests replace the
// functions with periph's playback buses.
type Env struct {
	// OpenI2C opens an I²C bus by periph name ("" = first bus).
	OpenI2C func(name string) (i2c.BusCloser, error)
	// OpenOneWire opens a 1-wire bus by name (e.g. "ds248x:1" = a DS248x
	// bridge at the configured address on I²C bus 1).
	OpenOneWire func(name string, addr uint16) (onewire.Bus, func() error, error)
	// W1Root is the kernel 1-wire sysfs directory (default /sys/bus/w1/devices).
	W1Root string
}

var (
	hostOnce sync.Once
	hostErr  error
)

// HostInit initialises periph's host drivers once. On a machine without
// buses it succeeds; opening a bus then fails with obs.ErrNoBus.
func HostInit() error {
	hostOnce.Do(func() {
		if _, err := host.Init(); err != nil {
			hostErr = fmt.Errorf("periph host init: %w", err)
		}
	})
	return hostErr
}

// I2CBuses lists the I²C buses periph found (empty on a PC without any).
func I2CBuses() []string {
	if HostInit() != nil {
		return nil
	}
	var names []string
	for _, r := range i2creg.All() {
		names = append(names, r.Name)
	}
	return names
}

func (e Env) openI2C(name string) (i2c.BusCloser, error) {
	if e.OpenI2C != nil {
		return e.OpenI2C(name)
	}
	if err := HostInit(); err != nil {
		return nil, fmt.Errorf("open i2c bus %q: %w: %v", name, obs.ErrNoBus, err)
	}
	b, err := i2creg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open i2c bus %q: %w: %v", name, obs.ErrNoBus, err)
	}
	return b, nil
}

func (e Env) openOneWire(name string, addr uint16) (onewire.Bus, func() error, error) {
	if e.OpenOneWire != nil {
		return e.OpenOneWire(name, addr)
	}
	i2cName, ok := strings.CutPrefix(name, "ds248x")
	if !ok {
		return nil, nil, fmt.Errorf("open 1-wire bus %q: %w: want \"w1\" (kernel) or \"ds248x[:i2c bus]\"", name, obs.ErrNoBus)
	}
	i2cName = strings.TrimPrefix(i2cName, ":")
	b, err := e.openI2C(i2cName)
	if err != nil {
		return nil, nil, err
	}
	if addr == 0 {
		addr = 0x18
	}
	d, err := ds248x.New(b, addr, &ds248x.DefaultOpts)
	if err != nil {
		_ = b.Close()
		return nil, nil, fmt.Errorf("open 1-wire bridge ds248x at %#x: %w", addr, err)
	}
	return d, b.Close, nil
}

// Open opens the configured sensor. Drivers "sim", "rapl" and "nvml" are
// not bus drivers and are opened by the caller.
func Open(cfg obs.SensorConfig, env Env) (Device, error) {
	switch cfg.Driver {
	case "bme280", "bmp280":
		return openBMx280(cfg, env)
	case "ds18b20":
		return openDS18B20(cfg, env)
	case "ina219":
		return openINA219(cfg, env)
	case "ads1115", "ads1015":
		return openADS1x15(cfg, env)
	case "scd4x":
		return openSCD4x(cfg, env)
	case "bh1750":
		return openBH1750(cfg, env)
	}
	return nil, fmt.Errorf("open sensor %q: %w: driver %q is not a bus driver", cfg.ID, obs.ErrBadConfig, cfg.Driver)
}

// closer makes Close idempotent.
type closer struct {
	once sync.Once
	fn   func() error
	err  error
}

func (c *closer) Close() error {
	c.once.Do(func() {
		if c.fn != nil {
			c.err = c.fn()
		}
	})
	return c.err
}

// inRange checks a value against a datasheet range.
func inRange(what string, v, lo, hi float64, unit string) error {
	if math.IsNaN(v) || v < lo || v > hi {
		return fmt.Errorf("%s %.3f %s outside the sensor's range %g..%g %s", what, v, unit, lo, hi, unit)
	}
	return nil
}
