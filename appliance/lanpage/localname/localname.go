// Package localname makes a node reachable by name on its LAN: it answers
// multicast DNS (RFC 6762) queries for "<node-name>.local" with the box's
// addresses, so a steward types http://riverbend-1.local instead of an IP.
//
// Only A, AAAA and ANY questions for the one name are answered; everything
// else (other names, service discovery, responses of other hosts) is ignored,
// so the responder coexists with libp2p's mDNS on the same port (both bind
// UDP 5353 with SO_REUSEADDR/SO_REUSEPORT).
package localname

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Port is the mDNS port.
const Port = 5353

var (
	groupV4 = netip.MustParseAddr("224.0.0.251")
	groupV6 = netip.MustParseAddr("ff02::fb")
)

// Errors: ErrBadQuery is wrapped by Answer for a packet that is not a DNS
// message; ErrBadName for a node name that is not a DNS label.
var (
	ErrBadQuery = errors.New("localname: bad mDNS packet")
	ErrBadName  = errors.New("localname: node name is not a DNS label")
)

// checkName accepts a DNS label of 1 to 63 letters, digits and hyphens.
func checkName(name string) error {
	if len(name) == 0 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i] | 0x20
		if !(c >= 'a' && c <= 'z' || name[i] >= '0' && name[i] <= '9' || name[i] == '-') {
			return fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	return nil
}

// Responder answers mDNS queries for Name() + ".local". The zero value is not
// usable: set Name. Fields must not change after ListenAndServe or Serve is
// called; Name and Addrs are called for every matching query and must be
// safe for concurrent use.
type Responder struct {
	// Name returns the node name, a DNS label such as "riverbend-1".
	Name func() string
	// Addrs returns the addresses to answer with for a query that arrived
	// on interface ifIndex (0: unknown). Nil: the addresses of that
	// interface, or of every up interface when it is unknown (link-local
	// IPv6 only from the receiving interface).
	Addrs func(ifIndex int) []netip.Addr
	// TTL of the records. Zero: 120 s (RFC 6762 §10 for host records).
	TTL time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (r *Responder) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *Responder) ttl() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return 120 * time.Second
}

// Answer builds the response to one mDNS query for name (a label, without
// ".local") answering with addrs. legacy marks a query from a port other
// than 5353 (RFC 6762 §6.7: answer by unicast, echo the ID and the question,
// TTL at most 10 s). It returns nil when there is nothing to answer, and
// unicast when the querier asked for a unicast response (the QU bit).
func Answer(name string, addrs []netip.Addr, query []byte, legacy bool, ttl time.Duration) (resp []byte, unicast bool, err error) {
	if err := checkName(name); err != nil {
		return nil, false, err
	}
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false, fmt.Errorf("%w: header: %v", ErrBadQuery, err)
	}
	if h.Response || h.OpCode != 0 {
		return nil, false, nil
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil, false, fmt.Errorf("%w: questions: %v", ErrBadQuery, err)
	}
	fqdn := strings.ToLower(name) + ".local."
	var want4, want6 bool
	var asked []dnsmessage.Question
	for _, q := range qs {
		if !strings.EqualFold(q.Name.String(), fqdn) {
			continue
		}
		class := q.Class &^ (1 << 15)
		if class != dnsmessage.ClassINET && class != dnsmessage.ClassANY {
			continue
		}
		switch q.Type {
		case dnsmessage.TypeA:
			want4 = true
		case dnsmessage.TypeAAAA:
			want6 = true
		case dnsmessage.TypeALL:
			want4, want6 = true, true
		default:
			continue
		}
		if q.Class&(1<<15) != 0 {
			unicast = true
		}
		q.Class = class
		asked = append(asked, q)
	}
	if !want4 && !want6 {
		return nil, false, nil
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else if a.Is6() {
			v6 = append(v6, a)
		}
	}
	if !(want4 && len(v4) > 0) && !(want6 && len(v6) > 0) {
		return nil, false, nil
	}
	rrName, err := dnsmessage.NewName(fqdn)
	if err != nil {
		return nil, false, fmt.Errorf("localname: name %q: %w", name, err)
	}
	secs := uint32(ttl / time.Second)
	class := dnsmessage.ClassINET | (1 << 15) // cache-flush: we own this name
	hdr := dnsmessage.Header{Response: true, Authoritative: true}
	if legacy {
		hdr.ID = h.ID
		secs = min(secs, 10)
		class = dnsmessage.ClassINET
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), hdr)
	b.EnableCompression()
	if legacy {
		if err := b.StartQuestions(); err != nil {
			return nil, false, err
		}
		for _, q := range asked {
			if err := b.Question(q); err != nil {
				return nil, false, err
			}
		}
	}
	rh := dnsmessage.ResourceHeader{Name: rrName, Class: class, TTL: secs}
	writeA := func() error {
		for _, a := range v4 {
			if err := b.AResource(rh, dnsmessage.AResource{A: a.As4()}); err != nil {
				return err
			}
		}
		return nil
	}
	writeAAAA := func() error {
		for _, a := range v6 {
			if err := b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := b.StartAnswers(); err != nil {
		return nil, false, err
	}
	if want4 {
		if err := writeA(); err != nil {
			return nil, false, err
		}
	}
	if want6 {
		if err := writeAAAA(); err != nil {
			return nil, false, err
		}
	}
	// The other family as additional records saves a second query (§6.2).
	if err := b.StartAdditionals(); err != nil {
		return nil, false, err
	}
	if !want4 {
		if err := writeA(); err != nil {
			return nil, false, err
		}
	}
	if !want6 {
		if err := writeAAAA(); err != nil {
			return nil, false, err
		}
	}
	resp, err = b.Finish()
	if err != nil {
		return nil, false, fmt.Errorf("localname: build response: %w", err)
	}
	return resp, unicast || legacy, nil
}

// Announcement builds an unsolicited response announcing name's addresses
// (RFC 6762 §8.3), or, with ttl 0, the goodbye that tells caches to forget
// them (§10.1). It returns nil when addrs is empty.
func Announcement(name string, addrs []netip.Addr, ttl time.Duration) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	// An ANY question of our own, answered as a multicast response.
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{})
	b.StartQuestions()
	qn, err := dnsmessage.NewName(strings.ToLower(name) + ".local.")
	if err != nil {
		return nil, fmt.Errorf("localname: name %q: %w", name, err)
	}
	b.Question(dnsmessage.Question{Name: qn, Type: dnsmessage.TypeALL, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		return nil, fmt.Errorf("localname: announce: %w", err)
	}
	resp, _, err := Answer(name, addrs, q, false, ttl)
	return resp, err
}

// InterfaceAddrs returns the addresses of interface ifIndex, or of every up
// non-loopback interface when ifIndex is 0 (loopback's when nothing else).
// Link-local IPv6 addresses are returned only for a known interface.
func InterfaceAddrs(ifIndex int) []netip.Addr {
	var ifs []net.Interface
	if ifIndex > 0 {
		ifi, err := net.InterfaceByIndex(ifIndex)
		if err != nil {
			return nil
		}
		ifs = []net.Interface{*ifi}
	} else {
		all, _ := net.Interfaces()
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 {
				ifs = append(ifs, ifi)
			}
		}
		if len(ifs) == 0 {
			for _, ifi := range all {
				if ifi.Flags&net.FlagLoopback != 0 {
					ifs = append(ifs, ifi)
				}
			}
		}
	}
	var out []netip.Addr
	for _, ifi := range ifs {
		as, _ := ifi.Addrs()
		for _, a := range as {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ad := pfx.Addr()
			if ad.IsLinkLocalUnicast() && ad.Is6() && ifIndex == 0 {
				continue
			}
			out = append(out, ad.WithZone(""))
		}
	}
	return out
}

func (r *Responder) addrs(ifIndex int) []netip.Addr {
	if r.Addrs != nil {
		return r.Addrs(ifIndex)
	}
	return InterfaceAddrs(ifIndex)
}

type packet struct {
	data    []byte
	src     netip.AddrPort
	ifIndex int
	v6      bool
}

// ListenAndServe joins the mDNS groups (224.0.0.251 and ff02::fb) on every
// up multicast interface, re-checking every 30 s for new ones, and answers
// until ctx is done. It returns nil on cancellation. IPv6 is optional: if it
// cannot be set up, it is logged and IPv4 carries on.
//
// Interface look-ups happen on the calling goroutine (a test may lock it into
// a network namespace).
func (r *Responder) ListenAndServe(ctx context.Context) error {
	if r.Name == nil {
		return errors.New("localname: Responder.Name is nil")
	}
	lc := net.ListenConfig{Control: reuse}
	c4, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", Port))
	if err != nil {
		return fmt.Errorf("localname: listen udp4 :%d: %w", Port, err)
	}
	defer c4.Close()
	p4 := ipv4.NewPacketConn(c4)
	p4.SetControlMessage(ipv4.FlagInterface, true)
	p4.SetMulticastTTL(255)
	p4.SetTTL(255)
	p4.SetMulticastLoopback(true)

	var p6 *ipv6.PacketConn
	if c6, err := lc.ListenPacket(ctx, "udp6", fmt.Sprintf("[::]:%d", Port)); err != nil {
		r.log().Info("localname: no IPv6 mDNS", "err", err)
	} else {
		defer c6.Close()
		p6 = ipv6.NewPacketConn(c6)
		p6.SetControlMessage(ipv6.FlagInterface, true)
		p6.SetMulticastHopLimit(255)
		p6.SetHopLimit(255)
		p6.SetMulticastLoopback(true)
	}

	joined := map[string]bool{}
	join := func() {
		ifs, _ := net.Interfaces()
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
				continue
			}
			k4 := fmt.Sprintf("4/%d", ifi.Index)
			if !joined[k4] {
				if err := p4.JoinGroup(&ifi, &net.UDPAddr{IP: groupV4.AsSlice()}); err == nil {
					joined[k4] = true
					r.log().Debug("localname: joined", "if", ifi.Name, "group", groupV4)
				}
			}
			k6 := fmt.Sprintf("6/%d", ifi.Index)
			if p6 != nil && !joined[k6] {
				if err := p6.JoinGroup(&ifi, &net.UDPAddr{IP: groupV6.AsSlice()}); err == nil {
					joined[k6] = true
				}
			}
		}
	}
	join()

	pkts := make(chan packet, 32)
	var wg sync.WaitGroup
	read := func(readFrom func([]byte) (int, int, net.Addr, error), v6 bool) {
		defer wg.Done()
		buf := make([]byte, 9000)
		for {
			n, ifIndex, src, err := readFrom(buf)
			if err != nil {
				if ctx.Err() == nil {
					r.log().Warn("localname: read", "err", err)
				}
				return
			}
			ua, ok := src.(*net.UDPAddr)
			if !ok {
				continue
			}
			ap := ua.AddrPort()
			select {
			case pkts <- packet{data: append([]byte(nil), buf[:n]...), src: ap, ifIndex: ifIndex, v6: v6}:
			default: // a flood: drop rather than queue without bound
			}
		}
	}
	wg.Add(1)
	go read(func(b []byte) (int, int, net.Addr, error) {
		n, cm, src, err := p4.ReadFrom(b)
		idx := 0
		if cm != nil {
			idx = cm.IfIndex
		}
		return n, idx, src, err
	}, false)
	if p6 != nil {
		wg.Add(1)
		go read(func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := p6.ReadFrom(b)
			idx := 0
			if cm != nil {
				idx = cm.IfIndex
			}
			return n, idx, src, err
		}, true)
	}
	defer func() {
		c4.Close()
		if p6 != nil {
			p6.Close()
		}
		wg.Wait()
	}()

	// Announce on every multicast interface: now, again after a second
	// (RFC 6762 §8.3), and whenever the name changes; say goodbye on the way out.
	announce := func(name string, ttl time.Duration) {
		ifs, _ := net.Interfaces()
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || !joined[fmt.Sprintf("4/%d", ifi.Index)] {
				continue
			}
			msg, err := Announcement(name, r.addrs(ifi.Index), ttl)
			if err != nil || msg == nil {
				continue
			}
			if err := p4.SetMulticastInterface(&ifi); err == nil {
				p4.WriteTo(msg, nil, &net.UDPAddr{IP: groupV4.AsSlice(), Port: Port})
			}
			if p6 != nil && joined[fmt.Sprintf("6/%d", ifi.Index)] {
				p6.WriteTo(msg, &ipv6.ControlMessage{IfIndex: ifi.Index}, &net.UDPAddr{IP: groupV6.AsSlice(), Port: Port, Zone: ifi.Name})
			}
		}
	}
	name := r.Name()
	if name != "" {
		announce(name, r.ttl())
	}
	again := time.NewTimer(time.Second)
	defer again.Stop()
	defer func() {
		if name != "" {
			announce(name, 0)
		}
	}()

	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-again.C:
			if name != "" {
				announce(name, r.ttl())
			}
		case <-tick.C:
			join()
			if n := r.Name(); n != name {
				if name != "" {
					announce(name, 0)
				}
				name = n
				if name != "" {
					announce(name, r.ttl())
				}
			}
		case pk := <-pkts:
			resp, unicast, err := r.answer(pk)
			if err != nil || resp == nil {
				continue
			}
			if pk.v6 {
				dst := &net.UDPAddr{IP: groupV6.AsSlice(), Port: Port, Zone: zoneOf(pk.ifIndex)}
				if unicast {
					dst = net.UDPAddrFromAddrPort(pk.src)
				}
				_, err = p6.WriteTo(resp, &ipv6.ControlMessage{IfIndex: pk.ifIndex}, dst)
			} else {
				dst := &net.UDPAddr{IP: groupV4.AsSlice(), Port: Port}
				if unicast {
					dst = net.UDPAddrFromAddrPort(pk.src)
				}
				if pk.ifIndex > 0 && !unicast {
					if ifi, _ := net.InterfaceByIndex(pk.ifIndex); ifi != nil {
						p4.SetMulticastInterface(ifi)
					}
				}
				_, err = p4.WriteTo(resp, nil, dst)
			}
			if err != nil {
				r.log().Warn("localname: answer", "to", pk.src, "err", err)
			}
		}
	}
}

func zoneOf(ifIndex int) string {
	if ifi, err := net.InterfaceByIndex(ifIndex); err == nil {
		return ifi.Name
	}
	return ""
}

func (r *Responder) answer(pk packet) ([]byte, bool, error) {
	name := r.Name()
	if name == "" {
		return nil, false, nil
	}
	legacy := pk.src.Port() != Port
	resp, unicast, err := Answer(name, r.addrs(pk.ifIndex), pk.data, legacy, r.ttl())
	if err != nil {
		r.log().Debug("localname: ignoring packet", "from", pk.src, "err", err)
	}
	return resp, unicast, err
}

// Serve answers queries arriving on conn (any UDP socket, e.g. a unicast one
// in tests) until conn is closed or ctx is done; responses always go back to
// the sender, since conn need not be in a multicast group.
func (r *Responder) Serve(ctx context.Context, conn net.PacketConn) error {
	if r.Name == nil {
		return errors.New("localname: Responder.Name is nil")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, 9000)
	for {
		n, src, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("localname: read: %w", err)
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		resp, _, err := r.answer(packet{data: buf[:n], src: ua.AddrPort()})
		if err != nil || resp == nil {
			continue
		}
		if _, err := conn.WriteTo(resp, src); err != nil {
			r.log().Warn("localname: answer", "to", src, "err", err)
		}
	}
}

// reuse lets the responder share port 5353 with other mDNS users (libp2p).
func reuse(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
