package appliance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/sensors"
	"github.com/univrs/hypha/sensors/obs"
)

// startSensors opens the sensors of /perm/hypha/sensors.json, or, where
// there is none, the energy counters and a simulated weather station,
// solar system and soil probe (labelled simulated everywhere).
func (n *Node) startSensors(ctx context.Context) error {
	c := n.Config()
	p := filepath.Join(n.opts.PermDir, "hypha", "sensors.json")
	var cfg sensors.Config
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if cfg, err = sensors.DecodeConfig(b); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	case errors.Is(err, os.ErrNotExist):
		where := obs.Place{Name: c.Location.Place, Latitude: c.Location.Latitude, Longitude: c.Location.Longitude}
		if where.Latitude == 0 && where.Longitude == 0 && n.community != nil {
			where.Latitude, where.Longitude = n.community.Manifest.Location.Lat, n.community.Manifest.Location.Lon
		}
		seed := int64(binary.LittleEndian.Uint64(n.id.Public[:8]))
		cfg = sensors.DefaultConfig(c.Name, where, seed)
		n.alert(lanpage.SeverityInfo, "sensors", "no sensors configured: readings on this box are SIMULATED (attach sensors in Steward)")
	default:
		return err
	}
	n.sensorSummary = n.sensorAnnouncement
	n.sensorsMu.Lock()
	defer n.sensorsMu.Unlock()
	return n.runSensorsLocked(ctx, cfg)
}

// runSensorsLocked starts a sensor service for cfg. Expects sensorsMu.
func (n *Node) runSensorsLocked(ctx context.Context, cfg sensors.Config) error {
	svc, err := sensors.New(cfg, sensors.Options{
		StorePath: filepath.Join(n.opts.PermDir, "hypha", "sensors.db"),
		Logger:    n.log,
	})
	if err != nil {
		return fmt.Errorf("sensors: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(rctx); err != nil {
			n.log.Error("sensors", "err", err)
		}
	}()
	n.sensorCfg, n.sensorsStop = cfg, func() {
		cancel()
		select { // Run flushes pending readings once its context ends
		case <-done:
		case <-time.After(10 * time.Second):
		}
		svc.Close()
	}
	n.sensors.Store(svc)
	return nil
}

// stopSensors stops the running sensor service, flushing its readings.
func (n *Node) stopSensors() {
	n.sensorsMu.Lock()
	defer n.sensorsMu.Unlock()
	if n.sensorsStop != nil {
		n.sensorsStop()
		n.sensorsStop = nil
	}
}

// attachSensor is the steward's "attach a sensor" action: the sensor is
// added to /perm/hypha/sensors.json (simulated sensors are dropped once a
// real one is attached, so a box never mixes them silently) and the
// sensor service restarts with it. A bad attachment changes nothing.
func (n *Node) attachSensor(ctx context.Context, a lanpage.SensorAttachment) error {
	n.sensorsMu.Lock()
	defer n.sensorsMu.Unlock()
	if n.runCtx == nil {
		return errors.New("sensors are not running")
	}
	cfg := n.sensorCfg
	cfg.Sensors = append([]obs.SensorConfig(nil), cfg.Sensors...)
	driver := a.Driver
	switch driver {
	case "simulated":
		driver = "sim"
	case "ads1x15":
		driver = "ads1115"
	}
	if driver != "sim" {
		kept := cfg.Sensors[:0]
		for _, s := range cfg.Sensors {
			if s.Driver != "sim" {
				kept = append(kept, s)
			}
		}
		cfg.Sensors = kept
	}
	id := fmt.Sprintf("%s-%d", driver, len(cfg.Sensors)+1)
	for taken := true; taken; {
		taken = false
		for _, s := range cfg.Sensors {
			if s.ID == id {
				id, taken = id+"x", true
			}
		}
	}
	cfg.Sensors = append(cfg.Sensors, obs.SensorConfig{ID: id, Driver: driver, Label: a.Label, Measures: a.Measures,
		Where: obs.Place{Name: a.Location}, Bus: strings.TrimPrefix(strings.TrimPrefix(a.Bus, "/dev/"), "i2c-"), Address: obs.Address(a.Address)})
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(n.opts.PermDir, "hypha", "sensors.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if n.sensorsStop != nil {
		n.sensorsStop()
	}
	return n.runSensorsLocked(n.runCtx, cfg)
}

// sensorAnnouncement is the short summary announced to the mesh.
func (n *Node) sensorAnnouncement() map[string]float64 {
	out := map[string]float64{}
	svc := n.sensors.Load()
	if svc == nil {
		return nil
	}
	for _, o := range svc.Snapshot() {
		switch o.Quantity {
		case obs.PVPower, obs.BatterySoC, obs.AirTemperature, obs.SoilMoisture, obs.LoadPower:
			out[o.Quantity] = o.Value
		}
	}
	return out
}

// landView adapts sensor readings, today's energy and chart series for
// the LAN page.
func (n *Node) landView(ctx context.Context, w lanpage.Window) (lanpage.Land, error) {
	svc := n.sensors.Load()
	if svc == nil {
		return lanpage.Land{}, errors.New("sensors not running")
	}
	st := svc.Status()
	labels := map[string]sensors.SensorStatus{}
	var land lanpage.Land
	for _, s := range st.Sensors {
		labels[s.ID] = s
	}
	for _, b := range st.I2CBuses {
		land.Buses = append(land.Buses, lanpage.Bus{Name: b, OK: true})
	}
	snap := svc.Snapshot()
	sort.Slice(snap, func(i, j int) bool { return snap[i].Stream < snap[j].Stream })
	land.Today.BatteryPercent = -1
	for _, o := range snap {
		s := labels[o.SensorID]
		r := lanpage.Reading{Sensor: s.Driver + ":" + o.SensorID, Label: s.Label, Property: strings.ReplaceAll(o.Quantity, "_", " "),
			Location: s.Where.Name, Value: o.Value, Unit: o.Unit, Time: o.Time, Simulated: o.Simulated}
		land.Readings = append(land.Readings, r)
		if o.Quantity == obs.BatterySoC {
			land.Today.BatteryPercent = o.Value
			land.Today.Simulated = land.Today.Simulated || o.Simulated
		}
	}
	for _, s := range st.Sensors {
		if s.State == sensors.StateError {
			land.Readings = append(land.Readings, lanpage.Reading{Sensor: s.Driver + ":" + s.ID, Label: s.Label,
				Property: s.Measures, Error: s.Reason, Time: s.LastGood, Simulated: s.Simulated})
		}
	}
	// Today's energy: integrate PV and load power since local midnight.
	now := time.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	for _, o := range snap {
		var dst *float64
		switch o.Quantity {
		case obs.PVPower:
			dst = &land.Today.SolarWh
		case obs.LoadPower:
			dst = &land.Today.ConsumedWh
		default:
			continue
		}
		ser, err := svc.Series(o.Stream, midnight, now, 5*time.Minute)
		if err != nil {
			continue
		}
		for _, p := range ser.Points {
			*dst += p.Mean * ser.Step.Hours()
		}
		land.Today.Simulated = land.Today.Simulated || ser.Simulated
	}
	if w.Step == 0 {
		return land, nil
	}
	for _, o := range snap {
		ser, err := svc.Series(o.Stream, w.From, w.To, w.Step)
		if err != nil || len(ser.Points) == 0 {
			continue
		}
		ls := lanpage.Series{Name: labels[o.SensorID].Label + " — " + strings.ReplaceAll(o.Quantity, "_", " "),
			Chart: strings.ReplaceAll(o.Quantity, "_", " "), Unit: o.Unit, Simulated: ser.Simulated}
		for _, p := range ser.Points {
			ls.Points = append(ls.Points, lanpage.Point{T: p.Time, V: p.Mean})
		}
		land.Series = append(land.Series, ls)
	}
	return land, nil
}
