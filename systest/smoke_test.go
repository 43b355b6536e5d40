package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/univrs/hypha/internal/systest"
)

// chat posts an OpenAI chat completion to box i's own gateway and returns
// the status and body.
func chat(ctx context.Context, nw *systest.Net, i int, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:11434/v1/chat/completions", bytes.NewBufferString(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := nw.Client(i).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestMeshAnswersFromABoxWithoutEngine: three appliances on a LAN; only
// the last two have an engine. A client of the first box's gateway gets
// a chat completion served by one of them over the mesh.
func TestMeshAnswersFromABoxWithoutEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs appliances in network namespaces")
	}
	nw := systest.NewNet(t, "hys", 3)
	boxes := nw.Boxes(t, "gate", "oak", "ash")
	nw.NewCommunity(t, boxes, nil)
	for _, b := range boxes[1:] {
		b.WriteModel(t, "tiny", 7)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, b := range boxes {
		nw.Start(t, b, systest.BoxOptions{Engine: b.Index > 0})
	}
	nw.WaitModels(t, ctx, 0, 2*time.Minute, "tiny")
	code, body, err := chat(ctx, nw, 0, `{"model":"tiny","messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"temperature":0}`)
	if err != nil || code != http.StatusOK {
		t.Fatalf("chat through the first box: %d %v %s", code, err, body)
	}
	var cc struct {
		Object string
		Usage  struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(body, &cc); err != nil || cc.Object != "chat.completion" || cc.Usage.CompletionTokens == 0 {
		t.Fatalf("reply: %v %s", err, body)
	}
}
