//go:build !(cgo && linux)

package energy

import (
	"fmt"

	"github.com/univrs/hypha/sensors/obs"
)

// NVMLAvailable reports whether this build can use NVML at all.
const NVMLAvailable = false

// NVML is not available in this build (no cgo: the appliance image has no
// libc, so NVML only works in cgo builds on a vendor OS).
type NVML struct{}

// OpenNVML says NVML is not available in this build.
func OpenNVML() (*NVML, error) {
	return nil, fmt.Errorf("nvml: %w: not available in a build without cgo", obs.ErrNotPresent)
}

// Joules is never reached (OpenNVML fails).
func (g *NVML) Joules() (float64, error) { return 0, fmt.Errorf("nvml: %w", obs.ErrNotPresent) }

// Watts is never reached (OpenNVML fails).
func (g *NVML) Watts() (float64, error) { return 0, fmt.Errorf("nvml: %w", obs.ErrNotPresent) }

// Close does nothing.
func (g *NVML) Close() error { return nil }
