//go:build cgo && linux

package energy

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/univrs/hypha/sensors/obs"
)

// NVMLAvailable reports whether this build can use NVML at all.
const NVMLAvailable = true

// NVML reads GPU energy through NVIDIA's management library. Every call is
// gated on a successful nvml.Init; a host without the driver gets an error
// wrapping obs.ErrNotPresent. Safe for concurrent use; Close is idempotent.
type NVML struct {
	mu      sync.Mutex
	devs    []nvml.Device // guarded by mu
	base    []uint64      // guarded by mu: mJ at open
	closed  bool          // guarded by mu
	closeMu sync.Once
}

// OpenNVML initialises NVML and finds the GPUs that report energy.
func OpenNVML() (*NVML, error) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml init: %w: %s", obs.ErrNotPresent, nvml.ErrorString(ret))
	}
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		nvml.Shutdown()
		return nil, fmt.Errorf("nvml device count: %s", nvml.ErrorString(ret))
	}
	g := &NVML{}
	for i := 0; i < n; i++ {
		d, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		mj, ret := d.GetTotalEnergyConsumption()
		if ret != nvml.SUCCESS {
			continue // pre-Volta GPUs have no energy counter
		}
		g.devs = append(g.devs, d)
		g.base = append(g.base, mj)
	}
	if len(g.devs) == 0 {
		nvml.Shutdown()
		return nil, fmt.Errorf("nvml: %w: no GPU with an energy counter", obs.ErrNotPresent)
	}
	return g, nil
}

// Joules returns GPU energy since OpenNVML summed over GPUs.
func (g *NVML) Joules() (float64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, fmt.Errorf("nvml: %w", obs.ErrClosed)
	}
	var mj uint64
	for i, d := range g.devs {
		v, ret := d.GetTotalEnergyConsumption()
		if ret != nvml.SUCCESS {
			return 0, fmt.Errorf("nvml energy of GPU %d: %s", i, nvml.ErrorString(ret))
		}
		mj += v - g.base[i]
	}
	return float64(mj) / 1000, nil
}

// Watts returns the current GPU power draw summed over GPUs.
func (g *NVML) Watts() (float64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, fmt.Errorf("nvml: %w", obs.ErrClosed)
	}
	var mw uint32
	for i, d := range g.devs {
		v, ret := d.GetPowerUsage()
		if ret != nvml.SUCCESS {
			return 0, fmt.Errorf("nvml power of GPU %d: %s", i, nvml.ErrorString(ret))
		}
		mw += v
	}
	return float64(mw) / 1000, nil
}

// Close shuts NVML down.
func (g *NVML) Close() error {
	g.closeMu.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		nvml.Shutdown()
	})
	return nil
}
