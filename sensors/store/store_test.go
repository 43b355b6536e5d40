package store

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/univrs/hypha/sensors/obs"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func openTest(t *testing.T, now func() time.Time) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ts.db")
	s, err := Open(path, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, path
}

func TestWriteLatestSeriesRaw(t *testing.T) {
	s, _ := openTest(t, func() time.Time { return t0.Add(time.Hour) })
	var batch []Sample
	for i := 0; i < 60; i++ {
		batch = append(batch, Sample{Stream: "air.air_temperature", Time: t0.Add(time.Duration(i) * time.Minute), Value: float64(i)})
	}
	if err := s.Write(batch); err != nil {
		t.Fatal(err)
	}
	// Re-sending the same batch (a retry after a crash) must not count twice.
	if err := s.Write(batch); err != nil {
		t.Fatal(err)
	}
	l, err := s.Latest("air.air_temperature")
	if err != nil || l.Value != 59 || !l.Time.Equal(t0.Add(59*time.Minute)) {
		t.Fatalf("latest %+v %v", l, err)
	}
	ser, err := s.Series("air.air_temperature", t0, t0.Add(time.Hour), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A 10-minute step is answered from 5-minute aggregates.
	if ser.Resolution != 5*time.Minute || len(ser.Points) != 6 {
		t.Fatalf("resolution %v, %d points", ser.Resolution, len(ser.Points))
	}
	for i, p := range ser.Points {
		lo := float64(i * 10)
		if p.Count != 10 || p.Min != lo || p.Max != lo+9 || p.Mean != lo+4.5 || !p.Time.Equal(t0.Add(time.Duration(i)*10*time.Minute)) {
			t.Errorf("point %d: %+v", i, p)
		}
	}
	ser, err = s.Series("air.air_temperature", t0, t0.Add(time.Hour), time.Minute)
	if err != nil || ser.Resolution != 0 || len(ser.Points) != 60 || ser.Points[59].Mean != 59 {
		t.Fatalf("raw: %+v %v", ser, err)
	}
	// The hourly aggregate agrees and was not double counted.
	ser, err = s.Series("air.air_temperature", t0, t0.Add(time.Hour), time.Hour)
	if err != nil || ser.Resolution != time.Hour || len(ser.Points) != 1 || ser.Points[0].Count != 60 || ser.Points[0].Mean != 29.5 {
		t.Fatalf("hourly %+v %v", ser, err)
	}
	if _, err := s.Series("nope", t0, t0.Add(time.Hour), time.Minute); !errors.Is(err, obs.ErrUnknownStream) {
		t.Errorf("unknown stream: %v", err)
	}
	if _, err := s.Series("air.air_temperature", t0, t0.Add(365*24*time.Hour), time.Second); !errors.Is(err, obs.ErrTooManyPoints) {
		t.Errorf("too many points: %v", err)
	}
}

func TestRejectsUnsetClockAndNaN(t *testing.T) {
	s, _ := openTest(t, nil)
	err := s.Write([]Sample{{Stream: "a.b", Time: time.Unix(10, 0), Value: 1}})
	if !errors.Is(err, obs.ErrClockNotSet) {
		t.Fatalf("1970 sample: %v", err)
	}
	if err := s.Write([]Sample{{Stream: "a.b", Time: t0, Value: math.NaN()}}); err == nil {
		t.Fatal("NaN accepted")
	}
	if st, _ := s.Streams(); len(st) != 0 {
		t.Fatalf("a rejected batch left streams %v", st)
	}
}

// TestRetentionOverMonths writes 120 days of 10-minute samples and checks
// that pruning keeps raw for 7 days, 5-minute aggregates for 31 days, and
// that hourly and daily aggregates still describe the whole period exactly.
func TestRetentionOverMonths(t *testing.T) {
	const days = 120
	end := t0.Add(days * 24 * time.Hour)
	s, _ := openTest(t, func() time.Time { return end })
	value := func(ts time.Time) float64 { // a daily cycle plus a trend
		h := float64(ts.Sub(t0)) / float64(time.Hour)
		return 10 + 5*math.Sin(2*math.Pi*h/24) + h/240
	}
	var batch []Sample
	for ts := t0; ts.Before(end); ts = ts.Add(10 * time.Minute) {
		batch = append(batch, Sample{Stream: "sim-air.air_temperature", Time: ts, Value: value(ts), Simulated: true})
		if len(batch) == 2000 {
			if err := s.Write(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Write(batch); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(end)
	if err != nil {
		t.Fatal(err)
	}
	wantDeleted := (days-7)*144 + (days-31)*144
	if n != wantDeleted {
		t.Errorf("pruned %d keys, want %d", n, wantDeleted)
	}
	count := func(level string) (int, time.Time) {
		var c int
		var first time.Time
		_ = s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(level)).Bucket([]byte("sim-air.air_temperature"))
			k, _ := b.Cursor().First()
			if level == "raw" {
				first = time.Unix(0, int64(beUint64(k)))
			} else {
				first = time.Unix(int64(beUint64(k)), 0)
			}
			c = b.Stats().KeyN
			return nil
		})
		return c, first.UTC()
	}
	if c, first := count("raw"); c != 7*144 || !first.Equal(end.Add(-7*24*time.Hour)) {
		t.Errorf("raw: %d samples from %s", c, first)
	}
	if c, first := count("5m"); c != 31*144 || !first.Equal(end.Add(-31*24*time.Hour)) {
		t.Errorf("5m: %d buckets from %s", c, first)
	}
	if c, _ := count("1h"); c != days*24 {
		t.Errorf("1h: %d buckets", c)
	}
	// Daily means over the whole period from the daily level.
	ser, err := s.Series("sim-air.air_temperature", t0, end, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ser.Resolution != 24*time.Hour || len(ser.Points) != days || !ser.Simulated {
		t.Fatalf("daily: resolution %v, %d points, simulated %v", ser.Resolution, len(ser.Points), ser.Simulated)
	}
	for i, p := range ser.Points {
		var sum float64
		for j := 0; j < 144; j++ {
			sum += value(t0.Add(time.Duration(i*144+j) * 10 * time.Minute))
		}
		if p.Count != 144 || math.Abs(p.Mean-sum/144) > 1e-9 {
			t.Fatalf("day %d: %+v, want mean %v", i, p, sum/144)
		}
	}
	// 60 days ago at 5-minute step: 5-minute aggregates are gone, so the
	// answer comes from hourly aggregates.
	from := end.Add(-60 * 24 * time.Hour)
	ser, err = s.Series("sim-air.air_temperature", from, from.Add(6*time.Hour), 5*time.Minute)
	if err != nil || ser.Resolution != time.Hour || len(ser.Points) != 6 {
		t.Fatalf("60 days ago: resolution %v, %d points, %v", ser.Resolution, len(ser.Points), err)
	}
	// Yesterday at 10 minutes: 5-minute aggregates; at 1 minute: raw.
	from = end.Add(-24 * time.Hour)
	ser, err = s.Series("sim-air.air_temperature", from, end, 10*time.Minute)
	if err != nil || ser.Resolution != 5*time.Minute || len(ser.Points) != 144 || ser.Points[0].Mean != value(from) {
		t.Fatalf("yesterday: resolution %v, %d points, %v", ser.Resolution, len(ser.Points), err)
	}
	ser, err = s.Series("sim-air.air_temperature", from, end, time.Minute)
	if err != nil || ser.Resolution != 0 || len(ser.Points) != 144 || ser.Points[0].Mean != value(from) {
		t.Fatalf("yesterday: resolution %v, %d points, %v", ser.Resolution, len(ser.Points), err)
	}
}

func beUint64(k []byte) uint64 {
	var v uint64
	for _, b := range k {
		v = v<<8 | uint64(b)
	}
	return v
}

// TestKillDuringWrites runs a writer in a child process, SIGKILLs it in the
// middle of writing, and checks that every batch the child reported as
// written is in the store and the file is consistent.
func TestKillDuringWrites(t *testing.T) {
	if os.Getenv("HYPHA_STORE_CHILD") != "" {
		t.Skip("child")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "HYPHA_STORE_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := -1
	deadline := time.Now().Add(60 * time.Second)
	for sc.Scan() && time.Now().Before(deadline) {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "acked %d", &n); err == nil {
			acked = n
			if acked >= 30 {
				break
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if acked < 0 {
		t.Fatal("child acknowledged nothing")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	l, err := s.Latest("crash.power")
	if err != nil {
		t.Fatal(err)
	}
	// Batch i holds samples i*100 .. i*100+99; the last acked batch must be there.
	if got := int(l.Value); got < acked*100+99 {
		t.Fatalf("latest value %d, but batch %d (up to %d) was acknowledged", got, acked, acked*100+99)
	}
	ser, err := s.Series("crash.power", t0, t0.Add(24*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var cnt uint32
	for _, p := range ser.Points {
		cnt += p.Count
	}
	if int(cnt) < (acked+1)*100 {
		t.Fatalf("%d samples stored, %d acknowledged", cnt, (acked+1)*100)
	}
	t.Logf("killed after %d acknowledged batches; %d samples on disk", acked+1, cnt)
}

func TestCrashChild(t *testing.T) {
	path := os.Getenv("HYPHA_STORE_CHILD")
	if path == "" {
		t.Skip("only runs as the child of TestKillDuringWrites")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		batch := make([]Sample, 100)
		for j := range batch {
			n := i*100 + j
			batch[j] = Sample{Stream: "crash.power", Time: t0.Add(time.Duration(n) * time.Second), Value: float64(n)}
		}
		if err := s.Write(batch); err != nil {
			t.Fatal(err)
		}
		fmt.Println("acked " + strconv.Itoa(i))
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, _, err := DecodeRaw([]byte{0, 1}); !errors.Is(err, obs.ErrCorrupt) {
		t.Error(err)
	}
	if _, _, err := DecodeRaw(append([]byte{0x80}, make([]byte, 8)...)); !errors.Is(err, obs.ErrCorrupt) {
		t.Error(err)
	}
	a := agg{}
	a.add(3, true)
	a.add(-1, true)
	c, mn, mx, sum, sim, err := DecodeAggregate(a.encode())
	if err != nil || c != 2 || mn != -1 || mx != 3 || sum != 2 || !sim {
		t.Errorf("roundtrip %v %v %v %v %v %v", c, mn, mx, sum, sim, err)
	}
	bad := a.encode()
	bad[1], bad[2], bad[3], bad[4] = 0, 0, 0, 0
	if _, _, _, _, _, err := DecodeAggregate(bad); !errors.Is(err, obs.ErrCorrupt) {
		t.Error("count 0 accepted")
	}
}

func FuzzDecodeRaw(f *testing.F) {
	f.Add(encodeRaw(21.5, false))
	f.Add(encodeRaw(-3, true))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, sim, err := DecodeRaw(b)
		if err != nil {
			return
		}
		again, sim2, err := DecodeRaw(encodeRaw(v, sim))
		if err != nil || again != v || sim2 != sim {
			t.Fatalf("%x: roundtrip %v/%v -> %v/%v %v", b, v, sim, again, sim2, err)
		}
	})
}

func FuzzDecodeAggregate(f *testing.F) {
	a := agg{}
	a.add(1, false)
	a.add(2, false)
	f.Add(a.encode())
	f.Add(make([]byte, aggLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, mn, mx, sum, _, err := DecodeAggregate(b)
		if err != nil {
			return
		}
		if c == 0 || mn > mx || math.IsNaN(sum) {
			t.Fatalf("%x accepted as count %d min %v max %v sum %v", b, c, mn, mx, sum)
		}
	})
}
