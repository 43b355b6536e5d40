package mesh

// A test harness that runs mesh nodes as child processes of the test binary,
// each inside its own network namespace (ip netns exec), so every socket a
// node opens - listeners, dials, mDNS multicast, netlink - lives in that
// namespace. Children talk to the test over stdin/stdout in JSON lines.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

const childEnv = "HYM_MESH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// childMsg is one line between test and child, in either direction.
type childMsg struct {
	Ev  string `json:"ev,omitempty"`  // child -> test
	Cmd string `json:"cmd,omitempty"` // test -> child
	T   int64  `json:"t,omitempty"`   // unix nanoseconds of the event

	ID     string `json:"id,omitempty"`
	Peer   string `json:"peer,omitempty"`
	State  string `json:"state,omitempty"`
	Reach  string `json:"reach,omitempty"`
	Origin string `json:"origin,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Via    string `json:"via,omitempty"`
	At     int64  `json:"at,omitempty"` // announcement time, unix ms
	MS     int    `json:"ms,omitempty"`
	OK     bool   `json:"ok,omitempty"`
	Err    string `json:"err,omitempty"`
	RSS    int64  `json:"rss,omitempty"`
	CPU    int64  `json:"cpu,omitempty"` // user+system ticks
	Drops  uint64 `json:"drops,omitempty"`
}

const echoProto = "/hypha/test/echo/1"

// runChild is the body of a child process: one mesh node in the current
// (namespaced) network, driven by commands on stdin.
func runChild() int {
	seed, _ := strconv.Atoi(os.Getenv("HYM_SEED"))
	pskBytes, _ := hex.DecodeString(os.Getenv("HYM_PSK"))
	out := json.NewEncoder(os.Stdout)
	var outMu sync.Mutex
	emit := func(m childMsg) {
		if m.T == 0 {
			m.T = time.Now().UnixNano()
		}
		outMu.Lock()
		defer outMu.Unlock()
		_ = out.Encode(m)
	}
	if os.Getenv("HYM_STOCK") == "1" {
		return runStockChild(seed, pskBytes, emit)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("HYM_DEBUG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", seed)
	}
	cfg := Config{
		Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(seed)}, 32)), PSK: pskBytes,
		ServiceName:  os.Getenv("HYM_SERVICE"), // DHT on, as in production
		SyncInterval: 10 * time.Second, Logger: logger,
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		emit(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	defer n.Close()
	n.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, io.LimitReader(s, 1024))
	})
	sub := n.Subscribe(1 << 14)
	go func() {
		for e := range sub.C {
			switch e.Kind {
			case EventMember:
				emit(childMsg{Ev: "member", T: e.Time.UnixNano(), Peer: e.Member.ID.String(), State: e.Member.State.String(), Reach: e.Member.Reach.String()})
			case EventAnnouncement:
				emit(childMsg{Ev: "ann", T: e.Time.UnixNano(), Origin: e.Announcement.Node, Seq: e.Announcement.Seq, Via: e.Via, At: e.Announcement.Time})
			}
		}
	}()
	name := fmt.Sprintf("node-%d", seed)
	announce := func(i int) {
		_ = n.Announce(Announcement{Name: name, Roles: []string{"test"}, Sensors: map[string]float64{"i": float64(i)}})
	}
	announce(0)
	emit(childMsg{Ev: "ready", ID: n.ID().String()})
	echo := func(p string) childMsg {
		id, _ := peer.Decode(p)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		r := childMsg{Ev: "echo", Peer: p}
		s, err := n.NewStream(ctx, id, echoProto)
		if err == nil {
			_ = s.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = s.Write([]byte("ping"))
			_ = s.CloseWrite()
			b, _ := io.ReadAll(s)
			r.OK = string(b) == "ping"
			s.Close()
		} else {
			r.Err = err.Error()
		}
		r.MS = int(time.Since(start).Milliseconds())
		return r
	}
	return childCommands(emit, announce, echo, sub.Dropped)
}

// childCommands runs the stdin command loop shared by both kinds of child.
func childCommands(emit func(childMsg), announce func(i int), echo func(peer string) childMsg, drops func() uint64) int {
	stopAnn := func() {}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var c childMsg
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			emit(childMsg{Ev: "error", Err: err.Error()})
			continue
		}
		switch c.Cmd {
		case "announce_every":
			stopAnn()
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan struct{})
			stopAnn = func() { cancel(); <-stopped }
			go func(every time.Duration) {
				defer close(stopped)
				t := time.NewTicker(every)
				defer t.Stop()
				for i := 1; ; i++ {
					announce(i)
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
			}(time.Duration(c.MS) * time.Millisecond)
		case "announce_stop":
			stopAnn()
			stopAnn = func() {}
			emit(childMsg{Ev: "stopped"})
		case "echo":
			go func(p string) { emit(echo(p)) }(c.Peer)
		case "stats":
			rss, cpu := procStats(os.Getpid())
			emit(childMsg{Ev: "stats", RSS: rss, CPU: cpu, Drops: drops()})
		case "quit":
			stopAnn()
			return 0
		}
	}
	return 0
}

// procStats returns the resident set size (bytes) and user+system CPU
// ticks of process pid.
func procStats(pid int) (rss, ticks int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				sy, _ := strconv.ParseInt(f[12], 10, 64)
				ticks = u + sy
			}
		}
	}
	return rss, ticks
}

// child is the test's view of one child node.
type child struct {
	t    *testing.T
	name string
	ns   string
	id   peer.ID
	cmd  *exec.Cmd
	in   io.WriteCloser

	mu      sync.Mutex
	members map[peer.ID]childMsg           // latest member event per peer
	history map[peer.ID][]childMsg         // all member events per peer
	anns    map[string]map[uint64]childMsg // origin -> seq -> first receipt
	replies chan childMsg                  // echo, stats, stopped
	since   int64                          // unix ms: announcements made before are not counted
	done    chan struct{}
}

// startChild runs a node with identity seed in namespace ns.
func startChild(t *testing.T, ns string, seed int, pskHex, service string) *child {
	t.Helper()
	return startChildKind(t, ns, seed, pskHex, service, false)
}

// startChildKind is startChild; with stock, the child runs the stock
// libp2p reference instead of this package (reference_test.go).
func startChildKind(t *testing.T, ns string, seed int, pskHex, service string, stock bool) *child {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "HYM_SEED="+strconv.Itoa(seed), "HYM_PSK="+pskHex, "HYM_SERVICE="+service)
	if stock {
		cmd.Env = append(cmd.Env, "HYM_STOCK=1")
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node in %s: %v", ns, err)
	}
	c := &child{
		t: t, name: fmt.Sprintf("n%d", seed), ns: ns, cmd: cmd, in: in,
		members: map[peer.ID]childMsg{}, history: map[peer.ID][]childMsg{},
		anns: map[string]map[uint64]childMsg{}, replies: make(chan childMsg, 64), done: make(chan struct{}),
	}
	ready := make(chan string, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(outp)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			var m childMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				continue
			}
			c.mu.Lock()
			switch m.Ev {
			case "ready":
				ready <- m.ID
			case "error":
				t.Logf("%s: %s", c.name, m.Err)
			case "member":
				id, _ := peer.Decode(m.Peer)
				c.members[id] = m
				c.history[id] = append(c.history[id], m)
			case "ann":
				if c.anns[m.Origin] == nil {
					c.anns[m.Origin] = map[uint64]childMsg{}
				}
				if _, ok := c.anns[m.Origin][m.Seq]; !ok {
					c.anns[m.Origin][m.Seq] = m
				}
			default:
				select {
				case c.replies <- m:
				default:
				}
			}
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.stop)
	select {
	case id := <-ready:
		c.id, _ = peer.Decode(id)
	case <-c.done:
		t.Fatalf("node %s in %s exited before it was ready", c.name, ns)
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s in %s not ready after 20s", c.name, ns)
	}
	return c
}

func (c *child) send(m childMsg) {
	b, _ := json.Marshal(m)
	_, _ = c.in.Write(append(b, '\n'))
}

func (c *child) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.send(childMsg{Cmd: "quit"})
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	_ = c.cmd.Wait()
}

// reply waits for the next reply of kind ev.
func (c *child) reply(ev string, d time.Duration) (childMsg, bool) {
	deadline := time.After(d)
	for {
		select {
		case m := <-c.replies:
			if m.Ev == ev {
				return m, true
			}
		case <-deadline:
			return childMsg{}, false
		}
	}
}

// state returns c's latest view of p.
func (c *child) state(p peer.ID) (state, reach string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[p]
	return m.State, m.Reach
}

func (c *child) upCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.members {
		if m.State == "up" {
			n++
		}
	}
	return n
}

func (c *child) knows(p peer.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.members[p]
	return ok
}

// received returns a copy of what c received from origin.
func (c *child) received(origin peer.ID) map[uint64]childMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[uint64]childMsg{}
	for k, v := range c.anns[origin.String()] {
		out[k] = v
	}
	return out
}

// poll waits until cond holds, checking every 25ms, and returns when it
// first held; it fails the test after d.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// netTopo is a set of namespaces: one "switch" with a bridge, and nodes
// each with a veth e0 on that bridge (10.77.0.<i+1>/24).
type netTopo struct {
	t      *testing.T
	prefix string
	sw     string
	nodes  []string
}

func ipcmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// needNetns skips unless the test can create network namespaces.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	probe := fmt.Sprintf("hym-probe-%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here (%v: %s)", err, bytes.TrimSpace(out))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
}

func newTopo(t *testing.T, nodes int) *netTopo {
	t.Helper()
	needNetns(t)
	p := fmt.Sprintf("hym-%d-", os.Getpid()%100000)
	tp := &netTopo{t: t, prefix: p, sw: p + "sw"}
	t.Cleanup(tp.cleanup)
	ipcmd(t, "netns", "add", tp.sw)
	ipcmd(t, "-n", tp.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "forward_delay", "0")
	ipcmd(t, "-n", tp.sw, "link", "set", "br0", "up")
	for range nodes {
		tp.addNode()
	}
	return tp
}

func (tp *netTopo) addNode() string {
	t := tp.t
	i := len(tp.nodes)
	ns := fmt.Sprintf("%sn%d", tp.prefix, i)
	tp.nodes = append(tp.nodes, ns)
	ipcmd(t, "netns", "add", ns)
	ipcmd(t, "-n", ns, "link", "set", "lo", "up")
	port := fmt.Sprintf("p%d", i)
	ipcmd(t, "-n", tp.sw, "link", "add", port, "type", "veth", "peer", "name", "e0", "netns", ns)
	ipcmd(t, "-n", tp.sw, "link", "set", port, "master", "br0", "up")
	ipcmd(t, "-n", ns, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i+1), "dev", "e0")
	ipcmd(t, "-n", ns, "link", "set", "e0", "up")
	return ns
}

// directLink adds a point-to-point veth d<i>/d<j> between nodes i and j.
func (tp *netTopo) directLink(i, j int) {
	t := tp.t
	ipcmd(t, "-n", tp.nodes[i], "link", "add", fmt.Sprintf("d%d", i), "type", "veth", "peer", "name", fmt.Sprintf("d%d", j), "netns", tp.nodes[j])
	ipcmd(t, "-n", tp.nodes[i], "addr", "add", "10.78.0.1/24", "dev", fmt.Sprintf("d%d", i))
	ipcmd(t, "-n", tp.nodes[j], "addr", "add", "10.78.0.2/24", "dev", fmt.Sprintf("d%d", j))
	ipcmd(t, "-n", tp.nodes[i], "link", "set", fmt.Sprintf("d%d", i), "up")
	ipcmd(t, "-n", tp.nodes[j], "link", "set", fmt.Sprintf("d%d", j), "up")
}

func (tp *netTopo) setLink(node int, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	ipcmd(tp.t, "-n", tp.nodes[node], "link", "set", "e0", state)
}

func (tp *netTopo) cleanup() {
	for _, ns := range append(tp.nodes, tp.sw) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}
