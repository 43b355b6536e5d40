package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/appliance/lanpage"
)

func TestIdentityPersistsAndRefusesCorruptKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hypha", "identity.pem")
	a, created, err := LoadOrCreateIdentity(p)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	b, created, err := LoadOrCreateIdentity(p)
	if err != nil || created {
		t.Fatalf("second load: created=%v err=%v", created, err)
	}
	if !bytes.Equal(a.Public, b.Public) || a.ID() != b.ID() {
		t.Fatalf("identity changed: %s -> %s", a.ID(), b.ID())
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", fi.Mode().Perm())
	}
	// A damaged key file is an error, never silently replaced.
	orig, _ := os.ReadFile(p)
	os.WriteFile(p, orig[:len(orig)/2], 0o600)
	if _, _, err := LoadOrCreateIdentity(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("corrupt identity: err = %v, want an error naming %s", err, p)
	}
	if now, _ := os.ReadFile(p); !bytes.Equal(now, orig[:len(orig)/2]) {
		t.Fatal("the corrupt identity file was overwritten")
	}
}

func TestNodeConfigMigrations(t *testing.T) {
	for _, tt := range []struct {
		file string
		want NodeConfig
	}{
		{"node-v1.json", NodeConfig{Version: ConfigVersion, Name: "riverbend-1", Roles: []string{"relay"}, LANListen: ":8080"}},
		{"node-v2.json", NodeConfig{Version: ConfigVersion, Name: "riverbend-2", Roles: []string{"serve", "sense"},
			Location: Location{Latitude: 47.37, Longitude: 8.54, Place: "River Bend"}, LANListen: ":80"}},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseNodeConfig(b)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(tt.want)
		if !bytes.Equal(gj, wj) {
			t.Errorf("%s:\n got %s\nwant %s", tt.file, gj, wj)
		}
	}
}

func TestNodeConfigErrors(t *testing.T) {
	for _, tt := range []struct{ in, msg string }{
		{`{}`, "no version field"},
		{`{"version": 9, "name": "a"}`, "version 9 is newer"},
		{`{"version": 2, "name": "Not OK"}`, `name "Not OK"`},
		{`{"version": 2, "name": "ok", "roles": ["miner"]}`, `unknown role "miner"`},
		{`{"version": 2, "name": "ok", "location": {"latitude": 91}}`, "not on Earth"},
		{`{"version": 2, "name": "ok", "colour": "red"}`, `unknown field "colour"`},
		{`{"version": 1, "name": "ok", "roles": ["serve"]}`, `unknown field "roles"`},
		{`[1,2]`, "cannot unmarshal"},
	} {
		_, err := ParseNodeConfig([]byte(tt.in))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want ErrConfig containing %q", tt.in, err, tt.msg)
		}
	}
}

func FuzzParseNodeConfig(f *testing.F) {
	for _, s := range []string{`{"version":1,"name":"a","role":"relay"}`, `{"version":2,"name":"b","roles":["serve"]}`, `{}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseNodeConfig(b)
		if err != nil {
			return
		}
		// Whatever parses must validate, and must survive a save/load trip.
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		out, _ := json.Marshal(c)
		c2, err := ParseNodeConfig(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		o2, _ := json.Marshal(c2)
		if !bytes.Equal(out, o2) {
			t.Fatalf("round trip changed the config: %s -> %s", out, o2)
		}
	})
}

func TestBadConfigIsKeptForTheSteward(t *testing.T) {
	perm := t.TempDir()
	p := filepath.Join(perm, "hypha", "node.json")
	os.MkdirAll(filepath.Dir(p), 0o700)
	os.WriteFile(p, []byte(`{"version":2,"name":"BAD"}`), 0o644)
	_, err := New(Options{PermDir: perm, Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want an error naming %s", err, p)
	}
	if b, _ := os.ReadFile(p); string(b) != `{"version":2,"name":"BAD"}` {
		t.Fatal("bad config was overwritten")
	}
	if _, err := New(Options{PermDir: filepath.Join(perm, "nonexistent")}); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("missing /perm: err = %v, want ErrNotConfigured", err)
	}
}

// TestNodeServesLANPage runs a node on a real listener and reads the LAN
// page and the node API the way a steward's browser and the boot test do.
func TestNodeServesLANPage(t *testing.T) {
	perm := t.TempDir()
	// A fake /proc and /user: one program running, one not.
	proc, user := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(user, "hyphad"), nil, 0o755)
	os.WriteFile(filepath.Join(user, "inferd"), nil, 0o755)
	os.MkdirAll(filepath.Join(proc, "42"), 0o755)
	os.WriteFile(filepath.Join(proc, "42", "cmdline"), []byte(filepath.Join(user, "hyphad")+"\x00-perm=/perm\x00"), 0o644)
	os.WriteFile(filepath.Join(proc, "stat"), []byte("cpu 1 2 3\nbtime 1700000000\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "42", "stat"), []byte("42 (hyphad) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 8 0 500 0 0"), 0o644)

	n, err := New(Options{PermDir: perm, Listen: "127.0.0.1:0", Version: "test-1", ProcDir: proc, ProgramDirs: []string{user}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	addr, err := n.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	body := get(t, base+"/api/node")
	var info struct {
		Name, PeerID, Version string
		Services              []struct{ Name, State, Since string }
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if info.Version != "test-1" || info.PeerID != n.Identity().ID() || info.Name != n.Config().Name {
		t.Errorf("node API: %+v", info)
	}
	states := map[string]string{}
	for _, s := range info.Services {
		states[s.Name] = s.State
		if s.Name == "hyphad" && !strings.HasPrefix(s.Since, "2023-11-14T22:13:25") {
			t.Errorf("hyphad since %s, want boot time + 5 s", s.Since)
		}
	}
	if states["hyphad"] != "running" || states["inferd"] != "stopped" {
		t.Errorf("services: %v", states)
	}
	// With no sensor config the node simulates, and says so everywhere.
	// The sampler runs asynchronously: wait (bounded) for its first readings.
	for i := 0; i < 100 && !strings.Contains(string(get(t, base+"/metrics")), "hypha_air_temperature_celsius"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	metrics := string(get(t, base+"/metrics"))
	if !strings.Contains(metrics, `hypha_air_temperature_celsius{sensor="sim-air",simulated="true"`) {
		t.Errorf("/metrics lacks the simulated air temperature:\n%.600s", metrics)
	}
	var land struct {
		Land struct {
			Data struct {
				Readings []struct {
					Label     string
					Simulated bool
				}
			}
		}
	}
	if err := json.Unmarshal(get(t, base+"/api/land"), &land); err != nil {
		t.Fatal(err)
	}
	if len(land.Land.Data.Readings) == 0 {
		t.Error("the Land & energy view has no readings")
	}
	for _, r := range land.Land.Data.Readings {
		if !r.Simulated || !strings.Contains(r.Label, "simulated") {
			t.Errorf("reading %q is not labelled simulated", r.Label)
		}
	}
	page := get(t, base+"/")
	if !bytes.Contains(page, []byte(info.Name)) || !bytes.Contains(page, []byte("test-1")) {
		t.Errorf("LAN page lacks the node name or version")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	return b
}

func TestStewardEditsNodeConfig(t *testing.T) {
	perm := t.TempDir()
	n, err := New(Options{PermDir: perm})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.setNodeConfig(context.Background(), lanpage.NodeConfigEdit{Name: "riverbend-1", Location: "47.5, 8.25", Bioregion: "River Bend"}); err != nil {
		t.Fatal(err)
	}
	if err := n.setNodeConfig(context.Background(), lanpage.NodeConfigEdit{Name: "Bad Name"}); err == nil {
		t.Fatal("an invalid name was accepted")
	}
	if err := n.setNodeConfig(context.Background(), lanpage.NodeConfigEdit{Name: "ok", Location: "north"}); err == nil || !strings.Contains(err.Error(), "latitude,longitude") {
		t.Fatalf("bad location: err = %v", err)
	}
	// Reloaded from /perm, as after a reboot.
	n2, err := New(Options{PermDir: perm})
	if err != nil {
		t.Fatal(err)
	}
	c := n2.Config()
	if c.Name != "riverbend-1" || c.Location.Latitude != 47.5 || c.Location.Longitude != 8.25 || c.Bioregion != "River Bend" {
		t.Fatalf("saved config: %+v", c)
	}
}

// TestStewardAttachesSensor: attaching a sensor writes sensors.json,
// restarts the sampler with it (a real driver on a machine without an
// I²C bus reports an error, never stops the node) and drops the
// simulation; a bad attachment changes nothing.
func TestStewardAttachesSensor(t *testing.T) {
	perm := t.TempDir()
	n, err := New(Options{PermDir: perm, Listen: "127.0.0.1:0", ProcDir: t.TempDir(), ProgramDirs: []string{},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := n.Addr(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.attachSensor(ctx, lanpage.SensorAttachment{Driver: "nosuch", Label: "x"}); err == nil {
		t.Fatal("an unknown driver was accepted")
	}
	if _, err := os.Stat(filepath.Join(perm, "hypha", "sensors.json")); err == nil {
		t.Fatal("a refused attachment wrote sensors.json")
	}
	if err := n.attachSensor(ctx, lanpage.SensorAttachment{Driver: "bme280", Bus: "/dev/i2c-1", Address: 0x76,
		Label: "Greenhouse air", Measures: "air", Location: "greenhouse"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(perm, "hypha", "sensors.json"))
	if err != nil || !strings.Contains(string(b), `"Greenhouse air"`) || strings.Contains(string(b), `"sim"`) {
		t.Fatalf("sensors.json: %v\n%s", err, b)
	}
	// The new sampler runs: the BME280 is reported (this machine has no
	// I²C bus: an error with a reason), the node carries on.
	var st string
	for i := 0; i < 100; i++ {
		for _, s := range n.sensors.Load().Status().Sensors {
			if s.ID == "bme280-3" || s.Label == "Greenhouse air" {
				st = s.State + " " + s.Reason
			}
		}
		if st != "" && !strings.HasPrefix(st, "starting") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st == "" || strings.HasPrefix(st, "starting") {
		t.Fatalf("attached sensor not reported: %q", st)
	}
	t.Logf("attached sensor: %s", st)
}

// TestDefaultModelSeeded: a new box gets the project's tiny model and
// says plainly what it is; a steward's own model takes precedence.
func TestDefaultModelSeeded(t *testing.T) {
	for _, own := range []bool{false, true} {
		perm := t.TempDir()
		models := filepath.Join(perm, "models")
		if own {
			os.MkdirAll(models, 0o755)
			os.WriteFile(filepath.Join(models, "mine.gguf"), []byte("steward's model"), 0o644)
		}
		n, err := New(Options{PermDir: perm, Listen: "127.0.0.1:0", EngineURL: "http://127.0.0.1:9", SeedDefaultModel: true,
			ProcDir: t.TempDir(), ProgramDirs: []string{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		n.Addr(ctx)
		_, statErr := os.Stat(filepath.Join(models, "hypha-kjv-tiny.gguf"))
		n.alertsMu.Lock()
		said := false
		for _, a := range n.alerts {
			said = said || strings.Contains(a.Message, "tiny demo model")
		}
		n.alertsMu.Unlock()
		cancel()
		<-done
		if own && (statErr == nil || said) {
			t.Error("the default model was added next to the steward's own")
		}
		if !own && (statErr != nil || !said) {
			t.Errorf("default model not seeded (%v) or not explained (%v)", statErr, said)
		}
	}
}
