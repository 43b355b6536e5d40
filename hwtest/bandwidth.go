package hwtest

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// BandwidthTrials is the number of timed trials MeasureBandwidth splits its
// budget into (half copy, half read); like STREAM it reports the best trial
// of each kind, which keeps the figure about the hardware rather than about
// how busy the CPUs were.
const BandwidthTrials = 10

// Bandwidth is the outcome of MeasureBandwidth.
type Bandwidth struct {
	// Copy is bytes moved per second by copy() in STREAM convention (a
	// copy of n bytes moves 2n: n read, n written).
	Copy float64
	// Read is bytes read per second by a summing loop: the access pattern
	// of decoding, which streams the weights and writes little.
	Read    float64
	Threads int
	Took    time.Duration
}

// MeasureBandwidth measures memory bandwidth with one goroutine per CPU (at
// most 16), each working on two private buffers of perThread bytes. After a
// warm-up pass it runs BandwidthTrials trials of budget/BandwidthTrials (at
// least 10 ms), alternating copy and read, and keeps the best of each.
// Memory use is 2·threads·perThread, shrunk to a quarter of available when
// that is known. Safe for concurrent use (each call has its own buffers).
func MeasureBandwidth(ctx context.Context, budget time.Duration, perThread int, available uint64) Bandwidth {
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
	// Workers move 1 MiB steps and check the trial deadline themselves: a
	// goroutine inside a large memmove cannot be preempted, so a stop flag
	// set by a timer could wait a long time for a busy CPU.
	const step = 1 << 20 / 8 // in uint64 words
	words := max(perThread/8/step, 1) * step
	type job struct {
		deadline time.Time
		read     bool
	}
	var (
		ready, done sync.WaitGroup
		starts      = make([]chan job, threads)
		results     = make(chan int64, threads)
		sinkMu      sync.Mutex
		sink        uint64
	)
	for i := range threads {
		starts[i] = make(chan job)
		ready.Add(1)
		done.Add(1)
		go func(start <-chan job) {
			defer done.Done()
			src, dst := make([]uint64, words), make([]uint64, words)
			for i := range src {
				src[i] = uint64(i)
			}
			copy(dst, src) // fault in both buffers
			ready.Done()
			off := 0
			var s0, s1, s2, s3 uint64
			for j := range start {
				var n int64
				for k := 1; ; k++ {
					part := src[off : off+step]
					if j.read {
						for i := 0; i+4 <= len(part); i += 4 {
							s0 += part[i]
							s1 += part[i+1]
							s2 += part[i+2]
							s3 += part[i+3]
						}
						n += 8 * step
					} else {
						copy(dst[off:off+step], part)
						n += 2 * 8 * step
					}
					off = (off + step) % words
					if k%4 == 0 && time.Now().After(j.deadline) {
						break
					}
				}
				results <- n
			}
			sinkMu.Lock()
			sink += s0 + s1 + s2 + s3 // keep the read loop from being optimised away
			sinkMu.Unlock()
		}(starts[i])
	}
	ready.Wait()
	trial := max(budget/BandwidthTrials, 10*time.Millisecond)
	bw := Bandwidth{Threads: threads}
	t0 := time.Now()
	for t := 0; t < BandwidthTrials && ctx.Err() == nil; t++ {
		read := t%2 == 1
		ts := time.Now()
		for _, s := range starts {
			s <- job{ts.Add(trial), read}
		}
		var moved int64
		for range threads {
			moved += <-results
		}
		if el := time.Since(ts).Seconds(); el > 0 {
			if r := float64(moved) / el; read {
				bw.Read = max(bw.Read, r)
			} else {
				bw.Copy = max(bw.Copy, r)
			}
		}
	}
	bw.Took = time.Since(t0)
	for _, s := range starts {
		close(s)
	}
	done.Wait()
	_ = sink
	return bw
}
