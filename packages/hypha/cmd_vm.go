package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/univrs/hypha/images"
)

func init() {
	register(command{name: "vm", summary: "boot an image in qemu (LAN page on 127.0.0.1)", run: runVM})
}

func runVM(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vm", flag.ContinueOnError)
	image := fs.String("image", "out/hypha-amd64.img", "disk image to boot")
	lan := fs.String("lan", "127.0.0.1:8080", "host address forwarded to the LAN page (guest :80)")
	upd := fs.String("update", "127.0.0.1:8081", "host address forwarded to the update API (guest gokrazy port)")
	uefi := fs.Bool("uefi", false, "boot with UEFI firmware (OVMF) instead of legacy BIOS")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the LAN page")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := images.ReadManifest(*image)
	if err != nil {
		return err
	}
	vm := &images.VM{Image: *image, UEFI: *uefi, LANAddr: *lan, UpdateAddr: *upd, GuestUpdatePort: m.HTTPPort}
	start := time.Now()
	if err := vm.Start(ctx); err != nil {
		return err
	}
	defer vm.Stop()
	fmt.Printf("booting %s (version %s) in qemu, serial log %s …\n", *image, m.Version, vm.SerialLog())
	wctx, cancel := context.WithTimeout(ctx, *wait)
	_, err = vm.WaitHTTP(wctx, "http://"+*lan+"/healthz")
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("\nHypha is up after %.1fs.\n  LAN page:   http://%s/\n  update API: http://gokrazy:%s@%s/ (hypha update -image %s)\nCtrl-C stops the VM.\n",
		time.Since(start).Seconds(), *lan, m.Password, *upd, *image)
	select {
	case <-ctx.Done():
		return nil
	case err := <-vm.Done():
		if err != nil {
			return fmt.Errorf("qemu exited: %w", err)
		}
		return errors.New("qemu exited")
	}
}
