package obs

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDecodeFixtures(t *testing.T) {
	b, err := os.ReadFile("testdata/config-v0.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	// v0 is migrated: versioned, thing named, thing placed at the first sensor.
	if c.Version != 1 || c.Thing.Name != "hypha" || c.Thing.Where.Name != "greenhouse" {
		t.Errorf("migrated v0: %+v", c.Thing)
	}
	if c.Sensors[0].Address != 0x77 || c.Sensors[1].Address != 0x40 || c.Sensors[1].Where.Name != "greenhouse" {
		t.Errorf("sensors %+v", c.Sensors)
	}

	b, err = os.ReadFile("testdata/config-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err = Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sensors
	if s[0].Interval.Std() != 30*time.Second || s[4].Interval.Std() != time.Minute || s[5].Address != 0x23 || s[4].Address != 0x62 {
		t.Errorf("intervals/addresses %+v", s)
	}
	if got := s[1].Quantities(); len(got) != 1 || got[0] != WaterTemperature || s[1].ResolutionBits != 12 {
		t.Errorf("pond %+v %v", s[1], got)
	}
	if s[3].ShuntOhms != 0.1 || s[3].MaxAmps != 3.2 || s[3].Quantities()[0] != BatteryPower {
		t.Errorf("battery %+v", s[3])
	}
	if c.Storage.Raw.Std() != 72*time.Hour || c.Storage.Hourly.Std() != 5*365*24*time.Hour || c.Energy.TDPWatts != 35 || c.Simulation.BatteryWh != 1200 {
		t.Errorf("storage/energy/sim %+v %+v %+v", c.Storage, c.Energy, c.Simulation)
	}
	if s[0].Where.Name != "library roof" || s[2].Where.Name != "bed 3" {
		t.Errorf("places %+v %+v", s[0].Where, s[2].Where)
	}
	// Encode → Decode is stable.
	enc, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Decode(enc)
	if err != nil {
		t.Fatalf("re-decode: %v\n%s", err, enc)
	}
	enc2, _ := c2.Encode()
	if string(enc) != string(enc2) {
		t.Errorf("not stable:\n%s\n%s", enc, enc2)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"version": 2}`, "version 2 (this build reads up to 1)"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "bme280", "adress": "0x76"}]}`, `unknown field "adress"`},
		{`{"version": 1, "sensors": [{"id": "A b", "driver": "sim"}]}`, `sensors[0].id "A b"`},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "sim"}, {"id": "a", "driver": "sim"}]}`, "duplicate"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "dht22"}]}`, `driver "dht22"`},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "bme280", "address": "0x40"}]}`, "0x76 or 0x77"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "bme280", "address": "0x1ff"}]}`, "7-bit"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "ina219", "measures": "wind"}]}`, `measures "wind"`},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "ds18b20"}]}`, "onewire_id"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "ads1115", "calibration": [{"volts": 1, "percent": 10}]}]}`, "1 points"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "sim", "interval": "10ms"}]}`, "interval 10ms"},
		{`{"version": 1, "sensors": [{"id": "a", "driver": "sim", "interval": "soon"}]}`, "duration"},
		{`{"version": 1, "thing": {"where": {"latitude": 91}}}`, "latitude 91"},
		{`{"version": 1, "simulation": {"cloudiness": 2}}`, "cloudiness"},
		{`{"version": 1} {}`, "trailing data"},
		{`[`, "unexpected EOF"},
	} {
		_, err := Decode([]byte(tc.in))
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrBadConfig mentioning %q", tc.in, err, tc.want)
		}
	}
}

func FuzzDecodeConfig(f *testing.F) {
	for _, p := range []string{"testdata/config-v0.json", "testdata/config-v1.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"sensors":[{"id":"a","driver":"sim","interval":1e300}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("error without ErrBadConfig: %v", err)
			}
			return
		}
		// Whatever decodes must encode and decode to the same thing.
		enc, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		enc2, _ := c2.Encode()
		if string(enc) != string(enc2) {
			t.Fatalf("unstable:\n%s\n%s", enc, enc2)
		}
	})
}

func TestSplitStream(t *testing.T) {
	for _, tc := range []struct {
		in, id, q string
		ok        bool
	}{{"air.air_temperature", "air", "air_temperature", true}, {"noquantity", "", "", false}, {".x", "", "x", false}, {"x.", "x", "", false}} {
		id, q, ok := SplitStream(tc.in)
		if id != tc.id || q != tc.q || ok != tc.ok {
			t.Errorf("%q: %q %q %v", tc.in, id, q, ok)
		}
	}
}
