package flash

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func writeImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "hypha.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestFlashToFile(t *testing.T) {
	img, want := writeImage(t, 9<<20+12345)
	out := filepath.Join(t.TempDir(), "stick.img")
	var phases []Progress
	res, err := Flash(context.Background(), img, out, Options{
		ChunkSize: 1 << 20, ProgressInterval: time.Nanosecond,
		Progress: func(p Progress) { phases = append(phases, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatal("target differs from image")
	}
	if res.Bytes != int64(len(want)) || len(res.SHA256) != 64 || res.BlockDev {
		t.Fatalf("result %+v", res)
	}
	last := map[string]Progress{}
	for _, p := range phases {
		last[p.Phase] = p
	}
	for _, ph := range []string{"write", "sync", "verify"} {
		if p, ok := last[ph]; !ok || p.Done != p.Total || p.Total != int64(len(want)) {
			t.Errorf("phase %s: last progress %+v", ph, p)
		}
	}
	if w := last["write"]; w.Rate <= 0 {
		t.Errorf("write rate %v", w.Rate)
	}
}

// faultyDevice corrupts one byte of what is written at corruptAt, or fails
// writes from failAt on: the hardware edge of a bad or pulled stick.
type faultyDevice struct {
	Device
	corruptAt int64
	failAt    int64
}

func (d *faultyDevice) WriteAt(p []byte, off int64) (int, error) {
	if d.failAt >= 0 && off+int64(len(p)) > d.failAt {
		return 0, unix.EIO
	}
	if d.corruptAt >= off && d.corruptAt < off+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[d.corruptAt-off] ^= 0x40
		return d.Device.WriteAt(q, off)
	}
	return d.Device.WriteAt(p, off)
}

func faulty(corruptAt, failAt int64) func(string, bool) (Device, error) {
	return func(p string, b bool) (Device, error) {
		d, err := OpenDevice(p, b)
		if err != nil {
			return nil, err
		}
		return &faultyDevice{Device: d, corruptAt: corruptAt, failAt: failAt}, nil
	}
}

func TestFlashDetectsCorruptWrite(t *testing.T) {
	img, _ := writeImage(t, 5<<20)
	out := filepath.Join(t.TempDir(), "stick.img")
	_, err := Flash(context.Background(), img, out, Options{ChunkSize: 1 << 20, Open: faulty(3<<20+77, -1)})
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "byte 3145805 read back as") {
		t.Fatalf("err = %v, want ErrVerify naming the bad range", err)
	}
}

func TestFlashInterrupted(t *testing.T) {
	img, _ := writeImage(t, 6<<20)
	t.Run("write error", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "stick.img")
		res, err := Flash(context.Background(), img, out, Options{ChunkSize: 1 << 20, Open: faulty(-1, 2<<20)})
		if !errors.Is(err, ErrInterrupted) || res.Bytes != 2<<20 || !strings.Contains(err.Error(), "write at 2097152 of 6291456 bytes") {
			t.Fatalf("err = %v, bytes %d", err, res.Bytes)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "stick.img")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		res, err := Flash(ctx, img, out, Options{ChunkSize: 1 << 20, ProgressInterval: time.Nanosecond,
			Progress: func(p Progress) {
				if p.Phase == "write" && p.Done >= 3<<20 {
					cancel()
				}
			}})
		if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) || res.Bytes != 3<<20 {
			t.Fatalf("err = %v, bytes %d", err, res.Bytes)
		}
	})
}

func TestFlashRefusesSameFile(t *testing.T) {
	img, _ := writeImage(t, 1<<20)
	if _, err := Flash(context.Background(), img, img, Options{}); !errors.Is(err, ErrSameFile) {
		t.Fatalf("err = %v", err)
	}
	empty, _ := writeImage(t, 0)
	out := filepath.Join(t.TempDir(), "stick")
	if _, err := Flash(context.Background(), empty, out, Options{}); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty image: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("target created for an empty image")
	}
}

// fakeSys builds a sysfs tree: sda (sda1, sda2), sdb (sdb1) with dm-0 on
// sdb1, and vda holding /.
func fakeSys(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	devs := map[string]string{ // maj:min -> path under devices/
		"8:0": "pci0/block/sda", "8:1": "pci0/block/sda/sda1", "8:2": "pci0/block/sda/sda2",
		"8:16": "pci1/block/sdb", "8:17": "pci1/block/sdb/sdb1",
		"254:0": "virtual/block/vda", "252:0": "virtual/block/dm-0",
	}
	for mm, p := range devs {
		full := filepath.Join(root, "devices", p)
		os.MkdirAll(full, 0o755)
		if b := filepath.Base(p); b == "sda1" || b == "sda2" || b == "sdb1" {
			os.WriteFile(filepath.Join(full, "partition"), []byte("1\n"), 0o644)
		}
		os.MkdirAll(filepath.Join(root, "dev", "block"), 0o755)
		os.Symlink(filepath.Join("..", "..", "devices", p), filepath.Join(root, "dev", "block", mm))
	}
	os.MkdirAll(filepath.Join(root, "devices/virtual/block/dm-0/slaves"), 0o755)
	os.Symlink("../../../../pci1/block/sdb/sdb1", filepath.Join(root, "devices/virtual/block/dm-0/slaves/sdb1"))
	return root
}

func TestCheckerFakeSysfs(t *testing.T) {
	sys := fakeSys(t)
	mi := func(lines ...string) string {
		p := filepath.Join(t.TempDir(), "mountinfo")
		os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		return p
	}
	root := "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw"
	proc := "23 22 0:5 / /proc rw - proc proc rw"
	for _, tc := range []struct {
		name   string
		target uint64
		mounts string
		want   error
		msg    string
	}{
		{"idle disk", unix.Mkdev(8, 0), mi(root, proc), nil, ""},
		{"system disk", unix.Mkdev(254, 0), mi(root, proc), ErrSystemDisk, "root filesystem (vda)"},
		{"mounted partition", unix.Mkdev(8, 0), mi(root, `40 22 8:2 / /media/my\040stick rw - vfat /dev/sda2 rw`), ErrMounted, "sda2 is mounted on /media/my stick"},
		{"dm on a partition", unix.Mkdev(8, 16), mi(root, "41 22 252:0 / /srv rw - ext4 /dev/mapper/x rw"), ErrMounted, "sdb1 is mounted on /srv"},
		{"partition target", unix.Mkdev(8, 1), mi(root), ErrPartition, "partition sda1 of disk sda"},
		{"unknown device", unix.Mkdev(9, 9), mi(root), ErrNotDevice, "unknown to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := checker{sys: sys, mountInfo: tc.mounts, swaps: "/nonexistent"}
			err := c.checkBlock("/dev/x", tc.target)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

// --- real block devices (root, losetup) ---

func needLoop(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("loop devices: not in -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	for _, c := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDevice attaches a fresh sparse file of size bytes (with an MBR holding
// one partition when partitioned) and detaches it on cleanup.
func loopDevice(t *testing.T, size int64, partitioned bool) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	if partitioned {
		mbr := make([]byte, 512)
		e := mbr[446:]
		e[4] = 0x83 // Linux
		binary.LittleEndian.PutUint32(e[8:], 2048)
		binary.LittleEndian.PutUint32(e[12:], uint32(size/512-2048))
		mbr[510], mbr[511] = 0x55, 0xaa
		f.WriteAt(mbr, 0)
	}
	f.Close()
	args := []string{"--find", "--show"}
	if partitioned {
		args = append(args, "--partscan")
	}
	dev = run(t, "losetup", append(args, backing)...)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, backing
}

func TestFlashLoopDevice(t *testing.T) {
	needLoop(t)
	dev, backing := loopDevice(t, 48<<20, false)
	img, want := writeImage(t, 20<<20+4096)
	res, err := Flash(context.Background(), img, dev, Options{ChunkSize: 1 << 20, SyncEvery: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !res.BlockDev {
		t.Fatal("loop device not seen as a block device")
	}
	got := make([]byte, len(want))
	f, _ := os.Open(backing)
	defer f.Close()
	io.ReadFull(f, got)
	if !bytes.Equal(got, want) {
		t.Fatal("backing file differs from the image")
	}
	// Too big for the device.
	big, _ := writeImage(t, 49<<20)
	if _, err := Flash(context.Background(), big, dev, Options{}); !errors.Is(err, ErrTooSmall) {
		t.Fatalf("oversized image: %v", err)
	}
	// A corrupt write on a real block device is caught too.
	if _, err := Flash(context.Background(), img, dev, Options{ChunkSize: 1 << 20, Open: faulty(5<<20, -1)}); !errors.Is(err, ErrVerify) {
		t.Fatalf("corrupt loop write: %v", err)
	}
}

func TestFlashRefusesMountedLoop(t *testing.T) {
	needLoop(t)
	dev, backing := loopDevice(t, 32<<20, true)
	part := dev + "p1"
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(part); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Skipf("%s did not appear (no loop partition scanning here)", part)
		}
		time.Sleep(50 * time.Millisecond)
	}
	run(t, "mkfs.ext4", "-q", "-F", part)
	mnt := t.TempDir()
	run(t, "mount", part, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	before, _ := os.ReadFile(backing)

	img, _ := writeImage(t, 1<<20)
	opened := false
	_, err := Flash(context.Background(), img, dev, Options{Open: func(p string, b bool) (Device, error) {
		opened = true
		return OpenDevice(p, b)
	}})
	if !errors.Is(err, ErrMounted) || !strings.Contains(err.Error(), fmt.Sprintf("%s is mounted on %s", filepath.Base(part), mnt)) {
		t.Fatalf("err = %v, want ErrMounted naming %s", err, part)
	}
	if opened {
		t.Fatal("device opened despite the refusal")
	}
	if _, err := Flash(context.Background(), img, part, Options{}); !errors.Is(err, ErrPartition) {
		t.Fatalf("partition target: %v", err)
	}
	after, _ := os.ReadFile(backing)
	if !bytes.Equal(before, after) {
		t.Fatal("mounted disk was modified")
	}
	// The kernel's own guard: O_EXCL on a disk with a mounted partition.
	if _, err := OpenDevice(dev, true); !errors.Is(err, ErrMounted) {
		t.Fatalf("O_EXCL open of a mounted disk: %v", err)
	}
}

// rootDisk returns /dev/<disk> of the disk holding /, or "" if / is not on
// a plain block device here.
func rootDisk(t *testing.T) string {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return ""
	}
	c := checker{sys: "/sys"}
	p := c.sysPath(st.Dev)
	if p == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
		p = filepath.Dir(p)
	}
	d := "/dev/" + filepath.Base(p)
	if _, err := os.Stat(d); err != nil {
		return ""
	}
	return d
}

func TestFlashRefusesSystemDisk(t *testing.T) {
	d := rootDisk(t)
	if d == "" {
		t.Skip("/ is not on a block device visible here")
	}
	img, _ := writeImage(t, 1<<20)
	_, err := Flash(context.Background(), img, d, Options{Open: func(string, bool) (Device, error) {
		t.Fatalf("Flash opened the system disk %s", d)
		return nil, nil
	}})
	if !errors.Is(err, ErrSystemDisk) {
		t.Fatalf("flash to %s: %v, want ErrSystemDisk", d, err)
	}
}
