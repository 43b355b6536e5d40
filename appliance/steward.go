package appliance

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/appliance/lanpage/localname"
)

// newLANPage builds the LAN page for one Run: its live streams end with
// ctx, steward actions need the password set at provisioning.
func (n *Node) newLANPage(ctx context.Context) error {
	opts := []lanpage.Option{lanpage.WithLogger(n.log), lanpage.WithContext(ctx)}
	if n.opts.EngineURL != "" {
		opts = append(opts, lanpage.WithChatEndpoint(n.opts.EngineURL+"/v1"))
	}
	if n.community != nil && n.community.PasswordHash != "" {
		opts = append(opts, lanpage.WithStewardPasswordHash(n.community.PasswordHash))
	}
	src := n.sources()
	src.Actions.SetNodeConfig = n.setNodeConfig
	src.Actions.AttachSensor = n.attachSensor
	lan, err := lanpage.New(src, opts...)
	if err != nil {
		return fmt.Errorf("LAN page: %w", err)
	}
	n.lan = lan
	return nil
}

// setNodeConfig is the steward's "edit node" action: validated, saved
// atomically, announced to the mesh.
func (n *Node) setNodeConfig(_ context.Context, e lanpage.NodeConfigEdit) error {
	c := n.Config()
	c.Name = e.Name
	if loc := strings.TrimSpace(e.Location); loc != "" {
		lat, lon, ok := strings.Cut(loc, ",")
		la, err1 := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		lo, err2 := strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("location %q: want latitude,longitude in degrees", loc)
		}
		c.Location.Latitude, c.Location.Longitude = la, lo
	}
	c.Bioregion = strings.TrimSpace(e.Bioregion)
	if n.community != nil && c.Bioregion == n.community.Manifest.Bioregion {
		c.Bioregion = "" // the form shows the community's: not an override
	}
	if err := SaveNodeConfig(filepath.Join(n.opts.PermDir, "hypha", "node.json"), c); err != nil {
		return err
	}
	n.mu.Lock()
	n.cfg = c
	n.mu.Unlock()
	n.announce()
	return nil
}

// answerLocalName makes the box reachable as <name>.local on the LAN.
func (n *Node) answerLocalName(ctx context.Context) {
	r := &localname.Responder{Name: func() string { return n.Config().Name }, Logger: n.log}
	if err := r.ListenAndServe(ctx); err != nil && ctx.Err() == nil {
		n.log.Warn("mDNS name responder", "err", err)
		n.alert(lanpage.SeverityWarning, "lanpage", "not answering "+n.Config().Name+".local: "+err.Error())
	}
}
