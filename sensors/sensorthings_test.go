package sensors

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzSensorThingsPath feeds arbitrary paths and queries to the handler:
// it must answer valid JSON with a sensible status, never panic.
func FuzzSensorThingsPath(f *testing.F) {
	s, err := New(simConfig(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.SensorThings("/st")
	for _, p := range []string{"/st/", "/st/Things('test-node')/Datastreams", "/st/Datastreams('sim-air.air_temperature')/Observations", "/st/Observations('a.b@12')", "/st/Sensors('x''y')", "/st/Datastreams(", "/st/a/b/c"} {
		f.Add(p, "$top=3&$filter=phenomenonTime%20ge%202026-01-01T00:00:00Z")
	}
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: http.Header{}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 && rec.Code != 400 && rec.Code != 404 {
			t.Fatalf("%q?%q: status %d", path, rawQuery, rec.Code)
		}
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%q?%q: invalid JSON %v: %s", path, rawQuery, err, rec.Body)
		}
	})
}
