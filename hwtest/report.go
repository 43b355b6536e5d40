// Package hwtest probes donated hardware (CPU, memory bandwidth, disks,
// network interfaces, GPUs, I²C buses, temperatures) and turns the findings
// into a qualification report with a verdict and a recommendation of the
// model sizes the box can serve.
package hwtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ReportVersion is the schema version of Report. Readers reject other
// versions with ErrUnsupportedVersion.
const ReportVersion = 1

// MaxReportSize bounds a report file.
const MaxReportSize = 4 << 20

// Sentinel errors.
var (
	// ErrMalformed: a report file that does not decode or breaks a bound.
	ErrMalformed = errors.New("malformed hwtest report")
	// ErrUnsupportedVersion: a report of another schema version.
	ErrUnsupportedVersion = errors.New("unsupported hwtest report version")
)

// Report is the outcome of one hardware qualification run. It is a plain
// value: safe for concurrent reads once built.
type Report struct {
	Version   int       `json:"version"`
	Generated time.Time `json:"generated"`
	Hostname  string    `json:"hostname,omitempty"`
	Kernel    string    `json:"kernel,omitempty"`
	Arch      string    `json:"arch,omitempty"` // GOARCH of the prober, "" for a recorded root
	// Machine names the box: DMI vendor and product on PCs, the device
	// tree model on boards ("Raspberry Pi 4 Model B Rev 1.4").
	Machine      string        `json:"machine,omitempty"`
	CPU          CPU           `json:"cpu"`
	Memory       Memory        `json:"memory"`
	Disks        []Disk        `json:"disks"`
	Network      []NIC         `json:"network"`
	GPUs         []GPU         `json:"gpus"`
	GPUNote      string        `json:"gpu_note,omitempty"`
	I2C          []I2CBus      `json:"i2c"`
	Temperatures []Temperature `json:"temperatures"`
	// Problems lists probes that failed; a failed probe never fails the run.
	Problems []string   `json:"problems,omitempty"`
	Verdict  Verdict    `json:"verdict"`
	Models   []ModelFit `json:"models"`
}

// CPU describes the processor.
type CPU struct {
	Model         string   `json:"model"`
	Vendor        string   `json:"vendor,omitempty"`
	LogicalCores  int      `json:"logical_cores"`
	PhysicalCores int      `json:"physical_cores,omitempty"`
	MHz           float64  `json:"mhz,omitempty"`
	AVX2          bool     `json:"avx2"`
	AVX512        bool     `json:"avx512"`
	FMA           bool     `json:"fma"`
	NEON          bool     `json:"neon"`
	Features      []string `json:"features,omitempty"` // the inference-relevant subset of the kernel's flags
}

// Memory describes RAM and its measured bandwidth.
type Memory struct {
	TotalBytes     uint64 `json:"total_bytes"`
	AvailableBytes uint64 `json:"available_bytes"`
	// BandwidthBytesPerSec is the measured copy bandwidth in STREAM
	// convention (bytes read + bytes written per second) over all
	// BandwidthThreads; 0 when not measured.
	BandwidthBytesPerSec float64 `json:"bandwidth_bytes_per_sec"`
	// ReadBandwidthBytesPerSec is the measured read-only bandwidth (a
	// summing loop over the same buffers): decode's access pattern, and
	// the figure the tokens/s estimate uses when present.
	ReadBandwidthBytesPerSec float64       `json:"read_bandwidth_bytes_per_sec,omitempty"`
	BandwidthThreads         int           `json:"bandwidth_threads,omitempty"`
	BandwidthProbe           time.Duration `json:"bandwidth_probe_ns,omitempty"`
}

// Disk is one block device.
type Disk struct {
	Name       string `json:"name"`
	Model      string `json:"model,omitempty"`
	SizeBytes  uint64 `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Removable  bool   `json:"removable"`
	// ReadBytesPerSec is measured by a bounded sequential read (O_DIRECT
	// where the device allows it); 0 when not measured.
	ReadBytesPerSec float64 `json:"read_bytes_per_sec,omitempty"`
	ReadProbeBytes  int64   `json:"read_probe_bytes,omitempty"`
	Error           string  `json:"error,omitempty"`
}

// NIC is one network interface.
type NIC struct {
	Name      string `json:"name"`
	Kind      string `json:"kind,omitempty"` // netlink type: device, veth, bridge, loopback…
	MAC       string `json:"mac,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
	Up        bool   `json:"up"`
	Carrier   bool   `json:"carrier"`
	SpeedMbps int    `json:"speed_mbps,omitempty"` // 0 unknown
	Wireless  bool   `json:"wireless"`
}

// GPU is a PCI display controller.
type GPU struct {
	PCIAddress string `json:"pci_address"`
	Vendor     string `json:"vendor"`
	VendorID   string `json:"vendor_id"`
	DeviceID   string `json:"device_id"`
	Driver     string `json:"driver,omitempty"`
	VRAMBytes  uint64 `json:"vram_bytes,omitempty"` // where the driver exposes it (amdgpu)
}

// I2CBus is one I²C bus and the 7-bit addresses that answered a read.
type I2CBus struct {
	Name    string   `json:"name"`
	Devices []uint16 `json:"devices"`
	Error   string   `json:"error,omitempty"`
}

// Temperature is one sensor reading.
type Temperature struct {
	Source  string  `json:"source"` // thermal_zone0, hwmon1/temp2 …
	Label   string  `json:"label,omitempty"`
	Celsius float64 `json:"celsius"`
}

// Encode returns the report as indented JSON.
func (r *Report) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode hwtest report: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeReport parses a report file (untrusted: it may come from another
// box). Unknown fields are ignored so older readers can show newer reports
// of the same version.
func DecodeReport(b []byte) (*Report, error) {
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("decode hwtest report: %d bytes, at most %d: %w", len(b), MaxReportSize, ErrMalformed)
	}
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("decode hwtest report: %v: %w", err, ErrMalformed)
	}
	if probe.Version == nil {
		return nil, fmt.Errorf("decode hwtest report: no \"version\": %w", ErrMalformed)
	}
	if *probe.Version != ReportVersion {
		return nil, fmt.Errorf("decode hwtest report: version %d, this build reads %d: %w", *probe.Version, ReportVersion, ErrUnsupportedVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode hwtest report: %v: %w", err, ErrMalformed)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode hwtest report: trailing data: %w", ErrMalformed)
	}
	for _, c := range []struct {
		what string
		n    int
	}{{"disks", len(r.Disks)}, {"network", len(r.Network)}, {"gpus", len(r.GPUs)}, {"i2c", len(r.I2C)},
		{"temperatures", len(r.Temperatures)}, {"problems", len(r.Problems)}, {"models", len(r.Models)}, {"cpu.features", len(r.CPU.Features)}} {
		if c.n > 1024 {
			return nil, fmt.Errorf("decode hwtest report: %d %s, at most 1024: %w", c.n, c.what, ErrMalformed)
		}
	}
	for _, bus := range r.I2C {
		if len(bus.Devices) > 128 {
			return nil, fmt.Errorf("decode hwtest report: bus %q lists %d devices, at most 128: %w", bus.Name, len(bus.Devices), ErrMalformed)
		}
	}
	if r.Memory.BandwidthBytesPerSec < 0 || r.Memory.ReadBandwidthBytesPerSec < 0 || r.CPU.LogicalCores < 0 {
		return nil, fmt.Errorf("decode hwtest report: negative bandwidth or core count: %w", ErrMalformed)
	}
	return &r, nil
}
