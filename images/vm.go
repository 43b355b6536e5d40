package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// OVMF firmware from Debian's ovmf package.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VM is an appliance image booted in qemu with software emulation (KVM
// does not work on our build machines). Ports are forwarded on 127.0.0.1
// only.
type VM struct {
	Image string
	// UEFI boots OVMF instead of SeaBIOS (legacy BIOS).
	UEFI bool
	// LANAddr is the host address forwarded to the guest's :80 (LAN page).
	LANAddr string
	// UpdateAddr is forwarded to gokrazy's web UI / update API port.
	UpdateAddr string
	// GatewayAddr is forwarded to the guest's :11434 (the mesh inference
	// gateway: Ollama and OpenAI clients on the host talk to it).
	GatewayAddr string
	// GuestUpdatePort is gokrazy's HTTP port inside the guest (default 8080).
	GuestUpdatePort string
	// Dir holds the pid file, serial log and UEFI variables (default: a
	// directory next to the image).
	Dir string
	// MemoryMB and CPUs of the guest (defaults 1024 and 2).
	MemoryMB, CPUs int
	// ExtraArgs are appended to the qemu command line (e.g. a second NIC).
	ExtraArgs []string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when qemu has exited
	exitErr error         // valid once exited is closed
}

// SerialLog is the path of the guest's serial console log.
func (v *VM) SerialLog() string { return filepath.Join(v.dir(), "serial.log") }

// PIDFile is where qemu writes its pid.
func (v *VM) PIDFile() string { return filepath.Join(v.dir(), "qemu.pid") }

func (v *VM) dir() string {
	if v.Dir != "" {
		return v.Dir
	}
	return v.Image + ".vm"
}

// Args is the qemu command line.
func (v *VM) Args() []string {
	mem, cpus := v.MemoryMB, v.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	gport := v.GuestUpdatePort
	if gport == "" {
		gport = "8080"
	}
	fwd := ""
	if v.LANAddr != "" {
		fwd += ",hostfwd=tcp:" + v.LANAddr + "-:80"
	}
	if v.UpdateAddr != "" {
		fwd += ",hostfwd=tcp:" + v.UpdateAddr + "-:" + gport
	}
	if v.GatewayAddr != "" {
		fwd += ",hostfwd=tcp:" + v.GatewayAddr + "-:11434"
	}
	args := []string{
		"-accel", "tcg", "-machine", "pc", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-drive", "file=" + v.Image + ",format=raw,if=ide",
		"-netdev", "user,id=lan0,restrict=off" + fwd,
		"-device", "e1000,netdev=lan0",
		"-display", "none", "-monitor", "none",
		"-serial", "file:" + v.SerialLog(),
		"-pidfile", v.PIDFile(),
	}
	if v.UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(v.dir(), "OVMF_VARS.fd"))
	}
	return append(args, v.ExtraArgs...)
}

// Start boots the VM in the background.
func (v *VM) Start(ctx context.Context) error {
	if _, err := os.Stat(v.Image); err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	if err := os.MkdirAll(v.dir(), 0o755); err != nil {
		return err
	}
	if v.UEFI {
		if err := copyFile(ovmfVars, filepath.Join(v.dir(), "OVMF_VARS.fd"), 0o644); err != nil {
			return fmt.Errorf("vm: UEFI variables (Debian package ovmf): %w", err)
		}
	}
	os.Remove(v.SerialLog())
	os.Remove(v.PIDFile())
	v.cmd = exec.Command("qemu-system-x86_64", v.Args()...)
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(v.dir(), "qemu.log"))
	if err != nil {
		return err
	}
	v.cmd.Stdout, v.cmd.Stderr = out, out
	if err := v.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("vm: start qemu (Debian package qemu-system-x86): %w", err)
	}
	v.exited = make(chan struct{})
	go func() { v.exitErr = v.cmd.Wait(); out.Close(); close(v.exited) }()
	return nil
}

// Done is closed when qemu has exited; Err then tells how.
func (v *VM) Done() <-chan struct{} { return v.exited }

// Err is qemu's exit status, once Done is closed.
func (v *VM) Err() error { return v.exitErr }

// Stop kills qemu by the pid in its pid file (falling back to the child
// we started) and waits for it to exit. It is idempotent.
func (v *VM) Stop() error {
	if v.exited != nil {
		select {
		case <-v.exited:
			os.Remove(v.PIDFile())
			return nil
		default:
		}
	}
	pid := 0
	if b, err := os.ReadFile(v.PIDFile()); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid == 0 && v.cmd != nil && v.cmd.Process != nil {
		pid = v.cmd.Process.Pid
	}
	if pid == 0 {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if v.exited != nil {
		select {
		case <-v.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-v.exited
		}
	}
	os.Remove(v.PIDFile())
	return nil
}

// WaitHTTP polls url until it answers 200 and returns the body. It does
// not sleep a fixed time: it polls every 250 ms until ctx ends or qemu
// exits.
func (v *VM) WaitHTTP(ctx context.Context, url string) ([]byte, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return b, nil
			}
			last = fmt.Errorf("%s: %s", url, resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vm: %s did not answer (last: %v): %w; serial log: %s", url, last, ctx.Err(), v.SerialLog())
		case <-v.exited:
			return nil, fmt.Errorf("vm: qemu exited (%v) before %s answered; serial log: %s", v.exitErr, url, v.SerialLog())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ErrNoQemu is returned when qemu is not installed.
var ErrNoQemu = errors.New("qemu-system-x86_64 not found (make deps installs Debian's qemu-system-x86)")

// CopySparse copies an image file, leaving holes where the source has
// blocks of zeros (a 2 GiB image holds ~140 MiB of data).
func CopySparse(src, dst string) error {
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err == nil {
		err = out.Truncate(fi.Size())
	}
	if err == nil {
		err = copyInto(out, src, 0, fi.Size())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// MeshLink returns the qemu arguments of a second NIC joined to the same
// NIC of another VM over a TCP socket on loopback: node 0 listens, the
// others connect. It is the virtual LAN of the two-appliance demo.
func MeshLink(node int, addr string) []string {
	mode := "listen"
	if node > 0 {
		mode = "connect"
	}
	return MeshNIC(node, 0, mode, addr)
}

// MeshNIC returns the qemu arguments of mesh NIC number idx of a VM, one
// end ("listen" or "connect") of a point-to-point virtual cable on
// loopback. A VM with two such NICs bridges them (netconf), joining three
// VMs on one LAN.
func MeshNIC(node, idx int, mode, addr string) []string {
	id := fmt.Sprintf("mesh%d", idx)
	return []string{
		"-netdev", "socket,id=" + id + "," + mode + "=" + addr,
		"-device", fmt.Sprintf("e1000,netdev=%s,mac=52:54:00:4d:%02x:%02x", id, idx, node+1),
	}
}
