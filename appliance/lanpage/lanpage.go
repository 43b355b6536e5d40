// Package lanpage serves the LAN page of a Hypha node: what a steward opens
// on a phone or an old laptop, with no internet, to see whether the mesh is
// healthy, who serves what, how much energy the sun gave and where credit
// flowed.
//
// The page is server-rendered HTML (html/template, parsed once), works with
// no JavaScript, and upgrades itself with a small script: live updates over
// server-sent events, a theme toggle and a streaming chat box. Every asset
// (CSS, script, fonts) is embedded; nothing is loaded from elsewhere. Every
// view is also JSON: send "Accept: application/json" or use /api/<view>.
//
// The package imports no subsystem: the node daemon adapts each subsystem to
// the plain structs in Sources. Steward actions need the steward password
// (WithStewardPasswordHash), a session cookie, and an XSRF token on every POST.
package lanpage

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/univrs/hypha/appliance/lanpage/chart"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Option tunes the page. Each documents its default.
type Option func(*config) error

type config struct {
	log         *slog.Logger
	hash        *PasswordHash
	chatURL     string
	interval    time.Duration
	timeout     time.Duration
	sessionTTL  time.Duration
	loginLimit  int
	loginWindow time.Duration
	now         func() time.Time
	secure      bool
	ctx         context.Context
	maxStreams  int
	loc         *time.Location
}

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.log = l; return nil }
}

// WithStewardPasswordHash enables steward actions, checked against hash
// (bcrypt "$2b$…" or argon2id PHC "$argon2id$v=19$…", see HashPassword).
// Default: none, steward actions are disabled and say so.
func WithStewardPasswordHash(hash string) Option {
	return func(c *config) error {
		h, err := ParsePasswordHash(hash)
		if err != nil {
			return err
		}
		c.hash = h
		return nil
	}
}

// WithChatEndpoint sets the OpenAI-compatible base URL the chat box talks to,
// e.g. "http://127.0.0.1:11434/v1" (the page POSTs to <url>/chat/completions
// from the server, so the browser never leaves this origin). Default: none,
// the chat box says no endpoint is configured.
func WithChatEndpoint(base string) Option {
	return func(c *config) error {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: chat endpoint %q: want an http(s) URL", ErrBadOption, base)
		}
		c.chatURL = strings.TrimRight(base, "/")
		return nil
	}
}

// WithUpdateInterval sets how often live pages are refreshed over SSE.
// Default: 5 s. Minimum 100 ms.
func WithUpdateInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("%w: update interval %v below 100ms", ErrBadOption, d)
		}
		c.interval = d
		return nil
	}
}

// WithSourceTimeout bounds each call of a source function. Default: 2 s.
func WithSourceTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: source timeout %v", ErrBadOption, d)
		}
		c.timeout = d
		return nil
	}
}

// WithSessionTTL sets how long a steward stays logged in. Default: 12 h.
func WithSessionTTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: session TTL %v", ErrBadOption, d)
		}
		c.sessionTTL = d
		return nil
	}
}

// WithLoginLimit allows n failed logins per client address per window
// (and 6n from all addresses together). Default: 5 per minute.
func WithLoginLimit(n int, window time.Duration) Option {
	return func(c *config) error {
		if n < 1 || window <= 0 {
			return fmt.Errorf("%w: login limit %d per %v", ErrBadOption, n, window)
		}
		c.loginLimit, c.loginWindow = n, window
		return nil
	}
}

// WithClock sets the clock (tests). Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) error { c.now = now; return nil }
}

// WithLocation sets the time zone times are shown in. Default: time.Local.
func WithLocation(loc *time.Location) Option {
	return func(c *config) error { c.loc = loc; return nil }
}

// WithSecureCookies marks cookies Secure (only when served over HTTPS).
// Default: false — the LAN page is plain HTTP on the LAN.
func WithSecureCookies(on bool) Option {
	return func(c *config) error { c.secure = on; return nil }
}

// WithContext ends every live-update stream when ctx is done, so that
// http.Server.Shutdown can complete. Default: streams end only when the
// client goes away.
func WithContext(ctx context.Context) Option {
	return func(c *config) error { c.ctx = ctx; return nil }
}

// WithMaxStreams caps concurrent live-update streams. Default: 32.
func WithMaxStreams(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max streams %d", ErrBadOption, n)
		}
		c.maxStreams = n
		return nil
	}
}

// page is the handler. All fields are set in New and read-only afterwards,
// except streams (atomic) and what auth guards itself.
type page struct {
	src    Sources
	cfg    config
	auth   *auth
	views  map[string]*template.Template
	static http.Handler
	mux    http.Handler
	// streams counts open SSE streams.
	streams atomic.Int32

	liveMu sync.Mutex
	live   map[string]liveModel // view?window -> recent model; guarded by liveMu
}

type liveModel struct {
	at time.Time
	m  any
}

// New returns the LAN page handler. It serves:
//
//	/            overview        /mesh       mesh           /inference  inference + chat
//	/ledger      ledger          /land       land & energy  /hardware   hwtest report
//	/community   manifest        /steward    steward login and actions
//	/api/<view>  JSON of a view (also any view with Accept: application/json)
//	/api/node    node name, identity, version, uptime
//	/events      server-sent events with the live parts of a view
//	/static/…    embedded CSS, script, fonts
//
// The handler is safe for concurrent use.
func New(src Sources, opts ...Option) (http.Handler, error) {
	if src.Node == nil {
		return nil, ErrNoNodeSource
	}
	cfg := config{log: slog.Default(), interval: 5 * time.Second, timeout: 2 * time.Second,
		sessionTTL: 12 * time.Hour, loginLimit: 5, loginWindow: time.Minute, now: time.Now,
		ctx: context.Background(), maxStreams: 32, loc: time.Local}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("lanpage: %w", err)
		}
	}
	p := &page{src: src, cfg: cfg, views: map[string]*template.Template{}, live: map[string]liveModel{}}
	p.auth = newAuth(cfg.hash, cfg.sessionTTL, cfg.loginLimit, cfg.loginWindow, cfg.now, cfg.secure)
	if err := p.parseTemplates(); err != nil {
		return nil, fmt.Errorf("lanpage: templates: %w", err)
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("lanpage: static: %w", err)
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	p.static = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets change only with a new build, which restarts the process.
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
	p.routes()
	return p, nil
}

var viewNames = []string{"overview", "mesh", "inference", "ledger", "land", "hardware", "community", "steward"}

func (p *page) parseTemplates() error {
	base, err := template.New("layout.tmpl").Funcs(p.funcs()).ParseFS(templateFS, "templates/layout.tmpl", "templates/parts.tmpl")
	if err != nil {
		return err
	}
	for _, v := range viewNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+v+".tmpl")
		if err != nil {
			return err
		}
		p.views[v] = t
	}
	return nil
}

func (p *page) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", p.static)
	m.HandleFunc("GET /{$}", p.view("overview"))
	for _, v := range viewNames[1:] {
		m.HandleFunc("GET /"+v, p.view(v))
	}
	m.HandleFunc("GET /api/node", p.apiNode)
	m.HandleFunc("GET /api/{view}", func(w http.ResponseWriter, r *http.Request) {
		v := r.PathValue("view")
		if !slices.Contains(viewNames, v) || v == "steward" {
			p.jsonError(w, http.StatusNotFound, fmt.Errorf("no view %q, want one of %s", v, strings.Join(viewNames[:7], ", ")))
			return
		}
		m, err := p.modelFor(r.Context(), v, r, false)
		if err != nil {
			p.jsonError(w, http.StatusServiceUnavailable, err)
			return
		}
		p.writeJSON(w, m)
	})
	m.HandleFunc("GET /events", p.events)
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	m.HandleFunc("POST /inference/chat", p.chat)
	m.HandleFunc("POST /steward/login", p.login)
	m.HandleFunc("POST /steward/logout", p.logout)
	m.HandleFunc("POST /steward/{action}", p.action)
	p.mux = withGzip(m)
}

func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	p.mux.ServeHTTP(w, r)
}

// part is the state of one subsystem in a view: not running, failed, or data.
type part[T any] struct {
	Running bool   `json:"running"`
	Error   string `json:"error,omitempty"`
	Data    T      `json:"data"`
}

// OK reports whether the part has data to show.
func (p part[T]) OK() bool { return p.Running && p.Error == "" }

// call runs a source with the source timeout, turning a panic into an error.
func call[T any](ctx context.Context, p *page, name string, fn func(context.Context) (T, error)) (out part[T]) {
	if fn == nil {
		return out
	}
	out.Running = true
	ctx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			out.Error = fmt.Sprintf("internal error: %v", r)
			p.cfg.log.Error("lanpage: source panicked", "source", name, "panic", r)
		}
	}()
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.cfg.log.Error("lanpage: source panicked", "source", name, "panic", r)
				ch <- res{err: fmt.Errorf("internal error: %v", r)}
			}
		}()
		v, err := fn(ctx)
		ch <- res{v, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			out.Error = r.err.Error()
			return out
		}
		out.Data = r.v
	case <-ctx.Done():
		out.Error = fmt.Sprintf("no answer within %v", p.cfg.timeout)
	}
	return out
}

// nodeJSON is the JSON of /api/node (the boot test reads name and version).
type nodeJSON struct {
	NodeInfo
	ShortID       string  `json:"shortId"`
	UptimeSeconds float64 `json:"uptimeSeconds"`
	Error         string  `json:"error,omitempty"`
}

func (p *page) node(ctx context.Context) (NodeInfo, string) {
	n := call(ctx, p, "node", p.src.Node)
	return n.Data, n.Error
}

func (p *page) apiNode(w http.ResponseWriter, r *http.Request) {
	n, errText := p.node(r.Context())
	j := nodeJSON{NodeInfo: n, ShortID: shortID(n.PeerID), Error: errText}
	if !n.Started.IsZero() {
		j.UptimeSeconds = math.Round(p.cfg.now().Sub(n.Started).Seconds())
	}
	if errText != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(j)
		return
	}
	p.writeJSON(w, j)
}

// Models of each view. Exported fields are the JSON of /api/<view>.

type meshSummary struct {
	Health    string        `json:"health"` // "healthy", "degraded", "alone", "partitioned"
	Up        int           `json:"up"`
	Degraded  int           `json:"degraded"`
	Down      int           `json:"down"`
	Total     int           `json:"total"`
	MedianRTT time.Duration `json:"medianRttNs"`
}

type overviewModel struct {
	Node     nodeJSON          `json:"node"`
	Services part[[]Service]   `json:"services"`
	Alerts   part[[]Alert]     `json:"alerts"`
	Mesh     part[meshSummary] `json:"mesh"`
	Energy   part[EnergyToday] `json:"energy"`
	Credit   part[creditJSON]  `json:"credit"`
}

type creditJSON struct {
	CreditSummary
	Unit string `json:"unit"`
}

type meshModel struct {
	Mesh    part[Mesh]        `json:"mesh"`
	Summary meshSummary       `json:"summary"`
	Picture template.HTML     `json:"-"`
	Names   map[string]string `json:"-"`
}

type inferenceModel struct {
	Inference   part[Inference] `json:"inference"`
	ChatEnabled bool            `json:"chatEnabled"`
	Models      []string        `json:"-"`
	Charts      []template.HTML `json:"-"` // reputation over time
	Chat        *chatResult     `json:"-"`
}

type chatResult struct {
	Model, Prompt, Reply, Error string
}

type ledgerModel struct {
	Ledger     part[Ledger] `json:"ledger"`
	CanApprove bool         `json:"-"`
}

type landModel struct {
	Window  Window          `json:"window"`
	Land    part[Land]      `json:"land"`
	Windows []string        `json:"-"`
	Charts  []template.HTML `json:"-"`
}

type hardwareModel struct {
	Hardware part[Hardware] `json:"hardware"`
}

type communityModel struct {
	Community part[Community] `json:"community"`
}

type stewardModel struct {
	Enabled bool
	Node    NodeInfo
	Drivers []string
	Actions Actions
	Flash   string
	Error   string
	Ledger  part[Ledger]
}

var windows = []string{"hours", "days", "months"}

func (p *page) window(name string) Window {
	now := p.cfg.now()
	switch name {
	case "days":
		return Window{Name: "days", From: now.Add(-30 * 24 * time.Hour), To: now, Step: time.Hour}
	case "months":
		return Window{Name: "months", From: now.AddDate(-1, 0, 0), To: now, Step: 24 * time.Hour}
	default:
		return Window{Name: "hours", From: now.Add(-48 * time.Hour), To: now, Step: 10 * time.Minute}
	}
}

// model builds the data of view v.
func (p *page) model(ctx context.Context, v string, r *http.Request) (any, error) {
	return p.modelFor(ctx, v, r, true)
}

// modelFor builds the data of view v; html false skips what only HTML shows
// (the mesh picture, the charts).
func (p *page) modelFor(ctx context.Context, v string, r *http.Request, html bool) (any, error) {
	switch v {
	case "overview":
		n, nerr := p.node(ctx)
		m := overviewModel{Node: nodeJSON{NodeInfo: n, ShortID: shortID(n.PeerID), Error: nerr}}
		if !n.Started.IsZero() {
			m.Node.UptimeSeconds = math.Round(p.cfg.now().Sub(n.Started).Seconds())
		}
		m.Services = call(ctx, p, "services", p.src.Services)
		m.Alerts = call(ctx, p, "alerts", p.src.Alerts)
		mesh := call(ctx, p, "mesh", p.src.Mesh)
		m.Mesh = part[meshSummary]{Running: mesh.Running, Error: mesh.Error, Data: summarize(mesh.Data)}
		if p.src.Land != nil {
			land := call(ctx, p, "land", func(ctx context.Context) (Land, error) { return p.src.Land(ctx, Window{}) })
			m.Energy = part[EnergyToday]{Running: true, Error: land.Error, Data: land.Data.Today}
		}
		led := call(ctx, p, "ledger", p.src.Ledger)
		m.Credit = part[creditJSON]{Running: led.Running, Error: led.Error, Data: creditJSON{led.Data.Summary, led.Data.Unit}}
		return m, nil
	case "mesh":
		n, _ := p.node(ctx)
		mesh := call(ctx, p, "mesh", p.src.Mesh)
		m := meshModel{Mesh: mesh, Summary: summarize(mesh.Data), Names: map[string]string{n.PeerID: n.Name}}
		for _, pe := range mesh.Data.Peers {
			m.Names[pe.ID] = pe.Name
		}
		if mesh.OK() && html {
			m.Picture = renderMycelium(n, mesh.Data)
		}
		return m, nil
	case "inference":
		inf := call(ctx, p, "inference", p.src.Inference)
		m := inferenceModel{Inference: inf, ChatEnabled: p.cfg.chatURL != ""}
		for _, mo := range inf.Data.Models {
			m.Models = append(m.Models, mo.Name)
		}
		if rs := inf.Data.ReputationSeries; html && len(rs) > 0 {
			win := Window{From: p.cfg.now(), To: p.cfg.now()}
			for _, s := range rs {
				if len(s.Points) > 0 && s.Points[0].T.Before(win.From) {
					win.From = s.Points[0].T
				}
			}
			if win.To.Sub(win.From) < time.Minute {
				win.From = win.To.Add(-time.Minute)
			}
			m.Charts = p.charts(rs, win)
		}
		return m, nil
	case "ledger":
		return ledgerModel{Ledger: call(ctx, p, "ledger", p.src.Ledger), CanApprove: p.src.Actions.ApproveReversal != nil && p.auth.hash != nil}, nil
	case "land":
		win := p.window(r.URL.Query().Get("window"))
		m := landModel{Window: win, Windows: windows}
		if p.src.Land != nil {
			m.Land = call(ctx, p, "land", func(ctx context.Context) (Land, error) { return p.src.Land(ctx, win) })
			if html {
				m.Charts = p.charts(m.Land.Data.Series, win)
			}
		}
		return m, nil
	case "hardware":
		return hardwareModel{call(ctx, p, "hardware", p.src.Hardware)}, nil
	case "community":
		return communityModel{call(ctx, p, "community", p.src.Community)}, nil
	case "steward":
		n, _ := p.node(ctx)
		m := stewardModel{Enabled: p.auth.hash != nil, Node: n, Drivers: SensorDrivers, Actions: p.src.Actions,
			Flash: actionTitles[r.URL.Query().Get("done")]}
		if p.auth.steward(r) {
			m.Ledger = call(ctx, p, "ledger", p.src.Ledger)
		}
		return m, nil
	}
	return nil, fmt.Errorf("no view %q", v)
}

func summarize(m Mesh) meshSummary {
	s := meshSummary{Total: len(m.Peers)}
	var rtts []time.Duration
	for _, pe := range m.Peers {
		switch pe.State {
		case PeerUp:
			s.Up++
		case PeerDegraded:
			s.Degraded++
		default:
			s.Down++
		}
		if pe.State != PeerDown && pe.RTT > 0 {
			rtts = append(rtts, pe.RTT)
		}
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		s.MedianRTT = rtts[len(rtts)/2]
	}
	switch {
	case s.Total == 0:
		s.Health = "alone"
	case s.Up+s.Degraded == 0:
		s.Health = "partitioned"
	case s.Down > 0 || s.Degraded > 0:
		s.Health = "degraded"
	default:
		s.Health = "healthy"
	}
	return s
}

// charts groups series by unit, one chart per unit.
func (p *page) charts(series []Series, win Window) []template.HTML {
	var units []string
	groups := map[string][]chart.Series{}
	names := map[string][]string{}
	unitOf := map[string]string{}
	for _, s := range series {
		key := s.Unit
		if s.Chart != "" {
			key = "chart:" + s.Chart
		}
		if _, ok := groups[key]; !ok {
			units = append(units, key)
		}
		pts := make([]chart.Point, len(s.Points))
		for i, pt := range s.Points {
			pts[i] = chart.Point{T: pt.T, V: pt.V}
		}
		groups[key] = append(groups[key], chart.Series{Name: s.Name, Unit: displayUnit(s.Unit), Simulated: s.Simulated, Points: pts})
		names[key] = append(names[key], s.Name)
		unitOf[key] = s.Unit
	}
	var out []template.HTML
	for i, u := range units {
		var b bytes.Buffer
		title := strings.Join(names[u], ", ")
		if strings.HasPrefix(u, "chart:") {
			title = strings.TrimPrefix(u, "chart:")
		}
		if du := displayUnit(unitOf[u]); du != "" {
			title += " (" + du + ")"
		}
		err := chart.Render(&b, chart.Chart{ID: fmt.Sprintf("c%d", i), Title: title, Series: groups[u],
			From: win.From, To: win.To, Area: unitOf[u] == "W" || unitOf[u] == "Wh", Location: p.cfg.loc, Colour: chartColour(unitOf[u], i)})
		if err != nil {
			p.cfg.log.Warn("lanpage: chart", "unit", u, "err", err)
			continue
		}
		out = append(out, template.HTML(b.String()))
	}
	return out
}

// chartColour picks a palette start: sun for power and energy, red for
// temperature, green for charge, violet for the rest in turn.
func chartColour(unit string, i int) int {
	switch unit {
	case "W", "Wh", "kWh":
		return 0
	case "Cel", "K":
		return 3
	case "%":
		return 4 - i%2*2
	}
	return 1 + i%5
}

// view serves a view as HTML, or JSON when the client asks for it.
func (p *page) view(v string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := p.modelFor(r.Context(), v, r, !wantsJSON(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if wantsJSON(r) {
			if v == "steward" {
				p.jsonError(w, http.StatusNotAcceptable, errors.New("the steward view has no JSON; POST to /steward/<action>"))
				return
			}
			p.writeJSON(w, m)
			return
		}
		p.render(w, r, v, m, http.StatusOK)
	}
}

// pageData is what the layout sees.
type pageData struct {
	View, Title    string
	Node           NodeInfo
	NodeError      string
	Uptime         time.Duration
	XSRF           string
	Steward        bool
	StewardEnabled bool
	Now            time.Time
	Query          string // query string the live stream must carry
	M              any
}

var titles = map[string]string{"overview": "Overview", "mesh": "Mesh", "inference": "Inference", "ledger": "Ledger",
	"land": "Land & energy", "hardware": "Hardware", "community": "Community", "steward": "Steward"}

func (p *page) render(w http.ResponseWriter, r *http.Request, v string, m any, status int) {
	n, nerr := p.node(r.Context())
	visitor := p.auth.visitor(w, r)
	d := pageData{View: v, Title: titles[v], Node: n, NodeError: nerr, XSRF: p.auth.xsrfToken(visitor),
		Steward: p.auth.steward(r), StewardEnabled: p.auth.hash != nil, Now: p.cfg.now(), M: m}
	if !n.Started.IsZero() {
		d.Uptime = d.Now.Sub(n.Started)
	}
	if v == "land" {
		d.Query = "&window=" + url.QueryEscape(m.(landModel).Window.Name)
	}
	var b bytes.Buffer
	if err := p.views[v].ExecuteTemplate(&b, "layout.tmpl", d); err != nil {
		p.cfg.log.Error("lanpage: render", "view", v, "err", err)
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// wantsJSON reports whether Accept prefers JSON over HTML.
func wantsJSON(r *http.Request) bool {
	var qJSON, qHTML float64 = -1, -1
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			fmt.Sscanf(s, "%g", &q)
		}
		switch mt {
		case "application/json":
			qJSON = max(qJSON, q)
		case "text/html":
			qHTML = max(qHTML, q)
		}
	}
	return qJSON > 0 && qJSON >= qHTML
}

func (p *page) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		p.cfg.log.Warn("lanpage: write JSON", "err", err)
	}
}

func (p *page) jsonError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// liveHTML renders the live region of view v.
// The model is shared by all streams of the same view for half an update
// interval, so that many open pages do not multiply the calls to the
// sources; the HTML is per visitor (it carries the visitor's XSRF token).
func (p *page) liveHTML(ctx context.Context, v string, r *http.Request) ([]byte, error) {
	key := v + "?" + r.URL.Query().Get("window")
	now := p.cfg.now()
	p.liveMu.Lock()
	c, ok := p.live[key]
	p.liveMu.Unlock()
	m := c.m
	if !ok || now.Sub(c.at) >= p.cfg.interval/2 || now.Before(c.at) {
		var err error
		if m, err = p.model(ctx, v, r); err != nil {
			return nil, err
		}
		p.liveMu.Lock()
		p.live[key] = liveModel{at: now, m: m}
		p.liveMu.Unlock()
	}
	n, nerr := p.node(ctx)
	d := pageData{View: v, Node: n, NodeError: nerr, Now: now, M: m, StewardEnabled: p.auth.hash != nil, Steward: p.auth.steward(r)}
	if ck, err := r.Cookie(cookieVisitor); err == nil {
		d.XSRF = p.auth.xsrfToken(ck.Value)
	}
	if !n.Started.IsZero() {
		d.Uptime = d.Now.Sub(n.Started)
	}
	var b bytes.Buffer
	if err := p.views[v].ExecuteTemplate(&b, "live", d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// events streams the live region of ?view= whenever it changes.
func (p *page) events(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("view")
	if !slices.Contains(viewNames, v) || v == "steward" {
		http.Error(w, fmt.Sprintf("events: unknown view %q", v), http.StatusBadRequest)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "events: streaming unsupported", http.StatusInternalServerError)
		return
	}
	if n := p.streams.Add(1); int(n) > p.cfg.maxStreams {
		p.streams.Add(-1)
		w.Header().Set("Retry-After", "30")
		http.Error(w, "events: too many live pages open", http.StatusServiceUnavailable)
		return
	}
	defer p.streams.Add(-1)
	// The baseline is what the page shows; render it before answering, so
	// that a change after the client saw the headers is always sent.
	ctx := r.Context()
	last, _ := p.liveHTML(ctx, v, r)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", max(1000, p.cfg.interval.Milliseconds()))
	fl.Flush()

	t := time.NewTicker(p.cfg.interval)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.cfg.ctx.Done():
			return
		case <-t.C:
		}
		cur, err := p.liveHTML(ctx, v, r)
		if err != nil {
			p.cfg.log.Warn("lanpage: live render", "view", v, "err", err)
			continue
		}
		if bytes.Equal(cur, last) {
			if idle++; idle*int(p.cfg.interval/time.Millisecond) >= 15000 {
				idle = 0
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return
				}
				fl.Flush()
			}
			continue
		}
		idle = 0
		last = cur
		data, _ := json.Marshal(map[string]string{"html": string(cur), "at": p.cfg.now().In(p.cfg.loc).Format("15:04:05")})
		if _, err := fmt.Fprintf(w, "event: update\ndata: %s\n\n", data); err != nil {
			return
		}
		fl.Flush()
	}
}

// Template helpers.

func (p *page) funcs() template.FuncMap {
	return template.FuncMap{
		"short": shortID,
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return humanDur(p.cfg.now().Sub(t)) + " ago"
		},
		"dur":  humanDur,
		"ms":   func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) },
		"pct":  func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
		"num":  func(f float64) string { return trimNum(f, 2) },
		"num0": func(f float64) string { return trimNum(f, 0) },
		"signed": func(f float64) string {
			s := trimNum(f, 2)
			if f > 0 {
				s = "+" + s
			}
			return s
		},
		"energy":   energy,
		"unit":     displayUnit,
		"bytes":    humanBytes,
		"rate":     humanRate,
		"clock":    func(t time.Time) string { return t.In(p.cfg.loc).Format("15:04") },
		"day":      func(t time.Time) string { return t.In(p.cfg.loc).Format("2 Jan 2006") },
		"datetime": func(t time.Time) string { return t.Format(time.RFC3339) },
		"stamp":    func(t time.Time) string { return t.In(p.cfg.loc).Format("2 Jan 15:04") },
		"join":     strings.Join,
		"lower":    strings.ToLower,
		"title":    func(s string) string { return titles[s] },
		"views":    func() []string { return viewNames },
		"windows":  func() []string { return windows },
		"neg":      func(f float64) bool { return f < 0 },
		"sub":      func(a, b float64) float64 { return a - b },
		"mul100":   func(f float64) float64 { return 100 * f },
		"sortAlerts": func(as []Alert) []Alert {
			out := slices.Clone(as)
			rank := map[Severity]int{SeverityCritical: 0, SeverityWarning: 1, SeverityInfo: 2}
			sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Severity] < rank[out[j].Severity] })
			return out
		},
		"name": func(names map[string]string, id string) string {
			if n, ok := names[id]; ok && n != "" {
				return n
			}
			return shortID(id)
		},
	}
}

// shortID shortens a peer ID, key or hash for display, keeping a scheme
// prefix ("sha256:", "ed25519:") whole: "12D3KooW…dA1xBz", "sha256:3f9a0c…c1b9d0".
func shortID(id string) string {
	prefix := ""
	if i := strings.IndexByte(id, ':'); i > 0 && i < 12 {
		prefix, id = id[:i+1], id[i+1:]
	}
	if utf8.RuneCountInString(id) <= 16 {
		return prefix + id
	}
	r := []rune(id)
	return prefix + string(r[:8]) + "…" + string(r[len(r)-6:])
}

func humanDur(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%d days %d h", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func trimNum(f float64, dec int) string {
	s := fmt.Sprintf("%.*f", dec, f)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func energy(wh float64) string {
	if math.Abs(wh) >= 1000 {
		return trimNum(wh/1000, 2) + " kWh"
	}
	return trimNum(wh, 0) + " Wh"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// displayUnit turns a UCUM unit into what a person reads.
func displayUnit(u string) string {
	switch u {
	case "Cel":
		return "°C"
	case "[ppm]", "ppm":
		return "ppm"
	case "lx":
		return "lux"
	case "hPa":
		return "hPa"
	}
	return u
}
