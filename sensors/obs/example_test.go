package obs_test

import (
	"fmt"

	"github.com/univrs/hypha/sensors/obs"
)

func ExampleDecode() {
	c, err := obs.Decode([]byte(`{"version": 1,
	  "thing": {"name": "garden-node", "where": {"latitude": 46.95, "longitude": 7.45}},
	  "sensors": [
	    {"id": "air", "driver": "bme280", "address": "0x77", "interval": "30s"},
	    {"id": "bed1", "driver": "ads1115", "channel": 1,
	     "calibration": [{"volts": 2.8, "percent": 2}, {"volts": 1.3, "percent": 47}]}
	  ]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range c.Sensors {
		fmt.Println(s.ID, s.Address, s.Interval.Std(), s.Quantities())
	}
	cal, _ := obs.NewCalibration(c.Sensors[1].Calibration)
	pct, _ := cal.Percent(2.05)
	fmt.Printf("2.05 V = %.1f %% volumetric\n", pct)
	// Output:
	// air 0x77 30s [air_temperature relative_humidity air_pressure]
	// bed1 0x48 1m0s [soil_moisture probe_voltage]
	// 2.05 V = 24.5 % volumetric
}
