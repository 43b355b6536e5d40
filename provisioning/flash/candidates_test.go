package flash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCandidatesFakeSysfs(t *testing.T) {
	root := t.TempDir()
	type disk struct {
		name, devpath, majmin, size, removable, model string
		parts                                         map[string]string // name -> maj:min
	}
	disks := []disk{
		{"vda", "devices/pci0/virtio1/block/vda", "254:0", "536870912", "0", "", nil},
		{"sda", "devices/pci0/usb1/1-1/host0/block/sda", "8:0", "61341696", "1", "SanDisk Cruzer", map[string]string{"sda1": "8:1"}},
		{"sdb", "devices/pci0/usb1/1-2/host1/block/sdb", "8:16", "15728640", "1", "Kingston DT", nil},
		{"sdc", "devices/pci0/usb1/1-3/host2/block/sdc", "8:32", "0", "1", "card reader", nil},
		{"loop0", "devices/virtual/block/loop0", "7:0", "2048", "0", "", nil},
	}
	os.MkdirAll(filepath.Join(root, "block"), 0o755)
	os.MkdirAll(filepath.Join(root, "dev", "block"), 0o755)
	for _, d := range disks {
		dir := filepath.Join(root, d.devpath)
		os.MkdirAll(filepath.Join(dir, "device"), 0o755)
		os.WriteFile(filepath.Join(dir, "dev"), []byte(d.majmin+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "size"), []byte(d.size+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "removable"), []byte(d.removable+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "device", "model"), []byte(d.model+"\n"), 0o644)
		rel, _ := filepath.Rel(filepath.Join(root, "block"), dir)
		os.Symlink(rel, filepath.Join(root, "block", d.name))
		rel, _ = filepath.Rel(filepath.Join(root, "dev", "block"), dir)
		os.Symlink(rel, filepath.Join(root, "dev", "block", d.majmin))
		for p, mm := range d.parts {
			pd := filepath.Join(dir, p)
			os.MkdirAll(pd, 0o755)
			os.WriteFile(filepath.Join(pd, "partition"), []byte("1\n"), 0o644)
			rel, _ := filepath.Rel(filepath.Join(root, "dev", "block"), pd)
			os.Symlink(rel, filepath.Join(root, "dev", "block", mm))
		}
	}
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte("22 1 254:0 / / rw - ext4 /dev/vda rw\n40 22 8:1 / /media/stick rw - vfat /dev/sda1 rw\n"), 0o644)
	got, err := Candidates(Options{SysRoot: root, MountInfo: mi, Swaps: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range got {
		lines = append(lines, strings.Join([]string{c.Device, c.Model, c.Refused}, "|"))
		if c.Device == "/dev/sdb" && (!c.USB || !c.Removable || c.SizeBytes != 15728640*512) {
			t.Errorf("sdb %+v", c)
		}
	}
	want := []string{
		"/dev/sdb|Kingston DT|",                                   // flashable USB stick first
		"/dev/sda|SanDisk Cruzer|sda1 is mounted on /media/stick", // mounted stick
		"/dev/vda||holds the running system's root filesystem (vda)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("candidates:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestCandidatesLive(t *testing.T) {
	got, err := Candidates(Options{})
	if err != nil {
		t.Skipf("no /sys/block here: %v", err)
	}
	if d := rootDisk(t); d != "" {
		for _, c := range got {
			if c.Device == d && c.Refused == "" {
				t.Fatalf("system disk %s listed as flashable", d)
			}
		}
	}
}
