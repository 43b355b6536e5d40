// Package netconf sets up the box's links for the community mesh with
// netlink: every ethernet link goes onto one mesh bridge, and the bridge
// gets a stable IPv6 unique local address derived from the node's public
// key (as Yggdrasil and cjdns derive addresses from keys), so a node keeps
// its address across reboots and reinstalls without any coordination.
//
// Everything works inside a network namespace: Config.NetNS selects it,
// and no call changes the namespace of the calling thread.
package netconf

import (
	"context"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sentinel errors of package netconf.
var (
	// ErrBadConfig reports an invalid Config field.
	ErrBadConfig = errors.New("netconf: bad config")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("netconf: closed")
)

// DefaultBridge is the name of the mesh bridge.
const DefaultBridge = "hymesh0"

// ULAPrefixLen is the prefix length the ULA is configured with: all of
// fd00::/8 is on-link on the mesh bridge, so every node's address is
// reachable by neighbour discovery without routes.
const ULAPrefixLen = 8

// ULA returns the stable IPv6 unique local address of the node with public
// key pub: the byte 0xfd followed by the first 15 bytes of
// SHA-512("hypha-ula\x00" || pub). It panics if pub is not 32 bytes.
func ULA(pub ed25519.PublicKey) netip.Addr {
	if len(pub) != ed25519.PublicKeySize {
		panic(fmt.Sprintf("netconf.ULA: public key of %d bytes", len(pub)))
	}
	h := sha512.Sum512(append([]byte("hypha-ula\x00"), pub...))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:], h[:15])
	return netip.AddrFrom16(a)
}

// Config configures a Manager.
type Config struct {
	// PublicKey is the node's ed25519 public key. Required.
	PublicKey ed25519.PublicKey
	// Bridge is the mesh bridge's name. Default DefaultBridge.
	Bridge string
	// Links names the links to put on the bridge. Default: every ethernet
	// link (physical NICs and veths; not loopback, bridges, wireless or
	// links enslaved elsewhere), including ones plugged in later.
	Links []string
	// NetNS is the network namespace to configure. Default: the current
	// one (a zero value or netns.None()).
	NetNS netns.NsHandle
	// Logger receives a line per change made. Default slog.Default().
	Logger *slog.Logger
}

// Result tells what Apply configured.
type Result struct {
	Bridge string       // the bridge name
	Addr   netip.Prefix // the ULA on the bridge
	Links  []string     // links on the bridge, sorted
}

// Manager configures links in one namespace. Its methods are safe for
// concurrent use (they serialise); Close is idempotent.
type Manager struct {
	cfg Config
	log *slog.Logger
	ula netip.Prefix

	mu     sync.Mutex
	h      *netlink.Handle // guarded by mu; nil after Close
	closed bool
}

// New opens a netlink handle in the configured namespace.
func New(cfg Config) (*Manager, error) {
	if len(cfg.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("netconf.New: %w: public key of %d bytes, want %d", ErrBadConfig, len(cfg.PublicKey), ed25519.PublicKeySize)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.Bridge) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("netconf.New: %w: bridge name %q longer than %d bytes", ErrBadConfig, cfg.Bridge, unix.IFNAMSIZ-1)
	}
	if cfg.NetNS == 0 {
		cfg.NetNS = netns.None()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var h *netlink.Handle
	var err error
	if cfg.NetNS.IsOpen() {
		h, err = netlink.NewHandleAt(cfg.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("netconf.New: netlink handle: %w", err)
	}
	return &Manager{
		cfg: cfg, log: cfg.Logger.With("sub", "netconf"), h: h,
		ula: netip.PrefixFrom(ULA(cfg.PublicKey), ULAPrefixLen),
	}, nil
}

// Close releases the netlink handle. It leaves the configuration in place.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.h.Close()
	}
	return nil
}

// ULA returns the address (with ULAPrefixLen) Apply puts on the bridge.
func (m *Manager) ULA() netip.Prefix { return m.ula }

// Apply brings up loopback and the bridge, puts the ethernet links on it
// (moving their global addresses to the bridge so they keep working) and
// sets the ULA. It is idempotent: running it again changes nothing unless
// links changed.
func (m *Manager) Apply() (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Result{}, fmt.Errorf("netconf apply: %w", ErrClosed)
	}
	h := m.h
	if lo, err := h.LinkByName("lo"); err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(lo); err != nil {
			return Result{}, fmt.Errorf("netconf apply: loopback up: %w", err)
		}
	}
	br, err := m.bridgeLocked()
	if err != nil {
		return Result{}, err
	}
	links, err := h.LinkList()
	if err != nil {
		return Result{}, fmt.Errorf("netconf apply: list links: %w", err)
	}
	res := Result{Bridge: m.cfg.Bridge, Addr: m.ula}
	chosen := map[int]bool{}
	for _, l := range links {
		a := l.Attrs()
		if !m.wantedLocked(l, br.Attrs().Index) {
			continue
		}
		// Both ends of a veth pair on one bridge make a loop that floods
		// the LAN: take only the first end.
		if l.Type() == "veth" && a.NetNsID < 0 && chosen[a.ParentIndex] && len(m.cfg.Links) == 0 {
			continue
		}
		chosen[a.Index] = true
		if a.MasterIndex != br.Attrs().Index {
			if err := m.moveAddrsLocked(l, br); err != nil {
				return res, err
			}
			if err := h.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
				return res, fmt.Errorf("netconf apply: put %s on %s: %w", a.Name, m.cfg.Bridge, err)
			}
			m.log.Info("link on mesh bridge", "link", a.Name, "bridge", m.cfg.Bridge)
		}
		if a.Flags&net.FlagUp == 0 {
			if err := h.LinkSetUp(l); err != nil {
				return res, fmt.Errorf("netconf apply: %s up: %w", a.Name, err)
			}
		}
		res.Links = append(res.Links, a.Name)
	}
	slices.Sort(res.Links)
	addr := &netlink.Addr{
		IPNet: &net.IPNet{IP: m.ula.Addr().AsSlice(), Mask: net.CIDRMask(ULAPrefixLen, 128)},
		Flags: unix.IFA_F_NODAD, // the address is unique by construction
	}
	if err := h.AddrReplace(br, addr); err != nil {
		return res, fmt.Errorf("netconf apply: address %s on %s: %w", m.ula, m.cfg.Bridge, err)
	}
	return res, nil
}

// bridgeLocked returns the mesh bridge, creating it and bringing it up.
func (m *Manager) bridgeLocked() (netlink.Link, error) {
	h := m.h
	l, err := h.LinkByName(m.cfg.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("netconf apply: bridge %s: %w", m.cfg.Bridge, err)
		}
		off := false // flood multicast (mDNS) to every port
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: m.cfg.Bridge}, MulticastSnooping: &off}
		if err := h.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("netconf apply: create bridge %s: %w", m.cfg.Bridge, err)
		}
		m.log.Info("created mesh bridge", "bridge", m.cfg.Bridge)
		if l, err = h.LinkByName(m.cfg.Bridge); err != nil {
			return nil, fmt.Errorf("netconf apply: bridge %s: %w", m.cfg.Bridge, err)
		}
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("netconf apply: %w: %s exists and is a %s, not a bridge", ErrBadConfig, m.cfg.Bridge, l.Type())
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("netconf apply: bridge %s up: %w", m.cfg.Bridge, err)
		}
	}
	return l, nil
}

// wantedLocked reports whether l belongs on the bridge.
func (m *Manager) wantedLocked(l netlink.Link, brIndex int) bool {
	a := l.Attrs()
	if len(m.cfg.Links) > 0 {
		return slices.Contains(m.cfg.Links, a.Name)
	}
	return IsEthernet(l) && (a.MasterIndex == 0 || a.MasterIndex == brIndex)
}

// IsEthernet reports whether l is an ethernet link that belongs on the
// mesh bridge by default: a physical NIC with an ethernet encapsulation or
// a veth; never loopback, bridges, bonds, tunnels or wireless (which
// cannot be bridged in station mode).
func IsEthernet(l netlink.Link) bool {
	a := l.Attrs()
	if a.Flags&net.FlagLoopback != 0 || strings.HasPrefix(a.Name, "wl") {
		return false
	}
	switch l.Type() {
	case "veth":
		return true
	case "device":
		return a.EncapType == "ether" && len(a.HardwareAddr) == 6
	}
	return false
}

// moveAddrsLocked moves l's global addresses to the bridge.
func (m *Manager) moveAddrsLocked(l, br netlink.Link) error {
	addrs, err := m.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("netconf apply: addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		moved := &netlink.Addr{IPNet: a.IPNet}
		if err := m.h.AddrDel(l, &a); err != nil {
			return fmt.Errorf("netconf apply: remove %s from %s: %w", a.IPNet, l.Attrs().Name, err)
		}
		if err := m.h.AddrReplace(br, moved); err != nil {
			return fmt.Errorf("netconf apply: move %s to %s: %w", a.IPNet, br.Attrs().Name, err)
		}
		m.log.Info("moved address to mesh bridge", "addr", a.IPNet, "from", l.Attrs().Name)
	}
	return nil
}

// Run applies the configuration, then re-applies it whenever a link
// appears or changes (a NIC plugged in), until ctx is done. It returns nil
// on cancellation.
func (m *Manager) Run(ctx context.Context) error {
	if _, err := m.Apply(); err != nil {
		return err
	}
	kick := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Watch(ctx, m.cfg.NetNS, func(e Event) {
			if e.Kind == LinkChanged {
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		})
	}()
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case err := <-errc:
			return err
		case <-kick:
			if _, err := m.Apply(); err != nil {
				m.log.Warn("re-applying mesh links", "err", err)
			}
		}
	}
}
