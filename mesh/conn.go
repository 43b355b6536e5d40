package mesh

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

func isRelayed(c network.Conn) bool {
	_, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// onConnected runs in the swarm's notification path: it must not block.
func (n *Node) onConnected(c network.Conn) {
	id := c.RemotePeer()
	now := time.Now()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	m := n.members[id]
	if m == nil {
		m = &memberState{id: id, since: now}
		n.members[id] = m
		delete(n.cands, id)
	}
	m.lastSeen = now
	m.backoff = 0
	n.refreshReachLocked(m, now)
	if n.pingers[c] != nil { // already seen (start's sweep and the notifier can race)
		n.mu.Unlock()
		return
	}
	pctx, cancel := context.WithCancel(n.ctx)
	n.pingers[c] = cancel
	n.wg.Add(2)
	n.mu.Unlock()
	go n.pingLoop(pctx, c)
	go func() {
		defer n.wg.Done()
		n.syncWith(id, 3)
	}()
	n.kickMaintain()
}

func (n *Node) onDisconnected(c network.Conn) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if cancel := n.pingers[c]; cancel != nil {
		cancel()
		delete(n.pingers, c)
	}
	if n.closed {
		return
	}
	if m := n.members[c.RemotePeer()]; m != nil {
		n.refreshReachLocked(m, now)
	}
	delete(n.reservations, c.RemotePeer())
	n.kickMaintain()
}

// refreshReachLocked recomputes a member's reach and state from its live
// connections and emits an event on change. Called with mu.
func (n *Node) refreshReachLocked(m *memberState, now time.Time) {
	conns := n.h.Network().ConnsToPeer(m.id)
	reach := ReachNone
	var addrs []string
	for _, c := range conns {
		if c.IsClosed() {
			continue
		}
		addrs = append(addrs, c.RemoteMultiaddr().String())
		if isRelayed(c) {
			if reach == ReachNone {
				reach = ReachRelayed
			}
		} else {
			reach = ReachDirect
		}
	}
	state := m.state
	if reach != ReachNone {
		state = StateUp
		m.addrs = addrs
	} else if state == StateUp || state == 0 {
		state = StateSuspect
	}
	if reach != ReachNone && m.reach == ReachNone {
		m.connSince = now
	}
	if state == m.state && reach == m.reach {
		return
	}
	if state != m.state {
		m.since = now
	}
	old := m.reach
	m.state, m.reach = state, reach
	if reach == ReachNone {
		m.nextDial = now // redial at once
	}
	if reach == ReachRelayed && old != ReachRelayed {
		m.nextUp = now.Add(upgradeInterval)
	}
	n.log.Info("member", "peer", m.id, "state", state, "reach", reach)
	n.emitLocked(Event{Kind: EventMember, Time: now, Member: m.snapshot()})
}

// pingLoop checks one connection: a ping every PingInterval on a stream of
// that very connection; no answer within PingTimeout closes it, so a dead
// link is noticed in seconds rather than after TCP's minutes.
func (n *Node) pingLoop(ctx context.Context, c network.Conn) {
	defer n.wg.Done()
	id := c.RemotePeer()
	fail := func(why string, err error) {
		if ctx.Err() != nil || c.IsClosed() {
			return
		}
		n.log.Info("closing dead connection", "peer", id, "addr", c.RemoteMultiaddr(), "why", why, "err", err)
		_ = c.Close()
	}
	// Let the connection settle (identify, muxer) before the first ping.
	select {
	case <-ctx.Done():
		return
	case <-time.After(n.cfg.PingInterval / 3):
	}
	// The remote's ping handler ends every stream after 30 s (go-libp2p's
	// pingDuration), so a stream is replaced well before that, and a ping
	// that fails on an old stream is tried once more on a fresh one before
	// the connection is declared dead.
	var s network.Stream
	var opened time.Time
	defer func() {
		if s != nil {
			s.Reset()
		}
	}()
	open := func() (string, error) {
		if s != nil {
			s.Reset()
			s = nil
		}
		sctx, cancel := context.WithTimeout(ctx, n.cfg.PingTimeout)
		ns, err := c.NewStream(sctx)
		cancel()
		if err != nil {
			return "open ping stream", err
		}
		_ = ns.SetDeadline(time.Now().Add(n.cfg.PingTimeout))
		if err := msmux.SelectProtoOrFail(ping.ID, ns); err != nil {
			ns.Reset()
			return "negotiate ping", err
		}
		_ = ns.SetProtocol(ping.ID)
		s, opened = ns, time.Now()
		return "", nil
	}
	out, in := make([]byte, ping.PingSize), make([]byte, ping.PingSize)
	pingOnce := func() (string, error) {
		_, _ = rand.Read(out)
		_ = s.SetDeadline(time.Now().Add(n.cfg.PingTimeout))
		if _, err := s.Write(out); err != nil {
			return "ping write", err
		}
		if _, err := io.ReadFull(s, in); err != nil {
			return "ping timeout", err
		}
		if !bytes.Equal(in, out) {
			return "ping mismatch", nil
		}
		return "", nil
	}
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	for {
		start := time.Now()
		why, err := "", error(nil)
		if s == nil || time.Since(opened) > pingStreamLife {
			why, err = open()
		}
		if why == "" {
			why, err = pingOnce()
			if why != "" && why != "ping mismatch" && time.Since(opened) > n.cfg.PingTimeout {
				// an old stream may just have been ended by the remote
				start = time.Now()
				if why, err = open(); why == "" {
					why, err = pingOnce()
				}
			}
		}
		if why != "" {
			fail(why, err)
			return
		}
		rtt := time.Since(start)
		n.mu.Lock()
		if m := n.members[id]; m != nil {
			m.rtt, m.lastSeen = rtt, time.Now()
		}
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pingStreamLife is how long one ping stream is used: less than the 30 s
// after which go-libp2p's ping handler ends a stream.
const pingStreamLife = 20 * time.Second

// addCandidate records a peer found by discovery (mDNS, DHT, bootstrap).
// With tieBreak (mDNS, where both sides find each other at once) only the
// lower peer ID dials at once; otherwise this node dials at once.
func (n *Node) addCandidate(ai peer.AddrInfo, tieBreak bool) {
	if ai.ID == n.h.ID() {
		return
	}
	addrs := usableAddrs(ai.Addrs)
	if len(addrs) == 0 {
		return
	}
	n.h.Peerstore().AddAddrs(ai.ID, addrs, peerstore.RecentlyConnectedAddrTTL)
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if m := n.members[ai.ID]; m != nil {
		if m.reach == ReachNone || m.reach == ReachRelayed {
			m.nextDial, m.nextUp, m.backoff = now, now, 0 // fresh addresses: try at once
		}
	} else if c := n.cands[ai.ID]; c != nil {
		c.found = now
		if c.nextDial.After(now.Add(time.Second)) {
			c.nextDial, c.backoff = now, 0
		}
	} else {
		// Lower peer ID dials: both sides find each other at about the same
		// time; if both dialled we would get duplicate connections.
		next := now
		if tieBreak && n.h.ID() > ai.ID {
			next = now.Add(tieBreakGrace)
		}
		n.cands[ai.ID] = &candidate{found: now, nextDial: next}
	}
	n.kickMaintain()
}

// usableAddrs drops loopback addresses, unless there are only loopback ones
// (nodes on one host, as in tests).
func usableAddrs(in []ma.Multiaddr) []ma.Multiaddr {
	var out, lo []ma.Multiaddr
	for _, a := range in {
		ip, err := a.ValueForProtocol(ma.P_IP4)
		if err != nil {
			ip, _ = a.ValueForProtocol(ma.P_IP6)
		}
		if ip == "127.0.0.1" || ip == "::1" {
			lo = append(lo, a)
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return lo
	}
	return out
}

// maintain is the node's housekeeping loop: redial, upgrade relayed
// members to direct, dial candidates, trim duplicate connections, keep
// relay reservations, watch pubsub, run periodic sync and announcements.
func (n *Node) maintain() {
	defer n.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
		n.maintainOnce(time.Now())
	}
}

func (n *Node) maintainOnce(now time.Time) {
	topicPeers := map[peer.ID]bool{}
	for _, p := range n.topic.ListPeers() {
		topicPeers[p] = true
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	var dials, upgrades, cands, resets []peer.ID
	var direct []peer.ID
	for id, m := range n.members {
		switch m.reach {
		case ReachNone:
			if m.state == StateSuspect && now.Sub(m.since) >= n.cfg.DownAfter {
				m.state, m.since = StateDown, now
				n.log.Info("member", "peer", id, "state", StateDown)
				n.emitLocked(Event{Kind: EventMember, Time: now, Member: m.snapshot()})
			}
			if m.state == StateDown && now.Sub(m.since) > forgetAfter {
				delete(n.members, id)
				n.store.forget(id)
				continue
			}
			if !m.dialing && !now.Before(m.nextDial) {
				m.dialing = true
				dials = append(dials, id)
			}
		case ReachRelayed:
			if !m.dialing && !now.Before(m.nextUp) {
				m.dialing = true
				m.nextUp = now.Add(upgradeInterval)
				upgrades = append(upgrades, id)
			}
		case ReachDirect:
			direct = append(direct, id)
		}
		// Pubsub watchdog (go-libp2p-pubsub #128/#419): a member connected
		// for a while but absent from the topic lost its subscription state
		// when a duplicate connection closed. Reset its connections.
		// Only members that announced are mesh nodes; a tool that connects
		// for streams alone never subscribes.
		if m.reach != ReachNone && m.ann != nil && !topicPeers[id] && now.Sub(m.connSince) > watchdogAfter &&
			now.Sub(m.lastReset) > 2*watchdogAfter {
			m.lastReset = now
			resets = append(resets, id)
		}
	}
	for id, c := range n.cands {
		if now.Sub(c.found) > forgetAfter {
			delete(n.cands, id)
			continue
		}
		if !c.dialing && !now.Before(c.nextDial) {
			c.dialing = true
			cands = append(cands, id)
		}
	}
	doSync := now.Sub(n.lastSync) >= n.cfg.SyncInterval
	var syncPeer peer.ID
	if doSync {
		n.lastSync = now
		syncPeer = n.nextUpLocked()
	}
	reannounce := n.last != nil && now.Sub(n.lastAnnounce) >= n.cfg.AnnounceInterval
	var last Announcement
	if reannounce {
		last = *n.last
	}
	reserve := n.reservationsDueLocked(direct, now)
	n.mu.Unlock()

	for _, id := range dials {
		n.goDial(id, false)
	}
	for _, id := range upgrades {
		n.goDial(id, true)
	}
	for _, id := range cands {
		n.goDialCandidate(id)
	}
	for _, id := range resets {
		n.log.Warn("member missing from announcement topic; resetting its connections", "peer", id)
		_ = n.h.Network().ClosePeer(id)
	}
	for _, id := range reserve {
		n.goReserve(id)
	}
	n.trimDuplicates()
	if syncPeer != "" {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.syncWith(syncPeer, 1)
		}()
	}
	if reannounce {
		_ = n.Announce(last)
	}
}

// goDial redials member id: directly, then through relays. With upgrade,
// the member is reachable through a relay and only a direct connection is
// tried; on success the relayed connections are closed.
func (n *Node) goDial(id peer.ID, upgrade bool) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var ok bool
		if upgrade {
			if ok = n.dialDirect(id); ok {
				for _, c := range n.h.Network().ConnsToPeer(id) {
					if isRelayed(c) {
						_ = c.Close()
					}
				}
			}
		} else {
			// Direct and relayed at once: a direct dial to a host behind a
			// cut link only fails after the ARP timeout (~3s). If both
			// succeed, trimDuplicates drops the relayed connection.
			relayed := make(chan bool, 1)
			go func() { relayed <- n.dialRelayed(id) }()
			ok = n.dialDirect(id)
			ok = <-relayed || ok
		}
		now := time.Now()
		n.mu.Lock()
		defer n.mu.Unlock()
		m := n.members[id]
		if m == nil {
			return
		}
		m.dialing = false
		if ok || upgrade {
			return
		}
		m.backoff = min(max(2*m.backoff, time.Second), maxBackoff)
		if m.state == StateDown {
			m.backoff = downRedial
		}
		m.nextDial = now.Add(m.backoff)
	}()
}

func (n *Node) goDialCandidate(id peer.ID) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ok := n.dialDirect(id)
		n.mu.Lock()
		defer n.mu.Unlock()
		c := n.cands[id]
		if c == nil {
			return
		}
		c.dialing = false
		if !ok {
			c.backoff = min(max(2*c.backoff, time.Second), 60*time.Second)
			c.nextDial = time.Now().Add(c.backoff)
		}
	}()
}

func (n *Node) dialDirect(id peer.ID) bool {
	if sw, ok := n.h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(id)
	}
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(n.ctx, "mesh redial"), dialTimeout)
	defer cancel()
	err := n.h.Connect(ctx, peer.AddrInfo{ID: id})
	if err != nil {
		n.log.Debug("direct dial failed", "peer", id, "err", err)
	}
	return err == nil
}

// dialRelayed tries to reach id through every directly connected member
// that runs a relay (at most 8), all at once: the swarm dials every
// circuit address in parallel and keeps the first that works (the relay
// holding id's reservation).
func (n *Node) dialRelayed(id peer.ID) bool {
	var circuits []ma.Multiaddr
	for _, p := range n.h.Network().Peers() {
		if p == id || len(circuits) == 8 {
			continue
		}
		if protos, _ := n.h.Peerstore().SupportsProtocols(p, proto.ProtoIDv2Hop); len(protos) == 0 {
			continue
		}
		if !slices.ContainsFunc(n.h.Network().ConnsToPeer(p), func(c network.Conn) bool { return !isRelayed(c) }) {
			continue
		}
		if a, err := ma.NewMultiaddr("/p2p/" + p.String() + "/p2p-circuit"); err == nil {
			circuits = append(circuits, a)
		}
	}
	if len(circuits) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	defer cancel()
	if err := n.h.Connect(ctx, peer.AddrInfo{ID: id, Addrs: circuits}); err != nil {
		n.log.Debug("relayed dial failed", "peer", id, "relays", len(circuits), "err", err)
		return false
	}
	n.log.Info("reached member", "peer", id, "relays", len(circuits))
	return true
}

// reservationsDueLocked picks the directly connected members at which this
// node should (re)new a relay reservation, keeping MaxRelays of them.
// Called with mu.
func (n *Node) reservationsDueLocked(direct []peer.ID, now time.Time) []peer.ID {
	for id, exp := range n.reservations {
		if now.After(exp) || !slices.Contains(direct, id) {
			delete(n.reservations, id)
		}
	}
	held := 0
	var due []peer.ID
	for id, exp := range n.reservations {
		if exp.Sub(now) < 2*time.Minute && !n.reserving[id] {
			due = append(due, id)
		}
		held++
	}
	slices.Sort(direct) // deterministic choice
	for _, id := range direct {
		if held+len(n.reserving) >= n.cfg.MaxRelays {
			break
		}
		if _, ok := n.reservations[id]; ok || n.reserving[id] {
			continue
		}
		if protos, _ := n.h.Peerstore().SupportsProtocols(id, proto.ProtoIDv2Hop); len(protos) == 0 {
			continue // not identified yet
		}
		due = append(due, id)
		held++
	}
	for _, id := range due {
		n.reserving[id] = true
	}
	return due
}

func (n *Node) goReserve(id peer.ID) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
		rsvp, err := client.Reserve(ctx, n.h, peer.AddrInfo{ID: id})
		cancel()
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.reserving, id)
		if err != nil {
			n.log.Debug("relay reservation failed", "relay", id, "err", err)
			return
		}
		n.reservations[id] = rsvp.Expiration
	}()
}

// trimDuplicates keeps one direct connection per peer. Connections opened
// within simultaneousWindow of each other are a simultaneous dial: the one
// dialled by the lower peer ID stays (both sides compute the same choice).
// Otherwise the newest stays: a peer only redials when it believes the old
// connection dead (e.g. its link went down and it came back over another
// one), and the old one may not have failed its liveness ping yet here.
// Relayed connections are closed once a direct one exists.
func (n *Node) trimDuplicates() {
	self := n.h.ID()
	for _, p := range n.h.Network().Peers() {
		conns := n.h.Network().ConnsToPeer(p)
		if len(conns) < 2 {
			continue
		}
		var direct, relayed []network.Conn
		for _, c := range conns {
			if isRelayed(c) {
				relayed = append(relayed, c)
			} else {
				direct = append(direct, c)
			}
		}
		if len(direct) == 0 {
			continue
		}
		for _, c := range relayed {
			_ = c.Close()
		}
		if len(direct) < 2 {
			continue
		}
		if keep := pickConn(direct, self, p); keep != nil {
			for _, c := range direct {
				if c != keep {
					n.log.Debug("closing duplicate connection", "peer", p, "dir", c.Stat().Direction, "addr", c.RemoteMultiaddr())
					_ = c.Close()
				}
			}
		}
	}
}

const simultaneousWindow = 2 * time.Second

// pickConn chooses the connection to keep among direct connections to
// peer p (see trimDuplicates).
func pickConn(conns []network.Conn, self, p peer.ID) network.Conn {
	newest := conns[0]
	for _, c := range conns[1:] {
		if c.Stat().Opened.After(newest.Stat().Opened) {
			newest = c
		}
	}
	wantDir := network.DirOutbound // we are the lower ID: keep what we dialled
	if p < self {
		wantDir = network.DirInbound
	}
	var keep network.Conn
	for _, c := range conns {
		if newest.Stat().Opened.Sub(c.Stat().Opened) > simultaneousWindow {
			continue // an older generation
		}
		if keep == nil {
			keep = c
			continue
		}
		kd, cd := keep.Stat().Direction == wantDir, c.Stat().Direction == wantDir
		if (cd && !kd) || (cd == kd && c.Stat().Opened.Before(keep.Stat().Opened)) {
			keep = c
		}
	}
	return keep
}
