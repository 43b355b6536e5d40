package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		if err := flashMain(context.Background(), []string{img, out}, strings.NewReader(""), &buf, tty); err != nil {
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
}

func TestFlashCLIRefusesSystemDisk(t *testing.T) {
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
