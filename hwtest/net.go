package hwtest

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkLinks lists the interfaces of the calling thread's network
// namespace via netlink (carrier = IFF_LOWER_UP) and completes them from
// sysfs (speed, wireless).
func (p *Prober) netlinkLinks() ([]NIC, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	out := make([]NIC, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		n := NIC{Name: a.Name, Kind: l.Type(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0,
			Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0}
		if len(a.HardwareAddr) > 0 {
			n.MAC = a.HardwareAddr.String()
		}
		if a.Flags&net.FlagLoopback != 0 {
			n.Kind = "loopback"
		}
		// sysfs shows the network namespace it was mounted in: use it only
		// when it describes this very interface.
		if s, err := p.readString("sys/class/net", a.Name, "ifindex"); err == nil && s == strconv.Itoa(a.Index) {
			carrier := n.Carrier
			p.sysfsLink(&n)
			n.Carrier = carrier
		}
		out = append(out, n)
	}
	return out, nil
}

// sysfsLinks lists /sys/class/net (used with a recorded root).
func (p *Prober) sysfsLinks() ([]NIC, error) {
	ents, err := os.ReadDir(p.path("sys/class/net"))
	if err != nil {
		return nil, err
	}
	out := make([]NIC, 0, len(ents))
	for _, e := range ents {
		n := NIC{Name: e.Name()}
		n.MAC, _ = p.readString("sys/class/net", e.Name(), "address")
		if s, err := p.readString("sys/class/net", e.Name(), "mtu"); err == nil {
			n.MTU, _ = strconv.Atoi(s)
		}
		if s, err := p.readString("sys/class/net", e.Name(), "operstate"); err == nil {
			n.Up = s == "up" || s == "unknown"
		}
		p.sysfsLink(&n)
		out = append(out, n)
	}
	return out, nil
}

// sysfsLink fills speed, carrier and wireless. Reading speed or carrier of
// a down interface fails with EINVAL: that means unknown, not an error.
func (p *Prober) sysfsLink(n *NIC) {
	if s, err := p.readString("sys/class/net", n.Name, "carrier"); err == nil {
		n.Carrier = s == "1"
	}
	if s, err := p.readString("sys/class/net", n.Name, "speed"); err == nil {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n.SpeedMbps = v
		}
	}
	for _, w := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(p.path("sys/class/net", n.Name, w)); err == nil {
			n.Wireless = true
		}
	}
}
