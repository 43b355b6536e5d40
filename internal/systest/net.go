// Package systest runs real Hypha appliances for system tests: each node
// is a hyphad process (and, if it serves models, an inferd process) inside
// its own network namespace, all namespaces joined by a bridge, exactly
// as boxes on a village LAN. Tests drive them over HTTP from inside a
// namespace and kill them with SIGKILL.
//
// Everything here needs root and iproute2; NewNet skips the test when
// either is missing (and fails it on CI, where make test provides both).
// Only namespaces the test creates are ever touched.
package systest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Net is a test LAN: one network namespace per node, each with a veth
// into a bridge that lives in a "switch" namespace of its own. Node i has
// the address 10.88.0.(i+1)/24 on eth0 and its own loopback.
type Net struct {
	t      testing.TB
	prefix string
	n      int
}

// NewNet creates count node namespaces named <prefix><pid>-n<i> and their
// switch, and deletes them when the test ends. prefix names the area
// (e.g. "hyr") so parallel test packages never collide.
func NewNet(t testing.TB, prefix string, count int) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "iproute2 not installed (make deps installs it)")
	}
	n := &Net{t: t, prefix: fmt.Sprintf("%s%d", prefix, os.Getpid()%100000), n: count}
	if out, err := exec.Command("ip", "netns", "add", n.sw()).CombinedOutput(); err != nil {
		skipOrFail(t, fmt.Sprintf("cannot create network namespaces here: %v: %s", err, out))
	}
	t.Cleanup(func() {
		for i := range count {
			exec.Command("ip", "netns", "del", n.NS(i)).Run()
		}
		exec.Command("ip", "netns", "del", n.sw()).Run()
	})
	n.ip("-n", n.sw(), "link", "add", "br0", "type", "bridge")
	n.ip("-n", n.sw(), "link", "set", "br0", "up")
	for i := range count {
		ns := n.NS(i)
		n.ip("netns", "add", ns)
		n.ip("-n", ns, "link", "set", "lo", "up")
		n.ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", n.port(i), "netns", n.sw())
		n.ip("-n", n.sw(), "link", "set", n.port(i), "master", "br0", "up")
		n.ip("-n", ns, "addr", "add", n.Addr(i)+"/24", "dev", "eth0")
		n.ip("-n", ns, "link", "set", "eth0", "up")
	}
	return n
}

// skipOrFail skips a test whose environment lacks something, except on CI
// (CI=true), where make test provides everything and a skip would hide a
// missing capability.
func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Len is the number of node namespaces.
func (n *Net) Len() int { return n.n }

// NS is node i's namespace name.
func (n *Net) NS(i int) string { return fmt.Sprintf("%s-n%d", n.prefix, i) }

// Addr is node i's LAN address.
func (n *Net) Addr(i int) string { return fmt.Sprintf("10.88.0.%d", i+1) }

func (n *Net) sw() string        { return n.prefix + "-sw" }
func (n *Net) port(i int) string { return fmt.Sprintf("p%d", i) }

// Cut takes node i's switch port down (its cable pulled); Heal puts it back.
func (n *Net) Cut(i int)  { n.ip("-n", n.sw(), "link", "set", n.port(i), "down") }
func (n *Net) Heal(i int) { n.ip("-n", n.sw(), "link", "set", n.port(i), "up") }

// In runs fn on an OS thread switched into node i's namespace, so every
// socket fn creates lives there. The thread is discarded afterwards.
func (n *Net) In(i int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(n.NS(i))
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Dialer returns a DialContext that opens connections from inside node
// i's namespace, as a program running on that box would.
func (n *Net) Dialer(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.In(i, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Client is an HTTP client whose connections start in node i's namespace:
// "http://127.0.0.1:11434" is that node's own gateway.
func (n *Net) Client(i int) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: n.Dialer(i), MaxIdleConnsPerHost: 16,
		IdleConnTimeout: 30 * time.Second, DisableCompression: true}}
}
