package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Files the builder takes from Debian packages.
const (
	gptMBRPath     = "/usr/lib/syslinux/mbr/gptmbr.bin"           // syslinux-common
	ldlinuxC32Path = "/usr/lib/syslinux/modules/bios/ldlinux.c32" // syslinux-common
	systemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
)

// buildBoot creates the FAT16 boot partition as a file.
//
// It must be FAT16 with every file unfragmented: gokrazy's update API
// (/update/switch) rewrites root= in /cmdline.txt and
// /loader/entries/gokrazy.conf in place with a minimal FAT16 reader.
// go-diskfs writes only FAT32, so mkfs.fat and mtools (dosfstools, mtools)
// build it, and checkBootFAT verifies it the way gokrazy will read it.
//
// Legacy BIOS boots SYSLINUX, whose syslinux.cfg INCLUDEs /cmdline.txt (an
// "APPEND …" line) so that switching the root partition takes effect there
// too; UEFI boots systemd-boot with the same command line in its loader
// entry.
func buildBoot(ctx context.Context, opts Options, l *layout, kernelDir, out string) error {
	cmdline := l.cmdline(opts.Config.SerialConsole)
	if err := run(ctx, "mkfs.fat", "-F", "16", "-f", "1", "-S", "512", "-s", "4", "-n", "GOKRAZY",
		"-h", fmt.Sprint(l.start[0]/sector), "-C", out, fmt.Sprint(bootSize/1024)); err != nil {
		return fmt.Errorf("%w: %v", ErrBootFS, err)
	}
	staging, err := os.MkdirTemp("", "hypha-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(staging)

	// Small, rewritable files first so they sit in the first clusters.
	files := []struct{ name, content string }{}
	if opts.Target.RaspberryPi {
		files = append(files, struct{ name, content string }{"cmdline.txt", cmdline + "\n"})
	} else {
		files = append(files,
			struct{ name, content string }{"cmdline.txt", "APPEND " + cmdline + "\n"},
			struct{ name, content string }{"loader/loader.conf", "default gokrazy.conf\ntimeout 0\n"},
			struct{ name, content string }{"loader/entries/gokrazy.conf",
				"title Hypha (gokrazy)\nlinux /vmlinuz\noptions " + cmdline + "\n"},
			struct{ name, content string }{"syslinux.cfg",
				"SERIAL 0 115200\nDEFAULT gokrazy\nPROMPT 0\nTIMEOUT 0\nLABEL gokrazy\n  LINUX /vmlinuz\n  INCLUDE /cmdline.txt\n"},
		)
	}
	var copies [][2]string // source, FAT path
	for _, f := range files {
		p := filepath.Join(staging, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			return err
		}
		copies = append(copies, [2]string{p, "/" + f.name})
	}
	copies = append(copies, [2]string{filepath.Join(kernelDir, "vmlinuz"), "/vmlinuz"})
	if opts.Target.RaspberryPi {
		more, err := piBootFiles(ctx, opts, kernelDir, staging)
		if err != nil {
			return err
		}
		copies = append(copies, more...)
	} else {
		copies = append(copies,
			[2]string{ldlinuxC32Path, "/ldlinux.c32"},
			[2]string{systemdBootEFI, "/EFI/BOOT/BOOTX64.EFI"})
	}
	dirs := map[string]bool{}
	for _, c := range copies {
		for d := filepath.Dir(c[1]); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted) // parents before children
	for _, d := range sorted {
		if err := run(ctx, "mmd", "-i", out, "::"+d); err != nil {
			return fmt.Errorf("%w: %v", ErrBootFS, err)
		}
	}
	for _, c := range copies {
		if _, err := os.Stat(c[0]); err != nil {
			return fmt.Errorf("%w: %v", ErrBootFS, err)
		}
		if err := run(ctx, "mcopy", "-i", out, c[0], "::"+c[1]); err != nil {
			return fmt.Errorf("%w: %v", ErrBootFS, err)
		}
	}
	if !opts.Target.RaspberryPi {
		// syslinux exits 0 even when it failed; read what it says.
		var buf bytes.Buffer
		cmd := exec.CommandContext(ctx, "syslinux", "--install", out)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		if msg := strings.TrimSpace(buf.String()); err != nil || msg != "" {
			return fmt.Errorf("%w: syslinux --install: %v %s", ErrBootFS, err, msg)
		}
	}
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if !opts.Target.RaspberryPi {
		if err := patchShortNames(f, f, "loader", "entries"); err != nil {
			return fmt.Errorf("%w: %v", ErrBootFS, err)
		}
	}
	for _, fl := range files {
		want := fl.content
		got, err := readFAT16File(f, "/"+fl.name)
		if err != nil {
			return fmt.Errorf("%w: gokrazy could not update this image: %v", ErrBootFS, err)
		}
		if string(got) != want {
			return fmt.Errorf("%w: /%s reads back as %q through gokrazy's FAT16 view, want %q", ErrBootFS, fl.name, got, want)
		}
	}
	return nil
}

// piBootFiles lists the Raspberry Pi firmware, device trees and config.txt.
func piBootFiles(ctx context.Context, opts Options, kernelDir, staging string) ([][2]string, error) {
	var out [][2]string
	if opts.Config.FirmwarePackage == nil || *opts.Config.FirmwarePackage == "" {
		return nil, fmt.Errorf("%w: the rpi target needs FirmwarePackage", ErrConfig)
	}
	fwDir, err := packageDir(ctx, opts, *opts.Config.FirmwarePackage)
	if err != nil {
		return nil, fmt.Errorf("firmware package %s: %v", *opts.Config.FirmwarePackage, err)
	}
	for _, dir := range []string{fwDir, kernelDir} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			n := e.Name()
			switch {
			case strings.HasSuffix(n, ".bin"), strings.HasSuffix(n, ".elf"), strings.HasSuffix(n, ".dat"),
				strings.HasSuffix(n, ".dtb"):
				out = append(out, [2]string{filepath.Join(dir, n), "/" + n})
			case n == "overlays" && e.IsDir():
				ov, err := os.ReadDir(filepath.Join(dir, n))
				if err != nil {
					return nil, err
				}
				for _, o := range ov {
					out = append(out, [2]string{filepath.Join(dir, n, o.Name()), "/overlays/" + o.Name()})
				}
			}
		}
	}
	base, err := os.ReadFile(filepath.Join(kernelDir, "config.txt"))
	if err != nil {
		return nil, fmt.Errorf("kernel package config.txt: %w", err)
	}
	cfg := string(base) + "\n" + strings.Join(opts.Config.BootloaderExtraLines, "\n") + "\n"
	p := filepath.Join(staging, "config.txt")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return append(out, [2]string{p, "/config.txt"}), nil
}

func run(ctx context.Context, name string, args ...string) error {
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// writeSquashfs packs the staged root tree into a gzip squashfs (the
// kernel has CONFIG_SQUASHFS_ZLIB) with mksquashfs (squashfs-tools).
// go-diskfs v1.9.4's squashfs writer cannot pack this tree: it lists
// xattrs through symlinks (failing on /etc/resolv.conf, whose target only
// exists at run time) and reads link targets relative to the process's
// working directory, so it is used for the partition table only.
func writeSquashfs(root, out string) error {
	os.Remove(out)
	if err := run(context.Background(), "mksquashfs", root, out,
		"-noappend", "-comp", "gzip", "-all-root", "-no-xattrs", "-quiet", "-mkfs-time", "0", "-all-time", "0"); err != nil {
		return fmt.Errorf("pack root file system (Debian package squashfs-tools): %w", err)
	}
	return nil
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}
