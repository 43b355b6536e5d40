package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/univrs/hypha/hwtest"
)

func TestHwtestCLI(t *testing.T) {
	var out bytes.Buffer
	if err := hwtestMain(context.Background(), []string{"-json", "-bandwidth-time", "50ms"}, &out); err != nil {
		t.Fatal(err)
	}
	r, err := hwtest.DecodeReport(out.Bytes())
	if err != nil {
		t.Fatalf("CLI JSON does not decode: %v", err)
	}
	if r.CPU.LogicalCores < 1 || r.Memory.TotalBytes == 0 || len(r.Models) != len(hwtest.Catalogue) {
		t.Fatalf("report %+v", r)
	}
	p := filepath.Join(t.TempDir(), "hwtest.json")
	os.WriteFile(p, out.Bytes(), 0o644)
	out.Reset()
	if err := hwtestMain(context.Background(), []string{"-report", p}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "VERDICT: ") || !strings.Contains(out.String(), r.CPU.Model) {
		t.Fatalf("summary:\n%s", out.String())
	}
	os.WriteFile(p, []byte(`{"version": 9}`), 0o644)
	if err := hwtestMain(context.Background(), []string{"-report", p}, &out); !errors.Is(err, hwtest.ErrUnsupportedVersion) {
		t.Fatalf("future report: %v", err)
	}
}
