package hwtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// probeDisks lists whole disks from /sys/block (skipping loop, ram, zram and
// device-mapper devices) and measures a bounded sequential read of each.
func (p *Prober) probeDisks(ctx context.Context) ([]Disk, error) {
	ents, err := os.ReadDir(p.path("sys/block"))
	if err != nil {
		return nil, err
	}
	out := []Disk{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") ||
			strings.HasPrefix(name, "dm-") || strings.HasPrefix(name, "md") || strings.HasPrefix(name, "nbd") {
			continue
		}
		d := Disk{Name: name}
		sectors, err := p.readString("sys/block", name, "size")
		if n, perr := strconv.ParseUint(sectors, 10, 64); err == nil && perr == nil {
			d.SizeBytes = n * 512 // sysfs counts 512-byte sectors whatever the device's block size
		} else {
			d.Error = fmt.Sprintf("size unreadable: %v", errors.Join(err, perr))
			out = append(out, d)
			continue
		}
		if d.SizeBytes == 0 { // empty card reader, ejected medium
			continue
		}
		d.Model, _ = p.readString("sys/block", name, "device/model")
		rot, _ := p.readString("sys/block", name, "queue/rotational")
		d.Rotational = rot == "1"
		rem, _ := p.readString("sys/block", name, "removable")
		d.Removable = rem == "1"
		if p.DiskReadBytes >= 0 && ctx.Err() == nil {
			budget, limit := p.DiskReadTime, p.DiskReadBytes
			if budget <= 0 {
				budget = time.Second
			}
			if limit == 0 {
				limit = 64 << 20
			}
			rate, n, err := readProbe(ctx, p.path("dev", name), limit, budget)
			if err != nil {
				d.Error = "read probe: " + err.Error()
			} else {
				d.ReadBytesPerSec, d.ReadProbeBytes = rate, n
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// readProbe reads up to limit bytes sequentially from the start of path in
// 1 MiB requests for at most budget, bypassing the page cache with O_DIRECT
// where the file system allows it (so a second run is not served from RAM).
func readProbe(ctx context.Context, path string, limit int64, budget time.Duration) (float64, int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EINVAL) { // tmpfs and friends have no O_DIRECT
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	const blk = 1 << 20
	// O_DIRECT needs an aligned buffer: an anonymous mapping is page aligned.
	buf, err := unix.Mmap(-1, 0, blk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return 0, 0, fmt.Errorf("buffer: %w", err)
	}
	defer unix.Munmap(buf)
	var n int64
	t0 := time.Now()
	deadline := t0.Add(budget)
	// At least one request, so a tiny budget still yields a figure.
	for n < limit {
		want := int64(blk)
		if limit-n < want {
			want = (limit - n + 4095) &^ 4095 // O_DIRECT lengths stay block aligned
		}
		m, err := f.ReadAt(buf[:want], n)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, n, fmt.Errorf("read %s at %d: %w", filepath.Base(path), n, err)
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
	}
	took := time.Since(t0)
	if n == 0 || took <= 0 {
		return 0, n, fmt.Errorf("read nothing from %s", path)
	}
	return float64(n) / took.Seconds(), n, nil
}
