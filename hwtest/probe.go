package hwtest

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/cpu"
)

// Prober runs the probes. The zero value probes the live machine with the
// default budgets; set Root to read /proc and /sys from a recorded tree
// (tests, or a report about a mounted image). A Prober is not safe for
// concurrent Run calls.
type Prober struct {
	// Root is prepended to /proc, /sys and /dev paths; default "/". With
	// another root the live-only probes (x/sys/cpu, netlink, periph I²C,
	// memory bandwidth) are skipped unless their hook is set.
	Root string
	// BandwidthTime bounds the memory bandwidth probe; default 300 ms,
	// negative skips it.
	BandwidthTime time.Duration
	// BandwidthBuffer is the per-thread buffer size of the copy
	// benchmark (two buffers per thread); default 32 MiB, far above any
	// last-level cache the probe will meet.
	BandwidthBuffer int
	// DiskReadBytes and DiskReadTime bound the per-disk read probe;
	// defaults 64 MiB and 1 s; DiskReadBytes < 0 skips it.
	DiskReadBytes int64
	DiskReadTime  time.Duration
	// Links lists network interfaces; default netlink (live root) or
	// /sys/class/net (other roots).
	Links func() ([]NIC, error)
	// I2C scans I²C buses; default periph.io (live root only).
	I2C func(ctx context.Context) ([]I2CBus, error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

func (p *Prober) live() bool { return p.Root == "" || p.Root == "/" }

func (p *Prober) path(elem ...string) string {
	root := p.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

func (p *Prober) readString(elem ...string) (string, error) {
	b, err := os.ReadFile(p.path(elem...))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Run probes everything and returns the report with verdict and
// recommendation. It never fails: a probe that cannot run adds a line to
// Report.Problems. ctx bounds the whole run.
func (p *Prober) Run(ctx context.Context) *Report {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	r := &Report{Version: ReportVersion, Generated: now().UTC(),
		Disks: []Disk{}, Network: []NIC{}, GPUs: []GPU{}, I2C: []I2CBus{}, Temperatures: []Temperature{}}
	problem := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		log.Warn("hwtest: " + s)
		r.Problems = append(r.Problems, s)
	}
	r.Hostname, _ = p.readString("proc/sys/kernel/hostname")
	r.Kernel, _ = p.readString("proc/sys/kernel/osrelease")
	if p.live() {
		r.Arch = runtime.GOARCH
	}
	var err error
	if r.CPU, err = p.probeCPU(); err != nil {
		problem("cpu: %v", err)
	}
	r.Machine = p.machine()
	if r.Memory, err = p.probeMemInfo(); err != nil {
		problem("memory: %v", err)
	}
	if p.BandwidthTime >= 0 && p.live() && ctx.Err() == nil {
		bw := MeasureBandwidth(ctx, p.bwTime(), p.bwBuffer(), r.Memory.AvailableBytes)
		r.Memory.BandwidthBytesPerSec, r.Memory.ReadBandwidthBytesPerSec = bw.Copy, bw.Read
		r.Memory.BandwidthThreads, r.Memory.BandwidthProbe = bw.Threads, bw.Took
	}
	if r.Disks, err = p.probeDisks(ctx); err != nil {
		problem("disks: %v", err)
	}
	links := p.Links
	if links == nil {
		links = p.sysfsLinks
		if p.live() {
			links = p.netlinkLinks
		}
	}
	if r.Network, err = links(); err != nil {
		problem("network: %v", err)
	}
	if r.GPUs, err = p.probeGPUs(); err != nil {
		problem("gpus: %v", err)
	}
	r.GPUNote = "NVML needs cgo and the NVIDIA driver; this build (CGO_ENABLED=0, gokrazy) lists GPUs from PCI only"
	scan := p.I2C
	if scan == nil && p.live() {
		scan = ScanI2C
	}
	if scan != nil && ctx.Err() == nil {
		buses, err := scan(ctx)
		if err != nil {
			problem("i2c: %v", err)
		}
		r.I2C = append(r.I2C, buses...)
	}
	var tp []string
	r.Temperatures, tp = p.probeTemperatures()
	for _, s := range tp {
		problem("temperature: %s", s)
	}
	if r.Disks == nil {
		r.Disks = []Disk{}
	}
	if r.Network == nil {
		r.Network = []NIC{}
	}
	if r.GPUs == nil {
		r.GPUs = []GPU{}
	}
	Recommend(r)
	return r
}

func (p *Prober) bwTime() time.Duration {
	if p.BandwidthTime == 0 {
		return 300 * time.Millisecond
	}
	return p.BandwidthTime
}

func (p *Prober) bwBuffer() int {
	if p.BandwidthBuffer <= 0 {
		return 32 << 20
	}
	return p.BandwidthBuffer
}

// interestingFlags are the CPU flags that matter to the inference kernels.
var interestingFlags = []string{"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
	"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "neon", "asimd", "asimdhp", "asimddp", "fphp", "sve", "sve2", "i8mm", "bf16"}

func (p *Prober) probeCPU() (CPU, error) {
	var c CPU
	f, err := os.Open(p.path("proc/cpuinfo"))
	if err != nil {
		if p.live() {
			c.LogicalCores = runtime.NumCPU()
			p.liveFeatures(&c, nil)
		}
		return c, err
	}
	defer f.Close()
	flags := map[string]bool{}
	cores := map[string]bool{}
	var phys, impl, part string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			c.LogicalCores++
		case "model name":
			c.Model = v
		case "Model": // Raspberry Pi and other boards
			if c.Model == "" || strings.HasPrefix(c.Model, "ARMv") {
				c.Model = v
			}
		case "vendor_id", "CPU implementer":
			c.Vendor = v
			if k == "CPU implementer" {
				impl = v
			}
		case "CPU part":
			part = v
		case "cpu MHz":
			if mhz, err := strconv.ParseFloat(v, 64); err == nil && c.MHz == 0 {
				c.MHz = mhz
			}
		case "flags", "Features":
			for _, fl := range strings.Fields(v) {
				flags[fl] = true
			}
		case "physical id":
			phys = v
		case "core id":
			cores[phys+"/"+v] = true
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read cpuinfo: %w", err)
	}
	if len(cores) > 0 {
		c.PhysicalCores = len(cores)
	}
	if c.LogicalCores == 0 && p.live() {
		c.LogicalCores = runtime.NumCPU()
	}
	for _, fl := range interestingFlags {
		if flags[fl] {
			c.Features = append(c.Features, fl)
		}
	}
	c.AVX2, c.AVX512, c.FMA = flags["avx2"], flags["avx512f"], flags["fma"]
	c.NEON = flags["asimd"] || flags["neon"]
	if p.live() {
		p.liveFeatures(&c, flags)
	}
	if c.Model == "" {
		// Mainline arm64 kernels print no model name: name the core.
		if name := armParts[impl+"/"+part]; name != "" {
			c.Model = name
		} else if dt := p.deviceTreeModel(); dt != "" {
			c.Model = dt
		} else {
			c.Model = "unknown"
		}
	}
	if c.MHz == 0 { // ARM: no "cpu MHz" line; cpufreq knows the maximum
		if s, err := p.readString("sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"); err == nil {
			if khz, err := strconv.ParseFloat(s, 64); err == nil {
				c.MHz = khz / 1000
			}
		}
	}
	return c, nil
}

// armParts names common ARM cores by "CPU implementer/CPU part".
var armParts = map[string]string{
	"0x41/0xd03": "ARM Cortex-A53", "0x41/0xd04": "ARM Cortex-A35", "0x41/0xd05": "ARM Cortex-A55",
	"0x41/0xd07": "ARM Cortex-A57", "0x41/0xd08": "ARM Cortex-A72", "0x41/0xd09": "ARM Cortex-A73",
	"0x41/0xd0a": "ARM Cortex-A75", "0x41/0xd0b": "ARM Cortex-A76", "0x41/0xd0c": "ARM Neoverse-N1",
	"0x41/0xd40": "ARM Neoverse-V1", "0x41/0xd41": "ARM Cortex-A78", "0x41/0xd4f": "ARM Neoverse-V2",
	"0x41/0xd49": "ARM Neoverse-N2", "0x61/0x022": "Apple M1", "0x61/0x023": "Apple M1",
}

// deviceTreeModel is the board's model from the device tree, "" if none.
func (p *Prober) deviceTreeModel() string {
	for _, f := range []string{"sys/firmware/devicetree/base/model", "proc/device-tree/model"} {
		if s, err := p.readString(f); err == nil && s != "" {
			return strings.TrimRight(s, "\x00")
		}
	}
	return ""
}

// machine names the box from DMI (PCs) or the device tree (boards).
func (p *Prober) machine() string {
	vendor, _ := p.readString("sys/class/dmi/id/sys_vendor")
	product, _ := p.readString("sys/class/dmi/id/product_name")
	for _, junk := range []string{"To Be Filled By O.E.M.", "System manufacturer", "System Product Name", "Default string"} {
		vendor = strings.TrimSpace(strings.ReplaceAll(vendor, junk, ""))
		product = strings.TrimSpace(strings.ReplaceAll(product, junk, ""))
	}
	if m := strings.TrimSpace(vendor + " " + product); m != "" {
		return m
	}
	return p.deviceTreeModel()
}

// liveFeatures asks the running CPU (CPUID / HWCAP via x/sys/cpu), which
// also knows whether the OS enabled the register state, for the build's
// architecture.
func (p *Prober) liveFeatures(c *CPU, _ map[string]bool) {
	switch runtime.GOARCH {
	case "amd64", "386":
		c.AVX2, c.AVX512, c.FMA = cpu.X86.HasAVX2, cpu.X86.HasAVX512F, cpu.X86.HasFMA
	case "arm64":
		c.NEON = cpu.ARM64.HasASIMD
	case "arm":
		c.NEON = cpu.ARM.HasNEON
	}
}

func (p *Prober) probeMemInfo() (Memory, error) {
	var m Memory
	f, err := os.Open(p.path("proc/meminfo"))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		n, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 2 && fields[2] == "kB" {
			n *= 1024
		}
		switch fields[0] {
		case "MemTotal:":
			m.TotalBytes = n
		case "MemAvailable:":
			m.AvailableBytes = n
		}
	}
	if m.TotalBytes == 0 {
		return m, fmt.Errorf("%s: no MemTotal", p.path("proc/meminfo"))
	}
	return m, sc.Err()
}

func (p *Prober) probeGPUs() ([]GPU, error) {
	dir := p.path("sys/bus/pci/devices")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []GPU
	for _, e := range ents {
		cls, err := p.readString("sys/bus/pci/devices", e.Name(), "class")
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(cls, "0x"), 16, 32)
		if err != nil || v>>16 != 0x03 { // PCI base class 03: display controller
			continue
		}
		g := GPU{PCIAddress: e.Name()}
		g.VendorID, _ = p.readString("sys/bus/pci/devices", e.Name(), "vendor")
		g.DeviceID, _ = p.readString("sys/bus/pci/devices", e.Name(), "device")
		g.Vendor = pciVendors[strings.ToLower(g.VendorID)]
		if g.Vendor == "" {
			g.Vendor = "unknown vendor " + g.VendorID
		}
		if l, err := os.Readlink(filepath.Join(dir, e.Name(), "driver")); err == nil {
			g.Driver = filepath.Base(l)
		}
		if s, err := p.readString("sys/bus/pci/devices", e.Name(), "mem_info_vram_total"); err == nil {
			g.VRAMBytes, _ = strconv.ParseUint(s, 10, 64)
		}
		out = append(out, g)
	}
	return out, nil
}

var pciVendors = map[string]string{
	"0x10de": "NVIDIA", "0x1002": "AMD", "0x8086": "Intel", "0x1af4": "virtio",
	"0x1234": "QEMU/Bochs", "0x15ad": "VMware", "0x1a03": "ASPEED", "0x102b": "Matrox",
}

func (p *Prober) probeTemperatures() ([]Temperature, []string) {
	out := []Temperature{}
	var problems []string
	add := func(src, label, file string) {
		s, err := p.readString(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", src, err))
			return
		}
		milli, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q is not a number", src, s))
			return
		}
		c := float64(milli) / 1000
		if c < -60 || c > 150 {
			problems = append(problems, fmt.Sprintf("%s: implausible %.1f °C ignored", src, c))
			return
		}
		out = append(out, Temperature{Source: src, Label: label, Celsius: c})
	}
	zones, _ := filepath.Glob(p.path("sys/class/thermal/thermal_zone*"))
	for _, z := range zones {
		name := filepath.Base(z)
		typ, _ := p.readString("sys/class/thermal", name, "type")
		add(name, typ, filepath.Join("sys/class/thermal", name, "temp"))
	}
	mons, _ := filepath.Glob(p.path("sys/class/hwmon/hwmon*"))
	for _, h := range mons {
		hn := filepath.Base(h)
		chip, _ := p.readString("sys/class/hwmon", hn, "name")
		inputs, _ := filepath.Glob(filepath.Join(h, "temp*_input"))
		slices.Sort(inputs)
		for _, in := range inputs {
			t := strings.TrimSuffix(filepath.Base(in), "_input")
			label, err := p.readString("sys/class/hwmon", hn, t+"_label")
			if err != nil {
				label = ""
			}
			if chip != "" {
				label = strings.TrimSpace(chip + " " + label)
			}
			add(hn+"/"+t, label, filepath.Join("sys/class/hwmon", hn, filepath.Base(in)))
		}
	}
	return out, problems
}
