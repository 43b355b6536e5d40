package obs

import (
	"fmt"
	"sort"
)

// DefaultCalibration is used when a soil probe has no calibration: a generic
// capacitive probe (v1.2 style, 3.3 V) reads about 2.75 V in dry soil and
// 1.35 V in saturated loam (~50 % volumetric). Replace it with two readings
// taken on site (dry sample, saturated sample).
var DefaultCalibration = []CalPoint{{Volts: 2.75, Percent: 0}, {Volts: 1.35, Percent: 50}}

// Calibration converts a probe voltage to % volumetric water content,
// piecewise linear between points and clamped to the points' range. It is
// immutable and safe for concurrent use.
type Calibration struct {
	pts []CalPoint // sorted by Volts ascending
}

// NewCalibration validates points: at least two, finite, distinct volts,
// percent in 0..100. An empty list means DefaultCalibration.
func NewCalibration(points []CalPoint) (Calibration, error) {
	if len(points) == 0 {
		points = DefaultCalibration
	}
	if len(points) < 2 || len(points) > 16 {
		return Calibration{}, fmt.Errorf("calibration: %d points, want 2..16", len(points))
	}
	pts := append([]CalPoint(nil), points...)
	sort.Slice(pts, func(i, j int) bool { return pts[i].Volts < pts[j].Volts })
	for i, p := range pts {
		if !finite(p.Volts, p.Percent) || p.Volts < 0 || p.Volts > 6.144 || p.Percent < 0 || p.Percent > 100 {
			return Calibration{}, fmt.Errorf("calibration point {volts %v, percent %v}: want 0..6.144 V and 0..100 %%", p.Volts, p.Percent)
		}
		if i > 0 && pts[i-1].Volts == p.Volts {
			return Calibration{}, fmt.Errorf("calibration: two points at %v V", p.Volts)
		}
	}
	return Calibration{pts: pts}, nil
}

// Percent converts volts to % volumetric water content. clamped is true when
// the voltage was outside the calibrated range (the probe may be out of the
// soil, or the calibration is off).
func (c Calibration) Percent(volts float64) (pct float64, clamped bool) {
	p := c.pts
	if volts <= p[0].Volts {
		return p[0].Percent, volts < p[0].Volts
	}
	if volts >= p[len(p)-1].Volts {
		return p[len(p)-1].Percent, volts > p[len(p)-1].Volts
	}
	i := sort.Search(len(p), func(i int) bool { return p[i].Volts >= volts })
	a, b := p[i-1], p[i]
	return a.Percent + (volts-a.Volts)*(b.Percent-a.Percent)/(b.Volts-a.Volts), false
}
