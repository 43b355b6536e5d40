package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/univrs/hypha/hwtest"
)

func init() {
	register(command{
		name:    "hwtest",
		summary: "qualify this machine's hardware (or show a box's hwtest.json) and recommend model sizes",
		run:     runHwtest,
	})
}

func runHwtest(ctx context.Context, args []string) error {
	return hwtestMain(ctx, args, os.Stdout)
}

func hwtestMain(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("hwtest", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the JSON report instead of the summary")
	report := fs.String("report", "", "show this report file (e.g. a box's /perm/hypha/hwtest.json) instead of probing")
	root := fs.String("root", "/", "read /proc and /sys below this directory (a recorded tree)")
	bwTime := fs.Duration("bandwidth-time", 300*time.Millisecond, "duration of the memory bandwidth probe (negative skips it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var r *hwtest.Report
	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			return err
		}
		if r, err = hwtest.DecodeReport(b); err != nil {
			return fmt.Errorf("%s: %w", *report, err)
		}
	} else {
		p := &hwtest.Prober{Root: *root, BandwidthTime: *bwTime,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		r = p.Run(ctx)
	}
	if *asJSON {
		b, err := r.Encode()
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	_, err := io.WriteString(out, r.Summary())
	return err
}
