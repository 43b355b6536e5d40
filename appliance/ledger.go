package appliance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/univrs/hypha/appliance/lanpage"
	"github.com/univrs/hypha/ledger"
	"github.com/univrs/hypha/mesh"
	"github.com/univrs/hypha/provisioning"
)

// ledgerRules maps the community's credit rules onto the ledger's.
// Amounts in the manifest are whole units; the ledger counts milli-units.
func ledgerRules(c *provisioning.Community) ledger.Rules {
	r := ledger.DefaultRules()
	if c == nil {
		return r
	}
	cr := c.Manifest.Credit
	if cr.Unit != "" {
		r.Unit = cr.Unit
	}
	if cr.DebtLimit > 0 || cr.CreditLimit > 0 {
		r.DefaultLimits = ledger.Limits{Min: -cr.DebtLimit * 1000, Max: cr.CreditLimit * 1000}
	}
	// The commons takes its share as a fee only when the manifest names it
	// by key; a plain name ("commons") has no chain to pay into yet.
	if k, err := provisioning.ParsePublicKey(cr.CommonsAccount); err == nil && len(k) == 32 {
		copy(r.Commons[:], k)
		r.FeeBasisPoints = int64(cr.CommonsShare * 10000)
	}
	return r
}

// startLedger opens the node's chain and serves sync and countersigning
// over the mesh.
func (n *Node) startLedger(ctx context.Context) error {
	l, err := ledger.Open(filepath.Join(n.opts.PermDir, "hypha", "ledger.db"), n.id.Private, ledgerRules(n.community),
		ledger.WithLogger(n.log), ledger.WithBioregion(n.bioregion()),
		ledger.WithForkHandler(func(f *ledger.Fork) {
			n.alert(lanpage.SeverityCritical, "ledger", fmt.Sprintf("member %s double-spent (two entries at seq %d): quarantined", f.Author().Short(), f.Seq()))
		}))
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	n.ledger = l
	if n.mesh == nil {
		return nil
	}
	n.mesh.SetStreamHandler(protocol.ID(ledger.SyncProtocolID), func(s network.Stream) {
		defer s.Close()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := l.Sync(sctx, s); err != nil {
			n.log.Debug("ledger sync (served)", "peer", s.Conn().RemotePeer(), "err", err)
		}
	})
	n.mesh.SetStreamHandler(protocol.ID(ledger.CountersignProtocolID), func(s network.Stream) {
		defer s.Close()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := l.ServeCountersign(sctx, s); err != nil {
			n.log.Info("countersign refused", "peer", s.Conn().RemotePeer(), "err", err)
		}
	})
	go n.ledgerSyncLoop(ctx)
	return nil
}

// ledgerSyncLoop runs anti-entropy with one random up member every 20 s,
// so every node can verify every member's balance after a partition.
func (n *Node) ledgerSyncLoop(ctx context.Context) {
	t := time.NewTicker(20 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var up []peer.ID
		for _, m := range n.mesh.Members() {
			if m.State == mesh.StateUp {
				up = append(up, m.ID)
			}
		}
		if len(up) == 0 {
			continue
		}
		p := up[rand.IntN(len(up))]
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := n.mesh.NewStream(sctx, p, protocol.ID(ledger.SyncProtocolID))
		if err == nil {
			_, err = n.ledger.Sync(sctx, s)
			s.Close()
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			n.log.Debug("ledger sync", "peer", p, "err", err)
		}
	}
}

// memberNames maps ledger members (ed25519 keys) to node names, through
// the peer IDs the mesh knows them by.
func (n *Node) memberNames() map[ledger.MemberID]string {
	names := map[ledger.MemberID]string{}
	var self ledger.MemberID
	copy(self[:], n.id.Public)
	names[self] = n.Config().Name + " (this box)"
	if n.mesh == nil {
		return names
	}
	for _, m := range n.mesh.Members() {
		pk, err := m.ID.ExtractPublicKey()
		if err != nil {
			continue
		}
		raw, err := pk.Raw()
		if err != nil || pk.Type() != crypto.Ed25519 || len(raw) != 32 {
			continue
		}
		var id ledger.MemberID
		copy(id[:], raw)
		names[id] = m.Name
	}
	return names
}

// ledgerView adapts the ledger for the LAN page.
func (n *Node) ledgerView(context.Context) (lanpage.Ledger, error) {
	if n.ledger == nil {
		return lanpage.Ledger{}, errors.New("ledger not running")
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	v, err := n.ledger.View(50, ledger.Day, today.AddDate(0, 0, -30))
	if err != nil {
		return lanpage.Ledger{}, err
	}
	names := n.memberNames()
	name := func(m ledger.MemberID) string {
		if s, ok := names[m]; ok && s != "" {
			return s
		}
		return m.Short()
	}
	lim := n.ledger.Rules().DefaultLimits
	out := lanpage.Ledger{Unit: v.Unit, Summary: lanpage.CreditSummary{Min: milli(lim.Min), Max: milli(lim.Max)}}
	for _, a := range v.Accounts {
		b := lanpage.Balance{Member: a.Member.String(), Name: name(a.Member), Balance: milli(a.Balance),
			Min: milli(a.Limits.Min), Max: milli(a.Limits.Max), Quarantined: a.Quarantined}
		out.Balances = append(out.Balances, b)
		if a.Member == v.Self {
			out.Summary = lanpage.CreditSummary{Balance: b.Balance, Min: b.Min, Max: b.Max}
		}
	}
	for _, tx := range v.Recent {
		f := lanpage.Flow{ID: tx.ID.String(), Time: tx.Created, From: name(tx.Payer), To: name(tx.Payee),
			Amount: milli(tx.Amount), Purpose: tx.Purpose}
		if !tx.Corrects.IsZero() {
			f.Corrects = tx.Corrects.String()
		}
		for _, o := range tx.Observations {
			f.Observations = append(f.Observations, lanpage.Observation{Property: o.Property, Value: o.Value, Unit: o.Unit,
				Time: o.Time, Sensor: o.SensorID, Simulated: o.Simulated})
		}
		if r := tx.Receipt; r != nil {
			f.Receipt = &lanpage.Receipt{Model: r.ModelHash, TokensIn: int(r.TokensIn), TokensOut: int(r.TokensOut), Joules: float64(r.MilliJoules) / 1000}
		}
		if tx.Created.After(today) {
			switch v.Self {
			case tx.Payee:
				out.Summary.EarnedToday += f.Amount
			case tx.Payer:
				out.Summary.SpentToday += f.Amount
			}
		}
		out.Flows = append(out.Flows, f)
	}
	for _, b := range v.Bioregions {
		out.Bioregions = append(out.Bioregions, lanpage.BioregionTotal{Bioregion: b.Bioregion, Period: b.Period.Format("2006-01-02"),
			Volume: milli(b.Volume), Transactions: b.Transactions, EnergyKWh: float64(b.MilliJoules) / 3.6e9})
	}
	for _, f := range v.Forks {
		out.Quarantined = append(out.Quarantined, lanpage.Quarantine{Member: f.Member.String(), Name: name(f.Member),
			Reason: fmt.Sprintf("%s at seq %d: %s / %s", f.Kind, f.Seq, f.A.String()[:12], f.B.String()[:12]), Proof: fmt.Sprintf("%x", f.Proof[:min(8, len(f.Proof))])})
	}
	return out, nil
}

func milli(v int64) float64 { return float64(v) / 1000 }
