// Package store is a small time-series store on bbolt for sensor readings:
// raw samples kept for days, and min/mean/max/count aggregates per 5
// minutes, hour and day kept for years, updated as samples arrive.
//
// Layout: top-level buckets "raw", "5m", "1h", "1d", each holding one nested
// bucket per stream; keys are big-endian time (ns for raw, seconds of the
// bucket start for aggregates) so cursors walk in time order. A Write is one
// bbolt transaction: when it returns nil the samples are on disk (fsync), so
// a power cut or kill -9 loses no acknowledged sample.
//
// A Store is safe for concurrent use. Close is idempotent.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/univrs/hypha/sensors/obs"
)

// Sample is one stored reading.
type Sample struct {
	Stream    string
	Time      time.Time
	Value     float64
	Simulated bool
}

// Point is one bucket of a series: one raw sample (Count 1) or an
// aggregate.
type Point struct {
	Time      time.Time `json:"t"`
	Min       float64   `json:"min"`
	Mean      float64   `json:"mean"`
	Max       float64   `json:"max"`
	Count     uint32    `json:"n"`
	Simulated bool      `json:"simulated,omitempty"`
}

// Series is the answer to a series query.
type Series struct {
	Stream string `json:"stream"`
	// Resolution is the stored resolution the points were built from (0 = raw).
	Resolution time.Duration `json:"resolution_ns"`
	// Step is the width of each returned point.
	Step time.Duration `json:"step_ns"`
	// Simulated is true if any point is simulated.
	Simulated bool    `json:"simulated"`
	Points    []Point `json:"points"`
}

// Options are retention settings; zero fields take the defaults of
// obs.StorageConfig (raw 7 d, 5 min 31 d, 1 h 5 y, 1 d forever).
type Options struct {
	Raw, FiveMinute, Hourly, Daily time.Duration
	// Now is the clock used by Series to know which levels still cover a
	// range (default time.Now).
	Now func() time.Time
	// NoSync skips fsync (benchmarks of the encoding only; never in a node).
	NoSync bool
}

// MinTime is the earliest time the store accepts. Earlier times mean the
// clock is not set yet (a Raspberry Pi has no RTC).
var MinTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxPoints bounds a series answer.
const MaxPoints = 20000

type level struct {
	name  string
	width time.Duration // 0 = raw
	keep  time.Duration // 0 = forever
}

// Store is the time-series store.
type Store struct {
	db     *bolt.DB
	levels []level // raw, 5m, 1h, 1d
	now    func() time.Time

	closeOnce sync.Once
	closeErr  error
}

const schemaVersion = 1

// Open opens or creates the store file.
func Open(path string, opts Options) (*Store, error) {
	if opts.Raw == 0 {
		opts.Raw = 7 * 24 * time.Hour
	}
	if opts.FiveMinute == 0 {
		opts.FiveMinute = 31 * 24 * time.Hour
	}
	if opts.Hourly == 0 {
		opts.Hourly = 5 * 365 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: opts.NoSync, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, levels: []level{
		{"raw", 0, opts.Raw},
		{"5m", 5 * time.Minute, opts.FiveMinute},
		{"1h", time.Hour, opts.Hourly},
		{"1d", 24 * time.Hour, opts.Daily},
	}}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		if v := meta.Get([]byte("version")); v != nil {
			if len(v) != 1 || v[0] != schemaVersion {
				return fmt.Errorf("%w: schema version %v, this build reads %d", obs.ErrCorrupt, v, schemaVersion)
			}
		} else if err := meta.Put([]byte("version"), []byte{schemaVersion}); err != nil {
			return err
		}
		for _, l := range s.levels {
			if _, err := tx.CreateBucketIfNotExists([]byte(l.name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

// Size returns the size of the store file in bytes.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n, err
}

// Check verifies bbolt's page consistency.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("store check: %w", err)
		}
		return nil
	})
}

// ---- encoding ----

const (
	flagSimulated = 1 << 0
	rawLen        = 9
	aggLen        = 29
)

func timeKey(v int64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(v))
	return k[:]
}

func encodeRaw(v float64, sim bool) []byte {
	b := make([]byte, rawLen)
	if sim {
		b[0] = flagSimulated
	}
	binary.BigEndian.PutUint64(b[1:], math.Float64bits(v))
	return b
}

// DecodeRaw decodes a stored raw sample value.
func DecodeRaw(b []byte) (v float64, sim bool, err error) {
	if len(b) != rawLen {
		return 0, false, fmt.Errorf("raw sample: %w: %d bytes, want %d", obs.ErrCorrupt, len(b), rawLen)
	}
	if b[0]&^flagSimulated != 0 {
		return 0, false, fmt.Errorf("raw sample: %w: unknown flags %#x", obs.ErrCorrupt, b[0])
	}
	v = math.Float64frombits(binary.BigEndian.Uint64(b[1:]))
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("raw sample: %w: value %v", obs.ErrCorrupt, v)
	}
	return v, b[0]&flagSimulated != 0, nil
}

type agg struct {
	count         uint32
	min, max, sum float64
	sim           bool
}

func (a *agg) add(v float64, sim bool) {
	if a.count == 0 || v < a.min {
		a.min = v
	}
	if a.count == 0 || v > a.max {
		a.max = v
	}
	a.count++
	a.sum += v
	a.sim = a.sim || sim
}

func (a *agg) merge(b agg) {
	if b.count == 0 {
		return
	}
	if a.count == 0 || b.min < a.min {
		a.min = b.min
	}
	if a.count == 0 || b.max > a.max {
		a.max = b.max
	}
	a.count += b.count
	a.sum += b.sum
	a.sim = a.sim || b.sim
}

func (a agg) encode() []byte {
	b := make([]byte, aggLen)
	if a.sim {
		b[0] = flagSimulated
	}
	binary.BigEndian.PutUint32(b[1:], a.count)
	binary.BigEndian.PutUint64(b[5:], math.Float64bits(a.min))
	binary.BigEndian.PutUint64(b[13:], math.Float64bits(a.max))
	binary.BigEndian.PutUint64(b[21:], math.Float64bits(a.sum))
	return b
}

// DecodeAggregate decodes a stored aggregate and returns count, min, max, sum.
func DecodeAggregate(b []byte) (count uint32, min, max, sum float64, sim bool, err error) {
	a, err := decodeAgg(b)
	return a.count, a.min, a.max, a.sum, a.sim, err
}

func decodeAgg(b []byte) (agg, error) {
	if len(b) != aggLen {
		return agg{}, fmt.Errorf("aggregate: %w: %d bytes, want %d", obs.ErrCorrupt, len(b), aggLen)
	}
	if b[0]&^flagSimulated != 0 {
		return agg{}, fmt.Errorf("aggregate: %w: unknown flags %#x", obs.ErrCorrupt, b[0])
	}
	a := agg{
		sim:   b[0]&flagSimulated != 0,
		count: binary.BigEndian.Uint32(b[1:]),
		min:   math.Float64frombits(binary.BigEndian.Uint64(b[5:])),
		max:   math.Float64frombits(binary.BigEndian.Uint64(b[13:])),
		sum:   math.Float64frombits(binary.BigEndian.Uint64(b[21:])),
	}
	if a.count == 0 || math.IsNaN(a.min+a.max+a.sum) || math.IsInf(a.min+a.max+a.sum, 0) || a.min > a.max {
		return agg{}, fmt.Errorf("aggregate: %w: count %d min %v max %v sum %v", obs.ErrCorrupt, a.count, a.min, a.max, a.sum)
	}
	return a, nil
}

// ---- writing ----

// Write stores samples in one transaction. A sample whose (stream, time)
// is already stored is skipped, so re-sending a batch after a crash does not
// count twice. It returns after the data is fsynced.
func (s *Store) Write(samples []Sample) error {
	for _, sm := range samples {
		if sm.Stream == "" || len(sm.Stream) > 200 {
			return fmt.Errorf("store write: %w: stream name %q", obs.ErrBadConfig, sm.Stream)
		}
		if sm.Time.Before(MinTime) {
			return fmt.Errorf("store write %s at %s: %w", sm.Stream, sm.Time.UTC().Format(time.RFC3339), obs.ErrClockNotSet)
		}
		if math.IsNaN(sm.Value) || math.IsInf(sm.Value, 0) {
			return fmt.Errorf("store write %s: value %v is not a number", sm.Stream, sm.Value)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		buckets := make([]*bolt.Bucket, len(s.levels))
		for i, l := range s.levels {
			buckets[i] = tx.Bucket([]byte(l.name))
		}
		cache := map[string][]*bolt.Bucket{}
		// Aggregate the batch in memory first: one read-modify-write per
		// touched bucket instead of one per sample.
		type aggKey struct {
			stream string
			level  int
			start  int64
		}
		pending := map[aggKey]*agg{}
		var order []aggKey
		for _, sm := range samples {
			bs, ok := cache[sm.Stream]
			if !ok {
				bs = make([]*bolt.Bucket, len(s.levels))
				for i := range s.levels {
					b, err := buckets[i].CreateBucketIfNotExists([]byte(sm.Stream))
					if err != nil {
						return err
					}
					// Keys are time-ordered and mostly appended: fill
					// pages instead of splitting them in half.
					b.FillPercent = 0.95
					bs[i] = b
				}
				cache[sm.Stream] = bs
			}
			k := timeKey(sm.Time.UnixNano())
			if bs[0].Get(k) != nil {
				continue
			}
			if err := bs[0].Put(k, encodeRaw(sm.Value, sm.Simulated)); err != nil {
				return err
			}
			for i := 1; i < len(s.levels); i++ {
				ak := aggKey{sm.Stream, i, sm.Time.Truncate(s.levels[i].width).Unix()}
				a := pending[ak]
				if a == nil {
					a = &agg{}
					pending[ak] = a
					order = append(order, ak)
				}
				a.add(sm.Value, sm.Simulated)
			}
		}
		for _, ak := range order {
			b := cache[ak.stream][ak.level]
			k := timeKey(ak.start)
			a := *pending[ak]
			if old := b.Get(k); old != nil {
				prev, err := decodeAgg(old)
				if err != nil {
					return fmt.Errorf("%s %s at %d: %w", s.levels[ak.level].name, ak.stream, ak.start, err)
				}
				prev.merge(a)
				a = prev
			}
			if err := b.Put(k, a.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store write: %w", err)
	}
	return nil
}

// Prune deletes raw samples and aggregates older than their retention,
// at most 50 000 keys per transaction. It returns how many keys it deleted.
func (s *Store) Prune(now time.Time) (int, error) {
	total := 0
	for i, l := range s.levels {
		if l.keep == 0 {
			continue
		}
		cut := now.Add(-l.keep)
		var cutKey []byte
		if i == 0 {
			cutKey = timeKey(cut.UnixNano())
		} else {
			cutKey = timeKey(cut.Truncate(l.width).Unix())
		}
		for {
			n := 0
			err := s.db.Update(func(tx *bolt.Tx) error {
				top := tx.Bucket([]byte(l.name))
				return top.ForEachBucket(func(name []byte) error {
					b := top.Bucket(name)
					var keys [][]byte
					c := b.Cursor()
					for k, _ := c.First(); k != nil && bytes.Compare(k, cutKey) < 0 && n+len(keys) < 50000; k, _ = c.Next() {
						keys = append(keys, append([]byte(nil), k...))
					}
					for _, k := range keys {
						if err := b.Delete(k); err != nil {
							return err
						}
					}
					n += len(keys)
					return nil
				})
			})
			if err != nil {
				return total, fmt.Errorf("store prune %s: %w", l.name, err)
			}
			total += n
			if n < 50000 {
				break
			}
		}
	}
	return total, nil
}

// ---- reading ----

// Streams lists stored stream ids.
func (s *Store) Streams() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("raw")).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Latest returns the newest raw sample of a stream.
func (s *Store) Latest(stream string) (Sample, error) {
	var sm Sample
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("raw")).Bucket([]byte(stream))
		if b == nil {
			return fmt.Errorf("latest %q: %w", stream, obs.ErrUnknownStream)
		}
		k, v := b.Cursor().Last()
		if k == nil {
			return fmt.Errorf("latest %q: %w: no samples", stream, obs.ErrUnknownStream)
		}
		val, sim, err := DecodeRaw(v)
		if err != nil || len(k) != 8 {
			return fmt.Errorf("latest %q: %w", stream, errors.Join(obs.ErrCorrupt, err))
		}
		sm = Sample{Stream: stream, Time: time.Unix(0, int64(binary.BigEndian.Uint64(k))), Value: val, Simulated: sim}
		return nil
	})
	return sm, err
}

// Series returns the stream between from (inclusive) and to (exclusive)
// in points of width step, built from the coarsest stored resolution that
// is not wider than step and still covers from; step 0 picks about 300
// points. Points are aligned to multiples of step since the Unix epoch;
// empty buckets are left out (a chart shows a gap).
func (s *Store) Series(stream string, from, to time.Time, step time.Duration) (Series, error) {
	if !to.After(from) {
		return Series{}, fmt.Errorf("series %q: to %s is not after from %s", stream, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	if step <= 0 {
		step = to.Sub(from) / 300
		if step < time.Second {
			step = time.Second
		}
	}
	if n := to.Sub(from) / step; n > MaxPoints {
		return Series{}, fmt.Errorf("series %q: %w: %d > %d; use a larger step", stream, obs.ErrTooManyPoints, n, MaxPoints)
	}
	now := s.now()
	// Coarsest level not wider than step.
	li := 0
	for i, l := range s.levels {
		if l.width <= step {
			li = i
		}
	}
	// Move to coarser levels while this one was already pruned at from.
	for li < len(s.levels)-1 && s.levels[li].keep != 0 && from.Before(now.Add(-s.levels[li].keep)) {
		li++
	}
	return s.seriesAt(li, stream, from, to, step)
}

// seriesAt answers a series from stored level li (0 = raw).
func (s *Store) seriesAt(li int, stream string, from, to time.Time, step time.Duration) (Series, error) {
	l := s.levels[li]
	out := Series{Stream: stream, Resolution: l.width, Step: step}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(l.name)).Bucket([]byte(stream))
		if b == nil {
			return fmt.Errorf("series %q: %w", stream, obs.ErrUnknownStream)
		}
		var lo, hi []byte
		if li == 0 {
			lo, hi = timeKey(from.UnixNano()), timeKey(to.UnixNano())
		} else {
			lo, hi = timeKey(from.Truncate(l.width).Unix()), timeKey(to.Unix())
		}
		var cur agg
		var curStart time.Time
		flush := func() {
			if cur.count > 0 {
				out.Points = append(out.Points, Point{Time: curStart, Min: cur.min, Max: cur.max, Mean: cur.sum / float64(cur.count), Count: cur.count, Simulated: cur.sim})
				out.Simulated = out.Simulated || cur.sim
			}
			cur = agg{}
		}
		c := b.Cursor()
		for k, v := c.Seek(lo); k != nil && bytes.Compare(k, hi) < 0; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("series %q: %w: key of %d bytes", stream, obs.ErrCorrupt, len(k))
			}
			var t time.Time
			var a agg
			if li == 0 {
				t = time.Unix(0, int64(binary.BigEndian.Uint64(k)))
				val, sim, err := DecodeRaw(v)
				if err != nil {
					return fmt.Errorf("series %q at %s: %w", stream, t.UTC().Format(time.RFC3339Nano), err)
				}
				a.add(val, sim)
			} else {
				t = time.Unix(int64(binary.BigEndian.Uint64(k)), 0)
				var err error
				if a, err = decodeAgg(v); err != nil {
					return fmt.Errorf("series %q at %s: %w", stream, t.UTC().Format(time.RFC3339), err)
				}
			}
			bs := t.Truncate(step)
			if !bs.Equal(curStart) {
				flush()
				curStart = bs
			}
			cur.merge(a)
		}
		flush()
		return nil
	})
	if err != nil {
		return Series{}, err
	}
	sort.Slice(out.Points, func(i, j int) bool { return out.Points[i].Time.Before(out.Points[j].Time) })
	return out, nil
}

// Raw returns up to limit raw samples of a stream with from <= time < to,
// newest first when desc.
func (s *Store) Raw(stream string, from, to time.Time, limit int, desc bool) ([]Sample, error) {
	var out []Sample
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("raw")).Bucket([]byte(stream))
		if b == nil {
			return fmt.Errorf("raw %q: %w", stream, obs.ErrUnknownStream)
		}
		lo, hi := timeKey(from.UnixNano()), timeKey(to.UnixNano())
		if from.Before(time.Unix(0, 0)) {
			lo = timeKey(0)
		}
		c := b.Cursor()
		var k, v []byte
		next := c.Next
		if desc {
			k, _ = c.Seek(hi)
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
			next = c.Prev
		} else {
			k, v = c.Seek(lo)
		}
		for ; k != nil && len(out) < limit; k, v = next() {
			if bytes.Compare(k, lo) < 0 || bytes.Compare(k, hi) >= 0 {
				break
			}
			if len(k) != 8 {
				return fmt.Errorf("raw %q: %w: key of %d bytes", stream, obs.ErrCorrupt, len(k))
			}
			val, sim, err := DecodeRaw(v)
			if err != nil {
				return fmt.Errorf("raw %q: %w", stream, err)
			}
			out = append(out, Sample{Stream: stream, Time: time.Unix(0, int64(binary.BigEndian.Uint64(k))), Value: val, Simulated: sim})
		}
		return nil
	})
	return out, err
}
