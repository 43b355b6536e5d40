// Package energy measures energy: CPU package energy from RAPL
// (/sys/class/powercap), GPU energy from NVML (cgo builds on glibc hosts
// only), an estimate from CPU time × TDP when neither is present, and a
// per-request Meter that splits the measured energy fairly between
// overlapping requests.
package energy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/univrs/hypha/sensors/obs"
)

// Counter is a cumulative energy counter in joules since it was opened.
type Counter interface {
	Joules() (float64, error)
}

// DefaultPowercap is where Linux exposes RAPL.
const DefaultPowercap = "/sys/class/powercap"

type zone struct {
	name    string
	path    string // energy_uj
	maxUJ   uint64 // max_energy_range_uj
	lastUJ  uint64
	totalUJ float64
}

// RAPL reads the CPU package energy counters of every package zone
// (intel-rapl:N, named package-N; AMD exposes the same) and accumulates
// them across counter wraps. Read it at least once per wrap period (tens
// of minutes at full power); the sampler does every minute.
// A RAPL is safe for concurrent use.
type RAPL struct {
	mu    sync.Mutex
	zones []*zone // guarded by mu
}

// OpenRAPL finds the package zones under root (DefaultPowercap if empty).
// It returns an error wrapping obs.ErrNotPresent when there are none or
// they cannot be read (a VM, an ARM board, or not root).
func OpenRAPL(root string) (*RAPL, error) {
	if root == "" {
		root = DefaultPowercap
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("rapl %s: %w: %v", root, obs.ErrNotPresent, err)
	}
	r := &RAPL{}
	for _, e := range entries {
		n := e.Name()
		// Top-level zones only: intel-rapl:0, not intel-rapl:0:0 (core,
		// dram are inside the package).
		if !strings.HasPrefix(n, "intel-rapl:") || strings.Count(n, ":") != 1 {
			continue
		}
		dir := filepath.Join(root, n)
		name, err := readTrim(filepath.Join(dir, "name"))
		if err != nil || !strings.HasPrefix(name, "package") {
			continue
		}
		maxUJ, err := readUint(filepath.Join(dir, "max_energy_range_uj"))
		if err != nil {
			return nil, fmt.Errorf("rapl %s: %w", n, err)
		}
		z := &zone{name: name, path: filepath.Join(dir, "energy_uj"), maxUJ: maxUJ}
		if z.lastUJ, err = readUint(z.path); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil, fmt.Errorf("rapl %s: %w: %v (needs root)", n, obs.ErrNotPresent, err)
			}
			return nil, fmt.Errorf("rapl %s: %w", n, err)
		}
		r.zones = append(r.zones, z)
	}
	if len(r.zones) == 0 {
		return nil, fmt.Errorf("rapl %s: %w: no package zones", root, obs.ErrNotPresent)
	}
	sort.Slice(r.zones, func(i, j int) bool { return r.zones[i].name < r.zones[j].name })
	return r, nil
}

// Joules returns the package energy since OpenRAPL, summed over packages.
func (r *RAPL) Joules() (float64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var total float64
	for _, z := range r.zones {
		cur, err := readUint(z.path)
		if err != nil {
			return 0, fmt.Errorf("rapl %s: %w", z.name, err)
		}
		z.totalUJ += float64(wrapDelta(z.lastUJ, cur, z.maxUJ))
		z.lastUJ = cur
		total += z.totalUJ
	}
	return total / 1e6, nil
}

// wrapDelta is cur − last on a counter that wraps to 0 after max.
func wrapDelta(last, cur, max uint64) uint64 {
	if cur >= last {
		return cur - last
	}
	if last > max { // max_energy_range_uj misreported: count from 0
		return cur
	}
	return max - last + cur + 1
}

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(bytes.TrimSpace(b)), err
}

func readUint(p string) (uint64, error) {
	s, err := readTrim(p)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a counter", p, s)
	}
	return v, nil
}
