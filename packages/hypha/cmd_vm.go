package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/univrs/hypha/images"
)

func init() {
	register(command{name: "vm", summary: "boot an image in qemu (LAN page on 127.0.0.1)", run: runVM})
}

func runVM(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vm", flag.ContinueOnError)
	image := fs.String("image", "out/hypha-amd64.img", "disk image to boot")
	lan := fs.String("lan", "127.0.0.1:8080", "host address forwarded to the LAN page (guest :80); node i uses port+10*i")
	upd := fs.String("update", "127.0.0.1:8081", "host address forwarded to the update API; node i uses port+10*i")
	gw := fs.String("gateway", "127.0.0.1:11434", "host address forwarded to the inference gateway (guest :11434); node i uses port+10*i")
	uefi := fs.Bool("uefi", false, "boot with UEFI firmware (OVMF) instead of legacy BIOS")
	nodes := fs.Int("nodes", 1, "how many appliances to boot from copies of the image, joined by a virtual LAN on loopback (1 or 2)")
	meshAddr := fs.String("mesh-link", "127.0.0.1:8070", "loopback address of the virtual LAN between the appliances")
	wait := fs.Duration("wait", 6*time.Minute, "how long to wait for the LAN pages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 2 {
		return fmt.Errorf("-nodes %d: 1 or 2 appliances", *nodes)
	}
	m, err := images.ReadManifest(*image)
	if err != nil {
		return err
	}
	var vms []*images.VM
	defer func() {
		for _, vm := range vms {
			vm.Stop()
		}
	}()
	start := time.Now()
	for i := 0; i < *nodes; i++ {
		img := *image
		if i > 0 {
			// Each appliance gets its own disk: it creates its own identity
			// on first boot.
			img = fmt.Sprintf("%s.node%d", *image, i)
			if err := images.CopySparse(*image, img); err != nil {
				return err
			}
		}
		vm := &images.VM{Image: img, UEFI: *uefi, LANAddr: shift(*lan, i), UpdateAddr: shift(*upd, i), GatewayAddr: shift(*gw, i),
			GuestUpdatePort: m.HTTPPort, Dir: filepath.Join(filepath.Dir(img), filepath.Base(img)+".vm")}
		if *nodes > 1 {
			vm.ExtraArgs = images.MeshLink(i, *meshAddr)
		}
		if err := vm.Start(ctx); err != nil {
			return err
		}
		vms = append(vms, vm)
		fmt.Printf("booting appliance %d from %s (version %s), serial log %s\n", i+1, img, m.Version, vm.SerialLog())
		if i == 0 && *nodes > 1 {
			time.Sleep(time.Second) // let the first qemu listen on the virtual LAN
		}
	}
	for i, vm := range vms {
		wctx, cancel := context.WithTimeout(ctx, *wait)
		_, err := vm.WaitHTTP(wctx, "http://"+vm.LANAddr+"/healthz")
		cancel()
		if err != nil {
			return err
		}
		fmt.Printf("\nappliance %d is up after %.1fs\n  LAN page:   http://%s/\n  inference:  http://%s/ (OpenAI /v1 and Ollama /api, the whole mesh)\n  update API: http://gokrazy:%s@%s/ (hypha update -image %s -target http://%s/)\n",
			i+1, time.Since(start).Seconds(), vm.LANAddr, vm.GatewayAddr, m.Password, vm.UpdateAddr, vm.Image, vm.UpdateAddr)
	}
	if len(vms) > 1 {
		fmt.Printf("\nThe appliances share a virtual LAN; each LAN page's Mesh view lists the other once they found each other.\n")
	}
	fmt.Printf("Ctrl-C stops the VMs.\n")
	done := make(chan error, len(vms))
	for _, vm := range vms {
		go func(vm *images.VM) { <-vm.Done(); done <- vm.Err() }(vm)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return fmt.Errorf("qemu exited: %v", err)
	}
}

// shift adds 10*i to the port of a host:port.
func shift(addr string, i int) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+10*i))
}
