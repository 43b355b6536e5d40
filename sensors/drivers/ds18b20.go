package drivers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ds18b20"

	"github.com/univrs/hypha/sensors/obs"
)

// powerOnReset is the DS18B20 scratchpad value before any conversion: a
// reading of exactly 85 °C means the conversion did not run (usually a weak
// pull-up or parasite power).
const powerOnReset = 85.0

type ds18 struct {
	closer
	quantity string
	dev      *ds18b20.Dev // periph path (DS248x bridge or a test playback)
	w1Path   string       // kernel w1_therm path
}

func openDS18B20(cfg obs.SensorConfig, env Env) (Device, error) {
	rom, err := obs.ParseOneWireID(cfg.OneWireID)
	if err != nil {
		return nil, fmt.Errorf("open ds18b20: %w: %v", obs.ErrBadConfig, err)
	}
	q := cfg.Quantities()[0]
	if cfg.Bus == "" || cfg.Bus == "w1" {
		root := env.W1Root
		if root == "" {
			root = "/sys/bus/w1/devices"
		}
		if _, err := os.Stat(root); err != nil {
			return nil, fmt.Errorf("open ds18b20 %s: %w: kernel 1-wire bus %s: %v", cfg.OneWireID, obs.ErrNoBus, root, err)
		}
		p := filepath.Join(root, cfg.OneWireID, "w1_slave")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("open ds18b20 %s: not on the 1-wire bus: %w", cfg.OneWireID, err)
		}
		return &ds18{quantity: q, w1Path: p}, nil
	}
	bus, closeBus, err := env.openOneWire(cfg.Bus, uint16(cfg.Address))
	if err != nil {
		return nil, err
	}
	dev, err := ds18b20.New(bus, onewire.Address(rom), cfg.ResolutionBits)
	if err != nil {
		_ = closeBus()
		return nil, fmt.Errorf("open ds18b20 %s: %w", cfg.OneWireID, err)
	}
	d := &ds18{quantity: q, dev: dev}
	d.fn = closeBus
	return d, nil
}

func (d *ds18) Read(ctx context.Context) ([]obs.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var c float64
	if d.dev != nil {
		var e physic.Env
		if err := d.dev.Sense(&e); err != nil {
			return nil, fmt.Errorf("read ds18b20: %w", err)
		}
		c = e.Temperature.Celsius()
	} else {
		b, err := os.ReadFile(d.w1Path)
		if err != nil {
			return nil, fmt.Errorf("read ds18b20: %w", err)
		}
		c, err = ParseW1Slave(b)
		if err != nil {
			return nil, fmt.Errorf("read ds18b20 %s: %w", d.w1Path, err)
		}
	}
	if c == powerOnReset {
		return nil, fmt.Errorf("read ds18b20: %w: 85 °C power-on reset value (conversion did not run: check the pull-up and power)", obs.ErrStuck)
	}
	if err := inRange("temperature", c, -55, 125, "°C"); err != nil {
		return nil, fmt.Errorf("read ds18b20: %w", err)
	}
	return []obs.Value{{Quantity: d.quantity, Value: c}}, nil
}

// ParseW1Slave decodes the kernel w1_therm "w1_slave" file:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// and returns °C. A failed CRC ("NO") or a missing t= is an error.
func ParseW1Slave(b []byte) (float64, error) {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) != 2 {
		return 0, fmt.Errorf("w1_slave: %d lines, want 2", len(lines))
	}
	first := bytes.TrimSpace(lines[0])
	if !bytes.Contains(first, []byte("crc=")) {
		return 0, fmt.Errorf("w1_slave: first line %q has no crc=", trunc(first))
	}
	if !bytes.HasSuffix(first, []byte("YES")) {
		return 0, fmt.Errorf("w1_slave: CRC check failed (%q): bad wiring or noise", trunc(first))
	}
	i := bytes.LastIndex(lines[1], []byte("t="))
	if i < 0 {
		return 0, fmt.Errorf("w1_slave: second line %q has no t=", trunc(lines[1]))
	}
	milli, err := strconv.ParseInt(string(bytes.TrimSpace(lines[1][i+2:])), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("w1_slave: temperature %q: %v", trunc(lines[1][i+2:]), err)
	}
	return float64(milli) / 1000, nil
}

func trunc(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
