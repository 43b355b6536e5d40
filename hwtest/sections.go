package hwtest

import (
	"fmt"
	"strings"
)

// Item statuses of Sections.
const (
	StatusOK   = "ok"
	StatusWarn = "warn"
	StatusFail = "fail"
	StatusInfo = "info"
)

// Section groups report items for display (the LAN page's hardware view).
type Section struct {
	Name  string `json:"name"`
	Items []Item `json:"items"`
}

// Item is one line of a Section.
type Item struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Status string `json:"status"` // StatusOK, StatusWarn, StatusFail or StatusInfo
	Detail string `json:"detail,omitempty"`
}

// Sections returns r as display sections: CPU, Memory, Disks, Network,
// GPU, Buses, Temperatures, Models. It depends only on r.
func (r *Report) Sections() []Section {
	c := r.CPU
	simd := StatusOK
	var feats []string
	for _, f := range []struct {
		ok   bool
		name string
	}{{c.AVX2, "AVX2"}, {c.AVX512, "AVX-512"}, {c.FMA, "FMA"}, {c.NEON, "NEON"}} {
		if f.ok {
			feats = append(feats, f.name)
		}
	}
	if !c.AVX2 && !c.NEON {
		simd = StatusWarn
		feats = append(feats, "no AVX2/NEON")
	}
	cpu := Section{Name: "CPU", Items: []Item{
		{Name: "model", Value: c.Model, Status: StatusInfo},
		{Name: "cores", Value: fmt.Sprintf("%d threads", c.LogicalCores), Status: StatusInfo},
		{Name: "SIMD", Value: strings.Join(feats, " "), Status: simd},
	}}
	m := r.Memory
	memStatus := StatusOK
	if m.TotalBytes < 2<<30 {
		memStatus = StatusWarn
	}
	bw := Item{Name: "bandwidth", Value: "not measured", Status: StatusWarn}
	if m.BandwidthBytesPerSec > 0 {
		bw = Item{Name: "bandwidth", Value: fmtBytesSI(m.DecodeBandwidth()) + "/s", Status: StatusOK,
			Detail: fmt.Sprintf("copy %s/s, %d threads, best of %d trials", fmtBytesSI(m.BandwidthBytesPerSec), m.BandwidthThreads, BandwidthTrials)}
	}
	mem := Section{Name: "Memory", Items: []Item{
		{Name: "total", Value: fmtBytes(float64(m.TotalBytes)), Status: memStatus, Detail: fmtBytes(float64(m.AvailableBytes)) + " available"}, bw}}
	disks := Section{Name: "Disks", Items: []Item{}}
	for _, d := range r.Disks {
		it := Item{Name: d.Name, Value: fmtBytes(float64(d.SizeBytes)), Status: StatusOK, Detail: d.Model}
		if d.ReadBytesPerSec > 0 {
			it.Value += ", reads " + fmtBytesSI(d.ReadBytesPerSec) + "/s"
		}
		if d.Error != "" {
			it.Status, it.Detail = StatusWarn, strings.TrimSpace(d.Model+" "+d.Error)
		}
		disks.Items = append(disks.Items, it)
	}
	netw := Section{Name: "Network", Items: []Item{}}
	for _, n := range r.Network {
		if n.Kind == "loopback" {
			continue
		}
		it := Item{Name: n.Name, Status: StatusInfo, Value: "down"}
		switch {
		case n.Up && n.Carrier:
			it.Status, it.Value = StatusOK, "link up"
		case n.Up:
			it.Status, it.Value = StatusWarn, "no link"
		}
		if n.SpeedMbps > 0 {
			it.Value += fmt.Sprintf(", %d Mb/s", n.SpeedMbps)
		}
		if n.Wireless {
			it.Detail = "wireless"
		}
		netw.Items = append(netw.Items, it)
	}
	gpu := Section{Name: "GPU", Items: []Item{}}
	for _, g := range r.GPUs {
		gpu.Items = append(gpu.Items, Item{Name: g.PCIAddress, Value: g.Vendor + " " + g.DeviceID, Status: StatusInfo, Detail: "driver " + orDash(g.Driver)})
	}
	buses := Section{Name: "Buses", Items: []Item{}}
	for _, b := range r.I2C {
		addrs := make([]string, len(b.Devices))
		for i, a := range b.Devices {
			addrs[i] = fmt.Sprintf("0x%02x", a)
		}
		it := Item{Name: b.Name, Value: strings.Join(addrs, " "), Status: StatusOK}
		if it.Value == "" {
			it.Value, it.Status = "no device answered", StatusInfo
		}
		if b.Error != "" {
			it.Status, it.Detail = StatusFail, b.Error
		}
		buses.Items = append(buses.Items, it)
	}
	temps := Section{Name: "Temperatures", Items: []Item{}}
	for _, t := range r.Temperatures {
		st := StatusOK
		if t.Celsius >= 85 {
			st = StatusFail
		} else if t.Celsius >= 70 {
			st = StatusWarn
		}
		temps.Items = append(temps.Items, Item{Name: strings.TrimSpace(t.Source + " " + t.Label), Value: fmt.Sprintf("%.1f °C", t.Celsius), Status: st})
	}
	models := Section{Name: "Models", Items: []Item{}}
	for _, f := range r.Models {
		it := Item{Name: f.Name, Value: "does not fit", Status: StatusFail, Detail: fmtBytes(float64(f.Bytes))}
		if f.Fits {
			it.Value, it.Status = "fits", StatusOK
			if f.TokensPerSec > 0 {
				it.Value = fmt.Sprintf("≈%.1f tok/s", f.TokensPerSec)
				if f.TokensPerSec < UsableTokensPerSec {
					it.Status = StatusWarn
				}
			}
		}
		models.Items = append(models.Items, it)
	}
	return []Section{cpu, mem, disks, netw, gpu, buses, temps, models}
}
