package hwtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestNetlinkInNamespace creates a network namespace (hwtest-<pid>) with a
// veth pair and checks what the netlink probe reports: kinds, MTU, up and
// carrier, and carrier loss when the peer goes down.
func TestNetlinkInNamespace(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	name := fmt.Sprintf("hwtest-%d", os.Getpid())
	ns, err := netns.NewNamed(name) // the thread is now inside it
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	defer ns.Close()
	t.Cleanup(func() { netns.DeleteNamed(name) })
	defer netns.Set(orig)

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hwt0", MTU: 1400}, PeerName: "hwt1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"lo", "hwt0", "hwt1"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	p := &Prober{}
	get := func(want bool) map[string]NIC {
		deadline := time.Now().Add(3 * time.Second)
		for {
			nics, err := p.netlinkLinks()
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]NIC{}
			for _, n := range nics {
				m[n.Name] = n
			}
			if m["hwt0"].Carrier == want || time.Now().After(deadline) {
				return m
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	m := get(true)
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"hwt0", "hwt1", "lo"}) {
		t.Fatalf("interfaces %v, want only the namespace's", names)
	}
	if lo := m["lo"]; lo.Kind != "loopback" || !lo.Up {
		t.Errorf("lo %+v", lo)
	}
	if v := m["hwt0"]; v.Kind != "veth" || v.MTU != 1400 || !v.Up || !v.Carrier || v.MAC == "" || v.Wireless {
		t.Errorf("hwt0 %+v", v)
	}
	peer, _ := netlink.LinkByName("hwt1")
	netlink.LinkSetDown(peer)
	m = get(false)
	if v := m["hwt0"]; !v.Up || v.Carrier {
		t.Errorf("hwt0 after the peer went down: %+v, want up without carrier", v)
	}
	if v := m["hwt1"]; v.Up {
		t.Errorf("hwt1 %+v, want down", v)
	}
}

// TestReadProbeBlockDevice runs the disk read probe with O_DIRECT on a
// real block device (a loop device over a temp file) and checks the
// bounds on bytes and time.
func TestReadProbeBlockDevice(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root (loop device)")
	}
	back := t.TempDir() + "/disk.raw"
	if err := os.WriteFile(back, make([]byte, 24<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", back).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	rate, n, err := readProbe(context.Background(), dev, 16<<20, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n != 16<<20 || rate <= 0 {
		t.Fatalf("read %d bytes at %.0f B/s, want the 16 MiB limit", n, rate)
	}
	// A tiny time budget stops early but still reports what it read.
	_, n, err = readProbe(context.Background(), dev, 1<<40, time.Nanosecond)
	if err != nil || n < 1<<20 || n >= 24<<20 {
		t.Fatalf("bounded by time: %d bytes, %v", n, err)
	}
}
