package lanpage_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/appliance/lanpage/sample"
)

func get(t *testing.T, c *http.Client, u, accept string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var xsrfRE = regexp.MustCompile(`name="xsrf-token" content="([^"]+)"`)

// xsrf loads /steward with c and returns the token of its visitor cookie.
func xsrf(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	_, body := get(t, c, base+"/steward", "")
	m := xsrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no XSRF token in the page")
	}
	return m[1]
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func postJSON(t *testing.T, c *http.Client, u, token string, body any) (*http.Response, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", u, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-XSRF-Token", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// cheapHash is an argon2id hash with small parameters, to keep tests quick
// (HashPassword's 64 MiB × 3 passes take about a second on a busy machine).
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	k := argon2.IDKey([]byte(pw), salt, 1, 1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=1024,t=1,p=1$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k))
}

func TestNewErrors(t *testing.T) {
	node := func(context.Context) (lanpage.NodeInfo, error) { return lanpage.NodeInfo{Name: "a"}, nil }
	tests := []struct {
		name string
		src  lanpage.Sources
		opts []lanpage.Option
		want error
	}{
		{"no node", lanpage.Sources{}, nil, lanpage.ErrNoNodeSource},
		{"plain password", lanpage.Sources{Node: node}, []lanpage.Option{lanpage.WithStewardPasswordHash("hunter2")}, lanpage.ErrBadPasswordHash},
		{"short bcrypt", lanpage.Sources{Node: node}, []lanpage.Option{lanpage.WithStewardPasswordHash("$2b$10$abc")}, lanpage.ErrBadPasswordHash},
		{"argon2 huge memory", lanpage.Sources{Node: node}, []lanpage.Option{lanpage.WithStewardPasswordHash("$argon2id$v=19$m=99999999,t=3,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")}, lanpage.ErrBadPasswordHash},
		{"chat not http", lanpage.Sources{Node: node}, []lanpage.Option{lanpage.WithChatEndpoint("ftp://x")}, lanpage.ErrBadOption},
		{"tiny interval", lanpage.Sources{Node: node}, []lanpage.Option{lanpage.WithUpdateInterval(time.Millisecond)}, lanpage.ErrBadOption},
	}
	for _, tc := range tests {
		if _, err := lanpage.New(tc.src, tc.opts...); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestPasswordHashes(t *testing.T) {
	h, err := lanpage.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	ph, err := lanpage.ParsePasswordHash(h)
	if err != nil {
		t.Fatal(err)
	}
	if !ph.Check("correct horse") || ph.Check("correct horsE") {
		t.Error("argon2id check wrong")
	}
	// bcrypt, as provisioning might store it instead.
	raw, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), 4)
	bc, err := lanpage.ParsePasswordHash(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !bc.Check("correct horse") || bc.Check("correct horse ") {
		t.Error("bcrypt check wrong")
	}
	if _, err := lanpage.HashPassword("short"); !errors.Is(err, lanpage.ErrBadInput) {
		t.Errorf("short password: %v", err)
	}
}

// TestAPINode is what the qemu boot test reads: name and build version.
func TestAPINode(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	d := sample.New(now)
	h, err := lanpage.New(d.Sources(), lanpage.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	defer s.Close()
	resp, body := get(t, client(t), s.URL+"/api/node", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var n struct {
		Name, Version, PeerID, ShortID string
		UptimeSeconds                  float64
	}
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatal(err)
	}
	want := (3*24*time.Hour + 4*time.Hour + 12*time.Minute).Seconds()
	if n.Name != "riverbend-1" || n.Version != "v0.3.1-14-g8cdf4b4" || n.PeerID != sample.SelfID || n.UptimeSeconds != want || n.ShortID != "12D3KooW…dA1xBz" {
		t.Errorf("node JSON %+v", n)
	}
	// The overview HTML carries them in stable IDs too.
	_, html := get(t, client(t), s.URL+"/", "")
	for _, w := range []string{`<dd id="node-name">riverbend-1</dd>`, `<dd id="build-version">v0.3.1-14-g8cdf4b4</dd>`} {
		if !strings.Contains(html, w) {
			t.Errorf("overview lacks %s", w)
		}
	}
}

func TestJSONForEveryView(t *testing.T) {
	d := sample.New(time.Now())
	h, _ := lanpage.New(d.Sources())
	s := httptest.NewServer(h)
	defer s.Close()
	c := client(t)
	for _, v := range []string{"overview", "mesh", "inference", "ledger", "land", "hardware", "community"} {
		path := "/" + v
		if v == "overview" {
			path = "/"
		}
		for _, u := range []string{s.URL + "/api/" + v, s.URL + path} {
			resp, body := get(t, c, u, "application/json")
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: status %d type %q", u, resp.StatusCode, resp.Header.Get("Content-Type"))
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Errorf("%s: %v", u, err)
			}
			if strings.Contains(body, `"running": false`) || strings.Contains(body, "\n    \"error\"") {
				t.Errorf("%s: a part is not running or failed:\n%.300s", u, body)
			}
		}
	}
	// Browsers send HTML first: they get HTML.
	resp, _ := get(t, c, s.URL+"/mesh", "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("browser Accept got %s", ct)
	}
	resp, body := get(t, c, s.URL+"/api/nope", "")
	if resp.StatusCode != 404 || !strings.Contains(body, `no view \"nope\"`) {
		t.Errorf("unknown view: %d %s", resp.StatusCode, body)
	}
	// The land window is chosen by query.
	_, body = get(t, c, s.URL+"/api/land?window=months", "")
	if !strings.Contains(body, `"name": "months"`) || !strings.Contains(body, "Solar energy per day") {
		t.Errorf("months window JSON lacks the daily series")
	}
}

func TestSubsystemsNotRunningOrFailing(t *testing.T) {
	src := lanpage.Sources{
		Node: func(context.Context) (lanpage.NodeInfo, error) {
			return lanpage.NodeInfo{Name: "lonely", Version: "v1"}, nil
		},
		Mesh: func(context.Context) (lanpage.Mesh, error) {
			return lanpage.Mesh{}, errors.New("libp2p host not started")
		},
		Ledger: func(context.Context) (lanpage.Ledger, error) {
			panic("adapter bug: nil map") // a bug in the lead's adapter must not take the page down
		},
		Hardware: func(ctx context.Context) (lanpage.Hardware, error) {
			<-ctx.Done() // hangs
			return lanpage.Hardware{}, ctx.Err()
		},
	}
	h, err := lanpage.New(src, lanpage.WithSourceTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	defer s.Close()
	c := client(t)
	checks := map[string][]string{
		"/":          {"Unavailable: libp2p host not started", "Unavailable: internal error", "Not running on this node."},
		"/mesh":      {"Unavailable: libp2p host not started"},
		"/inference": {"Not running on this node.", "No chat endpoint is configured"},
		"/ledger":    {"Unavailable: internal error: adapter bug: nil map"},
		"/land":      {"Not running on this node."},
		"/hardware":  {"Unavailable: no answer within 100ms"},
		"/community": {"Not running on this node."},
		"/steward":   {"No steward password is set"},
	}
	for path, wants := range checks {
		resp, body := get(t, c, s.URL+path, "")
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("%s: lacks %q", path, w)
			}
		}
	}
	_, body := get(t, c, s.URL+"/api/inference", "")
	if !strings.Contains(body, `"running": false`) {
		t.Errorf("JSON of a stopped subsystem: %s", body)
	}
}

type stewardFixture struct {
	srv  *httptest.Server
	now  time.Time
	mu   sync.Mutex
	got  []lanpage.SensorAttachment
	fail error
}

func newSteward(t *testing.T) *stewardFixture {
	f := &stewardFixture{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	hash := cheapHash(testPassword)
	d := sample.New(f.now)
	src := d.Sources()
	src.Actions.AttachSensor = func(_ context.Context, s lanpage.SensorAttachment) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail != nil {
			return f.fail
		}
		f.got = append(f.got, s)
		return nil
	}
	h, err := lanpage.New(src, lanpage.WithStewardPasswordHash(hash), lanpage.WithSessionTTL(time.Hour),
		lanpage.WithLoginLimit(3, time.Minute), lanpage.WithClock(func() time.Time {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.now
		}))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *stewardFixture) advance(d time.Duration) { f.mu.Lock(); f.now = f.now.Add(d); f.mu.Unlock() }

func TestXSRF(t *testing.T) {
	f := newSteward(t)
	base := f.srv.URL
	good := url.Values{"password": {testPassword}}

	// No visitor cookie at all.
	if resp, _ := postForm(t, client(t), base+"/steward/login", good, nil); resp.StatusCode != 403 {
		t.Errorf("no cookie: %d, want 403", resp.StatusCode)
	}
	c := client(t)
	tok := xsrf(t, c, base)
	// Cookie but no token; a token of another visitor; a forged Origin.
	other := xsrf(t, client(t), base)
	for name, tc := range map[string]struct {
		v   url.Values
		hdr map[string]string
	}{
		"no token":      {good, nil},
		"foreign token": {url.Values{"password": {testPassword}, "xsrf": {other}}, nil},
		"cross origin":  {url.Values{"password": {testPassword}, "xsrf": {tok}}, map[string]string{"Origin": "http://evil.example"}},
	} {
		if resp, _ := postForm(t, c, base+"/steward/login", tc.v, tc.hdr); resp.StatusCode != 403 {
			t.Errorf("%s: %d, want 403", name, resp.StatusCode)
		}
	}
	// Every POST endpoint refuses without the token, chat included.
	for _, p := range []string{"/steward/logout", "/steward/node", "/steward/sensor", "/steward/invite", "/steward/reversal", "/inference/chat"} {
		if resp, _ := postForm(t, c, base+p, url.Values{}, nil); resp.StatusCode != 403 {
			t.Errorf("%s without token: %d, want 403", p, resp.StatusCode)
		}
		if resp, _ := postJSON(t, c, base+p, "", map[string]string{}); resp.StatusCode != 403 {
			t.Errorf("%s JSON without token: %d, want 403", p, resp.StatusCode)
		}
	}
	// Same origin with the token: signed in.
	resp, _ := postForm(t, c, base+"/steward/login", url.Values{"password": {testPassword}, "xsrf": {tok}},
		map[string]string{"Origin": base})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
}

func TestStewardActionsJSON(t *testing.T) {
	f := newSteward(t)
	base := f.srv.URL
	c := client(t)
	tok := xsrf(t, c, base)
	sensor := map[string]any{"driver": "bme280", "bus": "/dev/i2c-1", "address": 0x76, "label": "Greenhouse air", "measures": "air", "location": "greenhouse"}

	if resp, body := postJSON(t, c, base+"/steward/sensor", tok, sensor); resp.StatusCode != 401 || !strings.Contains(body, "log in") {
		t.Errorf("not signed in: %d %s", resp.StatusCode, body)
	}
	if resp, body := postJSON(t, c, base+"/steward/login", tok, map[string]string{"password": "wrong"}); resp.StatusCode != 401 {
		t.Errorf("wrong password: %d %s", resp.StatusCode, body)
	}
	if resp, body := postJSON(t, c, base+"/steward/login", tok, map[string]string{"password": testPassword}); resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	if resp, body := postJSON(t, c, base+"/steward/sensor", tok, sensor); resp.StatusCode != 200 {
		t.Fatalf("attach: %d %s", resp.StatusCode, body)
	}
	want := lanpage.SensorAttachment{Driver: "bme280", Bus: "/dev/i2c-1", Address: 0x76, Label: "Greenhouse air", Measures: "air", Location: "greenhouse"}
	if len(f.got) != 1 || f.got[0] != want {
		t.Errorf("callback got %+v", f.got)
	}
	// Bad input names the field; an unknown field is refused.
	bad := map[string]any{"driver": "bme280", "bus": "1", "address": 0x99, "label": "x"}
	if resp, body := postJSON(t, c, base+"/steward/sensor", tok, bad); resp.StatusCode != 400 || !strings.Contains(body, "address") {
		t.Errorf("bad address: %d %s", resp.StatusCode, body)
	}
	if resp, body := postJSON(t, c, base+"/steward/sensor", tok, map[string]any{"driver": "bme280", "colour": "red"}); resp.StatusCode != 400 || !strings.Contains(body, "colour") {
		t.Errorf("unknown field: %d %s", resp.StatusCode, body)
	}
	// The subsystem's own refusal is passed on.
	f.mu.Lock()
	f.fail = errors.New("bus 1 is busy")
	f.mu.Unlock()
	if resp, body := postJSON(t, c, base+"/steward/sensor", tok, sensor); resp.StatusCode != 422 || !strings.Contains(body, "bus 1 is busy") {
		t.Errorf("callback error: %d %s", resp.StatusCode, body)
	}
	// Actions with no callback say so.
	if resp, body := postJSON(t, c, base+"/steward/invite", tok, map[string]string{"code": "abc"}); resp.StatusCode != 422 || !strings.Contains(body, "cannot accept invites") {
		t.Errorf("no invite callback: %d %s", resp.StatusCode, body)
	}
	// The session expires.
	f.advance(2 * time.Hour)
	if resp, _ := postJSON(t, c, base+"/steward/sensor", tok, sensor); resp.StatusCode != 401 {
		t.Errorf("after session TTL: %d, want 401", resp.StatusCode)
	}
}

func TestLoginRateLimit(t *testing.T) {
	f := newSteward(t)
	base := f.srv.URL
	c := client(t)
	tok := xsrf(t, c, base)
	try := func(pw string) *http.Response {
		resp, _ := postForm(t, c, base+"/steward/login", url.Values{"password": {pw}, "xsrf": {tok}}, nil)
		return resp
	}
	for i := 0; i < 3; i++ {
		if r := try("guess"); r.StatusCode != 401 {
			t.Fatalf("guess %d: %d", i, r.StatusCode)
		}
	}
	r := try(testPassword) // even the right one waits
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th try: %d Retry-After %q, want 429", r.StatusCode, r.Header.Get("Retry-After"))
	}
	f.advance(61 * time.Second)
	if r := try(testPassword); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d", r.StatusCode)
	}
}

// TestEvents reads the SSE stream directly: a change of the data is pushed,
// and the forms inside the live region keep the visitor's XSRF token.
func TestEvents(t *testing.T) {
	d := sample.New(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := d.Sources()
	src.Actions.ApproveReversal = func(context.Context, lanpage.ReversalApproval) error { return nil }
	h, _ := lanpage.New(src, lanpage.WithUpdateInterval(100*time.Millisecond), lanpage.WithContext(ctx),
		lanpage.WithStewardPasswordHash(cheapHash(testPassword)))
	s := httptest.NewServer(h)
	defer s.Close()
	c := client(t)
	if resp, _ := get(t, c, s.URL+"/events?view=nope", ""); resp.StatusCode != 400 {
		t.Errorf("unknown view: %d", resp.StatusCode)
	}
	_, page := get(t, c, s.URL+"/ledger", "")
	tok := xsrfRE.FindStringSubmatch(page)[1]
	if !strings.Contains(page, `name="xsrf" value="`+tok+`"`) {
		t.Fatal("the ledger page has no approve form with the token")
	}
	resp, err := c.Get(s.URL + "/events?view=ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %s", ct)
	}
	d.SetBalance(-31.5)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	deadline := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	defer deadline.Stop()
	var event string
	for sc.Scan() {
		line := sc.Text()
		if line == "event: update" {
			event = line
			continue
		}
		if event != "" && strings.HasPrefix(line, "data: ") {
			var u struct{ HTML, At string }
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &u); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(u.HTML, "-31.5") || u.At == "" {
				t.Fatalf("update lacks the new balance: %.200s", u.HTML)
			}
			if !strings.Contains(u.HTML, `name="xsrf" value="`+tok+`"`) {
				t.Errorf("the approve form in the update lost the XSRF token")
			}
			cancel() // WithContext ends the stream: Shutdown can finish
			io.Copy(io.Discard, resp.Body)
			return
		}
	}
	t.Fatal("no update event")
}

func TestChatStream(t *testing.T) {
	chat := chatEndpoint(t, []string{"Hello", ", ", "village."})
	d := sample.New(time.Now())
	h, _ := lanpage.New(d.Sources(), lanpage.WithChatEndpoint(chat.URL+"/v1/"))
	s := httptest.NewServer(h)
	defer s.Close()
	c := client(t)
	tok := xsrf(t, c, s.URL)
	resp, body := postJSON(t, c, s.URL+"/inference/chat", tok, lanpage.ChatRequest{Model: "qwen2.5-0.5b-instruct",
		Messages: []lanpage.ChatMessage{{Role: "user", Content: "hi"}}})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	want := "data: {\"delta\":\"Hello\"}\n\ndata: {\"delta\":\", \"}\n\ndata: {\"delta\":\"village.\"}\n\nevent: done\ndata: {\"done\":true}\n\n"
	if body != want {
		t.Errorf("stream:\n%q\nwant\n%q", body, want)
	}
	// An upstream failure is reported, not hidden.
	h2, _ := lanpage.New(d.Sources(), lanpage.WithChatEndpoint(chat.URL+"/nowhere"))
	s2 := httptest.NewServer(h2)
	defer s2.Close()
	c2 := client(t)
	tok2 := xsrf(t, c2, s2.URL)
	_, body = postJSON(t, c2, s2.URL+"/inference/chat", tok2, lanpage.ChatRequest{Messages: []lanpage.ChatMessage{{Role: "user", Content: "hi"}}})
	if !strings.Contains(body, "event: error") || !strings.Contains(body, "404") {
		t.Errorf("upstream 404: %q", body)
	}
	// Bad roles are refused before anything is sent upstream.
	resp, body = postJSON(t, c, s.URL+"/inference/chat", tok, lanpage.ChatRequest{Messages: []lanpage.ChatMessage{{Role: "root", Content: "hi"}}})
	if resp.StatusCode != 400 || !strings.Contains(body, "role") {
		t.Errorf("bad role: %d %s", resp.StatusCode, body)
	}
}

// TestOffline: every page and asset refers only to this origin.
func TestOffline(t *testing.T) {
	d := sample.New(time.Now())
	h, _ := lanpage.New(d.Sources())
	s := httptest.NewServer(h)
	defer s.Close()
	c := client(t)
	ext := regexp.MustCompile(`(?i)(src|href|url)\s*[=(]\s*["']?(https?:)?//`)
	for _, p := range []string{"/", "/mesh", "/inference", "/ledger", "/land", "/land?window=months", "/hardware", "/community", "/steward",
		"/static/app.css", "/static/app.js", "/static/favicon.svg"} {
		resp, body := get(t, c, s.URL+p, "")
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if m := ext.FindString(body); m != "" {
			t.Errorf("%s refers to another origin: %s", p, m)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
	}
	for _, font := range []string{"syne-latin-700-normal.woff2", "crimson-pro-latin-400-normal.woff2", "OFL-Syne.txt", "OFL-CrimsonPro.txt"} {
		resp, body := get(t, c, s.URL+"/static/fonts/"+font, "")
		if resp.StatusCode != 200 || len(body) < 1000 {
			t.Errorf("font %s: %d, %d bytes", font, resp.StatusCode, len(body))
		}
	}
}

func TestGzip(t *testing.T) {
	d := sample.New(time.Now())
	h, _ := lanpage.New(d.Sources())
	s := httptest.NewServer(h)
	defer s.Close()
	for _, p := range []string{"/mesh", "/static/app.css", "/api/ledger"} {
		req, _ := http.NewRequest("GET", s.URL+p, nil)
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client no longer unzips
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: not gzipped: %v %q", p, err, resp.Header.Get("Content-Encoding"))
		}
		plain, err := io.ReadAll(zr)
		resp.Body.Close()
		if err != nil || len(plain) < 1000 {
			t.Errorf("%s: %d bytes after gunzip, %v", p, len(plain), err)
		}
	}
	// Fonts are already compressed.
	req, _ := http.NewRequest("GET", s.URL+"/static/fonts/syne-latin-700-normal.woff2", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "" {
		t.Error("woff2 was gzipped again")
	}
}

func BenchmarkRender(b *testing.B) {
	d := sample.New(time.Now())
	h, _ := lanpage.New(d.Sources())
	for _, p := range []string{"/", "/mesh", "/inference", "/ledger", "/land", "/land?window=months", "/hardware", "/community"} {
		for _, accept := range []string{"text/html", "application/json"} {
			b.Run(fmt.Sprintf("%s/%s", strings.TrimPrefix(p, "/"), strings.TrimPrefix(accept, "application/")), func(b *testing.B) {
				req := httptest.NewRequest("GET", p, nil)
				req.Header.Set("Accept", accept)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				b.SetBytes(int64(rec.Body.Len()))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
				}
			})
		}
	}
}
