package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/univrs/hypha/images"
)

func init() {
	register(command{name: "update", summary: "push a new build to a running appliance (A/B update)", run: runUpdate})
}

func runUpdate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("update", flag.ContinueOnError)
	image := fs.String("image", "out/hypha-amd64.img", "the image the appliance was built as (its .json has the password)")
	target := fs.String("target", "http://127.0.0.1:8081/", "the appliance's update API (gokrazy's HTTP port)")
	version := fs.String("version", "", "version of the new build (default: a timestamp)")
	rootfs := fs.String("rootfs", "", "send this root squashfs instead of building one")
	password := fs.String("password", "", "update API password (default: from the image's .json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := images.ReadManifest(*image)
	if err != nil {
		return err
	}
	if *password == "" {
		*password = m.Password
	}
	if *rootfs == "" {
		t, ok := images.Targets[m.Target]
		if !ok {
			return fmt.Errorf("image %s: unknown target %q", *image, m.Target)
		}
		cfg, err := images.LoadConfig(filepath.Join("images", t.Name, "config.json"))
		if err != nil {
			return err
		}
		cfg.Hostname = m.Hostname
		cfg.Update.HTTPPassword = *password
		*rootfs = *image + ".update.squashfs"
		res, err := images.Build(ctx, images.Options{Config: cfg, Target: t, Version: *version,
			Output: *rootfs, RootOnly: true, Log: os.Stderr})
		if err != nil {
			return err
		}
		fmt.Printf("built version %s\n", res.Version)
	}
	err = images.Update(ctx, *target, *password, *rootfs, nil, func(sent, total int64, el time.Duration) {
		rate := float64(sent) / el.Seconds() / (1 << 20)
		left := time.Duration(0)
		if rate > 0 {
			left = time.Duration(float64(total-sent) / (rate * (1 << 20)) * float64(time.Second))
		}
		fmt.Printf("\rupload %5.1f / %5.1f MiB  %5.1f MiB/s  %s left   ", float64(sent)/(1<<20), float64(total)/(1<<20), rate, left.Round(time.Second))
	})
	fmt.Println()
	if err != nil {
		return err
	}
	fmt.Println("uploaded and verified; the appliance switched to the new root and is rebooting")
	return nil
}
