package drivers

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"
	"periph.io/x/conn/v3/physic"

	"github.com/univrs/hypha/sensors/obs"
)

// NACKBus is a playback bus whose device stops answering after After
// transactions: every later Tx fails the way the Linux i2c-dev driver does
// when nobody ACKs the address (EREMOTEIO). It is the hardware edge.
type nackBus struct {
	i2ctest.Playback
	After int
	n     int
}

func (b *nackBus) Tx(addr uint16, w, r []byte) error {
	b.n++
	if b.n > b.After {
		return &os.SyscallError{Syscall: "ioctl I2C_RDWR", Err: syscall.EREMOTEIO}
	}
	return b.Playback.Tx(addr, w, r)
}

func envWith(bus i2c.BusCloser) Env {
	return Env{OpenI2C: func(string) (i2c.BusCloser, error) { return bus, nil }}
}

func cfgFor(t *testing.T, driver string, mod func(*obs.SensorConfig)) obs.SensorConfig {
	t.Helper()
	c := obs.Config{Sensors: []obs.SensorConfig{{ID: "s1", Driver: driver}}}
	if mod != nil {
		mod(&c.Sensors[0])
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c.Sensors[0]
}

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

func valueOf(t *testing.T, vals []obs.Value, q string) float64 {
	t.Helper()
	for _, v := range vals {
		if v.Quantity == q {
			return v.Value
		}
	}
	t.Fatalf("no %s in %v", q, vals)
	return 0
}

// bme280Init is the register traffic of a BME280 at 0x76 being opened, as
// recorded from a real chip (periph's bmx280 tests).
var bme280Init = []i2ctest.IO{
	{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}},
	{Addr: 0x76, W: []byte{0x88}, R: []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}},
	{Addr: 0x76, W: []byte{0xe1}, R: []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}},
	{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf2, 0x3, 0xf5, 0xa0, 0xf4, 0x6c}},
}

// bme280Measure is one forced-mode measurement.
func bme280Measure(data []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xf4, 0x6d}},
		{Addr: 0x76, W: []byte{0xf3}, R: []byte{8}},
		{Addr: 0x76, W: []byte{0xf3}, R: []byte{0}},
		{Addr: 0x76, W: []byte{0xf7}, R: data},
	}
}

var bme280Data = []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}

func TestBME280Reads(t *testing.T) {
	ops := append(append([]i2ctest.IO{}, bme280Init...), bme280Measure(bme280Data)...)
	ops = append(ops, bme280Measure(bme280Data)...)
	bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
	dev, err := Open(cfgFor(t, "bme280", nil), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		vals, err := dev.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := valueOf(t, vals, obs.AirTemperature); got != 23.72 {
			t.Errorf("temperature %v, want 23.72", got)
		}
		if got := valueOf(t, vals, obs.AirPressure); !near(got, 1009.42695, 1e-4) {
			t.Errorf("pressure %v hPa, want 1009.427", got)
		}
		if got := valueOf(t, vals, obs.RelativeHumidity); !near(got, 65.3056, 1e-4) {
			t.Errorf("humidity %v, want 65.3056", got)
		}
	}
	if err := dev.Close(); err != nil {
		t.Fatalf("close: %v (every recorded op must be used)", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestBME280WrongChip(t *testing.T) {
	for _, tc := range []struct {
		name, driver string
		id           byte
		want         string
	}{
		{"bmp280 where bme280 configured", "bme280", 0x58, "found BMP280"},
		{"bme280 where bmp280 configured", "bmp280", 0x60, "found BME280"},
		{"unknown chip", "bme280", 0x42, "chip id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := []i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{tc.id}}}
			if tc.id != 0x42 {
				ops = append(ops, bme280Init[1:]...)
			}
			if tc.id == 0x58 { // BMP280: no humidity calibration, other config
				ops = []i2ctest.IO{ops[0], ops[1], {Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf5, 0xa0, 0xf4, 0x6c}}}
			}
			bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
			_, err := Open(cfgFor(t, tc.driver, nil), envWith(bus))
			if !errors.Is(err, obs.ErrWrongChip) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrWrongChip mentioning %q", err, tc.want)
			}
		})
	}
}

func TestBME280StopsAnswering(t *testing.T) {
	ops := append(append([]i2ctest.IO{}, bme280Init...), bme280Measure(bme280Data)...)
	bus := &nackBus{Playback: i2ctest.Playback{Ops: ops, DontPanic: true}, After: len(ops)}
	dev, err := Open(cfgFor(t, "bme280", nil), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := dev.Read(context.Background()); err != nil {
		t.Fatalf("first read: %v", err)
	}
	_, err = dev.Read(context.Background())
	// bmxx80 flattens the error chain; the kernel's text survives.
	if err == nil || !strings.Contains(err.Error(), "remote I/O error") {
		t.Fatalf("read after the chip stopped answering: %v, want EREMOTEIO", err)
	}
}

func TestNoBus(t *testing.T) {
	env := Env{OpenI2C: func(name string) (i2c.BusCloser, error) {
		return nil, obs.ErrNoBus
	}}
	for _, d := range []string{"bme280", "ina219", "ads1115", "scd4x", "bh1750"} {
		if _, err := Open(cfgFor(t, d, nil), env); !errors.Is(err, obs.ErrNoBus) {
			t.Errorf("%s: %v, want ErrNoBus", d, err)
		}
	}
	_, err := Open(cfgFor(t, "ds18b20", func(s *obs.SensorConfig) { s.OneWireID = "28-0000070e41ac" }), Env{W1Root: filepath.Join(t.TempDir(), "absent")})
	if !errors.Is(err, obs.ErrNoBus) {
		t.Errorf("ds18b20 without w1: %v", err)
	}
}

// ---- DS18B20 ----

const romID = "28-0000070e41ac" // onewire.Address 0x740000070e41ac28

func TestOneWireIDMatchesROM(t *testing.T) {
	a, err := obs.ParseOneWireID(romID)
	if err != nil {
		t.Fatal(err)
	}
	if onewire.Address(a) != 0x740000070e41ac28 {
		t.Fatalf("rom %#x", a)
	}
}

func spad(tempRaw int16) []byte {
	b := []byte{byte(tempRaw), byte(uint16(tempRaw) >> 8), 0x4b, 0x46, 0x7f, 0xff, 0x10, 0x10, 0}
	b[8] = onewire.CalcCRC(b[:8])
	return b
}

func ds18Ops(reads ...[]byte) []onewiretest.IO {
	match := []byte{0x55, 0x28, 0xac, 0x41, 0xe, 0x7, 0x0, 0x0, 0x74}
	ops := []onewiretest.IO{{W: append(append([]byte{}, match...), 0xbe), R: spad(0x01e0)}}
	for _, r := range reads {
		ops = append(ops,
			onewiretest.IO{W: append(append([]byte{}, match...), 0x44), Pull: true},
			onewiretest.IO{W: append(append([]byte{}, match...), 0xbe), R: r})
	}
	return ops
}

func oneWireEnv(bus *onewiretest.Playback) Env {
	return Env{OpenOneWire: func(string, uint16) (onewire.Bus, func() error, error) { return bus, bus.Close, nil }}
}

func TestDS18B20(t *testing.T) {
	if testing.Short() {
		t.Skip("conversion takes 750 ms of real time per read")
	}
	bad := spad(0x0190)
	bad[8] ^= 0xff
	bus := &onewiretest.Playback{Ops: ds18Ops(spad(0x0190), spad(0x0550), bad, spad(-0x00a8)), DontPanic: true}
	cfg := cfgFor(t, "ds18b20", func(s *obs.SensorConfig) { s.OneWireID = romID; s.Bus = "ds248x"; s.Measures = "water" })
	dev, err := Open(cfg, oneWireEnv(bus))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := dev.Read(context.Background())
	if err != nil || valueOf(t, vals, obs.WaterTemperature) != 25 {
		t.Fatalf("read = %v, %v; want 25 °C", vals, err)
	}
	if _, err := dev.Read(context.Background()); !errors.Is(err, obs.ErrStuck) {
		t.Fatalf("85 °C reset value: %v, want ErrStuck", err)
	}
	if _, err := dev.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Fatalf("bad CRC: %v", err)
	}
	vals, err = dev.Read(context.Background())
	if err != nil || valueOf(t, vals, obs.WaterTemperature) != -10.5 {
		t.Fatalf("read = %v, %v; want -10.5 °C", vals, err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDS18B20KernelW1(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, romID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "w1_slave"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n")
	dev, err := Open(cfgFor(t, "ds18b20", func(s *obs.SensorConfig) { s.OneWireID = romID }), Env{W1Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	vals, err := dev.Read(context.Background())
	if err != nil || valueOf(t, vals, obs.SoilTemperature) != 23.125 {
		t.Fatalf("read %v %v", vals, err)
	}
	write("50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n")
	if _, err := dev.Read(context.Background()); !errors.Is(err, obs.ErrStuck) {
		t.Fatalf("85 °C: %v", err)
	}
	write("ff ff ff ff ff ff ff ff ff : crc=c9 NO\nff ff ff ff ff ff ff ff ff t=-62\n")
	if _, err := dev.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "CRC check failed") {
		t.Fatalf("crc NO: %v", err)
	}
}

func TestParseW1Slave(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23.125, ""},
		{"5e ff 55 00 7f ff 0c 10 6c : crc=6c YES\n5e ff 55 00 7f ff 0c 10 6c t=-10125", -10.125, ""},
		{"", 0, "1 lines"},
		{"x : crc=00 NO\nx t=1", 0, "CRC check failed"},
		{"x : crc=00 YES\nx t=abc", 0, "temperature \"abc\""},
		{"x : crc=00 YES\nx", 0, "no t="},
		{"x YES\nx t=1", 0, "no crc="},
	} {
		got, err := ParseW1Slave([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseW1Slave(f *testing.F) {
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	f.Add([]byte("ff : crc=c9 NO\nff t=-62\n"))
	f.Add([]byte("a YES\nt=99999999999999999999"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseW1Slave(b)
		if err == nil && (math.IsNaN(v) || math.Abs(v) > 1<<31/1000+1) {
			t.Fatalf("accepted %q as %v", b, v)
		}
	})
}

// ---- INA219 ----

// ina219Init: calibration 0x1062 for 0.1 Ω / 3.2 A, then config 0x1FFF.
var ina219Init = []i2ctest.IO{
	{Addr: 0x40, W: []byte{0x05, 0x10, 0x62}},
	{Addr: 0x40, W: []byte{0x00, 0x1f, 0xff}},
}

func ina219Read(shunt, bus, current, power uint16) []i2ctest.IO {
	be := func(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
	return []i2ctest.IO{
		{Addr: 0x40, W: []byte{0x01}, R: be(shunt)},
		{Addr: 0x40, W: []byte{0x02}, R: be(bus)},
		{Addr: 0x40, W: []byte{0x04}, R: be(current)},
		{Addr: 0x40, W: []byte{0x03}, R: be(power)},
	}
}

func TestINA219(t *testing.T) {
	ops := append([]i2ctest.IO{}, ina219Init...)
	// A PV panel at 18.5 V, 1.2 A: shunt 120 mV, bus 4625<<3 | CNVR.
	ops = append(ops, ina219Read(0x2ee0, 0x908a, 0x3000, 0x2c66)...)
	// A battery discharging 2 A at 12.6 V.
	ops = append(ops, ina219Read(uint16(0x10000-20000), 3150<<3|2, uint16(0x10000-20480), 20480*3150/5000)...)
	// Bus voltage overflow flag.
	ops = append(ops, ina219Read(0x7fff, 0x0001, 0, 0)[:2]...)
	bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
	dev, err := Open(cfgFor(t, "ina219", nil), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := dev.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w := valueOf(t, vals, obs.PVPower); !near(w, 22.2, 0.01) {
		t.Errorf("pv power %v W, want 22.2", w)
	}
	if v := valueOf(t, vals, obs.PVVoltage); v != 18.5 {
		t.Errorf("pv voltage %v", v)
	}
	if a := valueOf(t, vals, obs.PVCurrent); !near(a, 1.2, 1e-4) {
		t.Errorf("pv current %v", a)
	}
	vals, err = dev.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w := valueOf(t, vals, obs.PVPower); !near(w, -25.2, 0.01) {
		t.Errorf("discharge power %v W, want -25.2", w)
	}
	if _, err := dev.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "overflow") {
		t.Errorf("overflow: %v", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestINA219ReverseCurrent(t *testing.T) {
	ops := append(append([]i2ctest.IO{}, ina219Init...), ina219Read(0x2ee0, 0x908a, 0x3000, 0x2c66)...)
	bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
	dev, err := Open(cfgFor(t, "ina219", func(s *obs.SensorConfig) { s.Measures = "battery"; s.ReverseCurrent = true }), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	vals, err := dev.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w, a := valueOf(t, vals, obs.BatteryPower), valueOf(t, vals, obs.BatteryCurrent); !near(w, -22.2, 0.01) || !near(a, -1.2, 1e-4) {
		t.Errorf("reversed: %v W %v A", w, a)
	}
}

// ---- ADS1115 soil moisture ----

func TestADS1115SoilMoisture(t *testing.T) {
	// Single-shot, AIN0 vs GND, ±4.096 V, 8 SPS, comparator off = 0xC303.
	conv := func(raw uint16) []i2ctest.IO {
		return []i2ctest.IO{
			{Addr: 0x48, W: []byte{0x01, 0xc3, 0x03}},
			{Addr: 0x48, W: []byte{0x00}, R: []byte{byte(raw >> 8), byte(raw)}},
		}
	}
	var ops []i2ctest.IO
	ops = append(ops, conv(0x3840)...) // 1.8 V
	ops = append(ops, conv(0x5800)...) // 2.75 V: dry
	ops = append(ops, conv(0x7fff)...) // saturated: probe unplugged
	ops = append(ops, conv(0xf000)...) // −0.5 V: miswired
	bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
	dev, err := Open(cfgFor(t, "ads1115", nil), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := dev.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v := valueOf(t, vals, obs.ProbeVoltage); !near(v, 1.8, 1e-6) {
		t.Errorf("probe %v V", v)
	}
	if p := valueOf(t, vals, obs.SoilMoisture); !near(p, 50-0.45/1.4*50, 1e-6) {
		t.Errorf("moisture %v %%", p)
	}
	vals, err = dev.Read(context.Background())
	if err != nil || valueOf(t, vals, obs.SoilMoisture) != 0 {
		t.Errorf("dry: %v %v", vals, err)
	}
	if _, err := dev.Read(context.Background()); !errors.Is(err, obs.ErrStuck) {
		t.Errorf("saturated: %v", err)
	}
	if _, err := dev.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative: %v", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCalibration(t *testing.T) {
	c, err := obs.NewCalibration([]obs.CalPoint{{Volts: 1.2, Percent: 45}, {Volts: 2.8, Percent: 5}, {Volts: 2.0, Percent: 20}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v, want float64
		clamped bool
	}{{1.0, 45, true}, {1.2, 45, false}, {1.6, 32.5, false}, {2.0, 20, false}, {2.4, 12.5, false}, {3.0, 5, true}} {
		got, cl := c.Percent(tc.v)
		if !near(got, tc.want, 1e-9) || cl != tc.clamped {
			t.Errorf("Percent(%v) = %v,%v want %v,%v", tc.v, got, cl, tc.want, tc.clamped)
		}
	}
	for _, bad := range [][]obs.CalPoint{{{Volts: 1, Percent: 1}}, {{Volts: 1, Percent: 1}, {Volts: 1, Percent: 2}}, {{Volts: 1, Percent: 1}, {Volts: 2, Percent: 101}}, {{Volts: -1, Percent: 1}, {Volts: 2, Percent: 2}}, {{Volts: math.NaN(), Percent: 1}, {Volts: 2, Percent: 2}}} {
		if _, err := obs.NewCalibration(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

// ---- SCD4x ----

// scd4xTrace is register traffic recorded from a real SCD41 by periph's
// scd4x tests: wake up, start periodic measurement, data ready, read.
var scd4xTrace = []i2ctest.IO{
	{Addr: 0x62, W: []byte{0x36, 0xf6}},
	{Addr: 0x62, W: []byte{0x21, 0xb1}},
	{Addr: 0x62, W: []byte{0xe4, 0xb8}, R: []byte{0x80, 0x6, 0x4}},
	{Addr: 0x62, W: []byte{0xec, 0x5}, R: []byte{0x2, 0x1f, 0x35, 0x65, 0x82, 0xbb, 0x53, 0x5e, 0x2a}},
	{Addr: 0x62, W: []byte{0xe4, 0xb8}, R: []byte{0x80, 0x6, 0x4}},
	// A corrupted word (CRC mismatch) on the next read.
	{Addr: 0x62, W: []byte{0xec, 0x5}, R: []byte{0x2, 0x22, 0x00, 0x65, 0x39, 0xee, 0x55, 0x4b, 0xc6}},
}

func TestSCD4x(t *testing.T) {
	bus := &i2ctest.Playback{Ops: scd4xTrace, DontPanic: true}
	dev, err := Open(cfgFor(t, "scd4x", nil), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := dev.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := valueOf(t, vals, obs.CO2); c != 543 {
		t.Errorf("co2 %v ppm, want 543", c)
	}
	if tc := valueOf(t, vals, obs.AirTemperature); !near(tc, -45+175*float64(0x6582)/65535, 0.01) {
		t.Errorf("temperature %v", tc)
	}
	if _, err := dev.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "crc") {
		t.Errorf("crc error: %v", err)
	}
	_ = dev.Close()
}

// ---- BH1750 ----

func TestBH1750(t *testing.T) {
	ops := []i2ctest.IO{
		{Addr: 0x23, W: []byte{0x07}},
		{Addr: 0x23, W: []byte{0x10}},
		{Addr: 0x23, W: []byte{0x07}},
		{Addr: 0x23, W: []byte{0x10}},
		{Addr: 0x23, W: []byte{0x10}, R: []byte{0x0c, 0x35}},
	}
	bus := &nackBus{Playback: i2ctest.Playback{Ops: ops, DontPanic: true}, After: len(ops)}
	dev, err := Open(cfgFor(t, "bh1750", nil), envWith(bus))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := dev.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := valueOf(t, vals, obs.Illuminance); !near(l, 3125/1.2, 1) { // periph truncates to whole lux
		t.Errorf("lux %v", l)
	}
	if _, err := dev.Read(context.Background()); !errors.Is(err, syscall.EREMOTEIO) {
		t.Errorf("nack: %v", err)
	}
	_ = dev.Close()
}

var _ = physic.Celsius
