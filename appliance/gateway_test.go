package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/ledger"
	"github.com/univrs/hypha/provisioning"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestGatewayServesTheMeshAndPays: a client talks to the gateway of a node
// without a model; the request is served over the mesh by the peer that
// has one; the asking node pays the serving node with a countersigned
// transaction carrying the inference receipt and the (simulated) sensor
// readings of the moment, and both ledgers agree. The same gateway sends a
// request marked "anonymous" as cloves.
func TestGatewayServesTheMeshAndPays(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mesh nodes and an engine")
	}
	engineURL := startEngine(t)
	perm := community(t, func(m *provisioning.Manifest) { m.Clove.N, m.Clove.K, m.Clove.L = 2, 2, 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	gw := freePort(t)
	nodes := startNodes(t, ctx, perm, 4, func(i int, o *Options) {
		switch i {
		case 0:
			o.GatewayListen = gw
		case 3:
			o.EngineURL = engineURL
		}
	})
	asker, server := nodes[0], nodes[3]
	post := func(body string) (int, []byte) {
		resp, err := http.Post("http://"+gw+"/v1/chat/completions", "application/json", bytes.NewBufferString(body))
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	req := `{"model":"tiny","messages":[{"role":"user","content":"Hello, mesh"}],"max_tokens":4,"temperature":0}`
	var code int
	var body []byte
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if code, body = post(req); code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK {
		t.Fatalf("gateway: %d %s", code, body)
	}
	// The asking node pays the serving node; wait for the countersigned flow.
	var flows int
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		v, err := server.ledgerView(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if flows = len(v.Flows); flows > 0 {
			f := v.Flows[0]
			if f.Receipt == nil || f.Receipt.TokensOut == 0 || f.Amount <= 0 || f.Purpose != "inference" {
				t.Fatalf("flow: %+v", f)
			}
			simulated := false
			for _, o := range f.Observations {
				simulated = simulated || o.Simulated
			}
			if len(f.Observations) == 0 || !simulated {
				t.Fatalf("the flow carries no (simulated) sensor readings: %+v", f.Observations)
			}
			if v.Summary.Balance != f.Amount {
				t.Fatalf("serving node's balance %v, want the payment %v", v.Summary.Balance, f.Amount)
			}
			a, _ := asker.ledgerView(ctx)
			if a.Summary.Balance != -f.Amount {
				t.Fatalf("asking node's balance %v, want %v", a.Summary.Balance, -f.Amount)
			}
			break
		}
	}
	if flows == 0 {
		t.Fatal("no payment reached the serving node's ledger")
	}
	iv, _ := asker.inferenceView(ctx)
	if len(iv.Recent) == 0 || iv.Recent[0].Node != server.Config().Name {
		t.Fatalf("the routing decision is not shown: %+v", iv.Recent)
	}
	// Anonymous: cloves over onion paths, same API.
	code, body = post(`{"model":"tiny","anonymous":true,"messages":[{"role":"user","content":"Who am I?"}],"max_tokens":3,"temperature":0}`)
	if code != http.StatusOK {
		t.Fatalf("anonymous request: %d %s", code, body)
	}
	var cc struct{ Object string }
	if json.Unmarshal(body, &cc); cc.Object != "chat.completion" {
		t.Fatalf("anonymous reply: %s", body)
	}
	if code, body = post(`{"model":"tiny","anonymous":true,"stream":true,"messages":[{"role":"user","content":"x"}]}`); code != http.StatusBadRequest {
		t.Fatalf("anonymous streaming: %d %s, want 400", code, body)
	}
	// Over its credit limit, the asking node refuses up front: drain it by
	// paying the server until the ledger refuses, then ask again.
	self, srv := asker.ledger.ID(), server.ledger.ID()
	for i := 0; i < 1000; i++ {
		if err := asker.ledger.CanSpend(srv, 10_000); err != nil {
			break
		}
		s, err := asker.mesh.NewStream(ctx, server.mesh.ID(), "/hypha/ledger/countersign/1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = asker.ledger.Pay(ctx, s, ledger.Terms{Payer: self, Payee: srv, Amount: 10_000, Purpose: "transfer"})
		s.Close()
		if err != nil {
			break
		}
	}
	bal, _ := asker.ledger.Balance(self)
	lim := asker.ledger.Rules().DefaultLimits.Min
	if rest := bal - lim; rest > 0 { // pay exactly down to the limit
		s, err := asker.mesh.NewStream(ctx, server.mesh.ID(), "/hypha/ledger/countersign/1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := asker.ledger.Pay(ctx, s, ledger.Terms{Payer: self, Payee: srv, Amount: rest, Purpose: "transfer"}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		bal, _ = asker.ledger.Balance(self)
	}
	if bal-1 >= lim {
		t.Fatalf("could not drain the asker: balance %d, limit %d", bal, lim)
	}
	code, body = post(req)
	if code != http.StatusPaymentRequired || !bytes.Contains(body, []byte("credit limit")) {
		t.Fatalf("request over the credit limit: %d %s, want 402 naming the credit limit", code, body)
	}
}

// TestGatewayOffersAnExternalEngine: a box without its own engine, with an
// OpenAI-compatible engine next to it configured by URL in node.json (as a
// steward would for a GPU box running llama-server): its gateway serves
// from it, and a bad URL is refused when the config is checked.
func TestGatewayOffersAnExternalEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an engine")
	}
	engineURL := startEngine(t)
	perm := t.TempDir()
	id, _, err := LoadOrCreateIdentity(perm + "/hypha/identity.pem")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultNodeConfig(id)
	cfg.ExternalEngines = []ExternalEngine{{Name: "gpu-box", URL: engineURL}}
	if err := SaveNodeConfig(perm+"/hypha/node.json", cfg); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.ExternalEngines = []ExternalEngine{{Name: "gpu-box", URL: "ftp://x"}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "external engine 1") {
		t.Fatalf("a bad engine URL: %v", err)
	}
	if _, err := ParseExternalEngine("gpu=http://10.0.0.2:8080"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gw := freePort(t)
	n, err := New(Options{PermDir: perm, Listen: "127.0.0.1:0", GatewayListen: gw, Logger: slog.New(slog.DiscardHandler),
		ProcDir: t.TempDir(), ProgramDirs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := n.Addr(ctx); err != nil {
		t.Fatal(err)
	}
	var code int
	var body []byte
	var servedBy string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		resp, err := http.Post("http://"+gw+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0}`))
		if err != nil {
			continue
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		code, servedBy = resp.StatusCode, resp.Header.Get("X-Hypha-Node")
		if code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK || servedBy != "gpu-box" {
		t.Fatalf("through the external engine: %d by %q: %s", code, servedBy, body)
	}
}
