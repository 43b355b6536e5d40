package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/univrs/hypha/inference/route"
)

// holdingEngine is an OpenAI-compatible engine serving model "m" whose
// chat completions wait until release is closed (the edge faked here:
// an engine busy for as long as the test needs).
func holdingEngine(t *testing.T) (url string, arrived chan struct{}, release chan struct{}) {
	arrived, release = make(chan struct{}, 8), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"m"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"completion_tokens":1}}`)
	})
	srv, u := serve(t, mux)
	t.Cleanup(func() { srv.Close() })
	return u, arrived, release
}

func newHost(t *testing.T) host.Host {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestLoadSharedBetweenGateways: requests that gateway A sends to B's
// engine are counted by B (LoadPath), so a third gateway C, which sent
// nothing, sees B as busy; A does not count its own requests twice, and
// B counts them against its own engine.
func TestLoadSharedBetweenGateways(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	engine, arrived, release := holdingEngine(t)
	hA, hB, hC := newHost(t), newHost(t), newHost(t)
	ctx := context.Background()
	for _, h := range []host.Host{hA, hC} {
		if err := h.Connect(ctx, peer.AddrInfo{ID: hB.ID(), Addrs: hB.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	only := func(id peer.ID) func() []Peer { return func() []Peer { return []Peer{{ID: id}} } }
	gwB, err := New(Config{Local: engine, LocalID: route.NodeID(hB.ID().String()), Streams: hostStreams{hB}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	gwA, err := New(Config{LocalID: "a", Streams: hostStreams{hA}, Peers: only(hB.ID()), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	gwC, err := New(Config{LocalID: "c", Streams: hostStreams{hC}, Peers: only(hB.ID()), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gateway{gwA, gwB, gwC} {
		defer g.Close()
		g.Poll(ctx)
	}
	queued := func(g *Gateway) int {
		t.Helper()
		c, _ := g.candidates("m")
		if len(c) != 1 {
			t.Fatalf("candidates %+v, want B alone", c)
		}
		return c[0].Queued
	}
	if q := queued(gwC); q != 0 {
		t.Fatalf("idle B: C sees %d tokens queued", q)
	}

	srvA, urlA := serve(t, gwA)
	defer srvA.Close()
	done := make(chan error, 1)
	go func() {
		body, _ := json.Marshal(map[string]any{"model": "m", "max_tokens": 100,
			"messages": []map[string]string{{"role": "user", "content": "hold on"}}})
		resp, err := http.Post(urlA+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("through A: status %d: %s", resp.StatusCode, b)
			return
		}
		done <- nil
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("A's request never reached B's engine")
	}
	d := lastDecision(t, gwA)
	want := max(0, d.Prompt-d.Cached) + 100
	gwC.Poll(ctx)
	if q := queued(gwC); q != want {
		t.Fatalf("B busy with A's request of %d tokens: C sees %d queued", want, q)
	}
	gwA.Poll(ctx)
	if q := queued(gwA); q != 0 {
		t.Fatalf("A sees %d tokens queued on B from others: its own request counted twice", q)
	}
	if q := queued(gwB); q != want {
		t.Fatalf("B sees %d tokens queued on its own engine by peers, want %d", q, want)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	gwC.Poll(ctx)
	if q := queued(gwC); q != 0 {
		t.Fatalf("B idle again: C sees %d queued", q)
	}
}

func TestQueuedOf(t *testing.T) {
	for _, c := range []struct {
		claim string
		body  int
		want  int
	}{
		{"300", 9999, 300},
		{"0", 100, 0},
		{"", 400, 100 + route.DefaultExpectedOutput},
		{"-5", 0, route.DefaultExpectedOutput},
		{"lots", 40, 10 + route.DefaultExpectedOutput},
		{"99999999999", 0, maxQueuedClaim},
	} {
		if got := queuedOf(c.claim, c.body); got != c.want {
			t.Errorf("queuedOf(%q, %d) = %d, want %d", c.claim, c.body, got, c.want)
		}
	}
}

func TestDecodeLoad(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		err  string
	}{
		{`{"queued_tokens":412}`, 412, ""},
		{`{"queued_tokens":0,"other":1}`, 0, ""},
		{`{}`, 0, "missing"},
		{`{"queued_tokens":-1}`, 0, "out of"},
		{`{"queued_tokens":99999999999999}`, 0, "out of"},
		{`{"queued_tokens":"many"}`, 0, "cannot unmarshal"},
		{`not json`, 0, "invalid character"},
	} {
		got, err := decodeLoad([]byte(c.in))
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("decodeLoad(%s) = %d, %v; want %d", c.in, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrUpstream)) {
			t.Errorf("decodeLoad(%s) error %v, want one saying %q wrapping ErrUpstream", c.in, err, c.err)
		}
	}
}

func FuzzDecodeLoad(f *testing.F) {
	for _, s := range []string{`{"queued_tokens":412}`, `{}`, `{"queued_tokens":-1}`, `[1]`, `{"queued_tokens":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := decodeLoad(b)
		if err == nil && (q < 0 || q > maxQueuedLoad) {
			t.Fatalf("decodeLoad(%q) = %d without error", b, q)
		}
		if err != nil && !errors.Is(err, ErrUpstream) {
			t.Fatalf("error %v does not wrap ErrUpstream", err)
		}
	})
}

func FuzzQueuedOf(f *testing.F) {
	f.Add("300", 10)
	f.Add("", 1000)
	f.Add("-7", 0)
	f.Fuzz(func(t *testing.T, claim string, body int) {
		body = max(0, min(body, MaxBodyBytes))
		if q := queuedOf(claim, body); q < 0 || q > maxQueuedClaim+MaxBodyBytes/4+route.DefaultExpectedOutput {
			t.Fatalf("queuedOf(%q, %d) = %d", claim, body, q)
		}
	})
}
