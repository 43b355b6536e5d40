package energy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// userHZ is the kernel's USER_HZ, 100 on every Linux architecture we build.
const userHZ = 100

// Estimate approximates CPU energy as busy CPU time of the whole machine
// (from /proc/stat, so inferd and external engines count) × TDPWatts /
// number of CPUs. It ignores idle power and frequency scaling: its values
// are flagged Estimated wherever they go. Safe for concurrent use.
type Estimate struct {
	TDPWatts float64
	// Stat is the /proc/stat path (tests); default /proc/stat.
	Stat string
	// CPUs is the number of CPUs; default runtime.NumCPU().
	CPUs int

	mu    sync.Mutex
	start float64 // guarded by mu: busy seconds at first read
	init  bool    // guarded by mu
}

// Joules returns estimated CPU energy since the first call.
func (e *Estimate) Joules() (float64, error) {
	p := e.Stat
	if p == "" {
		p = "/proc/stat"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("cpu energy estimate: %w", err)
	}
	busy, err := ParseProcStat(b)
	if err != nil {
		return 0, fmt.Errorf("cpu energy estimate: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.init {
		e.start, e.init = busy, true
	}
	n := e.CPUs
	if n <= 0 {
		n = runtime.NumCPU()
	}
	return (busy - e.start) * e.TDPWatts / float64(n), nil
}

// ParseProcStat returns the machine's busy CPU seconds (user, nice, system,
// irq, softirq, steal of the aggregate "cpu" line) from /proc/stat.
func ParseProcStat(b []byte) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 8 {
			return 0, fmt.Errorf("/proc/stat: cpu line has %d fields, want at least 8", len(f))
		}
		var busy uint64
		for i, idx := range []int{1, 2, 3, 6, 7, 8} {
			if idx >= len(f) {
				break
			}
			v, err := strconv.ParseUint(f[idx], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat: cpu field %d %q: not a number", idx, f[idx])
			}
			if busy+v < busy {
				return 0, fmt.Errorf("/proc/stat: cpu field %d overflows", i)
			}
			busy += v
		}
		return float64(busy) / userHZ, nil
	}
	return 0, fmt.Errorf("/proc/stat: no aggregate cpu line")
}
