package lanpage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/univrs/hypha/appliance/lanpage/browsertest"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/appliance/lanpage/sample"
)

const testPassword = "moss-and-lichen-42"

// recorder keeps what the steward actions received.
type recorder struct {
	mu      sync.Mutex
	nodes   []lanpage.NodeConfigEdit
	revs    []lanpage.ReversalApproval
	sensors []lanpage.SensorAttachment
	invites []lanpage.InviteAcceptance
}

func (r *recorder) actions() lanpage.Actions {
	return lanpage.Actions{
		SetNodeConfig: func(_ context.Context, e lanpage.NodeConfigEdit) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.nodes = append(r.nodes, e)
			return nil
		},
		AttachSensor: func(_ context.Context, s lanpage.SensorAttachment) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.sensors = append(r.sensors, s)
			return nil
		},
		AcceptInvite: func(_ context.Context, a lanpage.InviteAcceptance) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.invites = append(r.invites, a)
			return nil
		},
		ApproveReversal: func(_ context.Context, a lanpage.ReversalApproval) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.revs = append(r.revs, a)
			return nil
		},
	}
}

// chatEndpoint is an OpenAI-compatible stand-in that streams a fixed reply in
// pieces, as llama-server and the gateway do.
func chatEndpoint(t testing.TB, pieces []string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		var req struct {
			Model    string
			Messages []lanpage.ChatMessage
			Stream   bool
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, p := range pieces {
			b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{"content": p}}}})
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
			time.Sleep(30 * time.Millisecond)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(s.Close)
	return s
}

type fixture struct {
	data *sample.Data
	rec  *recorder
	srv  *httptest.Server
}

func newFixture(t testing.TB, chatURL string) *fixture {
	hash := cheapHash(testPassword)
	f := &fixture{data: sample.New(time.Now()), rec: &recorder{}}
	src := f.data.Sources()
	src.Actions = f.rec.actions()
	opts := []lanpage.Option{lanpage.WithStewardPasswordHash(hash), lanpage.WithUpdateInterval(300 * time.Millisecond),
		lanpage.WithLocation(time.UTC)}
	if chatURL != "" {
		opts = append(opts, lanpage.WithChatEndpoint(chatURL))
	}
	h, err := lanpage.New(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// browser starts Debian's chromium headless with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests skipped in -short mode")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not installed (make deps installs it): %v", err)
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

func outDir(t *testing.T) string {
	d := os.Getenv("LANPAGE_OUT")
	if d == "" {
		d = filepath.Join("..", "..", "out", "lanpage")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(outDir(t), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func navigate(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
		t.Fatalf("navigate %s: %v", u, err)
	}
}

// The views, the path and what a steward must see on each (from the sample data).
var viewChecks = []struct {
	name, path string
	want       []string
	selector   string // an element that must exist
}{
	{"overview", "/", []string{"riverbend-1", "v0.3.1-14-g8cdf4b4", "3 of 5 other nodes up", "degraded", "2.31 kWh", "+12.5", "forked its chain", "inferd"}, "#build-version"},
	{"mesh", "/mesh", []string{"mill-gpu", "school-pi", "orchard-pi", "ferry-relay", "relay", "61 ms"}, "svg.mycelium .myc-thread"},
	{"inference", "/inference", []string{"llama-3.1-8b-instruct", "longest cached prefix (312 tokens)", "64%", "below threshold", "Try a model"}, "#chat-form"},
	{"ledger", "/ledger", []string{"Quarantined members", "ferry-relay", "Upper Saône watershed", "solar power", "simulated", "Approve reversal", "tx-2b9e0"}, "ol.flows li"},
	{"land", "/land", []string{"Solar panel", "simulated", "SIMULATED", "stopped answering", "no bus on this PC", "Readings now"}, "svg.chart path"},
	{"hardware", "/hardware", []string{"OptiPlex", "qualified", "AVX2", "no bus"}, "table"},
	{"community", "/community", []string{"Riverbend Commons", "Amina Diallo", "Credit limits", "bakery"}, "dl.rules"},
	{"steward", "/steward", []string{"Steward sign-in"}, "#login-form"},
}

func TestBrowser(t *testing.T) {
	ctx := browser(t)
	chat := chatEndpoint(t, []string{"The ", "mycelium ", "shares ", "what ", "it ", "has."})
	f := newFixture(t, chat.URL+"/v1")

	// Record every request the browser makes: none may leave the box.
	rec, err := browsertest.Record(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("views", func(t *testing.T) {
		for _, width := range []int64{1280, 360} {
			if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 800)); err != nil {
				t.Fatal(err)
			}
			for _, v := range viewChecks {
				navigate(t, ctx, f.srv.URL+v.path)
				// innerText applies text-transform: compare without case.
				text := strings.ToLower(eval[string](t, ctx, `document.body.innerText`))
				for _, w := range v.want {
					if !strings.Contains(text, strings.ToLower(w)) {
						t.Errorf("%s at %d px: page does not show %q", v.name, width, w)
					}
				}
				if n := eval[int](t, ctx, fmt.Sprintf(`document.querySelectorAll(%q).length`, v.selector)); n == 0 {
					t.Errorf("%s: no %s", v.name, v.selector)
				}
				if eval[bool](t, ctx, `document.body.innerText.includes("Unavailable:")`) {
					t.Errorf("%s: a source shows as unavailable", v.name)
				}
				// No horizontal scrolling of the page itself (wide tables scroll inside their region).
				sw := eval[[]float64](t, ctx, `[document.documentElement.scrollWidth, document.documentElement.clientWidth]`)
				if sw[0] > sw[1] {
					t.Errorf("%s at %d px: page scrolls sideways (scrollWidth %v > clientWidth %v)", v.name, width, sw[0], sw[1])
				}
				// Screen readers: one h1, a main landmark, a nav, every SVG labelled.
				a11y := eval[[]int](t, ctx, `[document.querySelectorAll('h1').length, document.querySelectorAll('main').length,
					document.querySelectorAll('nav').length,
					[...document.querySelectorAll('svg')].filter(s => s.getAttribute('aria-hidden')!=='true' && !s.getAttribute('aria-labelledby') && !s.getAttribute('aria-label')).length,
					[...document.querySelectorAll('input:not([type=hidden]),select,textarea')].filter(e => !(e.id && document.querySelector('label[for="'+e.id+'"]'))).length]`)
				if a11y[0] != 1 || a11y[1] != 1 || a11y[2] < 1 || a11y[3] != 0 || a11y[4] != 0 {
					t.Errorf("%s: h1=%d main=%d nav=%d unlabelled svg=%d unlabelled inputs=%d", v.name, a11y[0], a11y[1], a11y[2], a11y[3], a11y[4])
				}
				kind := "desktop"
				if width == 360 {
					kind = "phone"
				}
				screenshot(t, ctx, v.name+"-"+kind)
			}
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("accessibility (axe-core)", func(t *testing.T) {
		axePath := os.Getenv("LANPAGE_AXE")
		if axePath == "" {
			axePath = filepath.Join("..", "..", "out", "lanpage-node", "node_modules", "axe-core", "axe.min.js")
		}
		axe, err := os.ReadFile(axePath)
		if err != nil {
			t.Skipf("axe-core not installed (make lanpage-axe): %v", err)
		}
		// The check must be able to fail: an image without alt text is caught.
		navigate(t, ctx, f.srv.URL+"/hardware")
		eval[any](t, ctx, string(axe)+";0")
		bad := eval[[]string](t, ctx, `(document.querySelector('main').insertAdjacentHTML('beforeend', '<img src="/static/favicon.svg">'),
			axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => v.id)))`)
		if !slices.Contains(bad, "image-alt") {
			t.Fatalf("axe did not catch an image without alt: %v", bad)
		}
		for _, scheme := range []string{"light", "dark"} {
			if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
				t.Fatal(err)
			}
			for _, v := range viewChecks {
				navigate(t, ctx, f.srv.URL+v.path)
				// DevTools evaluation is not subject to the page's CSP.
				eval[any](t, ctx, string(axe)+";0")
				found := eval[[]struct {
					ID, Impact, Help string
					Nodes            []string
				}](t, ctx, `axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
					.filter(v => v.impact === 'serious' || v.impact === 'critical')
					.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))`)
				for _, f := range found {
					t.Errorf("%s (%s): %s %s: %s at %v", v.name, scheme, f.Impact, f.ID, f.Help, f.Nodes)
				}
			}
		}
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("live update over SSE", func(t *testing.T) {
		navigate(t, ctx, f.srv.URL+"/")
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('live-status').textContent.startsWith('Live')`,
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("the page never went live: %v", err)
		}
		before := eval[string](t, ctx, `document.getElementById('credit-balance').textContent`)
		f.data.SetBalance(-7.25)
		f.data.SetSchoolState(lanpage.PeerDown)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('credit-balance').textContent.includes('-7.25')`,
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("balance did not update live (was %q): %v", before, err)
		}
		reach := eval[string](t, ctx, `document.getElementById('mesh-reach').textContent`)
		if !strings.Contains(reach, "2 down") {
			t.Errorf("mesh card after school-pi went down: %q, want 2 down", reach)
		}
		if !eval[bool](t, ctx, `document.getElementById('live').hasAttribute('data-updated')`) {
			t.Error("the live region was not replaced by an SSE update")
		}
		f.data.SetBalance(12.5)
		f.data.SetSchoolState(lanpage.PeerUp)
	})

	t.Run("dark and light mode", func(t *testing.T) {
		lum := func() float64 {
			return eval[float64](t, ctx, `(() => { const m = getComputedStyle(document.body).backgroundColor.match(/[\d.]+/g).map(Number);
				return (0.2126*m[0] + 0.7152*m[1] + 0.0722*m[2]) / 255 })()`)
		}
		setScheme := func(s string) {
			if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: s}}}); err != nil {
				t.Fatal(err)
			}
		}
		setScheme("dark")
		navigate(t, ctx, f.srv.URL+"/mesh")
		eval[any](t, ctx, `localStorage.removeItem('hypha-theme'), document.documentElement.removeAttribute('data-theme'), 0`)
		if l := lum(); l > 0.2 {
			t.Errorf("prefers dark: background luminance %.2f, want dark", l)
		}
		screenshot(t, ctx, "mesh-dark")
		setScheme("light")
		if l := lum(); l < 0.7 {
			t.Errorf("prefers light: background luminance %.2f, want light", l)
		}
		screenshot(t, ctx, "mesh-light")
		// The toggle overrides the system and is remembered.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#theme-toggle"))); err != nil {
			t.Fatal(err)
		}
		if l := lum(); l > 0.2 {
			t.Errorf("after toggle: background luminance %.2f, want dark", l)
		}
		if p := eval[string](t, ctx, `document.getElementById('theme-toggle').getAttribute('aria-pressed')`); p != "true" {
			t.Errorf("toggle aria-pressed = %q, want true", p)
		}
		navigate(t, ctx, f.srv.URL+"/land")
		if l := lum(); l > 0.2 {
			t.Errorf("dark choice not remembered across pages: luminance %.2f", l)
		}
		screenshot(t, ctx, "land-dark")
		navigate(t, ctx, f.srv.URL+"/")
		screenshot(t, ctx, "overview-dark")
		navigate(t, ctx, f.srv.URL+"/ledger")
		screenshot(t, ctx, "ledger-dark")
		eval[any](t, ctx, `localStorage.removeItem('hypha-theme'), 0`)
		setScheme("")
	})

	t.Run("chat streams a reply", func(t *testing.T) {
		navigate(t, ctx, f.srv.URL+"/inference")
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#chat-message"), "What does the mesh do?"),
			chromedp.Click(chromedp.CSS("#chat-form button"))); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Poll[string](`(document.querySelector('.msg.assistant.done .text')||{}).textContent`,
			chromedp.WithPollingTimeout(20*time.Second)))
		if err != nil {
			t.Fatalf("no streamed reply: %v", err)
		}
		if got != "The mycelium shares what it has." {
			t.Errorf("streamed reply %q", got)
		}
		screenshot(t, ctx, "inference-chat")
	})

	t.Run("steward login and XSRF", func(t *testing.T) {
		navigate(t, ctx, f.srv.URL+"/steward")
		// A POST from the page's own origin, with its cookies but no token, is refused.
		status := eval[int](t, ctx, `fetch('/steward/node', {method:'POST', headers:{'Content-Type':'application/x-www-form-urlencoded'},
			body:'name=evil'}).then(r => r.status)`)
		if status != http.StatusForbidden {
			t.Errorf("POST without XSRF token: status %d, want 403", status)
		}
		// With the token but without signing in: 401, nothing changed.
		status = eval[int](t, ctx, `fetch('/steward/node', {method:'POST', headers:{'Content-Type':'application/x-www-form-urlencoded'},
			body:'name=evil&xsrf='+encodeURIComponent(document.querySelector('meta[name=xsrf-token]').content)}).then(r => r.status)`)
		if status != http.StatusUnauthorized {
			t.Errorf("POST with token, not signed in: status %d, want 401", status)
		}
		// Wrong password.
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#password"), "not-the-password"),
			chromedp.Submit(chromedp.CSS("#login-form")), chromedp.WaitVisible(chromedp.CSS("#steward-error"))); err != nil {
			t.Fatal(err)
		}
		if msg := eval[string](t, ctx, `document.getElementById('steward-error').textContent`); msg != "Wrong password." {
			t.Errorf("wrong password message %q", msg)
		}
		// Right password, then edit the node config.
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#password"), testPassword),
			chromedp.Submit(chromedp.CSS("#login-form")), chromedp.WaitVisible(chromedp.CSS("#node-form"))); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "steward-desktop")
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#cfg-name"), "riverbend-2"),
			chromedp.SetValue(chromedp.CSS("#cfg-loc"), "47.3, 5.05"),
			chromedp.Submit(chromedp.CSS("#node-form")), chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
			t.Fatal(err)
		}
		f.rec.mu.Lock()
		got := append([]lanpage.NodeConfigEdit(nil), f.rec.nodes...)
		f.rec.mu.Unlock()
		want := lanpage.NodeConfigEdit{Name: "riverbend-2", Bioregion: "Upper Saône watershed", Location: "47.3, 5.05"}
		if len(got) != 1 || got[0] != want {
			t.Errorf("SetNodeConfig got %+v, want exactly %+v", got, want)
		}
		// Attach a sensor and accept an invite through their forms.
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#sen-driver"), "ina219"),
			chromedp.SetValue(chromedp.CSS("#sen-bus"), "1"), chromedp.SetValue(chromedp.CSS("#sen-addr"), "0x40"),
			chromedp.SetValue(chromedp.CSS("#sen-label"), "Solar panel"), chromedp.SetValue(chromedp.CSS("#sen-measures"), "solar"),
			chromedp.Submit(chromedp.CSS("#sensor-form")), chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#inv-code"), "HYPHA-3c7d91e2\n-a4b6f8"),
			chromedp.Submit(chromedp.CSS("#invite-form")), chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
			t.Fatal(err)
		}
		f.rec.mu.Lock()
		sensors, invites := append([]lanpage.SensorAttachment(nil), f.rec.sensors...), append([]lanpage.InviteAcceptance(nil), f.rec.invites...)
		f.rec.mu.Unlock()
		if len(sensors) != 1 || sensors[0] != (lanpage.SensorAttachment{Driver: "ina219", Bus: "1", Address: 0x40, Label: "Solar panel", Measures: "solar"}) {
			t.Errorf("AttachSensor got %+v", sensors)
		}
		if len(invites) != 1 || invites[0].Code != "HYPHA-3c7d91e2-a4b6f8" {
			t.Errorf("AcceptInvite got %+v", invites)
		}
		// A bad name is refused with a message naming the field.
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#cfg-name"), "Not A Label!"),
			chromedp.Evaluate[chromedp.Void](`document.getElementById('cfg-name').removeAttribute('pattern')`),
			chromedp.Submit(chromedp.CSS("#node-form")), chromedp.WaitVisible(chromedp.CSS("#steward-error"))); err != nil {
			t.Fatal(err)
		}
		if msg := eval[string](t, ctx, `document.getElementById('steward-error').textContent`); !strings.Contains(msg, "name") {
			t.Errorf("bad name message %q does not name the field", msg)
		}
		// Approve the pending reversal from the ledger view.
		navigate(t, ctx, f.srv.URL+"/ledger")
		if err := chromedp.Do(ctx, chromedp.Submit(chromedp.CSS(".reversals form")), chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
			t.Fatal(err)
		}
		f.rec.mu.Lock()
		revs := append([]lanpage.ReversalApproval(nil), f.rec.revs...)
		f.rec.mu.Unlock()
		if len(revs) != 1 || revs[0].ID != "rev-51" {
			t.Errorf("ApproveReversal got %+v, want rev-51", revs)
		}
		if n := len(f.rec.nodes); n != 1 {
			t.Errorf("SetNodeConfig called %d times, want 1 (the refused edits must not reach it)", n)
		}
	})

	t.Run("nothing leaves the box", func(t *testing.T) {
		requests, _ := rec.Snapshot()
		if len(requests) < 20 {
			t.Fatalf("only %d requests recorded; the listener is not working", len(requests))
		}
		for _, u := range requests {
			if !strings.HasPrefix(u, f.srv.URL+"/") && !strings.HasPrefix(u, "data:") && u != "about:blank" {
				t.Errorf("request to %s", u)
			}
		}
	})

	t.Run("no script errors or CSP violations", func(t *testing.T) {
		_, before := rec.Snapshot()
		for _, p := range before {
			t.Error(p)
		}
		// The listener must be able to see one: plant an inline style.
		navigate(t, ctx, f.srv.URL+"/hardware")
		eval[any](t, ctx, `document.body.setAttribute('style', 'outline: 1px solid red'), 0`)
		for i := 0; i < 30; i++ {
			_, problems := rec.Snapshot()
			n := len(problems)
			last := ""
			if n > 0 {
				last = problems[n-1]
			}
			if n > len(before) && strings.Contains(last, "Content Security Policy") {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Error("a planted CSP violation was not seen: the check cannot fail")
	})

	t.Run("page weight and render time", func(t *testing.T) {
		measurePages(t, ctx, f.srv.URL)
	})
}

// measurePages loads each view with an empty cache and records bytes
// transferred and first contentful paint, into out/lanpage/weights.json.
func measurePages(t *testing.T, ctx context.Context, base string) {
	type row struct {
		View       string  `json:"view"`
		Bytes      float64 `json:"bytes"`
		HTMLBytes  float64 `json:"htmlBytes"`
		Requests   int     `json:"requests"`
		FCPms      float64 `json:"fcpMs"`
		DOMReadyMs float64 `json:"domContentLoadedMs"`
	}
	var rows []row
	for _, v := range viewChecks {
		if _, err := chromedp.Call(ctx, network.ClearBrowserCache, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		navigate(t, ctx, base+v.path)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`performance.getEntriesByType('paint').some(e => e.name === 'first-contentful-paint') && document.fonts.status === 'loaded'`,
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			t.Fatal(err)
		}
		r := eval[row](t, ctx, `(() => { const n = performance.getEntriesByType('navigation')[0];
			const res = performance.getEntriesByType('resource').filter(e => !e.name.includes('/events'));
			return {view: location.pathname, htmlBytes: n.encodedBodySize,
				bytes: n.encodedBodySize + res.reduce((a, e) => a + e.encodedBodySize, 0), requests: 1 + res.length,
				fcpMs: performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint').startTime,
				domContentLoadedMs: n.domContentLoadedEventEnd} })()`)
		r.View = v.name
		rows = append(rows, r)
		t.Logf("%-10s %7.0f bytes (%6.0f HTML) in %d requests, first paint %.0f ms", r.View, r.Bytes, r.HTMLBytes, r.Requests, r.FCPms)
	}
	b, _ := json.MarshalIndent(rows, "", "  ")
	if err := os.WriteFile(filepath.Join(outDir(t), "weights.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserNoJS checks the page works with JavaScript off: views render,
// and the chat form posts and shows the whole reply.
func TestBrowserNoJS(t *testing.T) {
	ctx := browser(t)
	chat := chatEndpoint(t, []string{"Works ", "without ", "script."})
	f := newFixture(t, chat.URL+"/v1")
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, f.srv.URL+"/inference")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#chat-message"), "hello"),
		chromedp.Submit(chromedp.CSS("#chat-form")), chromedp.WaitVisible(chromedp.CSS(".msg.assistant"))); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".msg.assistant")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Works without script.") {
		t.Errorf("no-JS chat reply %q", text)
	}
	// The theme toggle stays hidden without script.
	vis, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS("#theme-toggle[hidden]")))
	if err != nil || len(vis) != 1 {
		t.Errorf("theme toggle should stay hidden without script: %v %d", err, len(vis))
	}
}
