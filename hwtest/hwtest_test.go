package hwtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"periph.io/x/conn/v3/physic"
)

var update = flag.Bool("update", false, "rewrite golden files")

func quiet() *Prober {
	return &Prober{BandwidthTime: 150 * time.Millisecond, DiskReadBytes: 4 << 20, DiskReadTime: 500 * time.Millisecond}
}

// TestLiveProbe runs every real probe on this machine and checks the report
// against what the OS says through other channels.
func TestLiveProbe(t *testing.T) {
	before, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r := quiet().Run(context.Background())
	after, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 30*time.Second {
		t.Errorf("probe took %v; the bandwidth and disk probes are bounded", took)
	}
	if r.Version != ReportVersion || r.Arch != runtime.GOARCH || time.Since(r.Generated) > time.Minute {
		t.Fatalf("header %+v", r)
	}
	if r.CPU.LogicalCores < runtime.NumCPU() || r.CPU.Model == "" {
		t.Errorf("cpu %+v, runtime sees %d CPUs", r.CPU, runtime.NumCPU())
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil && runtime.GOARCH == "amd64" {
		hasAVX2 := strings.Contains(string(b), " avx2")
		if hasAVX2 != r.CPU.AVX2 {
			t.Errorf("cpuinfo avx2=%v, report %v", hasAVX2, r.CPU.AVX2)
		}
	}
	m := r.Memory
	if m.TotalBytes < 64<<20 || m.TotalBytes > 64<<40 || m.AvailableBytes > m.TotalBytes {
		t.Errorf("memory %+v", m)
	}
	// Sane range, not a speed requirement: 10 MB/s .. 10 TB/s.
	if m.BandwidthBytesPerSec < 1e7 || m.BandwidthBytesPerSec > 1e13 || m.BandwidthThreads < 1 ||
		m.ReadBandwidthBytesPerSec < 1e7 || m.ReadBandwidthBytesPerSec > 1e13 {
		t.Errorf("bandwidth copy %.3g read %.3g B/s with %d threads", m.BandwidthBytesPerSec, m.ReadBandwidthBytesPerSec, m.BandwidthThreads)
	}
	if m.BandwidthProbe < 100*time.Millisecond || m.BandwidthProbe > 10*time.Second {
		t.Errorf("bandwidth probe ran %v for a 150ms budget", m.BandwidthProbe)
	}
	// Every interface the stdlib sees before and after the probe, unchanged
	// (other jobs may add or remove interfaces meanwhile), is in the report
	// with its MTU and state.
	for _, i := range before {
		if !slices.ContainsFunc(after, func(a net.Interface) bool {
			return a.Name == i.Name && a.Index == i.Index && a.MTU == i.MTU && a.Flags == i.Flags
		}) {
			continue
		}
		k := slices.IndexFunc(r.Network, func(n NIC) bool { return n.Name == i.Name })
		if k < 0 {
			t.Errorf("interface %s missing", i.Name)
			continue
		}
		if n := r.Network[k]; n.MTU != i.MTU || n.Up != (i.Flags&net.FlagUp != 0) {
			t.Errorf("%s: report %+v, stdlib mtu %d flags %v", i.Name, n, i.MTU, i.Flags)
		}
		if i.Flags&net.FlagLoopback != 0 && r.Network[k].Kind != "loopback" {
			t.Errorf("%s is loopback, report says %q", i.Name, r.Network[k].Kind)
		}
	}
	// Disks: the same whole disks sysfs lists.
	ents, _ := os.ReadDir("/sys/block")
	for _, d := range r.Disks {
		if !slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == d.Name }) {
			t.Errorf("disk %s not in /sys/block", d.Name)
		}
		if d.SizeBytes == 0 || (d.Error == "" && d.ReadBytesPerSec <= 0) {
			t.Errorf("disk %+v", d)
		}
	}
	if len(r.Models) != len(Catalogue) || r.Verdict.Grade == "" || r.Verdict.Grade == "unknown" {
		t.Errorf("recommendation %+v / %+v", r.Models, r.Verdict)
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	t.Logf("\n%s", r.Summary())
}

// TestRecordedPi4 reads a recorded Raspberry Pi 4 tree.
func TestRecordedPi4(t *testing.T) {
	p := &Prober{Root: "testdata/pi4", DiskReadBytes: 1 << 20, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
	r := p.Run(context.Background())
	if len(r.Problems) != 0 {
		t.Errorf("problems: %q", r.Problems)
	}
	c := r.CPU
	if c.Model != "Raspberry Pi 4 Model B Rev 1.4" || c.LogicalCores != 4 || !c.NEON || c.AVX2 || c.Vendor != "0x41" {
		t.Errorf("cpu %+v", c)
	}
	if r.Memory.TotalBytes != 3884308*1024 || r.Memory.AvailableBytes != 3500112*1024 || r.Memory.BandwidthBytesPerSec != 0 {
		t.Errorf("memory %+v", r.Memory)
	}
	if len(r.Disks) != 1 {
		t.Fatalf("disks %+v (loop0 must be skipped)", r.Disks)
	}
	d := r.Disks[0]
	if d.Name != "mmcblk0" || d.SizeBytes != 62333952*512 || !d.Removable || d.Rotational || d.ReadProbeBytes != 256<<10 || d.ReadBytesPerSec <= 0 {
		t.Errorf("disk %+v", d)
	}
	want := []NIC{
		{Name: "eth0", MAC: "dc:a6:32:01:02:03", MTU: 1500, Up: true, Carrier: true, SpeedMbps: 1000},
		{Name: "lo", MAC: "00:00:00:00:00:00", MTU: 65536, Up: true},
		{Name: "wlan0", MAC: "dc:a6:32:01:02:04", MTU: 1500, Wireless: true},
	}
	if diff := cmp.Diff(want, r.Network); diff != "" {
		t.Errorf("network (-want +got):\n%s", diff)
	}
	if len(r.GPUs) != 0 {
		t.Errorf("a PCI bridge is not a GPU: %+v", r.GPUs)
	}
	wantT := []Temperature{{"thermal_zone0", "cpu-thermal", 48.686}, {"hwmon0/temp1", "rpi_volt", 51}}
	if diff := cmp.Diff(wantT, r.Temperatures); diff != "" {
		t.Errorf("temperatures (-want +got):\n%s", diff)
	}
	if r.Verdict.Grade != "unknown" {
		t.Errorf("no bandwidth measured, verdict %+v", r.Verdict)
	}
}

// TestBrokenInputs: unreadable and garbage /proc and /sys files become
// problems in the report, never a panic or a failed run.
func TestBrokenInputs(t *testing.T) {
	r := (&Prober{Root: "testdata/broken", DiskReadBytes: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(context.Background())
	want := []string{
		"cpu: read cpuinfo: read testdata/broken/proc/cpuinfo: is a directory",
		"memory: testdata/broken/proc/meminfo: no MemTotal",
		"network: open testdata/broken/sys/class/net",
		"temperature: thermal_zone0: read testdata/broken/sys/class/thermal/thermal_zone0/temp: is a directory",
		`temperature: thermal_zone1: "abc" is not a number`,
		"temperature: thermal_zone2: implausible 999.0 °C ignored",
		"temperature: hwmon0/temp1: read testdata/broken/sys/class/hwmon/hwmon0/temp1_input: is a directory",
	}
	for _, w := range want {
		if !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.HasPrefix(p, w) }) {
			t.Errorf("missing problem %q in\n%s", w, strings.Join(r.Problems, "\n"))
		}
	}
	if len(r.Disks) != 1 || r.Disks[0].Name != "sda" || !strings.Contains(r.Disks[0].Error, "size unreadable") {
		t.Errorf("disks %+v (sda garbage size reported, empty sdb skipped)", r.Disks)
	}
	if len(r.GPUs) != 1 || r.GPUs[0].Vendor != "NVIDIA" || r.GPUs[0].PCIAddress != "0000:03:00.0" {
		t.Errorf("gpus %+v", r.GPUs)
	}
	if r.Verdict.Grade != "unknown" || !strings.Contains(r.Summary(), "Probe problems:") {
		t.Errorf("verdict %+v", r.Verdict)
	}
}

func fixedReport(t *testing.T) *Report {
	t.Helper()
	b, err := os.ReadFile("testdata/report-pc.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeReport(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGoldenSummary(t *testing.T) {
	r := fixedReport(t)
	Recommend(r) // the recommendation is recomputed from the facts
	got := r.Summary()
	golden := filepath.Join("testdata", "report-pc.summary.golden")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("summary (-golden +got):\n%s", diff)
	}
}

func TestFit(t *testing.T) {
	const GiB = 1 << 30
	q4 := func(b float64) ModelSpec { return ModelSpec{"x", b, "Q4_K_M", 4.85} }
	for _, tc := range []struct {
		name   string
		m      ModelSpec
		mem    uint64
		bw     float64
		bytes  uint64
		fits   bool
		tokens float64
	}{
		// 8.03e9 · 4.85 / 8 = 4 868 187 500 bytes; 20e9 / that = 4.1.
		{"8B on 8 GiB, 20 GB/s", q4(8.03), 8 * GiB, 20e9, 4868187500, true, 4.1},
		// needs 4.868e9·1.1 + 512 MiB = 5.89e9 > 6 GiB - 768 MiB = 5.64e9.
		{"8B on 6 GiB", q4(8.03), 6 * GiB, 20e9, 4868187500, false, 4.1},
		{"3B on a Pi 4 (4 GB/s)", q4(3.21), 4 * GiB, 4e9, 1946062500, true, 2.1},
		{"0.5B, bandwidth unknown", q4(0.49), 2 * GiB, 0, 297062500, true, 0},
		{"Q8_0 8B, 100 GB/s", ModelSpec{"y", 8.03, "Q8_0", 8.5}, 64 * GiB, 100e9, 8531875000, true, 11.7},
		{"less RAM than the reserve", q4(0.49), 512 << 20, 4e9, 297062500, false, 13.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Fit(tc.m, tc.mem, tc.bw)
			if f.Bytes != tc.bytes || f.Fits != tc.fits || math.Abs(f.TokensPerSec-tc.tokens) > 1e-9 {
				t.Fatalf("Fit = bytes %d fits %v tok/s %v; want %d %v %v", f.Bytes, f.Fits, f.TokensPerSec, tc.bytes, tc.fits, tc.tokens)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	const GiB = 1 << 30
	for _, tc := range []struct {
		name  string
		mem   uint64
		bw    float64
		cpu   CPU
		grade string
		msg   string
	}{
		{"desktop DDR4", 32 * GiB, 40e9, CPU{AVX2: true}, "inference", "serves 8B Q4_K_M (Llama-3.1-8B class) at about 8.2 tokens/s; up to 32B Q4_K_M (Qwen2.5-32B class) at about 2.0"},
		{"pi 4 4GB", 4 * GiB, 4e9, CPU{NEON: true}, "light-inference", "3B Q4_K_M (Llama-3.2-3B class) at about 2.1"},
		{"pi zero class", 512 << 20, 1e9, CPU{}, "relay", "mesh relay"},
		{"not measured", 16 * GiB, 0, CPU{AVX2: true}, "unknown", "not measured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{CPU: tc.cpu, Memory: Memory{TotalBytes: tc.mem, BandwidthBytesPerSec: tc.bw}}
			Recommend(r)
			if r.Verdict.Grade != tc.grade || !strings.Contains(r.Verdict.Summary, tc.msg) {
				t.Fatalf("verdict %+v, want %s containing %q", r.Verdict, tc.grade, tc.msg)
			}
		})
	}
	r := &Report{Memory: Memory{TotalBytes: 1 << 30, BandwidthBytesPerSec: 2e9}}
	Recommend(r)
	if !slices.ContainsFunc(r.Verdict.Reasons, func(s string) bool { return strings.HasPrefix(s, "no AVX2 or NEON") }) ||
		!slices.ContainsFunc(r.Verdict.Reasons, func(s string) bool { return s == "only 1.0 GiB of RAM" }) {
		t.Errorf("reasons %q", r.Verdict.Reasons)
	}
}

// fakeBus answers reads at the given addresses: the hardware edge.
type fakeBus struct{ present map[uint16]bool }

func (b *fakeBus) String() string                  { return "fake" }
func (b *fakeBus) SetSpeed(physic.Frequency) error { return nil }
func (b *fakeBus) Tx(addr uint16, w, r []byte) error {
	if len(w) != 0 {
		return errors.New("scan must not write")
	}
	if !b.present[addr] {
		return errors.New("remote I/O error")
	}
	return nil
}

func TestScanBus(t *testing.T) {
	// INA219 power monitor and BME280 environment sensor, plus addresses
	// outside the scanned range that must not be reported.
	b := &fakeBus{present: map[uint16]bool{0x40: true, 0x76: true, 0x03: true, 0x78: true}}
	if got := ScanBus(context.Background(), b); !slices.Equal(got, []uint16{0x40, 0x76}) {
		t.Fatalf("ScanBus = %#x", got)
	}
	if got := ScanBus(context.Background(), &fakeBus{}); len(got) != 0 || got == nil {
		t.Fatalf("empty bus = %#v, want empty non-nil", got)
	}
	r := (&Prober{Root: "testdata/pi4", DiskReadBytes: -1, I2C: func(ctx context.Context) ([]I2CBus, error) {
		return []I2CBus{{Name: "I2C1", Devices: ScanBus(ctx, b)}}, nil
	}}).Run(context.Background())
	if !strings.Contains(r.Summary(), "I2C       I2C1: 0x40 0x76") {
		t.Errorf("summary:\n%s", r.Summary())
	}
}

func TestDecodeReportErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
		msg  string
	}{
		{`{"version":2}`, ErrUnsupportedVersion, "version 2"},
		{`{}`, ErrMalformed, `no "version"`},
		{`[1]`, ErrMalformed, "cannot unmarshal"},
		{`{"version":1,"cpu":{"logical_cores":-1}}`, ErrMalformed, "negative"},
		{`{"version":1} {}`, ErrMalformed, "after top-level value"},
		{`{"version":1,"i2c":[{"name":"x","devices":[` + strings.Repeat("1,", 200) + `1]}]}`, ErrMalformed, "at most 128"},
	} {
		_, err := DecodeReport([]byte(tc.in))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("DecodeReport(%.40q) = %v, want %v containing %q", tc.in, err, tc.want, tc.msg)
		}
	}
}

func FuzzDecodeReport(f *testing.F) {
	b, err := os.ReadFile("testdata/report-pc.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"models":[{"name":"x","params_b":1e308,"bits_per_weight":1e308}]}`))
	f.Add([]byte(`{"version":1,"memory":{"total_bytes":18446744073709551615,"bandwidth_bytes_per_sec":1e308}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReport(b)
		if err != nil {
			return
		}
		_ = r.Summary()
		Recommend(r)
		_ = r.Summary()
		enc, err := r.Encode()
		if err != nil {
			return // e.g. a float the decoder took but JSON cannot carry
		}
		if _, err := DecodeReport(enc); err != nil {
			t.Fatalf("re-encoded report does not decode: %v", err)
		}
	})
}

// BenchmarkBandwidthProbe runs the probe (300 ms budget, the default) and,
// as the in-run reference, a plain single-goroutine copy of the same 32 MiB
// buffers measured by testing.B; it reports both and their ratio.
func BenchmarkBandwidthProbe(b *testing.B) {
	const size = 32 << 20
	src, dst := make([]byte, size), make([]byte, size)
	copy(dst, src)
	var ref float64
	b.Run("reference-copy-1thread", func(b *testing.B) {
		b.SetBytes(2 * size) // STREAM convention, as the probe
		for b.Loop() {
			copy(dst, src)
		}
		ref = 2 * size * float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(ref/1e9, "GB/s")
	})
	b.Run("probe", func(b *testing.B) {
		var bw Bandwidth
		for b.Loop() {
			bw = MeasureBandwidth(context.Background(), 300*time.Millisecond, 32<<20, 0)
		}
		b.ReportMetric(bw.Copy/1e9, "copy-GB/s")
		b.ReportMetric(bw.Read/1e9, "read-GB/s")
		b.ReportMetric(float64(bw.Threads), "threads")
		b.ReportMetric(bw.Took.Seconds()*1000, "probe-ms")
		if ref > 0 {
			b.ReportMetric(bw.Copy/ref, "copy-x-reference")
		}
	})
}

func TestSections(t *testing.T) {
	r := fixedReport(t)
	Recommend(r)
	s := r.Sections()
	names := make([]string, len(s))
	for i, x := range s {
		names[i] = x.Name
	}
	if !slices.Equal(names, []string{"CPU", "Memory", "Disks", "Network", "GPU", "Buses", "Temperatures", "Models"}) {
		t.Fatalf("sections %v", names)
	}
	find := func(sec, item string) Item {
		for _, x := range s {
			if x.Name != sec {
				continue
			}
			for _, it := range x.Items {
				if it.Name == item {
					return it
				}
			}
		}
		t.Fatalf("no %s/%s", sec, item)
		return Item{}
	}
	if it := find("Memory", "bandwidth"); it.Value != "41.0 GB/s" || it.Status != StatusOK || !strings.HasPrefix(it.Detail, "copy 38.0 GB/s") {
		t.Errorf("bandwidth %+v", it)
	}
	if it := find("Network", "wlp4s0"); it.Value != "down" || it.Detail != "wireless" {
		t.Errorf("wlan %+v", it)
	}
	if it := find("Models", "70B Q4_K_M (Llama-3.1-70B class)"); it.Status != StatusFail {
		t.Errorf("70B %+v", it)
	}
	if it := find("Models", "32B Q4_K_M (Qwen2.5-32B class)"); it.Status != StatusOK || it.Value != "≈2.1 tok/s" {
		t.Errorf("32B %+v", it)
	}
	r.Memory.ReadBandwidthBytesPerSec = 38e9 // 32B drops below the usable speed
	Recommend(r)
	s = r.Sections()
	if it := find("Models", "32B Q4_K_M (Qwen2.5-32B class)"); it.Status != StatusWarn || it.Value != "≈1.9 tok/s" {
		t.Errorf("32B at 38 GB/s %+v", it)
	}
	if it := find("Buses", "I2C0"); it.Value != "0x50 0x51" {
		t.Errorf("i2c %+v", it)
	}
}

func ExamplePredictTokensPerSec() {
	// A Qwen2.5-0.5B Q4_K_M file holds about 0.297 GB of weights; a
	// Raspberry Pi 4 copies about 4 GB/s.
	fmt.Printf("%.1f tok/s\n", PredictTokensPerSec(4e9, 297_062_500))
	// Output: 13.5 tok/s
}

func TestMachineAndARMNames(t *testing.T) {
	r := (&Prober{Root: "testdata/mainline", DiskReadBytes: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(context.Background())
	if r.CPU.Model != "ARM Cortex-A76" || r.CPU.LogicalCores != 4 || !r.CPU.NEON || r.CPU.MHz != 2400 {
		t.Errorf("cpu %+v", r.CPU)
	}
	if r.Machine != "Raspberry Pi 5 Model B Rev 1.0" {
		t.Errorf("machine %q", r.Machine)
	}
	if !strings.Contains(r.Summary(), "Machine: Raspberry Pi 5 Model B Rev 1.0\n") {
		t.Errorf("summary:\n%s", r.Summary())
	}
	for root, want := range map[string]string{"testdata/pc-dmi": "Dell Inc. OptiPlex 7010", "testdata/oem-dmi": "", "testdata/pi4": ""} {
		if got := (&Prober{Root: root}).machine(); got != want {
			t.Errorf("%s: machine %q, want %q", root, got, want)
		}
	}
}
