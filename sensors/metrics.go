package sensors

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/univrs/hypha/sensors/obs"
)

// Collector returns a Prometheus collector of the latest readings in base
// units (hypha_air_temperature_celsius, hypha_pv_power_watts,
// hypha_cpu_energy_joules_total, …; percentages as _ratio) with labels
// sensor, where and simulated, plus per-sensor health:
// hypha_sensor_up, hypha_sensor_consecutive_failures and
// hypha_sensor_last_good_timestamp_seconds. Register it in the daemon's
// registry, or use Metrics for a standalone handler.
func (s *Service) Collector() prometheus.Collector { return collector{s} }

// Metrics returns an http.Handler serving only this service's metrics.
func (s *Service) Metrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

type collector struct{ s *Service }

var (
	labels      = []string{"sensor", "where", "simulated"}
	upDesc      = prometheus.NewDesc("hypha_sensor_up", "1 if the sensor's last attempt succeeded, 0 if it failed or is absent.", []string{"sensor", "driver", "simulated"}, nil)
	failDesc    = prometheus.NewDesc("hypha_sensor_consecutive_failures", "Failed attempts since the last good reading.", []string{"sensor", "driver", "simulated"}, nil)
	lastGood    = prometheus.NewDesc("hypha_sensor_last_good_timestamp_seconds", "Unix time of the last good reading.", []string{"sensor", "driver", "simulated"}, nil)
	droppedDesc = prometheus.NewDesc("hypha_sensor_readings_dropped_total", "Readings that could not be stored.", nil, nil)
	meterDesc   = prometheus.NewDesc("hypha_energy_meter_estimated", "1 if per-request energy is estimated from CPU time × TDP, 0 if measured.", []string{"source"}, nil)
)

// Describe sends nothing: the metric set depends on the configuration, so
// this is an unchecked collector.
func (collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	where := map[string]string{}
	for _, sc := range s.cfg.Sensors {
		where[sc.ID] = sc.Where.Name
	}
	descs := map[string]*prometheus.Desc{}
	for _, o := range s.Snapshot() {
		q, ok := obs.LookupQuantity(o.Quantity)
		if !ok {
			continue
		}
		d := descs[q.PromName]
		if d == nil {
			d = prometheus.NewDesc(q.PromName, q.Description+" ("+q.UnitName+" converted to base units).", labels, nil)
			descs[q.PromName] = d
		}
		typ := prometheus.GaugeValue
		if q.Counter {
			typ = prometheus.CounterValue
		}
		m, err := prometheus.NewConstMetric(d, typ, o.Value*q.PromFactor, o.SensorID, where[o.SensorID], strconv.FormatBool(o.Simulated))
		if err != nil {
			ch <- prometheus.NewInvalidMetric(d, err)
			continue
		}
		ch <- m
	}
	r := s.Status()
	for _, st := range r.Sensors {
		sim := strconv.FormatBool(st.Simulated)
		up := 0.0
		if st.State == StateOK {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, st.ID, st.Driver, sim)
		ch <- prometheus.MustNewConstMetric(failDesc, prometheus.GaugeValue, float64(st.Failures), st.ID, st.Driver, sim)
		if !st.LastGood.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastGood, prometheus.GaugeValue, float64(st.LastGood.UnixNano())/1e9, st.ID, st.Driver, sim)
		}
	}
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(r.Dropped))
	est := 0.0
	if r.EnergyEstimated {
		est = 1
	}
	ch <- prometheus.MustNewConstMetric(meterDesc, prometheus.GaugeValue, est, r.EnergySource)
}
