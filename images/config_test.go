package images_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/univrs/hypha/images"
)

func diskUsage(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

func TestParseConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name, json string
		want       error
		msg        string
	}{
		{"unknown field", `{"Hostname":"h","Packages":["a/b"],"KernelPackage":"k","Pakages":[]}`, images.ErrConfig, `unknown field "Pakages"`},
		{"bad hostname", `{"Hostname":"Bad Host","Packages":["a/b"],"KernelPackage":"k"}`, images.ErrConfig, `Hostname "Bad Host"`},
		{"no packages", `{"Hostname":"h","KernelPackage":"k"}`, images.ErrConfig, "Packages is empty"},
		{"no kernel", `{"Hostname":"h","Packages":["a/b"]}`, images.ErrMissingKernel, "KernelPackage is not set"},
		{"stray package config", `{"Hostname":"h","Packages":["a/b"],"KernelPackage":"k","PackageConfig":{"x/y":{}}}`, images.ErrConfig, `names "x/y"`},
		{"duplicate program", `{"Hostname":"h","Packages":["a/b","c/b"],"KernelPackage":"k"}`, images.ErrConfig, `named "b"`},
		{"trailing", `{"Hostname":"h","Packages":["a/b"],"KernelPackage":"k"} {}`, images.ErrConfig, "trailing data"},
		{"not json", `Hostname: h`, images.ErrConfig, "invalid character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := images.ParseConfig("config.json", []byte(tt.json))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "config.json: ") {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestInstanceConfigsParse(t *testing.T) {
	for _, target := range []string{"amd64", "rpi"} {
		if _, err := images.LoadConfig(filepath.Join(target, "config.json")); err != nil {
			t.Errorf("%s: %v", target, err)
		}
	}
}

// TestBuildRefusesBadInput: each bad input is a clear error and leaves no
// output file behind.
func TestBuildRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	base := func() *images.Config {
		c, err := images.LoadConfig("amd64/config.json")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	unknown := base()
	unknown.Packages = append(unknown.Packages, "github.com/univrs/hypha/packages/nosuchprogram")
	notMain := base()
	notMain.Packages = append(notMain.Packages, "github.com/univrs/hypha/images")
	noKernel := base()
	k := "github.com/univrs/hypha/images/services" // a package without vmlinuz
	noKernel.KernelPackage = &k
	missingKernelPkg := base()
	k2 := "github.com/gokrazy/kernel.nosuch"
	missingKernelPkg.KernelPackage = &k2

	for _, tt := range []struct {
		name string
		cfg  *images.Config
		size int64
		want error
		msg  string
	}{
		{"unknown package", unknown, 0, images.ErrUnknownPkg, "nosuchprogram"},
		{"library package", notMain, 0, images.ErrUnknownPkg, "not a program"},
		{"kernel without vmlinuz", noKernel, 0, images.ErrMissingKernel, "has no vmlinuz"},
		{"kernel module missing", missingKernelPkg, 0, images.ErrMissingKernel, "kernel.nosuch"},
		{"disk too small", base(), 512 << 20, images.ErrDiskTooSmall, "512 MiB requested"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".img")
			_, err := images.Build(context.Background(), images.Options{Config: tt.cfg, Target: images.Targets["amd64"],
				Output: out, Size: tt.size, ModuleDir: ".."})
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.msg)
			}
			matches, _ := filepath.Glob(out + "*")
			if len(matches) != 0 {
				t.Fatalf("a failed build left %v behind", matches)
			}
		})
	}
}

// TestVMStopIsIdempotent: a VM stopped twice (by the test and again by its
// cleanup) must not hang. qemu is replaced by a short-lived program.
func TestVMStopIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	os.WriteFile(img, nil, 0o644)
	fake := filepath.Join(dir, "qemu-system-x86_64")
	os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755)
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	vm := &images.VM{Image: img, Dir: dir}
	if err := vm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { vm.Stop(); vm.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop twice hangs")
	}
	select {
	case <-vm.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}
