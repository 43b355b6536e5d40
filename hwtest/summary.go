package hwtest

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary returns the human summary of r: the verdict first, then one
// section per probe. It depends only on r (golden-tested).
func (r *Report) Summary() string {
	var b strings.Builder
	r.WriteSummary(&b)
	return b.String()
}

// WriteSummary writes Summary to w.
func (r *Report) WriteSummary(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	host := r.Hostname
	if host == "" {
		host = "this box"
	}
	p("Hardware report for %s (%s, kernel %s, %s)", host, orDash(r.Arch), orDash(r.Kernel), r.Generated.UTC().Format(time.RFC3339))
	if r.Machine != "" {
		p("Machine: %s", r.Machine)
	}
	p("")
	p("VERDICT: %s — %s", strings.ToUpper(r.Verdict.Grade), r.Verdict.Summary)
	for _, s := range r.Verdict.Reasons {
		p("  - %s", s)
	}
	p("")
	c := r.CPU
	simd := []string{}
	for _, f := range []struct {
		ok   bool
		name string
	}{{c.AVX2, "AVX2"}, {c.AVX512, "AVX-512"}, {c.FMA, "FMA"}, {c.NEON, "NEON"}} {
		if f.ok {
			simd = append(simd, f.name)
		}
	}
	if len(simd) == 0 {
		simd = append(simd, "no AVX2/AVX-512/NEON")
	}
	cores := fmt.Sprintf("%d threads", c.LogicalCores)
	if c.PhysicalCores > 0 {
		cores = fmt.Sprintf("%d cores / %d threads", c.PhysicalCores, c.LogicalCores)
	}
	p("CPU       %s, %s, %s", c.Model, cores, strings.Join(simd, " "))
	m := r.Memory
	bw := "not measured"
	if m.BandwidthBytesPerSec > 0 {
		bw = fmt.Sprintf("copy %s/s", fmtBytesSI(m.BandwidthBytesPerSec))
		if m.ReadBandwidthBytesPerSec > 0 {
			bw += fmt.Sprintf(", read %s/s", fmtBytesSI(m.ReadBandwidthBytesPerSec))
		}
		bw += fmt.Sprintf(" measured (%d threads, %s)", m.BandwidthThreads, m.BandwidthProbe.Round(time.Millisecond))
	}
	p("Memory    %s total, %s available; bandwidth %s", fmtBytes(float64(m.TotalBytes)), fmtBytes(float64(m.AvailableBytes)), bw)
	if len(r.Disks) == 0 {
		p("Disks     none found")
	}
	for i, d := range r.Disks {
		label := "Disks    "
		if i > 0 {
			label = "         "
		}
		kind := "SSD/flash"
		if d.Rotational {
			kind = "spinning"
		}
		if d.Removable {
			kind += ", removable"
		}
		speed := ""
		if d.ReadBytesPerSec > 0 {
			speed = fmt.Sprintf(", reads %s/s", fmtBytesSI(d.ReadBytesPerSec))
		}
		if d.Error != "" {
			speed += " (" + d.Error + ")"
		}
		p("%s %s %s %s (%s)%s", label, d.Name, fmtBytes(float64(d.SizeBytes)), orDash(d.Model), kind, speed)
	}
	nics := 0
	for _, n := range r.Network {
		if n.Kind == "loopback" {
			continue
		}
		label := "Network  "
		if nics > 0 {
			label = "         "
		}
		nics++
		state := "down"
		if n.Up && n.Carrier {
			state = "up, link"
		} else if n.Up {
			state = "up, no link"
		}
		extra := ""
		if n.SpeedMbps > 0 {
			extra += fmt.Sprintf(", %d Mb/s", n.SpeedMbps)
		}
		if n.Wireless {
			extra += ", wireless"
		}
		p("%s %s (%s) %s%s", label, n.Name, orDash(n.Kind), state, extra)
	}
	if nics == 0 {
		p("Network   no interfaces besides loopback")
	}
	if len(r.GPUs) == 0 {
		p("GPU       none on PCI")
	}
	for _, g := range r.GPUs {
		vram := ""
		if g.VRAMBytes > 0 {
			vram = ", " + fmtBytes(float64(g.VRAMBytes)) + " VRAM"
		}
		p("GPU       %s %s:%s at %s, driver %s%s", g.Vendor, g.VendorID, g.DeviceID, g.PCIAddress, orDash(g.Driver), vram)
	}
	if len(r.GPUs) > 0 && r.GPUNote != "" {
		p("          (%s)", r.GPUNote)
	}
	if len(r.I2C) == 0 {
		p("I2C       no buses")
	}
	for _, bus := range r.I2C {
		addrs := make([]string, len(bus.Devices))
		for i, a := range bus.Devices {
			addrs[i] = fmt.Sprintf("0x%02x", a)
		}
		s := strings.Join(addrs, " ")
		if s == "" {
			s = "no device answered"
		}
		if bus.Error != "" {
			s = "error: " + bus.Error
		}
		p("I2C       %s: %s", bus.Name, s)
	}
	if len(r.Temperatures) == 0 {
		p("Temp      no sensors")
	}
	for _, t := range r.Temperatures {
		p("Temp      %s %s: %.1f °C", t.Source, t.Label, t.Celsius)
	}
	p("")
	p("Models (decode is memory-bound: tokens/s ≈ read bandwidth / weight bytes, an upper bound)")
	for _, f := range r.Models {
		fit := "does not fit"
		if f.Fits {
			fit = "fits"
		}
		tps := "—"
		if f.TokensPerSec > 0 {
			tps = fmt.Sprintf("≈%.1f tok/s", f.TokensPerSec)
		}
		p("  %-36s %9s  %-12s %s", f.Name, fmtBytes(float64(f.Bytes)), fit, tps)
	}
	if len(r.Problems) > 0 {
		p("")
		p("Probe problems:")
		for _, s := range r.Problems {
			p("  - %s", s)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtBytesSI(n float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for n >= 1000 && i < len(units)-1 {
		n /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
