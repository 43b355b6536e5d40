// Package flash writes an appliance image to a USB stick or disk, refusing
// mounted disks and the system disk, and verifies it by reading it back.
package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Device is the edge the flasher writes to: a block device or a regular
// file. Tests wrap it to inject faults.
type Device interface {
	io.WriterAt
	io.ReaderAt
	// Sync flushes written data to the medium.
	Sync() error
	Close() error
}

// cacheDropper is implemented by devices that can drop their page cache so
// the read-back comes from the medium, not from memory.
type cacheDropper interface{ DropCache() error }

// Progress is a snapshot of a running flash.
type Progress struct {
	Phase     string // "write", "sync" or "verify"
	Done      int64  // bytes of this phase done
	Total     int64  // bytes of this phase in all
	Elapsed   time.Duration
	Rate      float64       // bytes per second over the phase so far
	Remaining time.Duration // estimate for the phase; 0 when unknown
}

// Options tune Flash. The zero value flashes real devices with defaults.
type Options struct {
	// Progress, when set, is called at most every ProgressInterval during a
	// phase and once at its end, from one goroutine at a time (never
	// concurrently), not necessarily the caller's.
	Progress func(Progress)
	// ProgressInterval defaults to 500 ms.
	ProgressInterval time.Duration
	// ChunkSize is the unit of writes and of read-back comparison;
	// default 4 MiB.
	ChunkSize int
	// SyncEvery flushes the device every so many bytes so the progress
	// shows the medium's speed rather than the page cache's; default 64 MiB.
	SyncEvery int64
	// Open opens the target after the safety checks; default OpenDevice.
	Open func(path string, isBlock bool) (Device, error)
	// SysRoot, MountInfo and Swaps default to /sys, /proc/self/mountinfo
	// and /proc/swaps.
	SysRoot, MountInfo, Swaps string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = 500 * time.Millisecond
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 4 << 20
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = 64 << 20
	}
	if o.Open == nil {
		o.Open = OpenDevice
	}
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.MountInfo == "" {
		o.MountInfo = "/proc/self/mountinfo"
	}
	if o.Swaps == "" {
		o.Swaps = "/proc/swaps"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Result describes a finished, verified flash.
type Result struct {
	Bytes      int64
	SHA256     string // of the image, equal to what was read back
	BlockDev   bool   // the target was a block device
	WriteTime  time.Duration
	VerifyTime time.Duration
}

// Target describes a target that passed the safety checks.
type Target struct {
	Path    string
	IsBlock bool
	Size    int64 // capacity of a block device; 0 for a file
}

// Check runs the safety checks on target without writing: it returns
// ErrSystemDisk, ErrMounted, ErrPartition or ErrNotDevice (wrapped) when
// flashing it must be refused. A missing path is a new regular file.
func Check(target string, o Options) (Target, error) {
	o.defaults()
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Target{Path: target}, nil
		}
		return Target{}, fmt.Errorf("check %s: %w", target, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return Target{Path: target}, nil
	case unix.S_IFBLK:
	default:
		return Target{}, fmt.Errorf("check %s: %w", target, ErrNotDevice)
	}
	c := checker{sys: o.SysRoot, mountInfo: o.MountInfo, swaps: o.Swaps}
	if err := c.checkBlock(target, st.Rdev); err != nil {
		return Target{}, fmt.Errorf("check: %w", err)
	}
	size, err := blockSize(target)
	if err != nil {
		return Target{}, fmt.Errorf("check %s: %w", target, err)
	}
	return Target{Path: target, IsBlock: true, Size: size}, nil
}

func blockSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// Seeking to the end of a block device yields its capacity.
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return n, nil
}

// fileDevice is the default Device.
type fileDevice struct {
	*os.File
	block bool
}

// OpenDevice opens a target for writing and reading back. A block device is
// opened with O_EXCL, which the kernel refuses (EBUSY) while anything has it
// mounted; a regular file is created or truncated.
func OpenDevice(path string, isBlock bool) (Device, error) {
	if isBlock {
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.EBUSY) {
				return nil, fmt.Errorf("open %s: busy (in use by the kernel): %w", path, ErrMounted)
			}
			return nil, err
		}
		return &fileDevice{File: f, block: true}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileDevice{File: f}, nil
}

// DropCache evicts the device's cached pages so reads come from the medium.
func (d *fileDevice) DropCache() error {
	if d.block {
		if err := unix.IoctlSetInt(int(d.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("BLKFLSBUF: %w", err)
		}
	}
	return unix.Fadvise(int(d.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// meter paces progress reports.
type meter struct {
	o     *Options
	phase string
	total int64
	start time.Time
	last  time.Time
}

func newMeter(o *Options, phase string, total int64) *meter {
	now := time.Now()
	return &meter{o: o, phase: phase, total: total, start: now, last: now}
}

func (m *meter) report(done int64, final bool) {
	if m.o.Progress == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(m.last) < m.o.ProgressInterval {
		return
	}
	m.last = now
	p := Progress{Phase: m.phase, Done: done, Total: m.total, Elapsed: now.Sub(m.start)}
	if s := p.Elapsed.Seconds(); s > 0 {
		p.Rate = float64(done) / s
	}
	if p.Rate > 0 && done < m.total {
		p.Remaining = time.Duration(float64(m.total-done) / p.Rate * float64(time.Second))
	}
	m.o.Progress(p)
}

// Flash copies image to target, syncs it, reads it back and compares it with
// the image chunk by chunk (SHA-256). Concurrent calls on different targets
// are safe; o.Progress is never called concurrently within one call. It refuses targets Check refuses. When
// ctx is cancelled or a write fails mid-way it returns ErrInterrupted with
// the number of bytes written. On success the stick is safe to remove.
func Flash(ctx context.Context, image, target string, o Options) (Result, error) {
	o.defaults()
	img, err := os.Open(image)
	if err != nil {
		return Result{}, fmt.Errorf("flash: %w", err)
	}
	defer img.Close()
	ist, err := img.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("flash: %w", err)
	}
	if !ist.Mode().IsRegular() {
		return Result{}, fmt.Errorf("flash: image %s is not a regular file", image)
	}
	if ist.Size() == 0 {
		return Result{}, fmt.Errorf("flash: image %s is empty", image)
	}
	if tst, err := os.Stat(target); err == nil && os.SameFile(ist, tst) {
		return Result{}, fmt.Errorf("flash %s to %s: %w", image, target, ErrSameFile)
	}
	tgt, err := Check(target, o)
	if err != nil {
		return Result{}, fmt.Errorf("flash: %w", err)
	}
	size := ist.Size()
	if tgt.IsBlock && size > tgt.Size {
		return Result{}, fmt.Errorf("flash: image %s is %d bytes, %s holds %d: %w", image, size, target, tgt.Size, ErrTooSmall)
	}
	dev, err := o.Open(target, tgt.IsBlock)
	if err != nil {
		return Result{}, fmt.Errorf("flash: %w", err)
	}
	res, err := flashTo(ctx, img, size, dev, &o)
	cerr := dev.Close()
	if err == nil && cerr != nil {
		err = fmt.Errorf("flash: close %s: %w", target, cerr)
	}
	res.BlockDev = tgt.IsBlock
	if err != nil {
		return res, fmt.Errorf("flash %s to %s: %w", image, target, err)
	}
	o.Logger.Info("flash verified", "image", image, "target", target, "bytes", res.Bytes, "sha256", res.SHA256)
	return res, nil
}

// depth is the number of chunks in flight in each phase's pipeline.
const depth = 4

type chunk struct {
	off  int64
	n    int
	a, b []byte
}

// flashTo runs the two phases as pipelines so hashing overlaps the I/O:
// write = read image → SHA-256 → write device; verify = read device and
// image → compare bytes, SHA-256 of what came back.
func flashTo(ctx context.Context, img io.ReaderAt, size int64, dev Device, o *Options) (Result, error) {
	csize := int64(o.ChunkSize)
	whole := sha256.New()
	var written atomic.Int64
	m := newMeter(o, "write", size)
	start := time.Now()

	g, gctx := errgroup.WithContext(ctx)
	free := make(chan []byte, depth)
	for range depth {
		free <- make([]byte, csize)
	}
	toHash, toWrite := make(chan chunk, depth), make(chan chunk, depth)
	g.Go(func() error { // read the image
		defer close(toHash)
		for off := int64(0); off < size; off += csize {
			var buf []byte
			select {
			case buf = <-free:
			case <-gctx.Done():
				return gctx.Err()
			}
			n := int(min(csize, size-off))
			if _, err := img.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
				return fmt.Errorf("read image at %d: %v: %w", off, err, ErrInterrupted)
			}
			toHash <- chunk{off: off, n: n, a: buf}
		}
		return nil
	})
	g.Go(func() error { // hash it
		defer close(toWrite)
		for c := range toHash {
			whole.Write(c.a[:c.n])
			select {
			case toWrite <- c:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error { // write it; the only goroutine reporting progress
		var sinceSync int64
		for c := range toWrite {
			if err := gctx.Err(); err != nil {
				return err
			}
			if _, err := dev.WriteAt(c.a[:c.n], c.off); err != nil {
				return fmt.Errorf("write at %d of %d bytes: %v: %w", c.off, size, err, ErrInterrupted)
			}
			done := written.Add(int64(c.n))
			sinceSync += int64(c.n)
			if sinceSync >= o.SyncEvery {
				if err := dev.Sync(); err != nil {
					return fmt.Errorf("sync at %d: %v: %w", done, err, ErrInterrupted)
				}
				sinceSync = 0
			}
			m.report(done, false)
			free <- c.a
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		off := written.Load()
		if ctx.Err() != nil {
			return Result{Bytes: off}, fmt.Errorf("after %d of %d bytes: %w (%w)", off, size, ErrInterrupted, ctx.Err())
		}
		return Result{Bytes: off}, err
	}
	m.report(size, true)
	sm := newMeter(o, "sync", size)
	if err := dev.Sync(); err != nil {
		return Result{Bytes: size}, fmt.Errorf("final sync: %v: %w", err, ErrInterrupted)
	}
	sm.report(size, true)
	res := Result{Bytes: size, SHA256: hex.EncodeToString(whole.Sum(nil)), WriteTime: time.Since(start)}

	if d, ok := dev.(cacheDropper); ok {
		if err := d.DropCache(); err != nil {
			o.Logger.Warn("flash: cannot drop the page cache; read-back may come from memory", "err", err)
		}
	}
	if err := verify(ctx, img, size, dev, o, res.SHA256); err != nil {
		return res, err
	}
	res.VerifyTime = time.Since(start) - res.WriteTime
	return res, nil
}

func verify(ctx context.Context, img io.ReaderAt, size int64, dev Device, o *Options, want string) error {
	csize := int64(o.ChunkSize)
	vm := newMeter(o, "verify", size)
	back := sha256.New()
	g, gctx := errgroup.WithContext(ctx)
	type pair struct{ a, b []byte }
	free := make(chan pair, depth)
	for range depth {
		free <- pair{make([]byte, csize), make([]byte, csize)}
	}
	toCheck := make(chan chunk, depth)
	g.Go(func() error { // read device and image
		defer close(toCheck)
		for off := int64(0); off < size; off += csize {
			var p pair
			select {
			case p = <-free:
			case <-gctx.Done():
				return gctx.Err()
			}
			n := int(min(csize, size-off))
			if _, err := dev.ReadAt(p.a[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
				return fmt.Errorf("read back at %d: %v: %w", off, err, ErrVerify)
			}
			if _, err := img.ReadAt(p.b[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
				return fmt.Errorf("re-read image at %d: %w", off, err)
			}
			toCheck <- chunk{off: off, n: n, a: p.a, b: p.b}
		}
		return nil
	})
	g.Go(func() error { // compare and hash
		for c := range toCheck {
			if !bytes.Equal(c.a[:c.n], c.b[:c.n]) {
				i := 0
				for c.a[i] == c.b[i] {
					i++
				}
				return fmt.Errorf("byte %d read back as %#02x, the image has %#02x (bad medium or fake capacity): %w",
					c.off+int64(i), c.a[i], c.b[i], ErrVerify)
			}
			back.Write(c.a[:c.n])
			vm.report(c.off+int64(c.n), false)
			free <- pair{c.a, c.b}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("verify cancelled: the image is written but NOT verified: %w", ctx.Err())
		}
		return err
	}
	vm.report(size, true)
	if got := hex.EncodeToString(back.Sum(nil)); got != want {
		return fmt.Errorf("read-back SHA-256 %s, image %s: %w", got, want, ErrVerify)
	}
	return nil
}
