package systest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/univrs/hypha/inference/defaultmodel"
	"github.com/univrs/hypha/internal/systest"
	"github.com/univrs/hypha/provisioning"
)

// inferenceView is the part of a LAN page's /api/inference the committee
// test reads.
type inferenceView struct {
	Inference struct {
		Running bool
		Error   string
		Data    struct {
			Nodes []struct {
				Name           string
				PeerID         string
				Reputation     float64
				Flag           string
				VerifiedEpochs int
			}
			ReputationThreshold float64
			Verification        string
		}
	}
}

// TestCommitteeCatchesAModelServedUnderAFalseName (issue 9): seven
// appliances on a LAN. Four are the community's verifiers, one of which
// lies (it reports the opposite of what it measures: full marks for the
// cheat, zero for honest nodes). Six serve the default model; one of them
// serves other weights under that name. The committee's challenges travel
// as anonymous requests; within five scored epochs every box computes that
// the cheat is below the trust threshold, no honest node ever is, and the
// gateways stop sending it requests.
func TestCommitteeCatchesAModelServedUnderAFalseName(t *testing.T) {
	if testing.Short() {
		t.Skip("runs appliances in network namespaces")
	}
	nw := systest.NewNet(t, "hyv", 7)
	boxes := nw.Boxes(t, "v0", "v1", "v2", "liar", "honest", "cheat", "gate")
	const cheat, gate, liar = 5, 6, 3
	model := defaultmodel.Name
	verifiers := []string{boxes[0].ID, boxes[1].ID, boxes[2].ID, boxes[liar].ID}
	nw.NewCommunity(t, boxes, func(m *provisioning.Manifest) {
		m.Verifiers.Members = verifiers
		m.Verifiers.CommitteeSize = len(verifiers)
		m.Reputation.EpochSeconds = 15
		m.Reputation.ChallengesPerEpoch = 2
		m.Clove.N, m.Clove.K, m.Clove.L = 3, 2, 1
	})
	for i, b := range boxes[:gate] {
		if i == cheat {
			b.WriteImpostor(t, 99) // another model, same name
		} else {
			b.WriteDefaultModel(t)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i, b := range boxes {
		o := systest.BoxOptions{Engine: i != gate}
		switch i {
		case liar:
			o.HyphadArgs = []string{"-verifier-lie", "invert"}
		case gate:
			// Round-robin, so that every serving node, the cheat too, gets
			// requests until the committee's verdict.
			o.HyphadArgs = []string{"-route", "round-robin"}
		}
		nw.Start(t, b, o)
	}
	nw.WaitModels(t, ctx, gate, 2*time.Minute, model)
	view := func(i int) (inferenceView, error) {
		var v inferenceView
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		err := nw.GetJSON(rctx, i, "http://127.0.0.1:80/api/inference", &v)
		return v, err
	}
	// The gate's gateway has all six serving nodes, healthy.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		var rt struct {
			Nodes []struct {
				ID      string
				Healthy bool
			}
		}
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		err := nw.GetJSON(rctx, gate, "http://127.0.0.1:11434/hypha/route", &rt)
		rcancel()
		healthy := 0
		for _, n := range rt.Nodes {
			if n.Healthy {
				healthy++
			}
		}
		if err == nil && healthy == gate {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate's gateway does not have the six serving nodes healthy: %v %+v", err, rt.Nodes)
		}
	}

	// Before the committee has a verdict, the gate sends the cheat its
	// share of requests.
	served := func(n int, tag string) map[string]int {
		got := map[string]int{}
		for i := range n {
			body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"%s question %d: where does the river go?"}],"max_tokens":2,"temperature":0}`, model, tag, i)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:11434/v1/chat/completions", bytes.NewBufferString(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := nw.Client(gate).Do(req)
			if err != nil {
				t.Fatalf("request through the gate: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request through the gate: %s", resp.Status)
			}
			got[resp.Header.Get("X-Hypha-Node")]++
		}
		return got
	}
	before := served(12, "before")
	t.Logf("before any verdict, requests went to %v (cheat is %s)", before, boxes[cheat].ID)
	if before[boxes[cheat].ID] == 0 {
		t.Fatalf("before any verdict the cheat got none of 12 round-robin requests: %v", before)
	}

	// Watch every box's view until each has flagged the cheat; no honest
	// node may ever be below the threshold on any box.
	flagged := map[int]bool{}
	for deadline := time.Now().Add(3 * time.Minute); len(flagged) < len(boxes) && time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		for i := range boxes {
			v, err := view(i)
			if err != nil {
				t.Logf("%s: %v", boxes[i].Name, err)
				continue
			}
			d := v.Inference.Data
			if d.Verification == "" {
				t.Fatalf("%s: the Inference view does not say how nodes are verified: %+v", boxes[i].Name, d)
			}
			for _, nd := range d.Nodes {
				untrusted := nd.Reputation < d.ReputationThreshold
				switch {
				case nd.PeerID == boxes[cheat].ID && untrusted && !flagged[i]:
					flagged[i] = true
					t.Logf("%s: cheat flagged after %d scored epochs, reputation %.3f: %s", boxes[i].Name, nd.VerifiedEpochs, nd.Reputation, nd.Flag)
					if nd.VerifiedEpochs > 5 {
						t.Errorf("%s: the cheat took %d scored epochs to fall below the threshold, want at most 5", boxes[i].Name, nd.VerifiedEpochs)
					}
					if nd.Flag == "" {
						t.Errorf("%s: the cheat is below the threshold but the page does not say why", boxes[i].Name)
					}
				case nd.PeerID != boxes[cheat].ID && untrusted:
					t.Fatalf("%s: honest node %s fell below the threshold (%.3f < %.2f): %s", boxes[i].Name, nd.Name, nd.Reputation, d.ReputationThreshold, nd.Flag)
				}
			}
		}
	}
	if len(flagged) < len(boxes) {
		v, err := view(4)
		t.Logf("honest box's view: %v %+v", err, v.Inference.Data)
		t.Fatalf("the cheat was flagged on %d of %d boxes within 3 minutes", len(flagged), len(boxes))
	}
	// The gateways no longer send it anything.
	after := served(12, "after")
	if after[boxes[cheat].ID] > 0 {
		t.Fatalf("after the verdict the gate still sent %d of 12 requests to the cheat: %v", after[boxes[cheat].ID], after)
	}
	t.Logf("after the verdict, requests went to %v", after)
	// A steward sees it on the LAN page: the reputation chart and why.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:80/inference", nil)
	resp, err := nw.Client(gate).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"Reputation", "<svg", "below threshold", "epochs scored below"} {
		if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(want)) {
			t.Fatalf("the Inference page (%s) does not show %q", resp.Status, want)
		}
	}
	// Honest nodes were checked too (they were verified and stayed above
	// the threshold, on a box that is not a verifier).
	v, err := view(4)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range v.Inference.Data.Nodes {
		if nd.PeerID != boxes[cheat].ID && nd.VerifiedEpochs == 0 {
			t.Errorf("honest node %s was never verified", nd.Name)
		}
	}
}
