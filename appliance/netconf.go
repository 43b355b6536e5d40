package appliance

import (
	"context"
	"net"
	"strings"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/mesh/netconf"
)

// startNetconf puts the box's mesh ports on the mesh bridge and gives it
// the ULA derived from the node key. The uplink (eth0, where gokrazy's
// DHCP client runs) stays as it is: on a one-NIC box the LAN is the mesh.
func (n *Node) startNetconf(ctx context.Context) {
	if !n.opts.ManageLinks {
		return
	}
	var links []string
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "eth") && i.Name != "eth0" {
			links = append(links, i.Name)
		}
	}
	if len(links) == 0 {
		n.log.Info("netconf: no mesh ports besides the uplink; the mesh runs over the LAN")
		return
	}
	m, err := netconf.New(netconf.Config{PublicKey: n.id.Public, Links: links, Logger: n.log.With("subsystem", "netconf")})
	if err != nil {
		n.alert(lanpage.SeverityWarning, "netconf", err.Error())
		return
	}
	res, err := m.Apply()
	if err != nil {
		n.alert(lanpage.SeverityWarning, "netconf", err.Error())
		m.Close()
		return
	}
	n.log.Info("netconf", "bridge", res.Bridge, "addr", res.Addr.String(), "links", res.Links)
	go func() {
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("netconf watch", "err", err)
		}
		m.Close()
	}()
}
