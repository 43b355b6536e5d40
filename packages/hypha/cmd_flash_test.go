package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/univrs/hypha/provisioning"
	"github.com/univrs/hypha/provisioning/flash"
)

func TestFlashCLIToFile(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	b := make([]byte, 3<<20+7)
	rand.Read(b)
	os.WriteFile(img, b, 0o644)
	out := filepath.Join(dir, "stick")
	for _, tty := range []bool{false, true} {
		var buf bytes.Buffer
		// The second round overwrites the first round's file: confirmed.
		if err := flashMain(context.Background(), []string{img, out}, strings.NewReader("yes\n"), &buf, tty); err != nil {
			t.Fatal(err)
		}
		s := buf.String()
		if !strings.Contains(s, "verified: "+out+" read back matches") || !strings.Contains(s, "is complete and synced") {
			t.Fatalf("tty=%v output:\n%s", tty, s)
		}
		if !strings.Contains(s, "verifying   3.0 MiB / 3.0 MiB   100%") {
			t.Fatalf("tty=%v: no final verify progress line:\n%q", tty, s)
		}
		if tty != strings.Contains(s, "\r") {
			t.Fatalf("tty=%v but carriage returns = %v", tty, !tty)
		}
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, b) {
		t.Fatal("content differs")
	}
	// An existing file is not overwritten without a yes.
	keep := filepath.Join(dir, "precious.txt")
	os.WriteFile(keep, []byte("do not lose me"), 0o644)
	var buf bytes.Buffer
	if err := flashMain(context.Background(), []string{img, keep}, strings.NewReader("\n"), &buf, false); err == nil || !strings.Contains(buf.String(), "will be OVERWRITTEN") {
		t.Fatalf("err = %v, output %q", err, buf.String())
	}
	if got, _ := os.ReadFile(keep); string(got) != "do not lose me" {
		t.Fatal("existing file overwritten without confirmation")
	}
}

func TestFlashCLIRefusesDirectory(t *testing.T) {
	var buf bytes.Buffer
	// "/" itself is a directory, never a target.
	err := flashMain(context.Background(), []string{"/etc/hostname", "/"}, strings.NewReader("yes\n"), &buf, false)
	if !errors.Is(err, flash.ErrNotDevice) {
		t.Fatalf("err = %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFlashCLIInterrupted(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	os.WriteFile(img, make([]byte, 8<<20), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl-C before the first chunk
	var buf bytes.Buffer
	err := flashMain(ctx, []string{img, filepath.Join(dir, "stick")}, strings.NewReader(""), &buf, false)
	if !errors.Is(err, flash.ErrInterrupted) || !strings.Contains(buf.String(), "INTERRUPTED: ") || strings.Contains(buf.String(), "safe to remove") {
		t.Fatalf("err = %v, output:\n%s", err, buf.String())
	}
}

// TestProvisionFlashBoot is the steward's path up to the stick: create a
// community, bake it into a /perm tree, make the ext4 /perm filesystem the
// way the image builder does, flash it to a loop device with hypha flash,
// mount the stick and load the community as a box would at boot. A
// manifest of another community is refused by that box.
func TestProvisionFlashBoot(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root (loop device, mount)")
	}
	for _, c := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
	t.Setenv("HYPHA_STEWARD_PASSWORD", "stick-test-pw")
	dir := t.TempDir()
	comm := filepath.Join(dir, "village")
	if _, err := runComm(t, "", "init", "-dir", comm, "-name", "Loopville"); err != nil {
		t.Fatal(err)
	}
	perm := filepath.Join(dir, "perm")
	if err := provisioning.BakePerm(comm, perm); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "perm.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "perm", "-d", perm, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	back := filepath.Join(dir, "stick.raw")
	os.WriteFile(back, nil, 0o644)
	os.Truncate(back, 32<<20)
	out, err := exec.Command("losetup", "--find", "--show", back).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	var buf bytes.Buffer
	if err := flashMain(context.Background(), []string{"-yes", img, dev}, strings.NewReader(""), &buf, false); err != nil {
		t.Fatalf("flash: %v\n%s", err, buf.String())
	}
	if !strings.Contains(buf.String(), "It is now safe to remove "+dev) {
		t.Fatalf("flash output:\n%s", buf.String())
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	// Mounted now: flashing it again must be refused.
	if err := flashMain(context.Background(), []string{"-yes", img, dev}, strings.NewReader(""), &buf, false); !errors.Is(err, flash.ErrMounted) {
		t.Fatalf("flash to the mounted stick: %v", err)
	}
	box, err := provisioning.LoadCommunity(mnt)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := provisioning.OpenDir(comm)
	if box.ID() != want.ID() || box.PSK != want.PSK || box.CheckStewardPassword("stick-test-pw") != nil {
		t.Fatalf("community on the stick differs from the steward's")
	}
	if _, err := os.Stat(filepath.Join(mnt, provisioning.PermSubdir, provisioning.StewardKey)); !os.IsNotExist(err) {
		t.Fatalf("steward key on the stick: %v", err)
	}
	other := filepath.Join(dir, "other")
	if _, err := runComm(t, "", "init", "-dir", other, "-name", "Elsewhere"); err != nil {
		t.Fatal(err)
	}
	oc, _ := provisioning.OpenDir(other)
	if _, err := provisioning.VerifyUpdate(box.Signed, oc.Signed); !errors.Is(err, provisioning.ErrWrongCommunity) {
		t.Fatalf("manifest of another community accepted: %v", err)
	}
	if box.PSK == oc.PSK {
		t.Fatal("two communities share a mesh key")
	}
}

func TestFlashCLIListsDisks(t *testing.T) {
	var buf bytes.Buffer
	if err := flashMain(context.Background(), []string{"/etc/hostname"}, strings.NewReader(""), &buf, false); err != nil {
		t.Skipf("no disk listing here: %v", err)
	}
	if !strings.HasPrefix(buf.String(), "disks on this machine (image /etc/hostname") {
		t.Fatalf("output:\n%s", buf.String())
	}
	// The system disk, when visible, is listed as refused.
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "root filesystem") && !strings.Contains(line, "refused: ") {
			t.Fatalf("system disk not refused: %q", line)
		}
	}
	t.Logf("\n%s", buf.String())
}

// TestFlashCLIConfirms: without -yes a block device is erased only after
// the steward types "yes".
func TestFlashCLIConfirms(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root (loop device)")
	}
	dir := t.TempDir()
	back := filepath.Join(dir, "stick.raw")
	os.WriteFile(back, make([]byte, 8<<20), 0o644)
	out, err := exec.Command("losetup", "--find", "--show", back).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	img := filepath.Join(dir, "a.img")
	b := make([]byte, 1<<20)
	rand.Read(b)
	os.WriteFile(img, b, 0o644)

	var buf bytes.Buffer
	err = flashMain(context.Background(), []string{img, dev}, strings.NewReader("no\n"), &buf, false)
	if err == nil || !strings.Contains(err.Error(), "not confirmed; nothing was written") || !strings.Contains(buf.String(), "will be ERASED") {
		t.Fatalf("err = %v, output %q", err, buf.String())
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Fatal("device written without confirmation")
	}
	buf.Reset()
	if err := flashMain(context.Background(), []string{img, dev}, strings.NewReader("yes\n"), &buf, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got[:1<<20], b) {
		t.Fatal("confirmed flash did not write the image")
	}
}
