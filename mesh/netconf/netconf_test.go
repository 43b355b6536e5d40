package netconf

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func key(seed byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)).Public().(ed25519.PublicKey)
}

func TestULA(t *testing.T) {
	a, b := ULA(key(1)), ULA(key(1))
	if a != b {
		t.Fatalf("ULA not deterministic: %s vs %s", a, b)
	}
	if !netip.MustParsePrefix("fd00::/8").Contains(a) {
		t.Fatalf("%s not in fd00::/8", a)
	}
	if ULA(key(2)) == a {
		t.Fatal("two keys, one address")
	}
	// Golden value: changing the derivation would renumber every box.
	if got, want := a.String(), golden(t); got != want {
		t.Fatalf("ULA(seed 1) = %s, want %s", got, want)
	}
}

func golden(t *testing.T) string {
	b, err := os.ReadFile("testdata/ula-seed1.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := New(Config{PublicKey: key(1), Bridge: "a-very-long-bridge-name"}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("long bridge name: %v", err)
	}
}

// testNS creates a namespace named hym-nc-<pid>-<suffix> and returns its
// handle; it is deleted at cleanup.
func testNS(t *testing.T, suffix string) (string, netns.NsHandle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	name := fmt.Sprintf("hym-nc-%d-%s", os.Getpid()%100000, suffix)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here: ip netns add %s: %v: %s", name, err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	return name, h
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestApplyInNamespace: two veths (one with an IPv4 address) in a fresh
// namespace end up on the mesh bridge, the address moves to the bridge, the
// bridge gets the key's ULA; Apply is idempotent; after "reboot" (bridge
// deleted, new Manager) the same address comes back; a veth added while
// Run is active joins the bridge; the ULA answers ping6 from a peer.
func TestApplyInNamespace(t *testing.T) {
	name, h := testNS(t, "a")
	peerName, _ := testNS(t, "b")
	ip(t, "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", "netns", peerName)
	ip(t, "-n", name, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", "netns", peerName)
	ip(t, "-n", name, "addr", "add", "10.99.0.1/24", "dev", "eth0")
	ip(t, "-n", name, "link", "add", "loop0", "type", "veth", "peer", "name", "loop1") // both ends here

	cfg := Config{PublicKey: key(1), NetNS: h, Logger: quiet()}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := m.Apply()
	if err != nil {
		t.Fatal(err)
	}
	// One end of the loop0/loop1 pair only: both would make a bridge loop.
	if len(res.Links) != 3 || res.Links[0] != "eth0" || res.Links[1] != "eth1" || (res.Links[2] != "loop0" && res.Links[2] != "loop1") {
		t.Fatalf("links on bridge = %v, want eth0, eth1 and one of loop0/loop1", res.Links)
	}
	if res.Addr != netip.PrefixFrom(ULA(key(1)), ULAPrefixLen) || res.Bridge != DefaultBridge {
		t.Fatalf("result %+v", res)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	check := func(stage string, wantAddrs ...string) {
		t.Helper()
		br, err := nl.LinkByName(DefaultBridge)
		if err != nil {
			t.Fatalf("%s: bridge: %v", stage, err)
		}
		if br.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("%s: bridge down", stage)
		}
		for _, l := range []string{"eth0", "eth1"} {
			ln, err := nl.LinkByName(l)
			if err != nil || ln.Attrs().MasterIndex != br.Attrs().Index || ln.Attrs().Flags&net.FlagUp == 0 {
				t.Fatalf("%s: %s not up on the bridge (%v)", stage, l, err)
			}
		}
		addrs, _ := nl.AddrList(br, netlink.FAMILY_ALL)
		var got []string
		for _, a := range addrs {
			got = append(got, a.IPNet.String())
		}
		for _, want := range append(wantAddrs, res.Addr.String()) {
			if !slices.Contains(got, want) {
				t.Fatalf("%s: bridge addresses %v lack %s", stage, got, want)
			}
		}
	}
	check("first apply", "10.99.0.1/24")
	if res2, err := m.Apply(); err != nil || !slices.Equal(res2.Links, res.Links) {
		t.Fatalf("second apply: %+v, %v", res2, err)
	}
	check("second apply", "10.99.0.1/24")

	// "Reboot": the bridge is gone, a new manager derives the same address.
	if err := nl.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: DefaultBridge}}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m2.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if br, err := nl.LinkByName(DefaultBridge); err == nil {
			if addrs, _ := nl.AddrList(br, netlink.FAMILY_V6); slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.String() == res.Addr.Addr().String() }) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("after restart the bridge did not get the same ULA")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m2.ULA() != res.Addr {
		t.Fatalf("address changed across restart: %s -> %s", res.Addr, m2.ULA())
	}
	// A link plugged in while running joins the bridge.
	ip(t, "-n", name, "link", "add", "eth2", "type", "veth", "peer", "name", "eth2p", "netns", peerName)
	deadline = time.Now().Add(5 * time.Second)
	for {
		l, err := nl.LinkByName("eth2")
		br, _ := nl.LinkByName(DefaultBridge)
		if err == nil && br != nil && l.Attrs().MasterIndex == br.Attrs().Index {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hot-plugged eth2 not put on the bridge")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The ULA is reachable from the other end of eth0.
	ip(t, "-n", peerName, "link", "set", "peer0", "up")
	ip(t, "-n", peerName, "addr", "add", "fd00::2/8", "dev", "peer0", "nodad")
	check("after restart")
	if err := dialFrom(mustNS(t, peerName), netip.AddrPortFrom(res.Addr.Addr(), 9)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("TCP to [%s]:9 from the peer: %v, want connection refused (address reachable, port closed)", res.Addr.Addr(), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestWatch sees a link go down and up and an address added, in a namespace.
func TestWatch(t *testing.T) {
	name, h := testNS(t, "w")
	ip(t, "-n", name, "link", "add", "w0", "type", "veth", "peer", "name", "w1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan Event, 64)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, h, func(e Event) { events <- e }) }()
	time.Sleep(200 * time.Millisecond) // subscription in place
	ip(t, "-n", name, "link", "set", "w0", "up")
	ip(t, "-n", name, "link", "set", "w1", "up")
	ip(t, "-n", name, "addr", "add", "10.98.0.1/24", "dev", "w0")
	ip(t, "-n", name, "link", "set", "w0", "down")
	var sawUp, sawAddr, sawDown bool
	timeout := time.After(5 * time.Second)
	for !(sawUp && sawAddr && sawDown) {
		select {
		case e := <-events:
			switch {
			case e.Kind == LinkChanged && e.Link == "w0" && e.Up:
				sawUp = true
			case e.Kind == AddrAdded && e.Addr == netip.MustParsePrefix("10.98.0.1/24"):
				sawAddr = true
			case e.Kind == LinkChanged && e.Link == "w0" && !e.Up && sawUp:
				sawDown = true
			}
		case <-timeout:
			t.Fatalf("events: up %v addr %v down %v", sawUp, sawAddr, sawDown)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func mustNS(t *testing.T, name string) netns.NsHandle {
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// dialFrom opens a TCP connection to ap from inside namespace ns, on a
// thread of its own that is discarded afterwards (never unlocked, so no
// other goroutine ever runs in the wrong namespace).
func dialFrom(ns netns.NsHandle, ap netip.AddrPort) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		c, err := net.DialTimeout("tcp", ap.String(), 3*time.Second)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	return <-errc
}
