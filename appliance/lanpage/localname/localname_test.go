package localname

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/ipv4"
)

func query(t testing.TB, id uint16, name string, typ dnsmessage.Type, qu bool) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id})
	b.StartQuestions()
	class := dnsmessage.ClassINET
	if qu {
		class |= 1 << 15
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: class}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type parsed struct {
	hdr       dnsmessage.Header
	questions int
	answers   []netip.Addr
	extra     []netip.Addr
	ttl       uint32
	flush     bool
}

func parse(t testing.TB, msg []byte) parsed {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(msg); err != nil {
		t.Fatalf("unpack response: %v", err)
	}
	p := parsed{hdr: m.Header, questions: len(m.Questions)}
	get := func(rs []dnsmessage.Resource) []netip.Addr {
		var out []netip.Addr
		for _, r := range rs {
			p.ttl = r.Header.TTL
			p.flush = r.Header.Class&(1<<15) != 0
			switch b := r.Body.(type) {
			case *dnsmessage.AResource:
				out = append(out, netip.AddrFrom4(b.A))
			case *dnsmessage.AAAAResource:
				out = append(out, netip.AddrFrom16(b.AAAA))
			}
		}
		return out
	}
	p.answers = get(m.Answers)
	p.extra = get(m.Additionals)
	return p
}

var (
	v4a   = netip.MustParseAddr("192.168.1.20")
	v4b   = netip.MustParseAddr("10.0.0.7")
	v6a   = netip.MustParseAddr("fd7a:1b2c:3d4e::1")
	addrs = []netip.Addr{v4a, v6a, v4b}
)

func TestAnswer(t *testing.T) {
	tests := []struct {
		name        string
		q           []byte
		legacy      bool
		wantNil     bool
		wantAnswers []netip.Addr
		wantExtra   []netip.Addr
		wantUnicast bool
		wantTTL     uint32
	}{
		{name: "A", q: query(t, 0, "riverbend-1.local.", dnsmessage.TypeA, false),
			wantAnswers: []netip.Addr{v4a, v4b}, wantExtra: []netip.Addr{v6a}, wantTTL: 120},
		{name: "AAAA", q: query(t, 0, "riverbend-1.local.", dnsmessage.TypeAAAA, false),
			wantAnswers: []netip.Addr{v6a}, wantExtra: []netip.Addr{v4a, v4b}, wantTTL: 120},
		{name: "ANY", q: query(t, 0, "riverbend-1.local.", dnsmessage.TypeALL, false),
			wantAnswers: []netip.Addr{v4a, v4b, v6a}, wantTTL: 120},
		{name: "case-insensitive", q: query(t, 0, "RiverBend-1.LOCAL.", dnsmessage.TypeA, false),
			wantAnswers: []netip.Addr{v4a, v4b}, wantExtra: []netip.Addr{v6a}, wantTTL: 120},
		{name: "QU bit asks for unicast", q: query(t, 0, "riverbend-1.local.", dnsmessage.TypeA, true),
			wantAnswers: []netip.Addr{v4a, v4b}, wantExtra: []netip.Addr{v6a}, wantUnicast: true, wantTTL: 120},
		{name: "legacy unicast query", q: query(t, 0x4242, "riverbend-1.local.", dnsmessage.TypeA, false), legacy: true,
			wantAnswers: []netip.Addr{v4a, v4b}, wantExtra: []netip.Addr{v6a}, wantUnicast: true, wantTTL: 10},
		{name: "other name", q: query(t, 0, "mill-gpu.local.", dnsmessage.TypeA, false), wantNil: true},
		{name: "sub-name", q: query(t, 0, "x.riverbend-1.local.", dnsmessage.TypeA, false), wantNil: true},
		{name: "service discovery", q: query(t, 0, "_p2p._udp.local.", dnsmessage.TypePTR, false), wantNil: true},
		{name: "MX for our name", q: query(t, 0, "riverbend-1.local.", dnsmessage.TypeMX, false), wantNil: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, unicast, err := Answer("riverbend-1", addrs, tc.q, tc.legacy, 120*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil {
				if resp != nil {
					t.Fatalf("answered a query that is not ours: %x", resp)
				}
				return
			}
			p := parse(t, resp)
			if !p.hdr.Response || !p.hdr.Authoritative {
				t.Errorf("header %+v: want response, authoritative", p.hdr)
			}
			if !slices.Equal(p.answers, tc.wantAnswers) || !slices.Equal(p.extra, tc.wantExtra) {
				t.Errorf("answers %v extra %v, want %v and %v", p.answers, p.extra, tc.wantAnswers, tc.wantExtra)
			}
			if unicast != tc.wantUnicast {
				t.Errorf("unicast = %v, want %v", unicast, tc.wantUnicast)
			}
			if p.ttl != tc.wantTTL {
				t.Errorf("TTL %d, want %d", p.ttl, tc.wantTTL)
			}
			if tc.legacy {
				if p.hdr.ID != 0x4242 || p.questions != 1 || p.flush {
					t.Errorf("legacy answer: ID %#x questions %d flush %v; want the query's ID, its question, no cache-flush", p.hdr.ID, p.questions, p.flush)
				}
			} else if p.hdr.ID != 0 || p.questions != 0 || !p.flush {
				t.Errorf("mDNS answer: ID %#x questions %d flush %v; want ID 0, no questions, cache-flush", p.hdr.ID, p.questions, p.flush)
			}
		})
	}
}

func TestAnswerIgnores(t *testing.T) {
	// A response from another host must never be answered (no storms).
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("riverbend-1.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	resp, _ := b.Finish()
	if out, _, err := Answer("riverbend-1", addrs, resp, false, time.Minute); err != nil || out != nil {
		t.Errorf("answered a response: %x %v", out, err)
	}
	// No address of the asked family and none at all: silence.
	if out, _, _ := Answer("riverbend-1", nil, query(t, 0, "riverbend-1.local.", dnsmessage.TypeA, false), false, time.Minute); out != nil {
		t.Error("answered with no addresses")
	}
	// Garbage is an error naming the problem, not a panic.
	for _, junk := range [][]byte{nil, {1, 2, 3}, make([]byte, 12+3)} {
		if _, _, err := Answer("riverbend-1", addrs, append(junk[:len(junk):len(junk)], 0, 1), false, time.Minute); err != nil && !errors.Is(err, ErrBadQuery) {
			t.Errorf("junk %x: error %v does not wrap ErrBadQuery", junk, err)
		}
	}
	if _, _, err := Answer("riverbend-1", addrs, []byte{1, 2, 3}, false, time.Minute); !errors.Is(err, ErrBadQuery) {
		t.Errorf("short packet: %v, want ErrBadQuery", err)
	}
}

func FuzzAnswer(f *testing.F) {
	f.Add(query(f, 0, "riverbend-1.local.", dnsmessage.TypeA, false), false)
	f.Add(query(f, 7, "riverbend-1.local.", dnsmessage.TypeALL, true), true)
	f.Add(query(f, 0, "_hypha._udp.local.", dnsmessage.TypePTR, false), false)
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, false) // compression loop
	f.Fuzz(func(t *testing.T, q []byte, legacy bool) {
		resp, _, err := Answer("riverbend-1", addrs, q, legacy, 2*time.Minute)
		if err != nil {
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("error %v does not wrap ErrBadQuery", err)
			}
			return
		}
		if resp == nil {
			return
		}
		// Whatever we send must be a valid DNS message with only our records.
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("we built an invalid response: %v", err)
		}
		for _, r := range append(m.Answers, m.Additionals...) {
			if r.Header.Name.String() != "riverbend-1.local." {
				t.Fatalf("record for %s", r.Header.Name)
			}
		}
	})
}

// TestServe answers a one-shot (legacy) query over loopback UDP.
func TestServe(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Responder{Name: func() string { return "riverbend-1" }, Addrs: func(int) []netip.Addr { return addrs }}
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// First some junk and a query for another name: no answer, no crash.
	c.Write([]byte("hello"))
	c.Write(query(t, 1, "mill-gpu.local.", dnsmessage.TypeA, false))
	c.Write(query(t, 0x77, "riverbend-1.local.", dnsmessage.TypeA, false))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, buf[:n])
	if p.hdr.ID != 0x77 || !slices.Equal(p.answers, []netip.Addr{v4a, v4b}) {
		t.Errorf("got ID %#x answers %v", p.hdr.ID, p.answers)
	}
}

func TestInterfaceAddrs(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo interface")
	}
	got := InterfaceAddrs(lo.Index)
	if !slices.Contains(got, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("addresses of lo %v lack 127.0.0.1", got)
	}
}

// netns helpers: the test creates its own namespaces, named hyl-….

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func newNS(t *testing.T, name string) netns.NsHandle {
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// inNS runs fn on a thread in ns and returns to the original namespace.
func inNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		fn()
		if err := netns.Set(orig); err != nil {
			errc <- err // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestMulticastInNetns: a responder in one namespace, a querier in another,
// joined by a veth pair, as two boxes on a LAN. It checks the multicast
// answer (QM), the unicast answer to a one-shot query, and that the
// addresses are those of the interface the query came in on.
func TestMulticastInNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("namespaces skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	rb := make([]byte, 3)
	rand.Read(rb)
	id := hex.EncodeToString(rb)
	nsA, nsB := "hyl-a-"+id, "hyl-b-"+id
	hA, hB := newNS(t, nsA), newNS(t, nsB)
	va, vb := "hyla"+id, "hylb"+id
	run(t, "ip", "link", "add", va, "netns", nsA, "type", "veth", "peer", "name", vb, "netns", nsB)
	for _, c := range [][]string{
		{"ip", "-n", nsA, "addr", "add", "10.77.0.1/24", "dev", va},
		{"ip", "-n", nsA, "addr", "add", "fd00:77::1/64", "dev", va, "nodad"},
		{"ip", "-n", nsB, "addr", "add", "10.77.0.2/24", "dev", vb},
		{"ip", "-n", nsA, "link", "set", va, "up"},
		{"ip", "-n", nsB, "link", "set", vb, "up"},
		{"ip", "-n", nsA, "link", "set", "lo", "up"},
		{"ip", "-n", nsB, "link", "set", "lo", "up"},
		{"ip", "-n", nsA, "route", "add", "224.0.0.0/4", "dev", va},
		{"ip", "-n", nsB, "route", "add", "224.0.0.0/4", "dev", vb},
	} {
		run(t, c...)
	}

	// A full mDNS peer in nsB, listening on 5353 in the group before the
	// responder starts, so it hears the announcements.
	var pc *ipv4.PacketConn
	var lconn net.PacketConn
	inNS(t, hB, func() {
		lc := net.ListenConfig{Control: reuse}
		c, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:5353")
		if err != nil {
			t.Error(err)
			return
		}
		ifi, err := net.InterfaceByName(vb)
		if err != nil {
			t.Error(err)
			return
		}
		lconn, pc = c, ipv4.NewPacketConn(c)
		if err := pc.JoinGroup(ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251)}); err != nil {
			t.Error(err)
		}
		pc.SetMulticastInterface(ifi)
	})
	if pc == nil {
		t.FailNow()
	}
	defer lconn.Close()
	// next reads the next mDNS message not sent by nsB itself.
	next := func(within time.Duration) (parsed, bool) {
		buf := make([]byte, 1500)
		deadline := time.Now().Add(within)
		for {
			lconn.SetReadDeadline(deadline)
			n, _, src, err := pc.ReadFrom(buf)
			if err != nil {
				return parsed{}, false
			}
			if src.(*net.UDPAddr).IP.Equal(net.IPv4(10, 77, 0, 2)) {
				continue // our own query, looped back
			}
			return parse(t, buf[:n]), true
		}
	}

	// The responder: its whole serve loop runs on a thread in nsA.
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(hA); err != nil {
			served <- err
			close(ready)
			return
		}
		close(ready)
		r := &Responder{Name: func() string { return "riverbend-1" }}
		served <- r.ListenAndServe(ctx)
	}()
	<-ready
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("ListenAndServe: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ListenAndServe did not return after cancel")
		}
	})

	// Link-local IPv6 addresses of the interface are answered too (the
	// kernel picks them); compare the configured ones.
	global := func(as []netip.Addr) []netip.Addr {
		return slices.DeleteFunc(slices.Clone(as), func(a netip.Addr) bool { return a.IsLinkLocalUnicast() })
	}
	want := []netip.Addr{netip.MustParseAddr("10.77.0.1")}
	wantExtra := []netip.Addr{netip.MustParseAddr("fd00:77::1")}

	// 0. Unsolicited announcements: two, about a second apart, with both families.
	for i := 0; i < 2; i++ {
		a, ok := next(4 * time.Second)
		if !ok {
			t.Fatalf("announcement %d not heard", i+1)
		}
		if a.hdr.ID != 0 || !a.flush || a.ttl != 120 || !slices.Contains(a.answers, want[0]) || !slices.Contains(a.answers, wantExtra[0]) {
			t.Errorf("announcement %d: %+v", i+1, a)
		}
	}

	// 1. One-shot query from an ephemeral port: unicast answer to it.
	var oneShot parsed
	inNS(t, hB, func() {
		c, err := net.ListenPacket("udp4", "10.77.0.2:0")
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 1500)
		// Retry: the responder may still be joining the group.
		for i := 0; i < 20; i++ {
			c.WriteTo(query(t, 0x1234, "riverbend-1.local.", dnsmessage.TypeA, false), &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: Port})
			c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			n, _, err := c.ReadFrom(buf)
			if err == nil {
				oneShot = parse(t, buf[:n])
				return
			}
		}
		t.Error("no answer to a one-shot query within 5 s")
	})
	if oneShot.hdr.ID != 0x1234 || !slices.Equal(oneShot.answers, want) || !slices.Equal(global(oneShot.extra), wantExtra) {
		t.Errorf("one-shot answer: ID %#x answers %v extra %v; want ID 0x1234, %v, %v", oneShot.hdr.ID, oneShot.answers, oneShot.extra, want, wantExtra)
	}

	// 2. The mDNS peer on port 5353 asks: multicast answer.
	var multi parsed
	for i := 0; i < 10; i++ {
		pc.WriteTo(query(t, 0, "riverbend-1.local.", dnsmessage.TypeAAAA, false), nil, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: Port})
		if m, ok := next(500 * time.Millisecond); ok {
			multi = m
			break
		}
	}
	if multi.hdr.ID != 0 || !multi.flush || !slices.Equal(global(multi.answers), wantExtra) || !slices.Equal(multi.extra, want) {
		t.Errorf("multicast answer: ID %d flush %v answers %v extra %v; want ID 0, cache-flush, %v, %v", multi.hdr.ID, multi.flush, multi.answers, multi.extra, wantExtra, want)
	}

	// 3. On shutdown, a goodbye (TTL 0) so caches forget the name at once.
	cancel()
	bye, ok := next(3 * time.Second)
	if !ok || bye.ttl != 0 || !slices.Contains(bye.answers, want[0]) {
		t.Errorf("goodbye: heard %v, %+v; want TTL 0 for %v", ok, bye, want)
	}
}

func TestAnnouncement(t *testing.T) {
	msg, err := Announcement("riverbend-1", addrs, 120*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, msg)
	if p.hdr.ID != 0 || !p.hdr.Response || p.questions != 0 || !p.flush || p.ttl != 120 || len(p.answers) != 3 {
		t.Errorf("announcement %+v", p)
	}
	bye, _ := Announcement("riverbend-1", addrs, 0)
	if p := parse(t, bye); p.ttl != 0 || len(p.answers) != 3 {
		t.Errorf("goodbye %+v", p)
	}
	if m, err := Announcement("riverbend-1", nil, time.Minute); m != nil || err != nil {
		t.Errorf("no addresses: %x %v", m, err)
	}
	if _, err := Announcement("bad name with spaces and a very long tail that exceeds the sixty-three octet limit of a label", addrs, time.Minute); err == nil {
		t.Error("a name longer than a DNS label was accepted")
	}
}
