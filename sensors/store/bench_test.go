package store

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWrite measures acknowledged (fsynced) samples per second for
// batch sizes a sampler produces: 1 (one sensor, one reading), 50 (a node's
// second), 500 (the writer's maximum batch).
func BenchmarkWrite(b *testing.B) {
	for _, batch := range []int{1, 50, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "w.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			samples := make([]Sample, batch)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for j := range samples {
					samples[j] = Sample{Stream: fmt.Sprintf("s%d.air_temperature", j%20), Time: t0.Add(time.Duration(n) * time.Second), Value: float64(n % 40)}
					n++
				}
				if err := s.Write(samples); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// yearStore writes a year of one-minute samples of one stream, pruning
// daily like the sampler does, and returns the store at the year's end.
func yearStore(tb testing.TB, streams int) (*Store, time.Time) {
	return yearStoreRaw(tb, streams, 0)
}

func yearStoreRaw(tb testing.TB, streams int, raw time.Duration) (*Store, time.Time) {
	end := t0.AddDate(1, 0, 0)
	s, err := Open(filepath.Join(tb.TempDir(), "y.db"), Options{NoSync: true, Raw: raw, Now: func() time.Time { return end }})
	if err != nil {
		tb.Fatal(err)
	}
	batch := make([]Sample, 0, 1440*streams)
	for day := t0; day.Before(end); day = day.Add(24 * time.Hour) {
		batch = batch[:0]
		for m := 0; m < 1440; m++ {
			ts := day.Add(time.Duration(m) * time.Minute)
			for k := 0; k < streams; k++ {
				batch = append(batch, Sample{Stream: fmt.Sprintf("s%02d.air_temperature", k), Time: ts, Value: 15 + 10*math.Sin(float64(m)/229) + float64(k)})
			}
		}
		if err := s.Write(batch); err != nil {
			tb.Fatal(err)
		}
		if _, err := s.Prune(day.Add(24 * time.Hour)); err != nil {
			tb.Fatal(err)
		}
	}
	return s, end
}

// BenchmarkSeries measures chart queries against a store holding a year of
// one-minute samples (pruned to the default retention).
func BenchmarkSeries(b *testing.B) {
	s, end := yearStore(b, 1)
	defer s.Close()
	for _, tc := range []struct {
		name  string
		from  time.Duration
		step  time.Duration
		level time.Duration
	}{
		{"year/1d", 365 * 24 * time.Hour, 24 * time.Hour, 24 * time.Hour},
		{"year/1h", 365 * 24 * time.Hour, time.Hour, time.Hour},
		{"month/1h", 30 * 24 * time.Hour, time.Hour, time.Hour},
		{"week/5m", 7 * 24 * time.Hour, 5 * time.Minute, 5 * time.Minute},
		{"day/1m-raw", 24 * time.Hour, time.Minute, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var pts int
			for b.Loop() {
				ser, err := s.Series("s00.air_temperature", end.Add(-tc.from), end, tc.step)
				if err != nil {
					b.Fatal(err)
				}
				if ser.Resolution != tc.level {
					b.Fatalf("resolution %v, want %v", ser.Resolution, tc.level)
				}
				pts = len(ser.Points)
			}
			b.ReportMetric(float64(pts), "points")
		})
	}
}

// BenchmarkStoreSizePerSensorYear writes a year of one-minute samples for
// 10 streams with default retention and reports the file size per stream.
func BenchmarkStoreSizePerSensorYear(b *testing.B) {
	const streams = 4
	for b.Loop() {
		s, _ := yearStore(b, streams)
		size, err := s.Size()
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		b.ReportMetric(float64(size)/streams, "bytes/stream-year")
		b.ReportMetric(float64(size)/(1<<20), "MiB-file")
	}
}

// BenchmarkYearChartVsRawScan compares the daily chart of a year answered
// from daily aggregates with the reference answer computed by scanning
// every raw sample (a store that kept raw data for the whole year), and
// reports the speed-up.
func BenchmarkYearChartVsRawScan(b *testing.B) {
	s, end := yearStoreRaw(b, 1, 400*24*time.Hour)
	defer s.Close()
	from := end.AddDate(-1, 0, 0)
	run := func(li int) (time.Duration, Series) {
		start := time.Now()
		ser, err := s.seriesAt(li, "s00.air_temperature", from, end, 24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(start), ser
	}
	var agg, raw time.Duration
	for b.Loop() {
		da, sa := run(3)
		dr, sr := run(0)
		agg += da
		raw += dr
		if len(sa.Points) != 365 || len(sr.Points) != 365 {
			b.Fatalf("points %d / %d", len(sa.Points), len(sr.Points))
		}
		for i := range sa.Points {
			if sa.Points[i].Count != sr.Points[i].Count || math.Abs(sa.Points[i].Mean-sr.Points[i].Mean) > 1e-9 {
				b.Fatalf("day %d: aggregate %+v, raw scan %+v", i, sa.Points[i], sr.Points[i])
			}
		}
	}
	b.ReportMetric(float64(agg.Microseconds())/float64(b.N), "µs-aggregates")
	b.ReportMetric(float64(raw.Microseconds())/float64(b.N), "µs-raw-scan")
	b.ReportMetric(float64(raw)/float64(agg), "speedup")
}
