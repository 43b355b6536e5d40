package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/univrs/hypha/images"
	"github.com/univrs/hypha/provisioning"
)

func init() {
	register(command{name: "image", summary: "build an appliance disk image for a target", run: runImage})
}

func runImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	target := fs.String("target", "amd64", "target: amd64 (PC, BIOS+UEFI) or rpi (Raspberry Pi, arm64)")
	instance := fs.String("config", "", "instance config.json (default images/<target>/config.json)")
	out := fs.String("o", "", "output image (default out/hypha-<target>.img)")
	version := fs.String("version", "", "build version shown on the LAN page (default: a timestamp)")
	perm := fs.String("perm", "", "directory copied into /perm")
	community := fs.String("community", "", "community directory (hypha community init) baked into /perm: manifest, mesh key, steward password hash")
	size := fs.Int64("size", 2048, "disk size in MiB")
	rootOnly := fs.Bool("root-only", false, "build only the root squashfs (what hypha update sends)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t, ok := images.Targets[*target]
	if !ok {
		return fmt.Errorf("unknown target %q (amd64, rpi)", *target)
	}
	if *instance == "" {
		*instance = filepath.Join("images", t.Name, "config.json")
	}
	if *out == "" {
		*out = filepath.Join("out", "hypha-"+t.Name+".img")
		if *rootOnly {
			*out = filepath.Join("out", "hypha-"+t.Name+".root.squashfs")
		}
	}
	cfg, err := images.LoadConfig(*instance)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if *community != "" {
		dir, err := os.MkdirTemp("", "hypha-perm-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if *perm != "" {
			if err := os.CopyFS(dir, os.DirFS(*perm)); err != nil {
				return fmt.Errorf("copy -perm %s: %w", *perm, err)
			}
		}
		if err := provisioning.BakePerm(*community, dir); err != nil {
			return err
		}
		*perm = dir
	}
	res, err := images.Build(ctx, images.Options{
		Config: cfg, Target: t, Version: *version, Output: *out, PermDir: *perm,
		Size: *size << 20, Log: os.Stderr, RootOnly: *rootOnly,
	})
	if err != nil {
		return err
	}
	if res.Image != "" {
		fmt.Printf("image %s (version %s) built in %.1fs\n", res.Image, res.Version, res.Duration.Seconds())
	}
	fmt.Printf("root file system %s\n", res.RootFS)
	return nil
}
