package hwtest

import (
	"context"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

var hostInit = sync.OnceValue(func() error {
	_, err := host.Init()
	return err
})

// ScanI2C initialises periph.io's host drivers once and scans every I²C bus
// they register. No bus at all (a PC, a VM) is a normal outcome: an empty
// list and no error.
func ScanI2C(ctx context.Context) ([]I2CBus, error) {
	if err := hostInit(); err != nil {
		return nil, fmt.Errorf("periph host init: %w", err)
	}
	var out []I2CBus
	for _, ref := range i2creg.All() {
		b := I2CBus{Name: ref.Name, Devices: []uint16{}}
		bus, err := ref.Open()
		if err != nil {
			b.Error = err.Error()
			out = append(out, b)
			continue
		}
		b.Devices = ScanBus(ctx, bus)
		bus.Close()
		out = append(out, b)
	}
	return out, nil
}

// ScanBus returns the 7-bit addresses 0x08–0x77 (the non-reserved range)
// that acknowledge a one-byte read, like `i2cdetect -r`. A read probe is
// used rather than a quick write because a zero-length write can change
// state on some chips (e.g. some EEPROM write-protect latches).
func ScanBus(ctx context.Context, bus i2c.Bus) []uint16 {
	found := []uint16{}
	var buf [1]byte
	for addr := uint16(0x08); addr <= 0x77; addr++ {
		if ctx.Err() != nil {
			break
		}
		if err := bus.Tx(addr, nil, buf[:]); err == nil {
			found = append(found, addr)
		}
	}
	return found
}
