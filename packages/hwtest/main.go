// Command hwtest qualifies the hardware of an appliance: on every boot it
// probes CPU, memory bandwidth, disks, network, GPUs, I²C buses and
// temperatures once, writes the report to /perm/hypha/hwtest.json for the
// LAN page, logs the human summary and exits 0 (done; gokrazy does not
// restart it). A report it cannot write is logged, not retried.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/univrs/hypha/hwtest"
)

func main() {
	out := flag.String("out", "/perm/hypha/hwtest.json", "where to write the JSON report")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on the whole run")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, *out); err != nil {
		// Not restarting is the right thing: the report is advisory.
		log.Error("hwtest", "err", err)
	}
}

func run(ctx context.Context, log *slog.Logger, out string) error {
	r := (&hwtest.Prober{Logger: log}).Run(ctx)
	fmt.Print(r.Summary())
	b, err := r.Encode()
	if err != nil {
		return err
	}
	return writeAtomic(out, b)
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
