package mesh

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/univrs/hypha/mesh/netconf"
	"github.com/vishvananda/netns"
)

// mdnsRunner owns the mDNS service. The service advertises the addresses
// the host had when it started (go-libp2p #1163) and does not re-report a
// peer it has already found, so it is restarted whenever a link or an
// address changes. The zero value (mDNS disabled) is a no-op.
type mdnsRunner struct {
	n *Node

	mu  sync.Mutex
	svc mdns.Service // guarded by mu
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) { m.n.addCandidate(ai, true) }

func (r *mdnsRunner) restart() {
	if r.n == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.svc != nil {
		_ = r.svc.Close()
		r.svc = nil
	}
	if r.n.ctx.Err() != nil {
		return
	}
	if !multicastUp() {
		// zeroconf would retry and log every few seconds; the next link
		// event starts mDNS again.
		r.n.log.Info("mdns paused: no multicast link up")
		return
	}
	svc := mdns.NewMdnsService(r.n.h, r.n.cfg.ServiceName, mdnsNotifee{r.n})
	if err := svc.Start(); err != nil {
		// No address yet (link down at boot): the next link event retries.
		r.n.log.Info("mdns not started", "err", err)
		_ = svc.Close()
		return
	}
	r.svc = svc
}

func (r *mdnsRunner) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.svc != nil {
		_ = r.svc.Close()
		r.svc = nil
	}
}

// watchLinks reacts to netlink link and address changes (a cable plugged
// in, a DHCP lease, a link going down): after a short debounce it restarts
// mDNS and redials every member and candidate that is not directly
// connected. A node where netlink is unavailable logs once and carries on.
func (n *Node) watchLinks() {
	defer n.wg.Done()
	events := make(chan netconf.Event, 64)
	errc := make(chan error, 1)
	go func() {
		errc <- netconf.Watch(n.ctx, netns.None(), func(e netconf.Event) {
			select {
			case events <- e:
			default:
			}
		})
	}()
	var debounce <-chan time.Time
	for {
		select {
		case <-n.ctx.Done():
			<-errc
			return
		case err := <-errc:
			if err != nil {
				n.log.Warn("link watch unavailable; mesh will not react to link changes", "err", err)
			}
			<-n.ctx.Done()
			return
		case e := <-events:
			n.log.Debug("link event", "event", e)
			if debounce == nil {
				debounce = time.After(300 * time.Millisecond)
			}
		case <-debounce:
			debounce = nil
			n.onLinkChange()
		}
	}
}

// onLinkChange restarts discovery and makes every unreachable or relayed
// member and every candidate due for a dial now.
func (n *Node) onLinkChange() {
	n.log.Info("links changed: restarting mDNS and redialling")
	n.closeStaleConns()
	n.mdns.restart()
	now := time.Now()
	n.mu.Lock()
	for _, m := range n.members {
		if m.reach != ReachDirect {
			m.nextDial, m.nextUp, m.backoff = now, now, 0
		}
	}
	for _, c := range n.cands {
		c.nextDial, c.backoff = now, 0
	}
	n.mu.Unlock()
	n.kickMaintain()
}

// closeStaleConns closes connections whose local address is no longer on
// an interface that is up with carrier: their packets go nowhere, and the
// peer is better redialled at once over another link than found dead by
// the liveness ping seconds later.
func (n *Node) closeStaleConns() {
	live := map[netip.Addr]bool{}
	ifaces, err := net.Interfaces()
	if err != nil {
		return
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagRunning == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				live[p.Addr().Unmap()] = true
			}
		}
	}
	for _, c := range n.h.Network().Conns() {
		if isRelayed(c) {
			continue
		}
		ip, err := manet.ToIP(c.LocalMultiaddr())
		if err != nil {
			continue
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok || a.IsUnspecified() || live[a.Unmap()] {
			continue
		}
		n.log.Info("closing connection on a lost link", "peer", c.RemotePeer(), "local", c.LocalMultiaddr())
		_ = c.Close()
	}
}

// multicastUp reports whether a non-loopback interface that can multicast
// is up with carrier.
func multicastUp() bool {
	ifaces, err := net.Interfaces()
	if err != nil {
		return true // let mDNS find out
	}
	for _, ifc := range ifaces {
		f := ifc.Flags
		if f&net.FlagUp != 0 && f&net.FlagRunning != 0 && f&net.FlagMulticast != 0 && f&net.FlagLoopback == 0 {
			return true
		}
	}
	return false
}
