package sensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/univrs/hypha/sensors/obs"
)

// SensorThings returns a read-only OGC SensorThings API v1.1 shaped
// handler. base is the path it is mounted under (e.g.
// "/sensorthings/v1.1"); it builds selfLinks from it and strips it from
// request paths, so mount it with mux.Handle(base+"/", h) without
// http.StripPrefix. Entities: the node as the only Thing, its Location,
// one Sensor per configured sensor, one ObservedProperty per quantity,
// one Datastream per stream (UCUM unitOfMeasurement) and Observations
// from the store. Simulated streams and observations say so in
// properties.simulated / parameters.simulated and in their names.
//
// Supported: GET of collections and entities by id ('id' in quotes),
// navigation Things(id)/Datastreams, Datastreams(id)/Observations|Sensor|
// ObservedProperty|Thing, Sensors(id)/Datastreams, $top, $skip on
// collections, and for Observations $orderby=phenomenonTime [asc|desc]
// and $filter=phenomenonTime ge|gt|le|lt <ISO time> [and …].
func (s *Service) SensorThings(base string) http.Handler {
	base = strings.TrimRight(base, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			stError(w, http.StatusMethodNotAllowed, "read-only API")
			return
		}
		p, ok := strings.CutPrefix(r.URL.Path, base)
		if !ok {
			stError(w, http.StatusNotFound, "not under "+base)
			return
		}
		v, status, err := s.stRoute(base, strings.Trim(p, "/"), r.URL.Query())
		if err != nil {
			stError(w, status, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		_ = enc.Encode(v)
	})
}

func stError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "type": "error", "message": msg})
}

type jobj = map[string]any

var errNotFound = errors.New("not found")

// segment parses "Datastreams('x')" into ("Datastreams", "x", true).
func segment(seg string) (name, id string, hasID bool, err error) {
	i := strings.IndexByte(seg, '(')
	if i < 0 {
		return seg, "", false, nil
	}
	if !strings.HasSuffix(seg, ")") {
		return "", "", false, fmt.Errorf("path segment %q: missing )", seg)
	}
	id = seg[i+1 : len(seg)-1]
	if len(id) >= 2 && id[0] == '\'' && id[len(id)-1] == '\'' {
		id = strings.ReplaceAll(id[1:len(id)-1], "''", "'")
	}
	return seg[:i], id, true, nil
}

func (s *Service) stRoute(base, path string, q url.Values) (any, int, error) {
	if path == "" {
		var value []jobj
		for _, n := range []string{"Things", "Locations", "Datastreams", "Sensors", "ObservedProperties", "Observations"} {
			value = append(value, jobj{"name": n, "url": base + "/" + n})
		}
		return jobj{"value": value, "serverSettings": jobj{"conformance": []string{"http://www.opengis.net/spec/iot_sensing/1.1/req/request-data"}}}, 200, nil
	}
	segs := strings.Split(path, "/")
	if len(segs) > 2 {
		return nil, 404, fmt.Errorf("path %q: at most one navigation step is supported", path)
	}
	name, id, hasID, err := segment(segs[0])
	if err != nil {
		return nil, 400, err
	}
	if len(segs) == 2 && !hasID {
		return nil, 400, fmt.Errorf("path %q: navigation needs an entity id", path)
	}
	nav := ""
	if len(segs) == 2 {
		nav = segs[1]
	}
	top, skip, err := pageParams(q)
	if err != nil {
		return nil, 400, err
	}
	page := func(items []jobj) jobj {
		n := len(items)
		if skip > len(items) {
			items = nil
		} else {
			items = items[skip:]
		}
		if len(items) > top {
			items = items[:top]
		}
		out := jobj{"@iot.count": n, "value": items}
		if skip+top < n {
			out["@iot.nextLink"] = nextLink(base+"/"+path, q, top, skip)
		}
		return out
	}
	one := func(items []jobj) (any, int, error) {
		for _, it := range items {
			if it["@iot.id"] == id {
				return it, 200, nil
			}
		}
		return nil, 404, fmt.Errorf("%s(%q): %w", name, id, errNotFound)
	}
	switch name {
	case "Things":
		things := []jobj{s.stThing(base)}
		if !hasID {
			return page(things), 200, nil
		}
		if id != s.cfg.Thing.Name {
			return one(nil)
		}
		switch nav {
		case "":
			return things[0], 200, nil
		case "Datastreams":
			return page(s.stDatastreams(base, "")), 200, nil
		case "Locations":
			return page(s.stLocations(base)), 200, nil
		}
	case "Locations":
		if !hasID {
			return page(s.stLocations(base)), 200, nil
		}
		if nav == "" {
			return one(s.stLocations(base))
		}
	case "Sensors":
		if !hasID {
			return page(s.stSensors(base)), 200, nil
		}
		switch nav {
		case "":
			return one(s.stSensors(base))
		case "Datastreams":
			return page(s.stDatastreams(base, id)), 200, nil
		}
	case "ObservedProperties":
		if !hasID {
			return page(s.stProperties(base)), 200, nil
		}
		if nav == "" {
			return one(s.stProperties(base))
		}
	case "Datastreams":
		if !hasID {
			return page(s.stDatastreams(base, "")), 200, nil
		}
		ds, st, err := one(s.stDatastreams(base, ""))
		if err != nil {
			return nil, st, err
		}
		sensorID, quantity, _ := obs.SplitStream(id)
		switch nav {
		case "":
			return ds, 200, nil
		case "Observations":
			v, st, err := s.stObservations(base, id, q, top, skip)
			if err == nil && len(v.(jobj)["value"].([]jobj)) == top && top > 0 {
				v.(jobj)["@iot.nextLink"] = nextLink(base+"/"+path, q, top, skip)
			}
			return v, st, err
		case "Sensor":
			name = "Sensors"
			id = sensorID
			return one(s.stSensors(base))
		case "ObservedProperty":
			name = "ObservedProperties"
			id = quantity
			return one(s.stProperties(base))
		case "Thing":
			return s.stThing(base), 200, nil
		}
	case "Observations":
		if hasID {
			stream, ns, ok := strings.Cut(id, "@")
			t, err := strconv.ParseInt(ns, 10, 64)
			if !ok || err != nil {
				return nil, 400, fmt.Errorf("observation id %q: want <stream>@<unix ns>", id)
			}
			v, st, err := s.stObservations(base, stream, url.Values{"$filter": {fmt.Sprintf("phenomenonTime ge %s and phenomenonTime le %s", time.Unix(0, t).UTC().Format(time.RFC3339Nano), time.Unix(0, t).UTC().Format(time.RFC3339Nano))}}, 1, 0)
			if err != nil {
				return nil, st, err
			}
			if vals := v.(jobj)["value"].([]jobj); len(vals) == 1 {
				return vals[0], 200, nil
			}
			return nil, 404, fmt.Errorf("observation %q: %w", id, errNotFound)
		}
		return nil, 400, fmt.Errorf("list observations through a datastream: Datastreams('<id>')/Observations")
	}
	return nil, 404, fmt.Errorf("path %q: %w", path, errNotFound)
}

func nextLink(path string, q url.Values, top, skip int) string {
	n := url.Values{}
	for k, v := range q {
		n[k] = v
	}
	n.Set("$top", strconv.Itoa(top))
	n.Set("$skip", strconv.Itoa(skip+top))
	return path + "?" + n.Encode()
}

func pageParams(q url.Values) (top, skip int, err error) {
	top, skip = 100, 0
	if v := q.Get("$top"); v != "" {
		if top, err = strconv.Atoi(v); err != nil || top < 0 || top > 10000 {
			return 0, 0, fmt.Errorf("$top %q: want 0..10000", v)
		}
	}
	if v := q.Get("$skip"); v != "" {
		if skip, err = strconv.Atoi(v); err != nil || skip < 0 || skip > 1_000_000 {
			return 0, 0, fmt.Errorf("$skip %q: want 0..1000000", v)
		}
	}
	return top, skip, nil
}

func quote(id string) string { return "('" + strings.ReplaceAll(id, "'", "''") + "')" }

func geo(p obs.Place) jobj {
	return jobj{"type": "Point", "coordinates": []float64{p.Longitude, p.Latitude}}
}

func (s *Service) simulatedAny() bool {
	for _, sc := range s.cfg.Sensors {
		if sc.Simulated() && !sc.Disabled {
			return true
		}
	}
	return false
}

func (s *Service) stThing(base string) jobj {
	self := base + "/Things" + quote(s.cfg.Thing.Name)
	return jobj{
		"@iot.id": s.cfg.Thing.Name, "@iot.selfLink": self,
		"name": s.cfg.Thing.Name, "description": s.cfg.Thing.Description,
		"properties":                     jobj{"simulated_streams": s.simulatedAny()},
		"Datastreams@iot.navigationLink": self + "/Datastreams",
		"Locations@iot.navigationLink":   self + "/Locations",
	}
}

func (s *Service) stLocations(base string) []jobj {
	w := s.cfg.Thing.Where
	if !w.Known() {
		return nil
	}
	id := s.cfg.Thing.Name
	return []jobj{{"@iot.id": id, "@iot.selfLink": base + "/Locations" + quote(id), "name": w.Name, "description": "where the node stands",
		"encodingType": "application/geo+json", "location": geo(w)}}
}

func (s *Service) stSensors(base string) []jobj {
	var out []jobj
	for _, sc := range s.cfg.Sensors {
		name := sc.Label
		desc := sc.Driver + " sensor"
		if sc.Simulated() {
			name += " [simulated]"
			desc = "simulated " + sc.Measures + " sensor (no hardware: values come from a seeded model)"
		}
		self := base + "/Sensors" + quote(sc.ID)
		out = append(out, jobj{"@iot.id": sc.ID, "@iot.selfLink": self, "name": name, "description": desc,
			"encodingType": "text/plain", "metadata": sc.Driver,
			"properties":                     jobj{"simulated": sc.Simulated(), "driver": sc.Driver, "measures": sc.Measures},
			"Datastreams@iot.navigationLink": self + "/Datastreams"})
	}
	return out
}

func (s *Service) stProperties(base string) []jobj {
	seen := map[string]bool{}
	var out []jobj
	for _, sc := range s.cfg.Sensors {
		for _, qn := range sc.Quantities() {
			if seen[qn] {
				continue
			}
			seen[qn] = true
			q, _ := obs.LookupQuantity(qn)
			out = append(out, jobj{"@iot.id": qn, "@iot.selfLink": base + "/ObservedProperties" + quote(qn), "name": qn,
				"definition": "https://w3id.org/hypha/quantity#" + qn, "description": q.Description})
		}
	}
	return out
}

// stDatastreams lists datastreams, of one sensor when sensorID != "".
func (s *Service) stDatastreams(base, sensorID string) []jobj {
	var out []jobj
	for _, sc := range s.cfg.Sensors {
		if sensorID != "" && sc.ID != sensorID {
			continue
		}
		for _, qn := range sc.Quantities() {
			q, _ := obs.LookupQuantity(qn)
			id := obs.StreamID(sc.ID, qn)
			self := base + "/Datastreams" + quote(id)
			name := sc.Label + " — " + q.Description
			if sc.Simulated() {
				name += " [simulated]"
			}
			d := jobj{"@iot.id": id, "@iot.selfLink": self, "name": name,
				"description":                         q.Description + " measured by " + sc.Label,
				"observationType":                     "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
				"unitOfMeasurement":                   jobj{"name": q.UnitName, "symbol": q.UnitSymbol, "definition": q.UnitDefinition},
				"properties":                          jobj{"simulated": sc.Simulated(), "quantity": qn, "where": sc.Where.Name, "counter": q.Counter},
				"Observations@iot.navigationLink":     self + "/Observations",
				"Sensor@iot.navigationLink":           self + "/Sensor",
				"ObservedProperty@iot.navigationLink": self + "/ObservedProperty",
				"Thing@iot.navigationLink":            self + "/Thing",
			}
			if sc.Where.Known() {
				d["observedArea"] = geo(sc.Where)
			}
			out = append(out, d)
		}
	}
	return out
}

func (s *Service) stObservations(base, stream string, q url.Values, top, skip int) (any, int, error) {
	from, to, err := ParseTimeFilter(q.Get("$filter"))
	if err != nil {
		return nil, 400, err
	}
	desc := true
	switch ob := strings.TrimSpace(q.Get("$orderby")); ob {
	case "", "phenomenonTime desc":
	case "phenomenonTime", "phenomenonTime asc":
		desc = false
	default:
		return nil, 400, fmt.Errorf("$orderby %q: only phenomenonTime [asc|desc]", ob)
	}
	var out []jobj
	if s.store != nil {
		samples, err := s.store.Raw(stream, from, to, top+skip, desc)
		if err != nil && !errors.Is(err, obs.ErrUnknownStream) {
			return nil, 500, err
		}
		if skip < len(samples) {
			samples = samples[skip:]
		} else {
			samples = nil
		}
		for _, sm := range samples {
			out = append(out, stObservation(base, sm.Stream, sm.Time, sm.Value, sm.Simulated))
		}
	} else if skip == 0 && top > 0 {
		// No store: the latest reading only.
		s.mu.Lock()
		o, ok := s.latest[stream]
		s.mu.Unlock()
		if ok && !o.Time.Before(from) && o.Time.Before(to) {
			out = append(out, stObservation(base, o.Stream, o.Time, o.Value, o.Simulated))
		}
	}
	if out == nil {
		out = []jobj{}
	}
	return jobj{"value": out}, 200, nil
}

func stObservation(base, stream string, t time.Time, v float64, sim bool) jobj {
	id := fmt.Sprintf("%s@%d", stream, t.UnixNano())
	ts := t.UTC().Format(time.RFC3339Nano)
	return jobj{"@iot.id": id, "@iot.selfLink": base + "/Observations" + quote(id),
		"phenomenonTime": ts, "resultTime": ts, "result": v,
		"parameters":                    jobj{"simulated": sim},
		"Datastream@iot.navigationLink": base + "/Observations" + quote(id) + "/Datastream"}
}

// ParseTimeFilter parses the subset of SensorThings $filter this API
// supports: clauses "phenomenonTime ge|gt|le|lt|eq <RFC 3339 time>" joined
// by "and". It returns the half-open range [from, to); an empty filter is
// the whole time line.
func ParseTimeFilter(f string) (from, to time.Time, err error) {
	from, to = time.Unix(0, 0), time.Unix(0, 1<<62)
	f = strings.TrimSpace(f)
	if f == "" {
		return from, to, nil
	}
	if len(f) > 512 {
		return from, to, fmt.Errorf("$filter: longer than 512 bytes")
	}
	for _, clause := range strings.Split(f, " and ") {
		fs := strings.Fields(clause)
		if len(fs) != 3 || fs[0] != "phenomenonTime" {
			return from, to, fmt.Errorf("$filter clause %q: want phenomenonTime ge|gt|le|lt|eq <time>", clause)
		}
		t, err := time.Parse(time.RFC3339Nano, fs[2])
		if err != nil {
			return from, to, fmt.Errorf("$filter time %q: want RFC 3339 like 2026-06-01T00:00:00Z", fs[2])
		}
		if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, 1<<62)) {
			return from, to, fmt.Errorf("$filter time %q: out of range", fs[2])
		}
		switch fs[1] {
		case "ge":
			from = later(from, t)
		case "gt":
			from = later(from, t.Add(1))
		case "lt":
			to = earlier(to, t)
		case "le":
			to = earlier(to, t.Add(1))
		case "eq":
			from, to = later(from, t), earlier(to, t.Add(1))
		default:
			return from, to, fmt.Errorf("$filter operator %q: want ge, gt, le, lt or eq", fs[1])
		}
	}
	return from, to, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
