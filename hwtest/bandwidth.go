package hwtest

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// BandwidthTrials is the number of timed trials MeasureBandwidth splits its
// budget into; like STREAM it reports the best one, which keeps the figure
// about the hardware rather than about how busy the CPUs were.
const BandwidthTrials = 10

// MeasureBandwidth measures memory copy bandwidth with one goroutine per
// CPU (at most 16), each copying between two private buffers of perThread
// bytes. After a warm-up copy it runs BandwidthTrials trials of
// budget/BandwidthTrials (at least 10 ms) and returns the best trial's
// bytes moved per second in STREAM convention (a copy of n bytes moves 2n:
// n read, n written), the number of threads, and the total measured time.
// Memory use is 2·threads·perThread, shrunk to a quarter of available when
// that is known. Safe for concurrent use (each call has its own buffers).
func MeasureBandwidth(ctx context.Context, budget time.Duration, perThread int, available uint64) (float64, int, time.Duration) {
	threads := min(runtime.GOMAXPROCS(0), 16)
	if available > 0 {
		for threads > 1 && uint64(2*threads*perThread) > available/4 {
			if perThread > 8<<20 {
				perThread /= 2
			} else {
				threads--
			}
		}
		for perThread > 1<<20 && uint64(2*threads*perThread) > available/4 {
			perThread /= 2
		}
	}
	// Workers copy in 1 MiB steps and check the trial deadline themselves:
	// a goroutine inside a large memmove cannot be preempted, so a stop
	// flag set by a timer could wait a long time for a busy CPU.
	const step = 1 << 20
	perThread = max(perThread/step, 1) * step
	var (
		ready, done sync.WaitGroup
		starts      = make([]chan time.Time, threads)
		results     = make(chan int64, threads)
	)
	for i := range threads {
		starts[i] = make(chan time.Time)
		ready.Add(1)
		done.Add(1)
		go func(start <-chan time.Time) {
			defer done.Done()
			src, dst := make([]byte, perThread), make([]byte, perThread)
			for i := 0; i < len(src); i += 4096 {
				src[i] = byte(i)
			}
			copy(dst, src) // fault in both buffers
			ready.Done()
			off := 0
			for deadline := range start {
				var n int64
				for {
					copy(dst[off:off+step], src[off:off+step])
					off = (off + step) % perThread
					n += 2 * step
					if n%(4*step) == 0 && time.Now().After(deadline) {
						break
					}
				}
				results <- n
			}
		}(starts[i])
	}
	ready.Wait()
	trial := max(budget/BandwidthTrials, 10*time.Millisecond)
	var best float64
	t0 := time.Now()
	for t := 0; t < BandwidthTrials && ctx.Err() == nil; t++ {
		ts := time.Now()
		for _, s := range starts {
			s <- ts.Add(trial)
		}
		var moved int64
		for range threads {
			moved += <-results
		}
		if el := time.Since(ts).Seconds(); el > 0 {
			best = max(best, float64(moved)/el)
		}
	}
	took := time.Since(t0)
	for _, s := range starts {
		close(s)
	}
	done.Wait()
	return best, threads, took
}
