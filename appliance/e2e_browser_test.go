package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/univrs/hypha/appliance/lanpage/browsertest"
	"github.com/vishvananda/netlink"

	"github.com/univrs/hypha/hwtest"
	"github.com/univrs/hypha/inference/api"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/ledger"
	"github.com/univrs/hypha/provisioning"
	"github.com/univrs/hypha/sensors/obs"
)

// The end-to-end test of the LAN page (issue 10): three running nodes of
// one community meshed on 127.0.0.1, each with simulated sensors, a ledger
// and a real hardware report, the first one talking to a real inference
// server; Debian's headless chromium browses the first node's LAN page.

const (
	e2eCommunity = "Riverbend Commons"
	e2eBioregion = "Upper Saone watershed"
	e2eSteward   = "Amina Diallo"
	e2ePassword  = "moss-and-lichen-42"
	e2eModel     = "e2e-qwen2"
	e2eVersion   = "e2e-build-7"
)

// e2eChromium is Debian's chromium, which make test installs.
const e2eChromium = "/usr/bin/chromium"

var e2eNames = []string{"riverbend-1", "mill-2", "school-3"}

// e2eNode is one running appliance of the test mesh.
type e2eNode struct {
	*Node
	perm string
	url  string // LAN page base URL
	done chan error
}

// e2eBrowser starts Debian's chromium headless with a fresh profile, with
// the flags of the lanpage browser test (no background traffic of its own).
func e2eBrowser(t *testing.T) context.Context {
	t.Helper()
	path := e2eChromium
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium missing on CI (make test installs Debian's chromium): %v", err)
		}
		t.Skipf("chromium not installed (make test installs it): %v", err)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 150*time.Second)
	t.Cleanup(cancel3)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// e2eEngine runs a real inference server (the pure-Go engine behind the
// OpenAI and Ollama APIs, as inferd does) on 127.0.0.1 with a generated
// model: random weights, qwen2's real vocabulary and chat template.
func e2eEngine(t *testing.T, log *slog.Logger) string {
	t.Helper()
	dir := t.TempDir()
	if err := testmodel.Write(filepath.Join(dir, e2eModel+".gguf"), testmodel.Spec{
		Arch: "qwen2", VocabFile: filepath.Join("..", "inference", "tokenizer", "testdata", "ggml-vocab-qwen2.gguf"),
		Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 128,
		Tied: true, Type: gguf.TensorQ8_0, Seed: 11,
	}); err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{ModelsDir: dir, Engine: api.Builtin{Threads: 1, Log: log}, Log: log, Parallel: 1, Queue: 4, CacheBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// freeTCPPort returns a port on 127.0.0.1 that was free a moment ago (the
// mesh listen address must be known before the community is signed).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// e2eMesh provisions a community whose manifest names every node's mesh
// address as a bootstrap peer, bakes it into one /perm per node (as the
// image builder does), and runs the nodes.
func e2eMesh(t *testing.T, ctx context.Context, log *slog.Logger, engineURL string) []*e2eNode {
	t.Helper()
	dir := t.TempDir()
	perms := make([]string, len(e2eNames))
	listens := make([]string, len(e2eNames))
	var boot []string
	for i, name := range e2eNames {
		perms[i] = filepath.Join(dir, name+"-perm")
		id, _, err := LoadOrCreateIdentity(filepath.Join(perms[i], "hypha", "identity.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultNodeConfig(id)
		cfg.Name = name
		if err := SaveNodeConfig(filepath.Join(perms[i], "hypha", "node.json"), cfg); err != nil {
			t.Fatal(err)
		}
		listens[i] = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freeTCPPort(t))
		if i == 0 { // the first box is the community's bootstrap peer; the others find each other through it
			boot = append(boot, listens[i]+"/p2p/"+id.ID())
		}
	}
	community := filepath.Join(dir, "community")
	if _, _, err := provisioning.Init(community, provisioning.InitOptions{
		Name: e2eCommunity, Bioregion: e2eBioregion, StewardName: e2eSteward, Password: e2ePassword,
		Location: provisioning.Location{Lat: 47.3, Lon: 5.05}, BootstrapPeers: boot,
	}); err != nil {
		t.Fatal(err)
	}
	// The hardware report hwtest writes at boot, probed on this machine.
	report := (&hwtest.Prober{BandwidthTime: 100 * time.Millisecond, DiskReadBytes: -1, Logger: log,
		I2C: func(context.Context) ([]hwtest.I2CBus, error) { return nil, nil }}).Run(ctx)
	rb, err := report.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*e2eNode
	for i := range e2eNames {
		if err := provisioning.BakePerm(community, perms[i]); err != nil {
			t.Fatal(err)
		}
		if err := WriteFileAtomic(filepath.Join(perms[i], "hypha", "hwtest.json"), rb, 0o644); err != nil {
			t.Fatal(err)
		}
		opts := Options{PermDir: perms[i], Listen: "127.0.0.1:0", Version: e2eVersion, MeshListen: []string{listens[i]},
			ProgramDirs: []string{t.TempDir()}, Logger: log.With("node", e2eNames[i])}
		if i == 0 {
			opts.EngineURL = engineURL
		}
		n, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		en := &e2eNode{Node: n, perm: perms[i], done: make(chan error, 1)}
		go func() { en.done <- n.Run(ctx) }()
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		addr, err := n.Addr(actx)
		cancel()
		if err != nil {
			t.Fatalf("%s: LAN page never listened: %v", e2eNames[i], err)
		}
		en.url = "http://" + addr.String()
		nodes = append(nodes, en)
	}
	return nodes
}

// getJSON reads a view's JSON (Accept: application/json) from a node.
func getJSON(ctx context.Context, u string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

type e2eMeshJSON struct {
	Mesh struct {
		Data struct {
			Peers []struct{ ID, Name, State string }
		}
	}
}

// waitMesh polls (bounded) until node sees every name in want as up.
func waitMesh(t *testing.T, ctx context.Context, node *e2eNode, want []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last e2eMeshJSON
	var lastErr error
	for time.Now().Before(deadline) {
		last = e2eMeshJSON{}
		lastErr = getJSON(ctx, node.url+"/api/mesh", &last)
		up := map[string]bool{}
		for _, p := range last.Mesh.Data.Peers {
			if p.State == "up" {
				up[p.Name] = true
			}
		}
		ok := lastErr == nil
		for _, w := range want {
			ok = ok && up[w]
		}
		if ok {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: after %v the mesh view does not list %v as up: peers %+v, err %v", node.Config().Name, d, want, last.Mesh.Data.Peers, lastErr)
}

// logWriter sends the nodes' warnings and errors to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// e2eNetnsEnv marks the test process re-executed in its own network
// namespace.
const e2eNetnsEnv = "HYPHA_E2E_NETNS"

// e2eInNetns runs this test again in a child process in a new network
// namespace holding only a loopback interface, so no packet of the nodes
// (their mDNS announcements included) or of the browser can leave the
// machine, and reports the child's output and verdict.
func e2eInNetns(t *testing.T) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), e2eNetnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out := &lineLogger{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig follows the thread that started the child: keep it.
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
	out.flush()
	var ee *exec.ExitError
	switch {
	case err == nil:
		if !strings.Contains(out.all.String(), "--- PASS: "+t.Name()) {
			t.Fatal("the test in the network namespace did not pass (skipped?)")
		}
	case errors.As(err, &ee):
		t.Fatalf("the test in the network namespace failed: %v", err)
	case os.Getenv("CI") == "true":
		t.Fatalf("cannot create a network namespace (CI runs as root): %v", err)
	default:
		t.Skipf("cannot create a network namespace (needs root): %v", err)
	}
}

// lineLogger sends a child's output to the test log line by line.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
	all strings.Builder
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(b)
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.t.Log("netns| " + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log("netns| " + string(l.buf))
		l.buf = nil
	}
}

// e2eLoopbackOnly brings up the namespace's loopback and checks it is the
// only interface.
func e2eLoopbackOnly(t *testing.T) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			t.Fatalf("interface %s in the test's network namespace", i.Name)
		}
	}
}

// TestE2EBrowserAgainstRunningMesh is issue 10's "Must show" against
// running nodes: every view renders with the nodes' own data, the chat box
// streams a reply from a real inference server, a steward action is
// refused without the password and done with it, and the browser fetches
// nothing but the node's own origin.
func TestE2EBrowserAgainstRunningMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end browser test skipped in -short mode")
	}
	if os.Getenv(e2eNetnsEnv) == "" {
		if _, err := os.Stat(e2eChromium); err != nil && os.Getenv("CI") != "true" {
			t.Skipf("chromium not installed (make test installs it): %v", err)
		}
		e2eInNetns(t)
		return
	}
	e2eLoopbackOnly(t)
	start := time.Now()
	bctx := e2eBrowser(t)
	level := slog.LevelWarn
	if os.Getenv("HYPHA_E2E_LOG") != "" { // e.g. HYPHA_E2E_LOG=debug
		level.UnmarshalText([]byte(os.Getenv("HYPHA_E2E_LOG")))
	}
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	engineURL := e2eEngine(t, log)
	nodes := e2eMesh(t, ctx, log, engineURL)
	t.Cleanup(func() {
		cancel()
		stop := time.Now()
		for _, n := range nodes {
			select {
			case err := <-n.done:
				t.Logf("%s stopped after %v", n.Config().Name, time.Since(stop))
				if err != nil {
					t.Errorf("%s: Run: %v", n.Config().Name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s: Run did not return after cancel", n.Config().Name)
			}
		}
	})
	self := nodes[0]
	for i, n := range nodes {
		var others []string
		for j, name := range e2eNames {
			if j != i {
				others = append(others, name)
			}
		}
		waitMesh(t, ctx, n, others, 60*time.Second)
	}
	t.Logf("mesh of %d nodes up after %.1f s", len(nodes), time.Since(start).Seconds())

	// A sensor-linked payment between two running nodes, countersigned
	// over the mesh by the node the browser looks at.
	flow := e2ePay(t, ctx, nodes[1], self, 2500, "solar surplus shared with the mill")

	// Every request the browser makes is recorded: none may leave the box.
	rec, err := browsertest.Record(bctx)
	if err != nil {
		t.Fatal(err)
	}

	navigate := func(t *testing.T, path string) string {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(self.url+path), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
			t.Fatalf("navigate %s: %v", path, err)
		}
		return e2eEval[string](t, bctx, `document.body.innerText`)
	}

	// Content that comes from the running nodes, read back from them.
	var land struct {
		Land struct {
			Data struct {
				Readings []struct {
					Label, Property string
					Simulated       bool
				}
			}
		}
	}
	if err := getJSON(ctx, self.url+"/api/land", &land); err != nil {
		t.Fatal(err)
	}
	var simLabel string
	for _, r := range land.Land.Data.Readings {
		if r.Simulated && r.Label != "" {
			simLabel = r.Label
			break
		}
	}
	if simLabel == "" {
		t.Fatalf("the running node has no simulated reading: %+v", land.Land.Data.Readings)
	}
	report, err := os.ReadFile(filepath.Join(self.perm, "hypha", "hwtest.json"))
	if err != nil {
		t.Fatal(err)
	}
	hw, err := hwtest.DecodeReport(report)
	if err != nil {
		t.Fatal(err)
	}
	hwWant := []string{"Verdict"}
	if hw.CPU.Model != "" {
		hwWant = append(hwWant, hw.CPU.Model)
	}
	if hw.Machine != "" {
		hwWant = append(hwWant, hw.Machine)
	}
	for _, sec := range hw.Sections() {
		hwWant = append(hwWant, sec.Name)
		if len(sec.Items) > 0 && sec.Items[0].Value != "" {
			hwWant = append(hwWant, sec.Items[0].Value)
		}
	}
	// The engine's model list is polled: wait (bounded) until the node knows it.
	for i := 0; i < 100; i++ {
		if models, healthy, _ := self.engine.get(); healthy && len(models) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	views := []struct {
		name, path string
		want       []string
	}{
		{"overview", "/", []string{e2eNames[0], e2eVersion, e2eCommunity, e2eBioregion, "2 of 2 other nodes up", "+2.5", "spore", "simulated"}},
		{"mesh", "/mesh", []string{e2eNames[1], e2eNames[2], "2 of 2 other nodes up", "direct"}},
		{"inference", "/inference", []string{e2eModel, e2eNames[0], "Try a model"}},
		{"ledger", "/ledger", []string{e2eNames[0] + " (this box)", e2eNames[1], "+2.5", "spore", flow.Body.Purpose, flow.Body.Observations[0].Property, "simulated"}},
		{"land", "/land", []string{simLabel, "simulated"}},
		{"hardware", "/hardware", hwWant},
		{"community", "/community", []string{e2eCommunity, e2eSteward, e2eBioregion, "spore", e2eNames[1], e2eNames[2]}},
		{"steward", "/steward", []string{"Steward sign-in"}},
	}
	t.Run("views", func(t *testing.T) {
		// Desktop, then a 360 px phone: real data (peer IDs, model and
		// sensor names) must not push the page sideways.
		for _, width := range []int64{1280, 360} {
			if err := chromedp.Do(bctx, chromedp.EmulateViewport(width, 800)); err != nil {
				t.Fatal(err)
			}
			for _, v := range views {
				text := strings.ToLower(navigate(t, v.path))
				for _, w := range v.want {
					if !strings.Contains(text, strings.ToLower(w)) {
						t.Errorf("%s at %d px: page does not show %q", v.name, width, w)
					}
				}
				if strings.Contains(text, "unavailable:") {
					t.Errorf("%s: a source shows as unavailable:\n%s", v.name, text)
				}
				if sw := e2eEval[[]float64](t, bctx, `[document.documentElement.scrollWidth, document.documentElement.clientWidth]`); sw[0] > sw[1] {
					t.Errorf("%s at %d px: the page scrolls sideways (scrollWidth %v > clientWidth %v)", v.name, width, sw[0], sw[1])
				}
			}
		}
		if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 900)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("JSON of every view", func(t *testing.T) {
		for _, v := range views {
			if v.name == "steward" {
				continue
			}
			var parts map[string]json.RawMessage
			if err := getJSON(ctx, self.url+"/api/"+v.name, &parts); err != nil {
				t.Errorf("%s: %v", v.name, err)
				continue
			}
			running := 0
			for k, raw := range parts {
				var p struct {
					Running *bool
					Error   string
				}
				if json.Unmarshal(raw, &p) != nil || p.Running == nil {
					continue // not a data source part
				}
				running++
				if !*p.Running || p.Error != "" {
					t.Errorf("%s JSON: %s running=%v error=%q", v.name, k, *p.Running, p.Error)
				}
			}
			if running == 0 {
				t.Errorf("%s JSON has no data source part: %.300s", v.name, fmt.Sprint(parts))
			}
		}
	})

	t.Run("chat streams a reply from the inference server", func(t *testing.T) {
		navigate(t, "/inference")
		model := e2eEval[string](t, bctx, `document.getElementById('chat-model').value`)
		if model != e2eModel {
			t.Errorf("chat model %q, want %q (the engine's model)", model, e2eModel)
		}
		// Count the updates of the reply as it streams in.
		e2eEval[bool](t, bctx, `(() => { window.e2eUpdates = 0;
			new MutationObserver(ms => { window.e2eUpdates += ms.length })
				.observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true});
			return true })()`)
		if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS("#chat-message"), "What does the mesh do?"),
			chromedp.Click(chromedp.CSS("#chat-form button"))); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`!!document.querySelector('.msg.assistant.done') || !!document.querySelector('#chat-log .err')`,
			chromedp.WithPollingTimeout(60*time.Second))); err != nil {
			t.Fatalf("no reply within 60 s: %v", err)
		}
		res := e2eEval[struct {
			Reply, Err string
			Updates    int
		}](t, bctx, `({reply: (document.querySelector('.msg.assistant .text')||{}).textContent || '',
			err: (document.querySelector('#chat-log .err')||{}).textContent || '', updates: window.e2eUpdates})`)
		if res.Err != "" {
			t.Fatalf("chat error: %s", res.Err)
		}
		if strings.TrimSpace(res.Reply) == "" {
			t.Fatal("the streamed reply is empty")
		}
		// Two added messages (question, empty reply) then one update per
		// streamed piece: a reply delivered in one piece would be 3.
		if res.Updates < 5 {
			t.Errorf("the reply arrived in %d DOM updates, want it streamed in pieces", res.Updates)
		}
		t.Logf("streamed reply (%d updates): %.80q", res.Updates, res.Reply)
	})

	t.Run("steward action refused without the password, done with it", func(t *testing.T) {
		navigate(t, "/steward")
		const newName = "riverbend-renamed"
		// With the page's XSRF token but not signed in: refused.
		status := e2eEval[int](t, bctx, `fetch('/steward/node', {method:'POST', headers:{'Content-Type':'application/x-www-form-urlencoded'},
			body:'name=`+newName+`&xsrf='+encodeURIComponent(document.querySelector('meta[name=xsrf-token]').content)}).then(r => r.status)`)
		if status != http.StatusUnauthorized {
			t.Errorf("edit without signing in: status %d, want 401", status)
		}
		// A wrong password is refused too.
		if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS("#password"), "not-the-password"),
			chromedp.Submit(chromedp.CSS("#login-form")), chromedp.WaitVisible(chromedp.CSS("#steward-error"))); err != nil {
			t.Fatal(err)
		}
		if got := self.Config().Name; got != e2eNames[0] {
			t.Fatalf("the refused edits changed the name to %q", got)
		}
		if text := navigate(t, "/"); !strings.Contains(text, e2eNames[0]) || strings.Contains(text, newName) {
			t.Errorf("overview after refused edits:\n%s", text)
		}
		// The community's steward password signs in; the edit is saved.
		navigate(t, "/steward")
		if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS("#password"), e2ePassword),
			chromedp.Submit(chromedp.CSS("#login-form")), chromedp.WaitVisible(chromedp.CSS("#node-form"))); err != nil {
			t.Fatalf("sign in with the community's steward password: %v", err)
		}
		if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#cfg-name"), newName),
			chromedp.Submit(chromedp.CSS("#node-form")), chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
			t.Fatal(err)
		}
		text := navigate(t, "/")
		shown := e2eEval[string](t, bctx, `document.getElementById('node-name').textContent`)
		if shown != newName {
			t.Errorf("overview shows node name %q after the edit, want %q", shown, newName)
		}
		if strings.Contains(text, e2eNames[0]) {
			t.Errorf("overview still shows the old name %q", e2eNames[0])
		}
		saved, err := ParseNodeConfig(mustRead(t, filepath.Join(self.perm, "hypha", "node.json")))
		if err != nil || saved.Name != newName {
			t.Errorf("node.json on /perm: %+v, %v; want name %q", saved, err, newName)
		}
		// The new name reaches the other nodes over the mesh.
		waitMesh(t, ctx, nodes[1], []string{newName, e2eNames[2]}, 30*time.Second)

		// The form comes back filled with the saved settings: saving it
		// again with only the name changed must work too.
		navigate(t, "/steward")
		form := e2eEval[[]string](t, bctx, `['cfg-name', 'cfg-bio', 'cfg-loc'].map(id => document.getElementById(id).value)`)
		const thirdName = "riverbend-3rd"
		if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#cfg-name"), thirdName),
			chromedp.Submit(chromedp.CSS("#node-form")), chromedp.WaitVisible(chromedp.CSS("p.flash, #steward-error"))); err != nil {
			t.Fatal(err)
		}
		if msg := e2eEval[string](t, bctx, `(document.getElementById('steward-error')||{}).textContent || ''`); msg != "" {
			t.Errorf("second save of the node form (prefilled name, bioregion, location %q) refused: %s", form, msg)
		} else if got := self.Config().Name; got != thirdName {
			t.Errorf("after the second save the node is called %q, want %q", got, thirdName)
		}
	})

	t.Run("nothing leaves the box", func(t *testing.T) {
		requests, problems := rec.Snapshot()
		if len(requests) < 10 {
			t.Fatalf("only %d requests recorded: the listener is not working", len(requests))
		}
		for _, u := range requests {
			if !strings.HasPrefix(u, self.url+"/") && !strings.HasPrefix(u, "data:") && u != "about:blank" {
				t.Errorf("request to %s", u)
			}
		}
		for _, p := range problems {
			t.Error(p)
		}
	})

	t.Run("the checks can fail", func(t *testing.T) {
		requests, problems := rec.Snapshot()
		nreq, nprob := len(requests), len(problems)
		// A planted inline style is a CSP violation the listener must see.
		navigate(t, "/hardware")
		e2eEval[int](t, bctx, `document.body.setAttribute('style', 'outline: 1px solid red'), 0`)
		// A request to another host (TEST-NET-1; the namespace has no route
		// to it) must be recorded.
		const foreign = "http://192.0.2.1/"
		chromedp.Do(bctx, chromedp.Navigate(foreign)) // fails: no route
		seen := func() (bool, bool) {
			requests, problems := rec.Snapshot()
			csp := slices.ContainsFunc(problems[nprob:], func(p string) bool { return strings.Contains(p, "Content Security Policy") })
			return csp, slices.Contains(requests[nreq:], foreign)
		}
		for i := 0; i < 50; i++ {
			if csp, req := seen(); csp && req {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		csp, req := seen()
		t.Errorf("planted CSP violation seen: %v, planted foreign request seen: %v (want both)", csp, req)
	})
	t.Logf("end to end in %.1f s", time.Since(start).Seconds())
}

func e2eEval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// e2ePay has payer pay payee amount milli-units through the ledger's
// countersigning exchange on a mesh stream, with the payer's current
// solar reading attached, and returns the completed transaction.
func e2ePay(t *testing.T, ctx context.Context, payer, payee *e2eNode, amount int64, purpose string) *ledger.Tx {
	t.Helper()
	var obsv []ledger.Observation
	for i := 0; i < 100 && len(obsv) == 0; i++ {
		for _, o := range payer.sensors.Load().Snapshot() {
			if o.Quantity == obs.PVPower {
				obsv = append(obsv, ledger.Observation{Property: o.Quantity, Value: o.Value, Unit: o.Unit, Time: o.Time,
					SensorID: o.SensorID, Simulated: o.Simulated})
			}
		}
		if len(obsv) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(obsv) == 0 {
		t.Fatalf("%s has no solar reading to attach", payer.Config().Name)
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := payer.mesh.NewStream(pctx, payee.mesh.ID(), protocol.ID(ledger.CountersignProtocolID))
	if err != nil {
		t.Fatalf("countersign stream %s -> %s: %v", payer.Config().Name, payee.Config().Name, err)
	}
	defer s.Close()
	tx, err := payer.ledger.Pay(pctx, s, ledger.Terms{Payer: payer.ledger.ID(), Payee: payee.ledger.ID(), Amount: amount,
		Purpose: purpose, Observations: obsv})
	if err != nil {
		t.Fatalf("%s pays %s: %v", payer.Config().Name, payee.Config().Name, err)
	}
	return tx
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
