package appliance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/mesh"
	"github.com/univrs/hypha/provisioning"
)

// loadCommunity reads the community baked into /perm. A box that was not
// enrolled runs alone: no mesh, an alert on the LAN page.
func (n *Node) loadCommunity() {
	c, err := provisioning.LoadCommunity(n.opts.PermDir)
	switch {
	case err == nil:
		n.community = c
		n.log.Info("community", "name", c.Manifest.Name, "id", c.ID(), "stewards", len(c.Manifest.Stewards))
	case errors.Is(err, os.ErrNotExist):
		n.alert(lanpage.SeverityWarning, "community", "this box is not enrolled in a community: the mesh is off (build the image with hypha image -community DIR)")
	default:
		n.alert(lanpage.SeverityCritical, "community", "community files on /perm are invalid: "+err.Error())
		n.log.Error("community", "err", err)
	}
}

// startMesh joins the community mesh under its pre-shared key.
func (n *Node) startMesh(ctx context.Context) error {
	if n.community == nil {
		return nil
	}
	listen := n.opts.MeshListen
	m, err := mesh.New(ctx, mesh.Config{
		Key:              n.id.Private,
		PSK:              n.community.PSK[:],
		ListenAddrs:      listen,
		Bootstrap:        append(append([]string(nil), n.community.Manifest.BootstrapPeers...), n.opts.MeshBootstrap...),
		DisableMDNS:      n.opts.MeshNoLANDiscovery,
		DisableLinkWatch: n.opts.MeshNoLANDiscovery,
		Logger:           n.log.With("subsystem", "mesh"),
	})
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	n.mesh = m
	n.announce()
	return nil
}

// announce publishes this node's current state to the community.
func (n *Node) announce() {
	if n.mesh == nil {
		return
	}
	c := n.Config()
	a := mesh.Announcement{Name: c.Name, Roles: c.Roles, Bioregion: n.bioregion()}
	if c.Location.Latitude != 0 || c.Location.Longitude != 0 {
		a.Location = &mesh.Location{Lat: c.Location.Latitude, Lon: c.Location.Longitude}
	}
	a.Models, _, _ = n.engine.get()
	if n.sensorSummary != nil {
		a.Sensors = n.sensorSummary()
	}
	if err := n.mesh.Announce(a); err != nil {
		n.log.Warn("announce", "err", err)
	}
}

func (n *Node) bioregion() string {
	if b := n.Config().Bioregion; b != "" {
		return b
	}
	if n.community != nil {
		return n.community.Manifest.Bioregion
	}
	return ""
}

// meshView adapts the membership view for the LAN page.
func (n *Node) meshView(context.Context) (lanpage.Mesh, error) {
	if n.mesh == nil {
		return lanpage.Mesh{}, errors.New("mesh not running: " + n.meshOffReason())
	}
	var out lanpage.Mesh
	for _, m := range n.mesh.Members() {
		p := lanpage.Peer{ID: m.ID.String(), Name: m.Name, Addrs: m.Addrs, RTT: m.RTT, LastSeen: m.LastSeen}
		switch {
		case m.State == mesh.StateUp && m.Reach == mesh.ReachDirect:
			p.State, p.Reachability = lanpage.PeerUp, "direct"
		case m.State == mesh.StateUp:
			p.State, p.Reachability = lanpage.PeerDegraded, "relay"
		case m.State == mesh.StateSuspect:
			p.State, p.Reachability = lanpage.PeerDegraded, "unreachable"
		default:
			p.State, p.Reachability = lanpage.PeerDown, "unreachable"
		}
		if a := m.Announcement; a != nil {
			p.Roles, p.Bioregion, p.Load = a.Roles, a.Bioregion, a.Load
			if p.Name == "" {
				p.Name = a.Name
			}
		}
		out.Peers = append(out.Peers, p)
	}
	return out, nil
}

func (n *Node) meshOffReason() string {
	if n.community == nil {
		return "not enrolled in a community"
	}
	return "starting"
}

// announceLoop re-announces when the sensor summary or config changes.
func (n *Node) announceLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.announce()
		}
	}
}
