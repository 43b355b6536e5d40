package images_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/images"
	"github.com/univrs/hypha/provisioning"
	"github.com/univrs/hypha/provisioning/flash"
)

// bakedImage builds an image with a new community baked into /perm.
func bakedImage(t *testing.T, ctx context.Context, dir, name string) string {
	t.Helper()
	community := filepath.Join(dir, name+"-community")
	if _, _, err := provisioning.Init(community, provisioning.InitOptions{
		Name: name, Bioregion: "Test Basin", StewardName: "Tess", Password: "test-steward",
	}); err != nil {
		t.Fatal(err)
	}
	perm := filepath.Join(dir, name+"-perm")
	if err := provisioning.BakePerm(community, perm); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, name+".img")
	if _, err := images.Build(ctx, images.Options{Config: loadConfig(t, "amd64"), Target: images.Targets["amd64"],
		Version: "mesh-1", Output: img, PermDir: perm, ModuleDir: "..", Size: 1300 << 20}); err != nil {
		t.Fatal(err)
	}
	return img
}

// loopDevice attaches a sparse file of size bytes as a loop device.
func loopDevice(t *testing.T, dir string, size int64) string {
	t.Helper()
	f := filepath.Join(dir, "stick.raw")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", f).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("losetup: %v: %s", err, out)
		}
		t.Skipf("no loop devices here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestCommunityMeshOfAppliances is the steward's whole path: a community
// is created, its image flashed to a (loop-device) stick with hypha's
// flasher, and that stick boots in qemu and meshes with a second
// appliance of the same community over a virtual LAN on loopback. A third
// appliance, provisioned for another community, sits on the same LAN and
// is never admitted. This is what `make demo` shows with two appliances.
func TestCommunityMeshOfAppliances(t *testing.T) {
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	dir := t.TempDir()
	img := bakedImage(t, ctx, dir, "Test Valley")
	other := bakedImage(t, ctx, dir, "Other Hill")

	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	stick := loopDevice(t, dir, fi.Size())
	res, err := flash.Flash(ctx, img, stick, flash.Options{})
	if err != nil {
		t.Fatalf("flash %s to %s: %v", img, stick, err)
	}
	t.Logf("flashed %s: %+v", stick, res)
	img2 := img + ".node1"
	if err := images.CopySparse(img, img2); err != nil {
		t.Fatal(err)
	}

	linkB, linkC := freeAddr(t), freeAddr(t)
	// The stick's appliance has two mesh ports (its netconf bridges them),
	// cabled to the second appliance and to the outsider.
	vms := []*images.VM{
		{Image: stick, LANAddr: freeAddr(t), Dir: filepath.Join(dir, "vm-stick"),
			ExtraArgs: append(images.MeshNIC(0, 0, "listen", linkB), images.MeshNIC(0, 1, "listen", linkC)...)},
		{Image: img2, LANAddr: freeAddr(t), Dir: filepath.Join(dir, "vm-b"), ExtraArgs: images.MeshNIC(1, 0, "connect", linkB)},
		{Image: other, LANAddr: freeAddr(t), Dir: filepath.Join(dir, "vm-outsider"), ExtraArgs: images.MeshNIC(2, 0, "connect", linkC)},
	}
	for i, vm := range vms {
		if err := vm.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vm.Stop() })
		if i == 0 {
			time.Sleep(500 * time.Millisecond) // the stick's qemu listens on both cables
		}
	}
	start := time.Now()
	ids := make([]string, len(vms))
	for i, vm := range vms {
		wctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
		b, err := vm.WaitHTTP(wctx, "http://"+vm.LANAddr+"/api/node")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var ni nodeInfo
		json.Unmarshal(b, &ni)
		ids[i] = ni.PeerID
	}
	if ids[0] == ids[1] || ids[0] == "" {
		t.Fatalf("two appliances from one image must create distinct identities, got %q and %q", ids[0], ids[1])
	}
	t.Logf("BENCH three appliances: all LAN pages answering after %.1f s", time.Since(start).Seconds())
	peers := func(vm *images.VM) (map[string]string, string) {
		b, err := getBody("http://" + vm.LANAddr + "/api/mesh")
		if err != nil {
			return nil, err.Error()
		}
		var m struct {
			Mesh struct {
				Data struct {
					Peers []struct{ ID, State string }
				}
			}
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, string(b)
		}
		out := map[string]string{}
		for _, p := range m.Mesh.Data.Peers {
			out[p.ID] = p.State
		}
		return out, string(b)
	}
	deadline := time.Now().Add(5 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		p0, s0 := peers(vms[0])
		p1, s1 := peers(vms[1])
		if p0[ids[1]] == "up" && p1[ids[0]] == "up" {
			t.Logf("BENCH community mesh: each lists the other as up %.1f s after all LAN pages answered", time.Since(start).Seconds())
			// The outsider shares the LAN but not the key: nobody admits it.
			p2, s2 := peers(vms[2])
			if _, ok := p0[ids[2]]; ok {
				t.Errorf("the appliance of another community was admitted: %s", s0)
			}
			if _, ok := p1[ids[2]]; ok {
				t.Errorf("the appliance of another community was admitted: %s", s1)
			}
			if len(p2) != 0 {
				t.Errorf("the outsider sees members of a community it does not belong to: %s", s2)
			}
			return
		}
		last = fmt.Sprintf("stick: %s\nnode b: %s", s0, s1)
		time.Sleep(time.Second)
	}
	t.Fatalf("the appliances did not find each other; last mesh views:\n%s", last)
}
