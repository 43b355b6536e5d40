package images_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/images"
)

// TestBuildRaspberryPiImage builds the arm64 Raspberry Pi image (it cannot
// boot in qemu: the Pi's firmware is not emulated) and checks what the Pi
// boot ROM and gokrazy read: an MBR whose disk signature the kernel
// command line names, the firmware and device trees on the FAT boot
// partition, I²C and 1-wire enabled for sensors, and arm64 programs.
func TestBuildRaspberryPiImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every program for arm64; skipped with -short")
	}
	needQemu(t) // the same host tools (mtools, mksquashfs, mkfs.ext4)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	img := filepath.Join(dir, "hypha-rpi.img")
	res, err := images.Build(ctx, images.Options{Config: loadConfig(t, "rpi"), Target: images.Targets["rpi"],
		Version: "rpi-1", Output: img, ModuleDir: "..", Size: 1300 << 20})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if mbr[510] != 0x55 || mbr[511] != 0xaa || mbr[446+4] != 0x0e || mbr[446] != 0x80 {
		t.Fatalf("MBR: signature %x, first partition type %#x, active %#x", mbr[510:512], mbr[446+4], mbr[446])
	}
	sig := binary.LittleEndian.Uint32(mbr[440:])
	bootStart := int64(binary.LittleEndian.Uint32(mbr[446+8:])) * 512
	fat := fmt.Sprintf("%s@@%d", img, bootStart)
	read := func(name string) string {
		out, err := exec.Command("mtype", "-i", fat, "::"+name).Output()
		if err != nil {
			t.Fatalf("read %s from the boot partition: %v", name, err)
		}
		return string(out)
	}
	if cmd := read("/cmdline.txt"); !strings.Contains(cmd, fmt.Sprintf("root=PARTUUID=%08x-02", sig)) {
		t.Errorf("cmdline.txt %q does not name partition 2 of disk %08x", cmd, sig)
	}
	cfg := read("/config.txt")
	for _, want := range []string{"kernel=vmlinuz", "dtparam=i2c_arm=on", "dtoverlay=w1-gpio", "arm_control=0x200"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.txt lacks %q:\n%s", want, cfg)
		}
	}
	list, err := exec.Command("mdir", "-b", "-i", fat, "::/").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"start4.elf", "fixup4.dat", "bootcode.bin", "bcm2711-rpi-4-b.dtb", "vmlinuz", "overlays"} {
		if !strings.Contains(strings.ToLower(string(list)), want) {
			t.Errorf("boot partition lacks %s", want)
		}
	}
	// The programs are arm64 ELF binaries.
	out, err := exec.Command("unsquashfs", "-cat", res.RootFS, "user/hyphad").Output()
	if err != nil || len(out) < 20 || string(out[1:4]) != "ELF" || binary.LittleEndian.Uint16(out[18:]) != 183 /* EM_AARCH64 */ {
		t.Fatalf("/user/hyphad in the root is not an arm64 ELF binary (err %v)", err)
	}
}
