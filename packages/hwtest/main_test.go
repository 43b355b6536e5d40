package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/univrs/hypha/hwtest"
)

// TestRunWritesReport runs the boot-time program's work on this machine and
// checks the file the LAN page reads: complete, decodable, no temp left.
func TestRunWritesReport(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "perm", "hypha", "hwtest.json")
	old := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull)
	err := run(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), out)
	os.Stdout = old
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hwtest.DecodeReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU.LogicalCores < 1 || r.Verdict.Grade == "" {
		t.Fatalf("report %+v", r)
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	// An unwritable destination is an error for the log, not a crash.
	if err := run(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), "/proc/hwtest/x.json"); err == nil {
		t.Fatal("writing under /proc succeeded")
	}
}
