package images_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/univrs/hypha/images"
	"github.com/univrs/hypha/provisioning"
)

// TestTwoAppliancesMesh boots two appliances of one community, joined by a
// virtual LAN on loopback (qemu socket netdev), and waits until each LAN
// page lists the other as an up peer — what `make demo` shows.
func TestTwoAppliancesMesh(t *testing.T) {
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	community := filepath.Join(dir, "community")
	t.Setenv("HYPHA_STEWARD_PASSWORD", "test-steward")
	if _, _, err := provisioning.Init(community, provisioning.InitOptions{
		Name: "Test Valley", Bioregion: "Test Basin", StewardName: "Tess", Password: "test-steward",
	}); err != nil {
		t.Fatal(err)
	}
	perm := filepath.Join(dir, "perm")
	if err := provisioning.BakePerm(community, perm); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "mesh.img")
	if _, err := images.Build(ctx, images.Options{Config: loadConfig(t, "amd64"), Target: images.Targets["amd64"],
		Version: "mesh-1", Output: img, PermDir: perm, ModuleDir: ".."}); err != nil {
		t.Fatal(err)
	}
	img2 := img + ".node1"
	if err := images.CopySparse(img, img2); err != nil {
		t.Fatal(err)
	}
	link := freeAddr(t)
	var vms []*images.VM
	for i, disk := range []string{img, img2} {
		vm := &images.VM{Image: disk, LANAddr: freeAddr(t), Dir: disk + ".vm", ExtraArgs: images.MeshLink(i, link)}
		if err := vm.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vm.Stop() })
		vms = append(vms, vm)
		if i == 0 {
			time.Sleep(500 * time.Millisecond) // the first qemu listens on the link
		}
	}
	start := time.Now()
	ids := make([]string, len(vms))
	for i, vm := range vms {
		wctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
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
	t.Logf("BENCH two appliances: both LAN pages answering after %.1f s", time.Since(start).Seconds())
	seen := func(vm *images.VM, other string) (bool, string) {
		b, err := getBody("http://" + vm.LANAddr + "/api/mesh")
		if err != nil {
			return false, err.Error()
		}
		var m struct {
			Mesh struct {
				Data struct {
					Peers []struct{ ID, State string }
				}
			}
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return false, string(b)
		}
		for _, p := range m.Mesh.Data.Peers {
			if p.ID == other && p.State == "up" {
				return true, ""
			}
		}
		return false, string(b)
	}
	deadline := time.Now().Add(4 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		ok0, s0 := seen(vms[0], ids[1])
		ok1, s1 := seen(vms[1], ids[0])
		if ok0 && ok1 {
			t.Logf("BENCH two appliances: each lists the other as up %.1f s after both LAN pages answered", time.Since(start).Seconds())
			return
		}
		last = fmt.Sprintf("node0: %s\nnode1: %s", s0, s1)
		time.Sleep(time.Second)
	}
	t.Fatalf("the appliances did not find each other; last mesh views:\n%s", last)
}
