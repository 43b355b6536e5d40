package flash

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo, reduced to what the
// safety checks need.
type mountEntry struct {
	dev        uint64 // st_dev of the filesystem (major:minor field)
	mountPoint string
	source     string // mount source after " - fstype ", e.g. /dev/sda1
}

// parseMountInfo reads the mountinfo format of proc(5). Lines it cannot
// parse are skipped: a safety check must not fail open on a weird line, so
// callers also look at sources and swaps.
func parseMountInfo(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		var maj, min uint32
		if _, err := fmt.Sscanf(fields[2], "%d:%d", &maj, &min); err != nil {
			continue
		}
		e := mountEntry{dev: unix.Mkdev(maj, min), mountPoint: unescapeMount(fields[4])}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				e.source = unescapeMount(fields[i+2])
				break
			}
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts %s: %w", path, err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for space, ...) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RefusedError says why a target is refused. It wraps ErrSystemDisk,
// ErrMounted, ErrPartition or ErrNotDevice.
type RefusedError struct {
	Device string
	Why    string // e.g. "sdb1 is mounted on /media/stick"
	Kind   error
}

// Error says which device, why, and what to do.
func (e *RefusedError) Error() string {
	advice := ""
	switch e.Kind {
	case ErrMounted:
		advice = "; unmount it first"
	case ErrPartition:
		advice = "; give the whole disk"
	}
	return e.Device + ": " + e.Why + advice + ": " + e.Kind.Error()
}

// Unwrap returns Kind.
func (e *RefusedError) Unwrap() error { return e.Kind }

// checker resolves block devices through sysfs.
type checker struct {
	sys       string // sysfs root, normally /sys
	mountInfo string // normally /proc/self/mountinfo
	swaps     string // normally /proc/swaps
}

// sysPath returns the real sysfs directory of block device dev
// (…/block/sda or …/block/sda/sda1), or "" if sysfs does not know it.
func (c checker) sysPath(dev uint64) string {
	link := filepath.Join(c.sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)))
	p, err := filepath.EvalSymlinks(link)
	if err != nil {
		return ""
	}
	return p
}

// underlying returns the sysfs paths of p and, for stacked devices (device
// mapper, md raid, loop-on-dm), every device below it via slaves/.
func (c checker) underlying(p string) []string {
	out := []string{}
	seen := map[string]bool{}
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		if p == "" || seen[p] || depth > 16 {
			return
		}
		seen[p] = true
		out = append(out, p)
		ents, _ := os.ReadDir(filepath.Join(p, "slaves"))
		for _, e := range ents {
			if q, err := filepath.EvalSymlinks(filepath.Join(p, "slaves", e.Name())); err == nil {
				walk(q, depth+1)
			}
		}
	}
	walk(p, 0)
	return out
}

// within reports whether sysfs path p is disk or one of its partitions.
func within(p, disk string) bool {
	return p == disk || strings.HasPrefix(p, disk+"/")
}

// devOf returns the device number of a /dev path, or 0.
func devOf(path string) uint64 {
	var st unix.Stat_t
	if !strings.HasPrefix(path, "/dev/") || unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0
	}
	return st.Rdev
}

// checkBlock refuses a block device that is a partition, holds the root
// filesystem, or has anything mounted or swapped on it (directly or through
// device mapper / md on top of it).
func (c checker) checkBlock(device string, rdev uint64) error {
	disk := c.sysPath(rdev)
	if disk == "" {
		return &RefusedError{device, fmt.Sprintf("device %d:%d unknown to %s/dev/block", unix.Major(rdev), unix.Minor(rdev), c.sys), ErrNotDevice}
	}
	if _, err := os.Stat(filepath.Join(disk, "partition")); err == nil {
		return &RefusedError{device, fmt.Sprintf("is partition %s of disk %s", filepath.Base(disk), filepath.Base(filepath.Dir(disk))), ErrPartition}
	}
	mounts, err := parseMountInfo(c.mountInfo)
	if err != nil {
		return err
	}
	type use struct {
		dev  uint64
		what string
	}
	var uses []use
	for _, m := range mounts {
		what := "mounted on " + m.mountPoint
		if m.mountPoint == "/" {
			what = "root filesystem"
		}
		uses = append(uses, use{m.dev, what})
		if d := devOf(m.source); d != 0 && d != m.dev {
			uses = append(uses, use{d, what})
		}
	}
	if b, err := os.ReadFile(c.swaps); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				if d := devOf(f[0]); d != 0 {
					uses = append(uses, use{d, "swap"})
				}
			}
		}
	}
	// Root first, so the system disk gets its own, clearer error.
	for pass := 0; pass < 2; pass++ {
		for _, u := range uses {
			if (pass == 0) != (u.what == "root filesystem") {
				continue
			}
			for _, p := range c.underlying(c.sysPath(u.dev)) {
				if !within(p, disk) {
					continue
				}
				if pass == 0 {
					return &RefusedError{device, fmt.Sprintf("holds the running system's root filesystem (%s)", filepath.Base(p)), ErrSystemDisk}
				}
				return &RefusedError{device, fmt.Sprintf("%s is %s", filepath.Base(p), u.what), ErrMounted}
			}
		}
	}
	return nil
}
