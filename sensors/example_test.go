package sensors_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/univrs/hypha/sensors"
	"github.com/univrs/hypha/sensors/obs"
)

// How hyphad wires the sensors: config from /perm (or the simulated
// default), the store on /perm, the APIs on the node's mux, the meter
// around each inference request, snapshots on ledger entries.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cfg, err := sensors.DecodeConfig([]byte(`{"version": 1, "thing": {"name": "n1"},
		"sensors": [{"id": "sim-pv", "driver": "sim", "measures": "pv"}]}`))
	if err != nil {
		cfg = sensors.DefaultConfig("n1", obs.Place{Latitude: 46.9, Longitude: 7.4}, 1)
	}
	dir, _ := os.MkdirTemp("", "sensors-example")
	defer os.RemoveAll(dir)
	svc, err := sensors.New(cfg, sensors.Options{StorePath: dir + "/sensors.db", Logger: slog.Default()})
	if err != nil {
		return
	}
	defer svc.Close()
	go func() { _ = svc.Run(ctx) }()

	mux := http.NewServeMux()
	mux.Handle("/sensorthings/v1.1/", svc.SensorThings("/sensorthings/v1.1"))
	mux.Handle("/api/sensors/", http.StripPrefix("/api/sensors", svc.JSON()))
	mux.Handle("/metrics", svc.Metrics())

	w := svc.Meter().Start()
	// … serve an inference request …
	e := w.Stop()
	_ = e.Joules // with e.Estimated and e.Source on the receipt
	_ = svc.Snapshot()
	<-ctx.Done()
}
