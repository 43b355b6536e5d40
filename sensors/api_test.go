package sensors

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/sensors/obs"
	"github.com/univrs/hypha/sensors/store"
)

func TestJSONAPI(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	// Seed the store with a day of simulated PV power, then serve it.
	st, err := store.Open(filepath.Join(dir, "s.db"), store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var batch []store.Sample
	for ts := now.Add(-24 * time.Hour); ts.Before(now); ts = ts.Add(time.Minute) {
		batch = append(batch, store.Sample{Stream: "sim-pv.pv_power", Time: ts, Value: 1, Simulated: true})
	}
	if err := st.Write(batch); err != nil {
		t.Fatal(err)
	}
	st.Close()
	s, err := New(simConfig(), Options{StorePath: filepath.Join(dir, "s.db"), Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.JSON()
	get := func(p string, v any) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if v != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
				t.Fatalf("%s: %v %s", p, err, rec.Body)
			}
		}
		return rec.Code
	}
	var ser Series
	if code := get("/series?stream=sim-pv.pv_power&range=24h&step=1h", &ser); code != 200 || len(ser.Points) != 24 || !ser.Simulated || ser.Resolution != time.Hour || ser.Points[0].Count != 60 {
		t.Fatalf("series %d %+v", code, ser)
	}
	if code := get("/series?stream=sim-pv.pv_power&step=1s&range=8760h", nil); code != 400 {
		t.Errorf("too many points: %d", code)
	}
	if code := get("/series?stream=none.x", nil); code != 404 {
		t.Errorf("unknown stream: %d", code)
	}
	var infos []StreamInfo
	if code := get("/streams", &infos); code != 200 || len(infos) != 16 || infos[0].Stream != "cpu.cpu_energy" || infos[2].Unit != "J" || !infos[4].Simulated {
		t.Errorf("streams %d %+v", code, infos)
	}
	var rep Report
	if code := get("/status", &rep); code != 200 || len(rep.Sensors) != 9 {
		t.Errorf("status %d %+v", code, rep)
	}
}

func TestParseSeriesQuery(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	q, err := ParseSeriesQuery(url.Values{"stream": {"a.b"}}, now)
	if err != nil || !q.To.Equal(now) || q.To.Sub(q.From) != 24*time.Hour || q.Step != 0 {
		t.Fatal(q, err)
	}
	q, err = ParseSeriesQuery(url.Values{"stream": {"a.b"}, "from": {"2026-06-01T00:00:00Z"}, "to": {"2026-07-01T00:00:00Z"}, "step": {"1h"}}, now)
	if err != nil || q.To.Sub(q.From) != 30*24*time.Hour || q.Step != time.Hour {
		t.Fatal(q, err)
	}
	for _, bad := range []url.Values{
		{"stream": {"ab"}},
		{"stream": {"a.b"}, "range": {"-1h"}},
		{"stream": {"a.b"}, "range": {"1h"}, "from": {"2026-06-01T00:00:00Z"}},
		{"stream": {"a.b"}, "to": {"2026-06-01T00:00:00Z"}},
		{"stream": {"a.b"}, "from": {"2026-08-01T00:00:00Z"}},
		{"stream": {"a.b"}, "step": {"fast"}},
	} {
		if _, err := ParseSeriesQuery(bad, now); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func FuzzParseSeriesQuery(f *testing.F) {
	f.Add("stream=a.b&range=24h&step=5m")
	f.Add("stream=a.b&from=2026-06-01T00:00:00Z&to=2026-07-01T00:00:00Z")
	f.Add("stream=%zz")
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseSeriesQuery(v, now)
		if err == nil && (!q.To.After(q.From) || q.Step < 0) {
			t.Fatalf("%q -> %+v", raw, q)
		}
	})
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	if _, found, err := LoadConfigFile(filepath.Join(dir, "none.json")); found || err != nil {
		t.Fatalf("missing file: found %v err %v", found, err)
	}
	p := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(p, []byte(`{"version": 1, "sensors": [{"id": "x", "driver": "dht11"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, found, err := LoadConfigFile(p); !found || !errors.Is(err, obs.ErrBadConfig) || !strings.Contains(err.Error(), "bad.json") {
		t.Fatalf("bad file: found %v err %v", found, err)
	}
	b, _ := DefaultConfig("n", obs.Place{}, 1).Encode()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, found, err := LoadConfigFile(p); !found || err != nil || len(c.Sensors) != 9 {
		t.Fatalf("good file: %v %v %d", found, err, len(c.Sensors))
	}
}
