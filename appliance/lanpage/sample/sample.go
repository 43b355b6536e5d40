// Package sample holds a complete, plausible set of LAN page data: a
// six-node village mesh with a GPU box, a Raspberry Pi with (simulated)
// sensors and one node down. Tests, screenshots and the page weight
// benchmark render it; a node daemon never uses it.
//
// Data is safe for concurrent use: the sources read under a mutex and the
// setters (used by tests to change the page while it is open) write under it.
package sample

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/univrs/hypha/appliance/lanpage"
)

// Peer IDs of the sample mesh.
const (
	SelfID    = "12D3KooWRbnd1SELFq8xNw3hJ4kq2T7mYp9VfZc5eLr6uGdA1xBz"
	MillID    = "12D3KooWMi11GPUb5t2KpW8hXv3NqZr7YcJ4mFs6gLd9eTa2UoKw"
	SchoolID  = "12D3KooWSch001Pi4u7RzQ2bVn8KxJt5LmYc3fHg6dWs9pEa1NoQ"
	ClinicID  = "12D3KooWC1in1c2Fq6w3ErT8yUi4OpAs7DfGh2JkL5zXc9VbNm0P"
	OrchardID = "12D3KooWOrch4rdPiX2c4Vb6Nm8Qw1Er3Ty5Ui7Op9As2Df4Gh6J"
	FerryID   = "12D3KooWFerryRe1ay3k5Lz7Xc9Vb2Nm4Qw6Er8Ty1Ui3Op5As7D"
)

// Data is the sample node's world.
type Data struct {
	Now     time.Time
	mu      sync.Mutex
	balance float64 // guarded by mu
	school  lanpage.PeerState
	started time.Time
}

// New returns sample data as of now.
func New(now time.Time) *Data {
	return &Data{Now: now, balance: 12.5, school: lanpage.PeerUp, started: now.Add(-(3*24*time.Hour + 4*time.Hour + 12*time.Minute))}
}

// SetBalance changes this node's credit balance (the page shows it live).
func (d *Data) SetBalance(b float64) { d.mu.Lock(); d.balance = b; d.mu.Unlock() }

// SetSchoolState changes the state of the school-pi peer.
func (d *Data) SetSchoolState(s lanpage.PeerState) { d.mu.Lock(); d.school = s; d.mu.Unlock() }

// Sources returns the sources of the sample node. Actions are left nil.
func (d *Data) Sources() lanpage.Sources {
	return lanpage.Sources{
		Node:      func(context.Context) (lanpage.NodeInfo, error) { return d.Node(), nil },
		Services:  func(context.Context) ([]lanpage.Service, error) { return d.Services(), nil },
		Alerts:    func(context.Context) ([]lanpage.Alert, error) { return d.Alerts(), nil },
		Mesh:      func(context.Context) (lanpage.Mesh, error) { return d.Mesh(), nil },
		Inference: func(context.Context) (lanpage.Inference, error) { return d.Inference(), nil },
		Ledger:    func(context.Context) (lanpage.Ledger, error) { return d.Ledger(), nil },
		Land:      func(_ context.Context, w lanpage.Window) (lanpage.Land, error) { return d.Land(w), nil },
		Hardware:  func(context.Context) (lanpage.Hardware, error) { return d.Hardware(), nil },
		Community: func(context.Context) (lanpage.Community, error) { return d.Community(), nil },
	}
}

// Node is riverbend-1, a donated x86 PC.
func (d *Data) Node() lanpage.NodeInfo {
	return lanpage.NodeInfo{Name: "riverbend-1", PeerID: SelfID,
		PublicKey: "ed25519:9c41f0a7d2e86b3f5a1c7e09b4d2f68a3c5e7b91d0f2a4c6e8b1d3f5a7c9e0b2",
		Version:   "v0.3.1-14-g8cdf4b4", Started: d.started, Community: "Riverbend Commons",
		Bioregion: "Upper Saône watershed", Location: "47.32,5.04", Roles: []string{"gateway", "inference", "ledger"},
		Addresses: []string{"192.168.1.20", "fd7a:1b2c:3d4e::1"}}
}

// Services of the sample node.
func (d *Data) Services() []lanpage.Service {
	since := d.started.Add(40 * time.Second)
	return []lanpage.Service{
		{Name: "mesh", State: lanpage.StateRunning, Detail: "5 peers known", Since: since},
		{Name: "gateway", State: lanpage.StateRunning, Detail: ":11434", Since: since},
		{Name: "inferd", State: lanpage.StateRunning, Detail: "qwen2.5-0.5b-instruct loaded", Since: since},
		{Name: "ledger", State: lanpage.StateRunning, Detail: "chain height 412", Since: since},
		{Name: "sensors", State: lanpage.StateDegraded, Detail: "no I²C bus on this PC; simulated sensors", Since: since},
		{Name: "hwtest", State: lanpage.StateStopped, Detail: "ran at boot, report saved", Since: d.started.Add(20 * time.Second)},
	}
}

// Alerts of the sample node.
func (d *Data) Alerts() []lanpage.Alert {
	return []lanpage.Alert{
		{Severity: lanpage.SeverityInfo, Subsystem: "sensors", Message: "No sensor bus on this node; readings are simulated.", Since: d.started},
		{Severity: lanpage.SeverityWarning, Subsystem: "mesh", Message: "orchard-pi has not been seen for 2 hours.", Since: d.Now.Add(-2 * time.Hour)},
		{Severity: lanpage.SeverityCritical, Subsystem: "ledger", Message: "Member 'ferry-relay' forked its chain: quarantined.", Since: d.Now.Add(-5 * time.Hour)},
	}
}

// Mesh of the sample node.
func (d *Data) Mesh() lanpage.Mesh {
	d.mu.Lock()
	school := d.school
	d.mu.Unlock()
	ms := time.Millisecond
	peers := []lanpage.Peer{
		{ID: MillID, Name: "mill-gpu", State: lanpage.PeerUp, Reachability: "direct", RTT: 3 * ms, LastSeen: d.Now.Add(-2 * time.Second), Roles: []string{"inference"}, Load: 0.72, Bioregion: "Upper Saône watershed"},
		{ID: SchoolID, Name: "school-pi", State: school, Reachability: "direct", RTT: 9 * ms, LastSeen: d.Now.Add(-4 * time.Second), Roles: []string{"sensors"}, Load: 0.18},
		{ID: ClinicID, Name: "clinic-2", State: lanpage.PeerUp, Reachability: "direct", RTT: 14 * ms, LastSeen: d.Now.Add(-3 * time.Second), Roles: []string{"inference", "ledger"}, Load: 0.35},
		{ID: OrchardID, Name: "orchard-pi", State: lanpage.PeerDown, Reachability: "unreachable", LastSeen: d.Now.Add(-2 * time.Hour), Roles: []string{"sensors"}},
		{ID: FerryID, Name: "ferry-relay", State: lanpage.PeerDegraded, Reachability: "relay", RTT: 61 * ms, LastSeen: d.Now.Add(-9 * time.Second), Roles: []string{"relay"}, Load: 0.05},
	}
	up := func(s lanpage.PeerState) lanpage.PeerState { return s }
	links := []lanpage.Link{
		{From: SelfID, To: MillID, State: lanpage.PeerUp, RTT: 3 * ms, TrafficBps: 2.4e6, CreditRate: -6.5},
		{From: SelfID, To: SchoolID, State: up(school), RTT: 9 * ms, TrafficBps: 18e3, CreditRate: 0.8},
		{From: SelfID, To: ClinicID, State: lanpage.PeerUp, RTT: 14 * ms, TrafficBps: 420e3, CreditRate: 2.1},
		{From: SelfID, To: FerryID, State: lanpage.PeerDegraded, RTT: 61 * ms, TrafficBps: 3e3},
		{From: MillID, To: ClinicID, State: lanpage.PeerUp, RTT: 11 * ms, TrafficBps: 900e3, CreditRate: -3.2},
		{From: SchoolID, To: OrchardID, State: lanpage.PeerDown},
		{From: ClinicID, To: FerryID, State: lanpage.PeerDegraded, RTT: 58 * ms, TrafficBps: 1e3},
	}
	return lanpage.Mesh{Peers: peers, Links: links}
}

// Inference of the sample mesh.
func (d *Data) Inference() lanpage.Inference {
	ms := time.Millisecond
	return lanpage.Inference{
		ReputationThreshold: 0.6,
		Models: []lanpage.Model{
			{Name: "qwen2.5-0.5b-instruct", Hash: "sha256:3f9a0c2e7b14d85a6e0f91c3b7d2a4e8f6c1b9d0", SizeBytes: 397 << 20, Quant: "Q4_K_M", Nodes: []string{"riverbend-1", "clinic-2"}},
			{Name: "llama-3.1-8b-instruct", Hash: "sha256:a81c7f3e09d2b4f6c8e1a3d5f7b9c0e2d4f6a8b1", SizeBytes: 4920 << 20, Quant: "Q4_K_M", Nodes: []string{"mill-gpu"}},
		},
		Nodes: []lanpage.InferenceNode{
			{Name: "mill-gpu", PeerID: MillID, Engine: "llama-server (RTX 3060)", Healthy: true, Load: 0.72, Queue: 3, CacheHitRate: 0.64, Reputation: 0.94, TokensPerSecond: 48},
			{Name: "riverbend-1", PeerID: SelfID, Engine: "inferd", Healthy: true, Load: 0.31, Queue: 0, CacheHitRate: 0.41, Reputation: 0.88, TokensPerSecond: 17},
			{Name: "clinic-2", PeerID: ClinicID, Engine: "inferd", Healthy: true, Load: 0.35, Queue: 1, CacheHitRate: 0.22, Reputation: 0.52, TokensPerSecond: 9},
		},
		Recent: []lanpage.RouteDecision{
			{Time: d.Now.Add(-20 * time.Second), Model: "llama-3.1-8b-instruct", Node: "mill-gpu", Reason: "longest cached prefix (312 tokens)", PrefixTokens: 312, PromptTokens: 340, TTFT: 85 * ms, OK: true},
			{Time: d.Now.Add(-75 * time.Second), Model: "qwen2.5-0.5b-instruct", Node: "riverbend-1", Reason: "session affinity", PrefixTokens: 520, PromptTokens: 548, TTFT: 62 * ms, OK: true},
			{Time: d.Now.Add(-3 * time.Minute), Model: "qwen2.5-0.5b-instruct", Node: "riverbend-1", Reason: "clinic-2 below reputation threshold (0.52 < 0.6)", PrefixTokens: 0, PromptTokens: 96, TTFT: 240 * ms, OK: true},
			{Time: d.Now.Add(-6 * time.Minute), Model: "llama-3.1-8b-instruct", Node: "mill-gpu", Reason: "only node serving the model", PrefixTokens: 0, PromptTokens: 1210, TTFT: 910 * ms, OK: true},
		},
	}
}

func obs(now time.Time) []lanpage.Observation {
	return []lanpage.Observation{
		{Property: "solar power", Value: math.Round(solar(now)), Unit: "W", Time: now, Sensor: "ina219@0x40", Simulated: true},
		{Property: "battery", Value: math.Round(battery(now)), Unit: "%", Time: now, Sensor: "ina219@0x41", Simulated: true},
		{Property: "air temperature", Value: math.Round(10*airTemp(now)) / 10, Unit: "Cel", Time: now, Sensor: "bme280@0x76", Simulated: true},
	}
}

// Ledger of the sample node.
func (d *Data) Ledger() lanpage.Ledger {
	d.mu.Lock()
	bal := d.balance
	d.mu.Unlock()
	t1, t2, t3 := d.Now.Add(-4*time.Minute), d.Now.Add(-50*time.Minute), d.Now.Add(-3*time.Hour)
	return lanpage.Ledger{
		Unit:    "credits",
		Summary: lanpage.CreditSummary{Balance: bal, Min: -50, Max: 200, EarnedToday: 18.4, SpentToday: 6.1},
		Balances: []lanpage.Balance{
			{Member: SelfID, Name: "riverbend-1", Balance: bal, Min: -50, Max: 200},
			{Member: MillID, Name: "mill-gpu", Balance: 41.75, Min: -50, Max: 400},
			{Member: SchoolID, Name: "school-pi", Balance: -22.5, Min: -50, Max: 100},
			{Member: ClinicID, Name: "clinic-2", Balance: -19.25, Min: -50, Max: 200},
			{Member: FerryID, Name: "ferry-relay", Balance: -12.5, Min: -50, Max: 100, Quarantined: true},
		},
		Flows: []lanpage.Flow{
			{ID: "tx-7f3a91c2e4b8", Time: t1, From: "clinic-2", To: "riverbend-1", Amount: 0.42, Purpose: "inference: 1,204 tokens of qwen2.5-0.5b-instruct",
				Receipt: &lanpage.Receipt{Model: "qwen2.5-0.5b-instruct", TokensIn: 980, TokensOut: 224, Joules: 310}, Observations: obs(t1)},
			{ID: "tx-2b9e04d71a6f", Time: t2, From: "riverbend-1", To: "mill-gpu", Amount: 1.8, Purpose: "inference: 3,870 tokens of llama-3.1-8b-instruct",
				Receipt: &lanpage.Receipt{Model: "llama-3.1-8b-instruct", TokensIn: 3100, TokensOut: 770, Joules: 2140}, Observations: obs(t2)},
			{ID: "tx-c04d2e8f1b37", Time: t3, From: "school-pi", To: "riverbend-1", Amount: 0.75, Purpose: "correction of a double charge", Corrects: "tx-9a1b2c3d4e5f", Observations: obs(t3)},
		},
		Bioregions: []lanpage.BioregionTotal{
			{Bioregion: "Upper Saône watershed", Period: "today", Volume: 58.3, Transactions: 142, EnergyKWh: 7.9, SolarShare: 0.81},
			{Bioregion: "Upper Saône watershed", Period: d.Now.Format("2006-01"), Volume: 1204.6, Transactions: 3190, EnergyKWh: 161.2, SolarShare: 0.64},
			{Bioregion: "Doubs valley", Period: "today", Volume: 11.2, Transactions: 27, EnergyKWh: 1.4, SolarShare: 0.55},
		},
		Quarantined: []lanpage.Quarantine{
			{Member: FerryID, Name: "ferry-relay", Reason: "two entries with sequence 88 (fork of its chain)", Since: d.Now.Add(-5 * time.Hour), Proof: "sha256:e1d2c3b4a5968778695a4b3c2d1e0f"},
		},
		Reversals: []lanpage.ReversalRequest{
			{ID: "rev-51", FlowID: "tx-2b9e04d71a6f", RequestedBy: "riverbend-1", Reason: "mill-gpu timed out after 40 tokens; charged in full", Amount: 1.8, Time: d.Now.Add(-30 * time.Minute)},
		},
	}
}

// Simulated daily curves (the sample's sensors are simulated, and say so).
func solar(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	v := 420 * math.Sin(math.Pi*(h-6.5)/12)
	cloud := 0.75 + 0.25*math.Sin(float64(t.Unix())/5400)
	return math.Max(0, v*cloud)
}

func battery(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	return 55 + 30*math.Sin(math.Pi*(h-10)/12)
}

func airTemp(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	doy := float64(t.YearDay())
	return 11 - 8*math.Cos(2*math.Pi*(doy-20)/365) + 5*math.Sin(math.Pi*(h-9)/12)
}

func soil(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	return 31 + 6*math.Cos(float64(t.Unix())/(86400*9)) - 2.5*math.Sin(math.Pi*(h-8)/12)
}

// Land of the sample node: readings, today's energy and series over w.
func (d *Data) Land(w lanpage.Window) lanpage.Land {
	now := d.Now
	l := lanpage.Land{
		Today: lanpage.EnergyToday{SolarWh: 2310, ConsumedWh: 1475, BatteryPercent: math.Round(battery(now)), Simulated: true},
		Readings: []lanpage.Reading{
			{Sensor: "ina219@0x40", Label: "Solar panel", Property: "power", Location: "barn roof", Value: math.Round(solar(now)), Unit: "W", Time: now.Add(-5 * time.Second), Simulated: true},
			{Sensor: "ina219@0x41", Label: "Battery", Property: "state of charge", Location: "barn", Value: math.Round(battery(now)), Unit: "%", Time: now.Add(-5 * time.Second), Simulated: true},
			{Sensor: "bme280@0x76", Label: "Air", Property: "temperature", Location: "greenhouse", Value: math.Round(10*airTemp(now)) / 10, Unit: "Cel", Time: now.Add(-5 * time.Second), Simulated: true},
			{Sensor: "ads1x15@0x48", Label: "Soil, bed 3", Property: "moisture", Location: "north field", Value: math.Round(soil(now)), Unit: "%", Time: now.Add(-5 * time.Second), Simulated: true},
			{Sensor: "scd4x@0x62", Label: "Classroom air", Property: "CO₂", Location: "school", Error: "stopped answering 12 min ago (I²C NACK)", Unit: "ppm"},
		},
		Buses: []lanpage.Bus{{Name: "I²C", OK: false, Detail: "no bus on this PC"}, {Name: "simulated", OK: true, Detail: "4 simulated sensors, seed 7"}},
	}
	if w.From.IsZero() || !w.To.After(w.From) {
		return l
	}
	step := w.Step
	if step <= 0 {
		step = w.To.Sub(w.From) / 200
	}
	if n := w.To.Sub(w.From) / step; n > 2000 {
		step = w.To.Sub(w.From) / 2000
	}
	var sol, use, bat, air, soi []lanpage.Point
	for t := w.From.Truncate(step); !t.After(w.To); t = t.Add(step) {
		if t.Before(w.From) {
			continue
		}
		if step >= 24*time.Hour { // daily: energy per day in Wh
			sol = append(sol, lanpage.Point{T: t, V: 2400 + 1500*math.Sin(2*math.Pi*(float64(t.YearDay())-80)/365)})
			use = append(use, lanpage.Point{T: t, V: 1500 + 200*math.Cos(float64(t.YearDay()))})
			air = append(air, lanpage.Point{T: t, V: airTemp(t.Add(14 * time.Hour))})
			continue
		}
		sol = append(sol, lanpage.Point{T: t, V: solar(t)})
		use = append(use, lanpage.Point{T: t, V: 55 + 25*math.Sin(float64(t.Unix())/3000)})
		bat = append(bat, lanpage.Point{T: t, V: battery(t)})
		air = append(air, lanpage.Point{T: t, V: airTemp(t)})
		soi = append(soi, lanpage.Point{T: t, V: soil(t)})
	}
	if step >= 24*time.Hour {
		l.Series = []lanpage.Series{
			{Name: "Solar energy per day", Unit: "Wh", Simulated: true, Points: sol},
			{Name: "Used per day", Unit: "Wh", Simulated: true, Points: use},
			{Name: "Air at 2 pm", Unit: "Cel", Simulated: true, Points: air},
		}
		return l
	}
	l.Series = []lanpage.Series{
		{Name: "Solar", Unit: "W", Simulated: true, Points: sol},
		{Name: "Used", Unit: "W", Simulated: true, Points: use},
		{Name: "Battery", Chart: "Battery charge", Unit: "%", Simulated: true, Points: bat},
		{Name: "Air, greenhouse", Unit: "Cel", Simulated: true, Points: air},
		{Name: "Soil moisture, bed 3", Chart: "Soil moisture", Unit: "%", Simulated: true, Points: soi},
	}
	return l
}

// Hardware report of the sample node.
func (d *Data) Hardware() lanpage.Hardware {
	return lanpage.Hardware{
		Generated: d.started.Add(15 * time.Second), Machine: "Dell OptiPlex 7040 (donated by the town hall)", Verdict: "qualified",
		Summary: "Good for the gateway, the ledger and small models (up to ~1.5 B parameters at Q4).",
		Sections: []lanpage.HardwareSection{
			{Name: "Processor", Items: []lanpage.HardwareItem{
				{Name: "CPU", Value: "Intel Core i5-6500, 4 cores @ 3.2 GHz", Status: "ok"},
				{Name: "Vector units", Value: "AVX2, FMA", Status: "ok", Detail: "fast kernels enabled"},
				{Name: "Energy meter", Value: "RAPL package domain", Status: "ok"},
			}},
			{Name: "Memory and disk", Items: []lanpage.HardwareItem{
				{Name: "RAM", Value: "16 GiB DDR4", Status: "ok"},
				{Name: "Memory bandwidth", Value: "17.8 GB/s", Status: "ok"},
				{Name: "Disk", Value: "256 GB SATA SSD, 480 MB/s read", Status: "ok"},
				{Name: "SMART", Value: "wear 7%", Status: "info"},
			}},
			{Name: "Network and buses", Items: []lanpage.HardwareItem{
				{Name: "Ethernet", Value: "enp0s31f6, 1 Gbit/s, link up", Status: "ok"},
				{Name: "Wi-Fi", Value: "none", Status: "info"},
				{Name: "I²C", Value: "no bus", Status: "warn", Detail: "sensors run simulated on this machine"},
				{Name: "GPU", Value: "Intel HD 530 (not used for inference)", Status: "info"},
			}},
		},
	}
}

// Community manifest of the sample.
func (d *Data) Community() lanpage.Community {
	return lanpage.Community{
		Name: "Riverbend Commons", ID: "rbc-2026", Bioregion: "Upper Saône watershed",
		Description: "Six households, the school, the clinic and the mill sharing their machines, their sun and their questions.",
		Version:     7, Signed: d.Now.AddDate(0, 0, -12), Fingerprint: "sha256:4c1d9e2f7a3b8c05d6e1f2a3b4c5d6e7f8091a2b",
		Stewards: []lanpage.Steward{
			{Name: "Amina Diallo", Contact: "school office", Key: "ed25519:71b3c9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9"},
			{Name: "Jonas Weber", Contact: "the mill", Key: "ed25519:0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b"},
		},
		Members: []lanpage.Member{
			{Name: "riverbend-1", ID: SelfID, Joined: d.Now.AddDate(0, -5, 0)},
			{Name: "mill-gpu", ID: MillID, Joined: d.Now.AddDate(0, -5, 0)},
			{Name: "school-pi", ID: SchoolID, Joined: d.Now.AddDate(0, -4, 0)},
			{Name: "clinic-2", ID: ClinicID, Joined: d.Now.AddDate(0, -3, 0)},
			{Name: "orchard-pi", ID: OrchardID, Joined: d.Now.AddDate(0, -2, 0)},
			{Name: "ferry-relay", ID: FerryID, Joined: d.Now.AddDate(0, -1, 0)},
		},
		Rules: []lanpage.Rule{
			{Name: "Credit limits", Value: "−50 to +200 credits", Description: "per member; the mill may hold up to 400"},
			{Name: "Price of inference", Value: "0.35 credits per 1,000 tokens", Description: "half price while the solar surplus is above 200 W"},
			{Name: "Commons account", Value: "2% of every flow", Description: "pays for spare parts and the school's node"},
			{Name: "Demurrage", Value: "off"},
			{Name: "Reputation threshold", Value: "0.6", Description: "below it a node gets no routed requests"},
		},
		Invites: []lanpage.Invite{{ID: "inv-3c7d91e2a4b6f8", For: "the bakery's laptop", Expires: d.Now.AddDate(0, 0, 5)}},
	}
}
