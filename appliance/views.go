package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/hwtest"
)

// hardwareView shows the report hwtest wrote at boot.
func (n *Node) hardwareView(context.Context) (lanpage.Hardware, error) {
	p := filepath.Join(n.opts.PermDir, "hypha", "hwtest.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return lanpage.Hardware{}, errors.New("no hardware report yet: hwtest runs once at boot and writes " + p)
	}
	if err != nil {
		return lanpage.Hardware{}, err
	}
	r, err := hwtest.DecodeReport(b)
	if err != nil {
		return lanpage.Hardware{}, fmt.Errorf("%s: %w", p, err)
	}
	h := lanpage.Hardware{Generated: r.Generated, Machine: r.Machine, Summary: r.Summary()}
	switch r.Verdict.Grade {
	case "inference", "light-inference":
		h.Verdict = "qualified"
	case "relay":
		h.Verdict = "limited"
	default:
		h.Verdict = r.Verdict.Grade
	}
	for _, s := range r.Sections() {
		hs := lanpage.HardwareSection{Name: s.Name}
		for _, it := range s.Items {
			hs.Items = append(hs.Items, lanpage.HardwareItem{Name: it.Name, Value: it.Value, Status: it.Status, Detail: it.Detail})
		}
		h.Sections = append(h.Sections, hs)
	}
	return h, nil
}

// communityView shows the signed manifest the box was enrolled with.
func (n *Node) communityView(context.Context) (lanpage.Community, error) {
	c := n.community
	if c == nil {
		return lanpage.Community{}, errors.New("this box is not enrolled in a community")
	}
	m := c.Manifest
	fp := sha256.Sum256(c.PSK[:])
	out := lanpage.Community{
		Name: m.Name, ID: c.ID(), Bioregion: m.Bioregion, Version: int(m.Serial), Signed: m.IssuedAt,
		Fingerprint: "mesh key " + hex.EncodeToString(fp[:8]),
	}
	for _, s := range m.Stewards {
		out.Stewards = append(out.Stewards, lanpage.Steward{Name: s.Name, Key: s.PublicKey.String()})
	}
	if n.mesh != nil {
		for _, mem := range n.mesh.Members() {
			out.Members = append(out.Members, lanpage.Member{Name: mem.Name, ID: mem.ID.String()})
		}
	}
	cr := m.Credit
	out.Rules = []lanpage.Rule{
		{Name: "Credit unit", Value: cr.Unit},
		{Name: "Debt limit", Value: fmt.Sprintf("%d %s", cr.DebtLimit, cr.Unit), Description: "the lowest balance a member may reach"},
		{Name: "Credit limit", Value: fmt.Sprintf("%d %s", cr.CreditLimit, cr.Unit), Description: "the highest balance a member may hold"},
		{Name: "Commons share", Value: fmt.Sprintf("%.0f%%", cr.CommonsShare*100), Description: "of each payment, to the commons account"},
		{Name: "Inference price", Value: fmt.Sprintf("%d per million prompt tokens, %d per million generated", cr.Pricing.PromptPerMTok, cr.Pricing.CompletionPerMTok)},
		{Name: "Solar discount", Value: fmt.Sprintf("%.0f%%", cr.Pricing.SolarDiscount*100), Description: "off the price while the serving node runs on surplus renewable power"},
		{Name: "Steward signatures for an update", Value: fmt.Sprint(m.StewardThreshold)},
		{Name: "Anonymous requests", Value: fmt.Sprintf("%d cloves, any %d rebuild, %d relays per path", m.Clove.N, m.Clove.K, m.Clove.L)},
	}
	return out, nil
}
