package systest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/appliance"
	"github.com/univrs/hypha/inference/engine/testmodel"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/provisioning"
)

// Box is one appliance of the test LAN: its /perm, identity and programs.
type Box struct {
	Index  int
	Name   string
	Perm   string // its /perm
	Models string // its models directory (inferd's and hyphad's)
	ID     string // libp2p peer ID
	Hyphad *Proc
	Inferd *Proc // nil without an engine
}

// Steward is the password of the communities NewCommunity creates.
const Steward = "systest-steward"

// Boxes prepares one /perm per name, with a fresh identity and the name
// in node.json, as a first boot would.
func (n *Net) Boxes(t testing.TB, names ...string) []*Box {
	t.Helper()
	if len(names) > n.n {
		t.Fatalf("%d boxes on a net of %d", len(names), n.n)
	}
	var out []*Box
	for i, name := range names {
		perm := filepath.Join(t.TempDir(), "perm")
		id, _, err := appliance.LoadOrCreateIdentity(filepath.Join(perm, "hypha", "identity.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := appliance.DefaultNodeConfig(id)
		cfg.Name = name
		if err := appliance.SaveNodeConfig(filepath.Join(perm, "hypha", "node.json"), cfg); err != nil {
			t.Fatal(err)
		}
		models := filepath.Join(perm, "models")
		if err := os.MkdirAll(models, 0o755); err != nil {
			t.Fatal(err)
		}
		out = append(out, &Box{Index: i, Name: name, Perm: perm, Models: models, ID: id.ID()})
	}
	return out
}

// MeshPort is the libp2p port hyphad listens on by default.
const MeshPort = 4001

// NewCommunity founds a community whose bootstrap peer is box 0, lets
// edit adjust the manifest (verifiers, clove parameters...), and bakes it
// into every box's /perm, as `hypha image -community` does.
func (n *Net) NewCommunity(t testing.TB, boxes []*Box, edit func(*provisioning.Manifest)) *provisioning.Manifest {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "community")
	boot := fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", n.Addr(boxes[0].Index), MeshPort, boxes[0].ID)
	c, _, err := provisioning.Init(dir, provisioning.InitOptions{Name: "Systest Valley", Bioregion: "Test Basin",
		Password: Steward, BootstrapPeers: []string{boot}, Edit: edit})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		if err := provisioning.BakePerm(dir, b.Perm); err != nil {
			t.Fatal(err)
		}
	}
	return c.Manifest
}

// BoxOptions say how a box runs.
type BoxOptions struct {
	// Engine starts inferd on the box's loopback (127.0.0.1:11435) with
	// its models directory; without it hyphad runs with no engine.
	Engine bool
	// InferdArgs and HyphadArgs are extra flags.
	InferdArgs, HyphadArgs []string
	// Env is extra environment for both programs.
	Env []string
}

// Start runs the box's programs in its namespace with the appliance's
// defaults: inferd on 127.0.0.1:11435, hyphad with the LAN page on :80,
// the gateway on :11434 and the mesh on TCP 4001.
func (n *Net) Start(t testing.TB, b *Box, o BoxOptions) {
	t.Helper()
	engine := ""
	if o.Engine {
		args := append([]string{Binary(t, "packages/inferd"), "-listen", "127.0.0.1:11435", "-models", b.Models,
			"-threads", "1", "-kv-bytes", "67108864"}, o.InferdArgs...)
		b.Inferd = n.Run(t, b.Index, b.Name+"-inferd", args, o.Env...)
		engine = "http://127.0.0.1:11435"
	}
	args := append([]string{Binary(t, "packages/hyphad"), "-perm", b.Perm, "-listen", ":80", "-engine", engine,
		"-gateway", ":11434", "-models", b.Models, "-default-model=false"}, o.HyphadArgs...)
	b.Hyphad = n.Run(t, b.Index, b.Name+"-hyphad", args, o.Env...)
}

// Kill pulls the box's power: SIGKILL to both programs.
func (b *Box) Kill() {
	b.Hyphad.Kill()
	if b.Inferd != nil {
		b.Inferd.Kill()
	}
}

// GetJSON fetches url from inside box i's namespace into v.
func (n *Net) GetJSON(ctx context.Context, i int, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := n.Client(i).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// WaitModels waits until box i's gateway lists every model in want (the
// mesh has met and the engines announced), polling; it fails the test
// after d.
func (n *Net) WaitModels(t testing.TB, ctx context.Context, i int, d time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var tags struct {
			Models []struct{ Name string } `json:"models"`
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.GetJSON(rctx, i, "http://127.0.0.1:11434/api/tags", &tags)
		cancel()
		if err == nil {
			var have []string
			for _, m := range tags.Models {
				have = append(have, strings.TrimSuffix(m.Name, ":latest"))
			}
			ok := true
			for _, w := range want {
				ok = ok && slices.Contains(have, w)
			}
			if ok {
				return
			}
			last = fmt.Sprintf("lists %v", have)
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("box %d's gateway never listed %v within %v: %s", i, want, d, last)
}

// WriteModel generates a small model (random weights, qwen2's real
// vocabulary and chat template) named name into the box's models
// directory. Boxes given the same seed serve the same weights; another
// seed is another model, whatever its name.
func (b *Box) WriteModel(t testing.TB, name string, seed uint64) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(filepath.Join(b.Models, name+".gguf"), testmodel.Spec{
		Arch: "qwen2", VocabFile: filepath.Join(root, "inference", "tokenizer", "testdata", "ggml-vocab-qwen2.gguf"),
		Layers: 2, Dim: 64, FFN: 128, Heads: 4, KVHeads: 2, ContextLen: 512,
		Tied: true, Type: gguf.TensorQ8_0, Seed: seed,
	}); err != nil {
		t.Fatal(err)
	}
}
