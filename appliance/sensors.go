package appliance

import (
	"context"
	"encoding/binary"
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
	svc, err := sensors.New(cfg, sensors.Options{
		StorePath: filepath.Join(n.opts.PermDir, "hypha", "sensors.db"),
		Logger:    n.log,
	})
	if err != nil {
		return fmt.Errorf("sensors: %w", err)
	}
	n.sensors = svc
	n.sensorSummary = n.sensorAnnouncement
	n.sensorsDone = make(chan struct{})
	go func() {
		defer close(n.sensorsDone)
		if err := svc.Run(ctx); err != nil {
			n.log.Error("sensors", "err", err)
		}
	}()
	return nil
}

// sensorAnnouncement is the short summary announced to the mesh.
func (n *Node) sensorAnnouncement() map[string]float64 {
	out := map[string]float64{}
	for _, o := range n.sensors.Snapshot() {
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
	if n.sensors == nil {
		return lanpage.Land{}, errors.New("sensors not running")
	}
	st := n.sensors.Status()
	labels := map[string]sensors.SensorStatus{}
	var land lanpage.Land
	for _, s := range st.Sensors {
		labels[s.ID] = s
	}
	for _, b := range st.I2CBuses {
		land.Buses = append(land.Buses, lanpage.Bus{Name: b, OK: true})
	}
	snap := n.sensors.Snapshot()
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
		ser, err := n.sensors.Series(o.Stream, midnight, now, 5*time.Minute)
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
		ser, err := n.sensors.Series(o.Stream, w.From, w.To, w.Step)
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
