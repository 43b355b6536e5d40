package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/images"
)

// nodeInfo is the part of hyphad's /api/node the boot test reads.
type nodeInfo struct {
	Name     string `json:"name"`
	PeerID   string `json:"peerId"`
	Version  string `json:"version"`
	Services []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"services"`
}

func needQemu(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots qemu; skipped with -short")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.fat", "mcopy", "syslinux", "mksquashfs", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s missing: make test installs it (make deps)", tool)
			}
			t.Skipf("%s missing (run make deps)", tool)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func loadConfig(t *testing.T, target string) *images.Config {
	t.Helper()
	cfg, err := images.LoadConfig(filepath.Join(target, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// bootAndRead boots vm and returns /api/node once the LAN page answers.
func bootAndRead(t *testing.T, ctx context.Context, vm *images.VM, label string) nodeInfo {
	t.Helper()
	start := time.Now()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop() })
	wctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	b, err := vm.WaitHTTP(wctx, "http://"+vm.LANAddr+"/api/node")
	if err != nil {
		serial, _ := os.ReadFile(vm.SerialLog())
		t.Fatalf("%s: %v\nserial log tail:\n%s", label, err, tail(serial, 3000))
	}
	t.Logf("BENCH boot %s: qemu start -> LAN page answering: %.1f s", label, time.Since(start).Seconds())
	var ni nodeInfo
	if err := json.Unmarshal(b, &ni); err != nil {
		t.Fatalf("%s: /api/node: %v: %s", label, err, b)
	}
	page, err := vm.WaitHTTP(wctx, "http://"+vm.LANAddr+"/")
	if err != nil {
		t.Fatalf("%s: LAN page: %v", label, err)
	}
	if !bytes.Contains(page, []byte(ni.Name)) || !bytes.Contains(page, []byte(ni.Version)) {
		t.Errorf("%s: the LAN page does not show the node name %q and version %q", label, ni.Name, ni.Version)
	}
	return ni
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestApplianceBootUpdate builds the amd64 image, boots it under legacy
// BIOS, checks the identity survives a power cycle, refuses a corrupted
// update without touching the running system, applies a real A/B update,
// and boots the updated disk again under UEFI.
func TestApplianceBootUpdate(t *testing.T) {
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	dir := t.TempDir()
	img := filepath.Join(dir, "hypha-amd64.img")
	cfg := loadConfig(t, "amd64")

	start := time.Now()
	res, err := images.Build(ctx, images.Options{Config: cfg, Target: images.Targets["amd64"],
		Version: "boot-v1", Output: img, ModuleDir: ".."})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH build amd64 image (warm cache): %.1f s", time.Since(start).Seconds())
	if fi, err := os.Stat(img); err == nil {
		t.Logf("BENCH image size: %d MiB apparent, %d MiB on disk", fi.Size()>>20, diskUsage(fi)>>20)
	}

	lan, upd, gw := freeAddr(t), freeAddr(t), freeAddr(t)
	bios := &images.VM{Image: img, LANAddr: lan, UpdateAddr: upd, GatewayAddr: gw, Dir: filepath.Join(dir, "vm-bios")}
	first := bootAndRead(t, ctx, bios, "BIOS")
	if first.Version != "boot-v1" || first.PeerID == "" || first.Name == "" {
		t.Fatalf("first boot: got %+v, want version boot-v1 and an identity", first)
	}
	running := map[string]string{}
	for _, s := range first.Services {
		running[s.Name] = s.State
	}
	if running["hyphad"] != "running" || running["dhcp"] != "running" || running["inferd"] != "running" {
		t.Errorf("services after boot: %v, want hyphad, inferd and dhcp running", running)
	}
	checkHardwareReport(t, ctx, lan)
	checkDefaultModelAnswers(t, ctx, gw)

	// A corrupt update: a truncated root file system is refused before
	// anything is sent…
	good := filepath.Join(dir, "v2.squashfs")
	if _, err := images.Build(ctx, images.Options{Config: cfg, Target: images.Targets["amd64"],
		Version: "boot-v2", Output: good, RootOnly: true, ModuleDir: ".."}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.squashfs")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	err = images.Update(ctx, "http://"+upd+"/", res.Password, truncated, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("update with a truncated root: err = %v, want a 'truncated' error", err)
	}
	// …and bytes damaged in transit are caught by the hash check, so the
	// appliance never switches to them.
	target, _ := url.Parse("http://" + upd)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = corruptingTransport{}
	psrv := &http.Server{Handler: proxy}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go psrv.Serve(pln)
	defer psrv.Close()
	err = images.Update(ctx, "http://"+pln.Addr().String()+"/", res.Password, good, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("update through a corrupting link: err = %v, want a checksum error", err)
	}

	// Power cycle: same identity, still the old version.
	bios.Stop()
	again := bootAndRead(t, ctx, bios, "BIOS reboot")
	if again.PeerID != first.PeerID || again.Name != first.Name {
		t.Fatalf("identity changed across a reboot: %s/%s -> %s/%s", first.Name, first.PeerID, again.Name, again.PeerID)
	}
	if again.Version != "boot-v1" {
		t.Fatalf("after a refused update the version is %q, want boot-v1", again.Version)
	}

	// The real update: upload, verify, switch, reboot through the firmware.
	ustart := time.Now()
	if err := images.Update(ctx, "http://"+upd+"/", res.Password, good, nil, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(6 * time.Minute)
	var after nodeInfo
	for time.Now().Before(deadline) {
		if b, err := getBody("http://" + lan + "/api/node"); err == nil {
			json.Unmarshal(b, &after)
			if after.Version == "boot-v2" {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if after.Version != "boot-v2" {
		t.Fatalf("after hypha update the LAN page shows version %q, want boot-v2", after.Version)
	}
	t.Logf("BENCH update: upload start -> new version answering: %.1f s", time.Since(ustart).Seconds())
	if after.PeerID != first.PeerID {
		t.Fatalf("identity changed across the update: %s -> %s", first.PeerID, after.PeerID)
	}
	bios.Stop()

	// UEFI boots the same (updated) disk: systemd-boot's loader entry was
	// switched to the new root too.
	uefi := &images.VM{Image: img, UEFI: true, LANAddr: freeAddr(t), Dir: filepath.Join(dir, "vm-uefi")}
	u := bootAndRead(t, ctx, uefi, "UEFI")
	if u.Version != "boot-v2" || u.PeerID != first.PeerID {
		t.Fatalf("UEFI boot: got version %q id %q, want boot-v2 and %q", u.Version, u.PeerID, first.PeerID)
	}
	uefi.Stop()
}

// checkDefaultModelAnswers: a new box serves the project's tiny model
// through its inference gateway (OpenAI API on :11434) with no setup.
func checkDefaultModelAnswers(t *testing.T, ctx context.Context, gw string) {
	t.Helper()
	body := `{"model":"hypha-kjv-tiny","messages":[{"role":"user","content":"In the beginning"}],"max_tokens":12,"temperature":0}`
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Post("http://"+gw+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var cc struct {
				Choices []struct{ Message struct{ Content string } }
			}
			if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &cc) == nil && len(cc.Choices) == 1 && cc.Choices[0].Message.Content != "" {
				t.Logf("the VM's default model says: %q", cc.Choices[0].Message.Content)
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("the default model did not answer through the VM's gateway: %s", last)
}

// checkHardwareReport: hwtest ran once at boot inside the VM and its report
// (on the LAN page) matches the machine qemu emulates: 2 CPUs, 1 GiB.
func checkHardwareReport(t *testing.T, ctx context.Context, lan string) {
	t.Helper()
	var hw struct {
		Hardware struct {
			Running bool
			Data    struct {
				Sections []struct {
					Name  string
					Items []struct{ Name, Value string }
				}
			}
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, err := getBody("http://" + lan + "/api/hardware")
		if err == nil && json.Unmarshal(b, &hw) == nil && len(hw.Hardware.Data.Sections) > 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("no hardware report from the VM's hwtest: %v %s", err, b)
		}
		time.Sleep(time.Second)
	}
	got := map[string]string{}
	for _, s := range hw.Hardware.Data.Sections {
		for _, it := range s.Items {
			got[s.Name+"/"+it.Name] = it.Value
		}
	}
	if got["CPU/cores"] != "2 threads" {
		t.Errorf("hwtest in the VM: CPU cores %q, want \"2 threads\" (qemu -smp 2)", got["CPU/cores"])
	}
	if m := got["Memory/total"]; !strings.Contains(m, "MiB") && !strings.Contains(m, "GiB") {
		t.Errorf("hwtest in the VM: memory %q", m)
	}
	t.Logf("hwtest in the VM: %v", got)
}

func getBody(u string) ([]byte, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// corruptingTransport flips one byte in the middle of every update upload.
type corruptingTransport struct{}

func (corruptingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/update/") {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		b[len(b)/2] ^= 0x40
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
	}
	return http.DefaultTransport.RoundTrip(r)
}
