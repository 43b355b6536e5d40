package lanpage_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/univrs/hypha/appliance/lanpage"
)

// Example shows the wiring a node daemon does: adapt each subsystem to a
// source function (nil: not running), then serve the handler on :80.
func Example() {
	started := time.Now().Add(-90 * time.Minute)
	src := lanpage.Sources{
		Node: func(context.Context) (lanpage.NodeInfo, error) {
			return lanpage.NodeInfo{Name: "riverbend-1", PeerID: "12D3KooWExampleExampleExample", Version: "v0.1.0", Started: started}, nil
		},
		Services: func(context.Context) ([]lanpage.Service, error) {
			return []lanpage.Service{{Name: "mesh", State: lanpage.StateRunning}}, nil
		},
		// Mesh, Inference, Ledger, Land, Hardware, Community: nil until wired.
	}
	h, err := lanpage.New(src /* , lanpage.WithStewardPasswordHash(cfg.StewardHash), lanpage.WithChatEndpoint("http://127.0.0.1:11434/v1") */)
	if err != nil {
		panic(err)
	}
	// In hyphad: srv := &http.Server{Addr: ":80", Handler: h}; srv.ListenAndServe()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/node", nil))
	body, _ := io.ReadAll(rec.Body)
	fmt.Println(rec.Code, strings.Contains(string(body), `"name": "riverbend-1"`), strings.Contains(string(body), `"version": "v0.1.0"`))
	// Output: 200 true true
}
