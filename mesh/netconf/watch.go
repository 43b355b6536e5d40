package netconf

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// EventKind tells what changed.
type EventKind int

const (
	// LinkChanged: a link appeared, disappeared or changed state.
	LinkChanged EventKind = iota + 1
	// AddrAdded: an address was added to a link.
	AddrAdded
	// AddrRemoved: an address was removed from a link.
	AddrRemoved
)

func (k EventKind) String() string {
	switch k {
	case LinkChanged:
		return "link"
	case AddrAdded:
		return "addr+"
	case AddrRemoved:
		return "addr-"
	}
	return "unknown"
}

// Event is one netlink notification.
type Event struct {
	Kind  EventKind
	Index int    // link index
	Link  string // link name (LinkChanged only)
	// Up: the link is administratively up and has carrier (LinkChanged).
	Up      bool
	Deleted bool         // the link was removed (LinkChanged)
	Addr    netip.Prefix // AddrAdded, AddrRemoved
}

// Watch calls fn for every link and address change in namespace ns
// (netns.None() for the current one) until ctx is done, then returns nil.
// fn runs on Watch's goroutine and must not block for long. An error is
// returned if the subscription cannot be made or netlink fails.
func Watch(ctx context.Context, ns netns.NsHandle, fn func(Event)) error {
	var nsp *netns.NsHandle
	if ns.IsOpen() {
		nsp = &ns
	}
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	links := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("netconf watch: subscribe links: %w", err)
	}
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: nsp, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("netconf watch: subscribe addresses: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("netconf watch: %w", err)
		case u, ok := <-links:
			if !ok {
				return fmt.Errorf("netconf watch: link subscription closed")
			}
			a := u.Attrs()
			fn(Event{
				Kind: LinkChanged, Index: a.Index, Link: a.Name,
				Up:      a.Flags&net.FlagUp != 0 && u.IfInfomsg.Flags&unix.IFF_RUNNING != 0,
				Deleted: u.Header.Type == unix.RTM_DELLINK,
			})
		case u, ok := <-addrs:
			if !ok {
				return fmt.Errorf("netconf watch: address subscription closed")
			}
			kind := AddrRemoved
			if u.NewAddr {
				kind = AddrAdded
			}
			var p netip.Prefix
			if ip, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok {
				ones, _ := u.LinkAddress.Mask.Size()
				p = netip.PrefixFrom(ip.Unmap(), ones)
			}
			fn(Event{Kind: kind, Index: u.LinkIndex, Addr: p})
		}
	}
}
