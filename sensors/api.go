package sensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/univrs/hypha/sensors/obs"
)

// StreamInfo describes one stream for a chart legend.
type StreamInfo struct {
	Stream    string `json:"stream"`
	SensorID  string `json:"sensor_id"`
	Label     string `json:"label"`
	Quantity  string `json:"quantity"`
	Unit      string `json:"unit"` // UCUM
	UnitName  string `json:"unit_name"`
	Where     string `json:"where,omitempty"`
	Simulated bool   `json:"simulated"`
	Counter   bool   `json:"counter,omitempty"`
}

// Streams lists the configured streams in config order.
func (s *Service) Streams() []StreamInfo {
	var out []StreamInfo
	for _, sc := range s.cfg.Sensors {
		for _, qn := range sc.Quantities() {
			q, _ := obs.LookupQuantity(qn)
			out = append(out, StreamInfo{Stream: obs.StreamID(sc.ID, qn), SensorID: sc.ID, Label: sc.Label, Quantity: qn,
				Unit: q.UnitSymbol, UnitName: q.UnitName, Where: sc.Where.Name, Simulated: sc.Simulated(), Counter: q.Counter})
		}
	}
	return out
}

// JSON returns a read-only JSON API for the LAN page, to be mounted with
// http.StripPrefix:
//
//	GET status                  Report (buses, energy meter, per-sensor state)
//	GET streams                 []StreamInfo
//	GET snapshot                []Observation (latest of each stream)
//	GET series?stream=&range=24h&step=5m   or  &from=<RFC 3339>&to=<RFC 3339>
//
// Every answer that carries readings says which are simulated.
func (s *Service) JSON() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			jsonError(w, http.StatusMethodNotAllowed, "read-only API")
			return
		}
		var v any
		switch strings.Trim(r.URL.Path, "/") {
		case "status":
			v = s.Status()
		case "streams":
			v = s.Streams()
		case "snapshot":
			v = s.Snapshot()
		case "series":
			q, err := ParseSeriesQuery(r.URL.Query(), s.now())
			if err != nil {
				jsonError(w, http.StatusBadRequest, err.Error())
				return
			}
			ser, err := s.Series(q.Stream, q.From, q.To, q.Step)
			switch {
			case errors.Is(err, obs.ErrUnknownStream):
				jsonError(w, http.StatusNotFound, err.Error())
				return
			case errors.Is(err, obs.ErrTooManyPoints):
				jsonError(w, http.StatusBadRequest, err.Error())
				return
			case err != nil:
				jsonError(w, http.StatusInternalServerError, err.Error())
				return
			}
			if ser.Points == nil {
				ser.Points = []Point{}
			}
			v = ser
		default:
			jsonError(w, http.StatusNotFound, "unknown endpoint "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(v)
	})
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// SeriesQuery is a parsed series request.
type SeriesQuery struct {
	Stream   string
	From, To time.Time
	Step     time.Duration // 0 = about 300 points
}

// ParseSeriesQuery parses stream=, and either range= (a duration ending
// now, default 24h) or from=/to= (RFC 3339), and step= (a duration).
func ParseSeriesQuery(q url.Values, now time.Time) (SeriesQuery, error) {
	sq := SeriesQuery{Stream: q.Get("stream")}
	if _, _, ok := obs.SplitStream(sq.Stream); !ok || len(sq.Stream) > 100 {
		return sq, fmt.Errorf("stream %q: want <sensor id>.<quantity>", sq.Stream)
	}
	dur := func(name string) (time.Duration, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 20*365*24*time.Hour {
			return 0, fmt.Errorf("%s %q: want a duration like 5m, 24h (up to 20 years)", name, v)
		}
		return d, nil
	}
	var err error
	if sq.Step, err = dur("step"); err != nil {
		return sq, err
	}
	rng, err := dur("range")
	if err != nil {
		return sq, err
	}
	from, to := q.Get("from"), q.Get("to")
	switch {
	case from != "" || to != "":
		if rng != 0 {
			return sq, fmt.Errorf("give either range or from/to, not both")
		}
		sq.To = now
		if to != "" {
			if sq.To, err = time.Parse(time.RFC3339Nano, to); err != nil {
				return sq, fmt.Errorf("to %q: want RFC 3339", to)
			}
		}
		if from == "" {
			return sq, fmt.Errorf("from is missing")
		}
		if sq.From, err = time.Parse(time.RFC3339Nano, from); err != nil {
			return sq, fmt.Errorf("from %q: want RFC 3339", from)
		}
	default:
		if rng == 0 {
			rng = 24 * time.Hour
		}
		sq.To, sq.From = now, now.Add(-rng)
	}
	if !sq.To.After(sq.From) {
		return sq, fmt.Errorf("to %s is not after from %s", sq.To.Format(time.RFC3339), sq.From.Format(time.RFC3339))
	}
	if sq.From.Year() < 1970 || sq.To.Year() > 2200 {
		return sq, fmt.Errorf("time range %s..%s out of bounds", sq.From.Format(time.RFC3339), sq.To.Format(time.RFC3339))
	}
	return sq, nil
}
