package obs

import "time"

// Value is one measured value of one quantity, as a driver returns it.
type Value struct {
	Quantity string  // a quantity name, e.g. AirTemperature
	Value    float64 // in the quantity's UCUM unit
}

// Reading is one value of one stream at one time, as the sampler stores it.
type Reading struct {
	Stream    string    // "<sensor id>.<quantity>"
	Time      time.Time // when it was measured
	Value     float64   // in the quantity's UCUM unit
	Simulated bool      // true when the value comes from the simulator
}

// Observation is the latest reading of one stream with everything a ledger
// entry or an API needs to interpret it without asking again.
type Observation struct {
	Stream    string    `json:"stream"`
	SensorID  string    `json:"sensor_id"`
	Quantity  string    `json:"quantity"`
	Value     float64   `json:"value"`
	Unit      string    `json:"unit"` // UCUM code, e.g. "Cel", "W", "%"
	Time      time.Time `json:"time"`
	Simulated bool      `json:"simulated"`
}

// StreamID returns the stream id of a sensor's quantity.
func StreamID(sensorID, quantity string) string { return sensorID + "." + quantity }

// SplitStream splits a stream id into sensor id and quantity. ok is false
// when the id has no dot.
func SplitStream(stream string) (sensorID, quantity string, ok bool) {
	for i := len(stream) - 1; i >= 0; i-- {
		if stream[i] == '.' {
			return stream[:i], stream[i+1:], i > 0 && i < len(stream)-1
		}
	}
	return "", "", false
}
