package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/univrs/hypha/images/services"
)

// Target describes the hardware an image is for.
type Target struct {
	// Name is the instance directory under images/ ("amd64", "rpi").
	Name string
	// GOARCH of every program in the image.
	GOARCH string
	// RaspberryPi selects the Pi firmware instead of SYSLINUX + systemd-boot,
	// and an MBR partition table (what the Pi boot ROM reads).
	RaspberryPi bool
}

// Targets are the images Hypha knows how to build.
var Targets = map[string]Target{
	"amd64": {Name: "amd64", GOARCH: "amd64"},
	"rpi":   {Name: "rpi", GOARCH: "arm64", RaspberryPi: true},
}

// Options of one build. Zero values get the documented defaults.
type Options struct {
	Config *Config
	Target Target
	// Version is the build version shown on the LAN page (default: a timestamp).
	Version string
	// Output is the disk image path. The image is written to Output+".tmp"
	// and renamed only when complete, so a failed build leaves nothing
	// half-written behind.
	Output string
	// PermDir, if set, is copied into the /perm file system.
	PermDir string
	// Size of the disk in bytes (default 2 GiB; at least MinDiskSize).
	Size int64
	// ModuleDir is where `go build` runs (default: the current directory).
	ModuleDir string
	// Log receives progress lines (default: discarded).
	Log io.Writer
	// RootOnly skips the boot partition and disk: only the root squashfs is
	// built (for updates). Output is then the squashfs path.
	RootOnly bool
}

// Result tells what was built.
type Result struct {
	Image    string // the disk image (empty with RootOnly)
	RootFS   string // the root squashfs (for hypha update)
	Password string // gokrazy web UI / update API password (user "gokrazy")
	Version  string
	Programs []string
	Duration time.Duration
}

// Manifest is written next to the image as <image>.json: what hypha vm and
// hypha update need to reach it.
type Manifest struct {
	Hostname string `json:"hostname"`
	Target   string `json:"target"`
	Version  string `json:"version"`
	Password string `json:"password"`
	HTTPPort string `json:"httpPort"`
	RootFS   string `json:"rootfs"`
}

// Build builds the image described by opts.
func Build(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Config == nil {
		return nil, fmt.Errorf("build: %w: no config", ErrConfig)
	}
	if opts.Output == "" {
		return nil, fmt.Errorf("build: no output path")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Version == "" {
		opts.Version = time.Now().UTC().Format("20060102T150405Z")
	}
	if opts.Size == 0 {
		opts.Size = 2 << 30
	}
	if !opts.RootOnly && opts.Size < MinDiskSize {
		return nil, fmt.Errorf("build: %w: %d MiB requested, the partition layout needs at least %d MiB",
			ErrDiskTooSmall, opts.Size>>20, MinDiskSize>>20)
	}
	cfg := opts.Config

	kernelDir, err := packageDir(ctx, opts, *cfg.KernelPackage)
	if err != nil {
		return nil, fmt.Errorf("build: %w: %s: %v", ErrMissingKernel, *cfg.KernelPackage, err)
	}
	kernel := filepath.Join(kernelDir, "vmlinuz")
	if _, err := os.Stat(kernel); err != nil {
		return nil, fmt.Errorf("build: %w: %s has no vmlinuz: %v", ErrMissingKernel, *cfg.KernelPackage, err)
	}
	if err := checkPackages(ctx, opts); err != nil {
		return nil, err
	}

	work, err := os.MkdirTemp("", "hypha-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	password, err := webPassword(cfg)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(work, "root")
	programs, err := stageRoot(ctx, opts, root, kernelDir, password)
	if err != nil {
		return nil, err
	}
	rootfs := opts.Output + ".root.squashfs"
	if opts.RootOnly {
		rootfs = opts.Output
	}
	fmt.Fprintf(opts.Log, "squashfs: %s\n", rootfs)
	if err := writeSquashfs(root, rootfs+".tmp"); err != nil {
		os.Remove(rootfs + ".tmp")
		return nil, err
	}
	if fi, err := os.Stat(rootfs + ".tmp"); err == nil && fi.Size() > rootSize {
		os.Remove(rootfs + ".tmp")
		return nil, fmt.Errorf("build: %w: root file system is %d MiB, a root partition holds %d MiB",
			ErrDiskTooSmall, fi.Size()>>20, int64(rootSize)>>20)
	}
	if err := os.Rename(rootfs+".tmp", rootfs); err != nil {
		return nil, err
	}
	res := &Result{RootFS: rootfs, Password: password, Version: opts.Version, Programs: programs}
	if opts.RootOnly {
		res.Duration = time.Since(start)
		return res, nil
	}

	layout := newLayout(cfg.Hostname, opts.Size, opts.Target.RaspberryPi)
	bootFAT := filepath.Join(work, "boot.fat")
	fmt.Fprintf(opts.Log, "boot partition (FAT16, %d MiB)\n", bootSize>>20)
	if err := buildBoot(ctx, opts, layout, kernelDir, bootFAT); err != nil {
		return nil, err
	}
	tmp := opts.Output + ".tmp"
	os.Remove(tmp)
	fmt.Fprintf(opts.Log, "disk: %s (%d MiB)\n", opts.Output, opts.Size>>20)
	if err := writeDisk(ctx, opts, layout, bootFAT, rootfs, tmp); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, opts.Output); err != nil {
		return nil, err
	}
	m := Manifest{
		Hostname: cfg.Hostname, Target: opts.Target.Name, Version: opts.Version,
		Password: password, HTTPPort: cfg.httpPort(), RootFS: filepath.Base(rootfs),
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(opts.Output+".json", append(mb, '\n'), 0o600); err != nil {
		return nil, err
	}
	res.Image = opts.Output
	res.Duration = time.Since(start)
	return res, nil
}

// ReadManifest reads the <image>.json written by Build.
func ReadManifest(image string) (*Manifest, error) {
	b, err := os.ReadFile(image + ".json")
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read image manifest %s.json: %w", image, err)
	}
	return &m, nil
}

func webPassword(cfg *Config) (string, error) {
	if cfg.Update != nil && cfg.Update.HTTPPassword != "" {
		return cfg.Update.HTTPPassword, nil
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func goEnv(opts Options) []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+opts.Target.GOARCH)
}

func goCmd(ctx context.Context, opts Options, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = opts.ModuleDir
	cmd.Env = goEnv(opts)
	return cmd
}

func packageDir(ctx context.Context, opts Options, pkg string) (string, error) {
	var stderr bytes.Buffer
	cmd := goCmd(ctx, opts, "list", "-f", "{{.Dir}}", pkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s", strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// checkPackages verifies that every listed package exists and is a program.
func checkPackages(ctx context.Context, opts Options) error {
	pkgs := append(append([]string{}, opts.Config.Packages...), opts.Config.gokrazyPackages()...)
	args := append([]string{"list", "-e", "-f", "{{.ImportPath}}\t{{.Name}}\t{{if .Error}}{{.Error}}{{end}}"}, pkgs...)
	var stderr bytes.Buffer
	cmd := goCmd(ctx, opts, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("build: %w: %s", ErrUnknownPkg, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			continue
		}
		if f[2] != "" {
			return fmt.Errorf("build: %w %s: %s", ErrUnknownPkg, f[0], firstLine(f[2]))
		}
		if f[1] != "main" {
			return fmt.Errorf("build: %w %s: package %s is not a program (package main)", ErrUnknownPkg, f[0], f[1])
		}
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// goBuild builds pkg for the target into out.
func goBuild(ctx context.Context, opts Options, pkg, out string, pc PackageConfig, ldflags string) error {
	tags := append([]string{"gokrazy", "netgo", "osusergo"}, pc.GoBuildTags...)
	args := []string{"build", "-trimpath", "-tags", strings.Join(tags, ","), "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	args = append(args, pc.GoBuildFlags...)
	args = append(args, pkg)
	var stderr bytes.Buffer
	cmd := goCmd(ctx, opts, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %v: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// VersionLDFlag is the -X flag that sets a program's build version; every
// Hypha program declares `var version = "dev"` in package main.
func VersionLDFlag(version string) string {
	return "-X main.version=" + version
}

func stageRoot(ctx context.Context, opts Options, root, kernelDir, password string) ([]string, error) {
	cfg := opts.Config
	for _, d := range []string{"bin", "dev", "etc/ssl", "etc/gokrazy", "etc/hypha", "proc", "sys", "tmp", "perm", "run", "mnt", "lib", "gokrazy", "user"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	for link, target := range map[string]string{"var": "/perm/var", "etc/resolv.conf": "/tmp/resolv.conf"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"etc/hostname":      cfg.Hostname,
		"etc/hosts":         "127.0.0.1 localhost\n::1 localhost\n127.0.1.1 " + cfg.Hostname + "\n",
		"etc/http-port.txt": cfg.httpPort(),
		"etc/gokr-pw.txt":   password,
		"etc/hypha/version": opts.Version + "\n",
		// gokrazy's web UI reads an SBOM here; ours names the build only
		// (gok's hashes of go.mod and the kernel are not computed).
		"etc/gokrazy/sbom.json": fmt.Sprintf(`{"sbom_hash":"%s","sbom":{"config_hash":"","go_mod_hashes":{},"kernel_hash":""}}`,
			opts.Version),
	}
	if cfg.Update != nil && cfg.Update.HTTPSPort != "" {
		files["etc/https-port.txt"] = cfg.Update.HTTPSPort
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == "etc/gokr-pw.txt" {
			mode = 0o400
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), mode); err != nil {
			return nil, err
		}
	}
	// CA certificates, for the rare node that talks to the internet.
	for _, ca := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem"} {
		if b, err := os.ReadFile(ca); err == nil {
			if err := os.WriteFile(filepath.Join(root, "etc/ssl/ca-bundle.pem"), b, 0o644); err != nil {
				return nil, err
			}
			break
		}
	}
	// Kernel modules.
	if err := copyTree(filepath.Join(kernelDir, "lib"), filepath.Join(root, "lib")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("copy kernel modules: %w", err)
	}

	// Programs.
	fmt.Fprintf(opts.Log, "building %d programs for linux/%s\n", len(cfg.Packages)+len(cfg.gokrazyPackages())+1, opts.Target.GOARCH)
	if err := goBuild(ctx, opts, "github.com/univrs/hypha/packages/init", filepath.Join(root, "gokrazy/init"),
		PackageConfig{}, "-X main.buildTimestamp="+opts.Version); err != nil {
		return nil, err
	}
	var list services.List
	list.Version = 1
	var programs []string
	for _, pkg := range cfg.gokrazyPackages() {
		out := "/gokrazy/" + ProgramName(pkg)
		if err := goBuild(ctx, opts, pkg, filepath.Join(root, out), PackageConfig{}, ""); err != nil {
			return nil, err
		}
		list.Services = append(list.Services, services.Service{Path: out})
		programs = append(programs, out)
	}
	for _, pkg := range cfg.Packages {
		pc := cfg.PackageConfig[pkg]
		out := "/user/" + ProgramName(pkg)
		fmt.Fprintf(opts.Log, "  %s\n", pkg)
		if err := goBuild(ctx, opts, pkg, filepath.Join(root, out), pc, VersionLDFlag(opts.Version)); err != nil {
			return nil, err
		}
		for name, content := range pc.ExtraFileContents {
			p := filepath.Join(root, filepath.Clean("/"+name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return nil, err
			}
		}
		list.Services = append(list.Services, services.Service{
			Path: out, Args: pc.CommandLineFlags,
			Env:       append(append([]string{}, cfg.Environment...), pc.Environment...),
			DontStart: pc.DontStart, WaitForClock: pc.WaitForClock,
		})
		programs = append(programs, out)
	}
	lb, _ := json.MarshalIndent(list, "", "  ")
	if err := os.WriteFile(filepath.Join(root, services.Path), lb, 0o644); err != nil {
		return nil, err
	}
	return programs, nil
}

// copyTree copies a directory tree (regular files, dirs, symlinks).
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(target, 0o755)
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			return copyFile(p, target, fi.Mode().Perm())
		}
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
