package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Protocol IDs and topics of the mesh.
const (
	// AnnounceTopic is the GossipSub topic of node announcements.
	AnnounceTopic = "/hypha/mesh/announce/1"
	// SyncProtocol is the anti-entropy protocol: the dialer sends its
	// digest, the listener answers with the announcements the dialer lacks.
	SyncProtocol protocol.ID = "/hypha/mesh/sync/1.0.0"
	// DHTPrefix is the protocol prefix of the community's private Kad-DHT.
	DHTPrefix protocol.ID = "/hypha"
	// rendezvous is the DHT key under which community nodes advertise.
	rendezvous = "hypha/mesh/members/1"
)

// Tuning constants that are not worth a Config field.
const (
	tick            = 500 * time.Millisecond
	dialTimeout     = 4 * time.Second
	tieBreakGrace   = 3 * time.Second // higher peer ID waits this long for the lower to dial
	maxBackoff      = 8 * time.Second
	downRedial      = 30 * time.Second
	upgradeInterval = 5 * time.Second
	syncLimit       = 4096 // announcements per sync response
	syncTimeout     = 10 * time.Second
	forgetAfter     = 24 * time.Hour // down members are forgotten after this
)

// watchdogAfter: a member connected this long but absent from the
// announcement topic gets its connections reset (a var for tests).
var watchdogAfter = 15 * time.Second

// Node is one member of the community mesh: a libp2p host under the
// community PSK with discovery, liveness, announcements and membership.
//
// All methods are safe for concurrent use. Close is idempotent; after
// Close, Announce returns ErrClosed and Members returns the last view.
// Events are delivered to subscriptions without ever blocking the node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	key   crypto.PrivKey
	h     host.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	kad   *dht.IpfsDHT // nil when disabled
	relay *relayv2.Relay
	store *store
	epoch int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	closeOnce sync.Once
	closeErr  error

	mdns mdnsRunner

	mu           sync.Mutex
	closed       bool                                // guarded by mu
	members      map[peer.ID]*memberState            // guarded by mu
	cands        map[peer.ID]*candidate              // guarded by mu; found, never connected
	subs         map[*Subscription]struct{}          // guarded by mu
	seq          uint64                              // guarded by mu; our last sequence number
	last         *Announcement                       // guarded by mu; our last announcement
	lastAnnounce time.Time                           // guarded by mu
	lastSync     time.Time                           // guarded by mu
	reservations map[peer.ID]time.Time               // guarded by mu; relay -> expiry
	reserving    map[peer.ID]bool                    // guarded by mu
	pingers      map[network.Conn]context.CancelFunc // guarded by mu
	syncing      map[peer.ID]bool                    // guarded by mu; in flight -> another requested
	syncNext     int                                 // guarded by mu; round-robin cursor for periodic sync
}

// candidate is a peer found by discovery that is not (yet) a member.
type candidate struct {
	found    time.Time
	nextDial time.Time
	backoff  time.Duration
	dialing  bool
}

// New starts a mesh node: it listens, starts discovery and returns. The
// node runs until Close or until ctx is cancelled.
func New(ctx context.Context, cfg Config) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("mesh.New: %w", err)
	}
	key, err := crypto.UnmarshalEd25519PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("mesh.New: %w: key: %v", ErrBadConfig, err)
	}
	n := &Node{
		cfg: c, log: c.Logger.With("sub", "mesh"), key: key,
		store:        newStore(c.History),
		epoch:        time.Now().UnixNano(),
		kick:         make(chan struct{}, 1),
		members:      make(map[peer.ID]*memberState),
		cands:        make(map[peer.ID]*candidate),
		subs:         make(map[*Subscription]struct{}),
		reservations: make(map[peer.ID]time.Time),
		reserving:    make(map[peer.ID]bool),
		pingers:      make(map[network.Conn]context.CancelFunc),
		syncing:      make(map[peer.ID]bool),
	}
	n.ctx, n.cancel = context.WithCancel(ctx)
	if err := n.start(); err != nil {
		n.Close()
		return nil, fmt.Errorf("mesh.New: %w", err)
	}
	return n, nil
}

func (n *Node) start() error {
	c := n.cfg
	opts := []libp2p.Option{
		libp2p.Identity(n.key),
		libp2p.PrivateNetwork(pnet.PSK(c.PSK)),
		libp2p.ListenAddrStrings(c.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.EnableRelay(),
		libp2p.DisableMetrics(),
		// On a LAN every address is worth trying at once; the default
		// ranker holds relay addresses back behind direct ones that may
		// only fail after an ARP timeout.
		libp2p.SwarmOpts(swarm.WithDialRanker(swarm.NoDelayDialRanker)),
	}
	if c.Uplink {
		opts = append(opts, libp2p.EnableHolePunching(), libp2p.EnableAutoNATv2(), libp2p.NATPortMap())
	}
	if !c.DisableDHT {
		opts = append(opts, libp2p.Routing(func(h host.Host) (routing.PeerRouting, error) {
			var err error
			n.kad, err = n.newDHT(h)
			return n.kad, err
		}))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return fmt.Errorf("libp2p host: %w", err)
	}
	n.h = h

	// The stock relay service waits for public reachability, which an
	// offline LAN never has: start it ourselves with LAN-sized limits.
	n.relay, err = relayv2.New(h,
		relayv2.WithResources(lanRelayResources()),
		relayv2.WithInfiniteLimits(),
		relayv2.WithReservationAddressFilter(func(ma.Multiaddr) bool { return true }),
	)
	if err != nil {
		return fmt.Errorf("relay service: %w", err)
	}

	h.Network().Notify(&network.NotifyBundle{
		ConnectedF:    func(_ network.Network, cn network.Conn) { n.onConnected(cn) },
		DisconnectedF: func(_ network.Network, cn network.Conn) { n.onDisconnected(cn) },
	})
	h.SetStreamHandler(SyncProtocol, n.handleSync)
	// The host listened before the notifier was registered: a peer that
	// connected in between would otherwise be up on its side only until a
	// ping timed out.
	for _, cn := range h.Network().Conns() {
		n.onConnected(cn)
	}

	n.ps, err = pubsub.NewGossipSub(n.ctx, h,
		pubsub.WithPeerExchange(true),
		pubsub.WithFloodPublish(true),
	)
	if err != nil {
		return fmt.Errorf("gossipsub: %w", err)
	}
	if err := n.ps.RegisterTopicValidator(AnnounceTopic, n.validate); err != nil {
		return fmt.Errorf("gossipsub validator: %w", err)
	}
	n.topic, err = n.ps.Join(AnnounceTopic)
	if err != nil {
		return fmt.Errorf("gossipsub join: %w", err)
	}
	n.sub, err = n.topic.Subscribe()
	if err != nil {
		return fmt.Errorf("gossipsub subscribe: %w", err)
	}

	for _, s := range c.Bootstrap {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return fmt.Errorf("%w: bootstrap %q: %v", ErrBadConfig, s, err)
		}
		n.addCandidate(*ai, false)
	}
	n.wg.Add(2)
	go n.readGossip()
	go n.maintain()
	if !c.DisableMDNS {
		n.mdns = mdnsRunner{n: n}
		n.mdns.restart()
	}
	if !c.DisableLinkWatch {
		n.wg.Add(1)
		go n.watchLinks()
	}
	if n.kad != nil {
		n.wg.Add(1)
		go n.dhtDiscovery()
	}
	n.log.Info("mesh node started", "id", h.ID(), "addrs", h.Addrs(), "mdns", c.ServiceName)
	return nil
}

// lanRelayResources are relay limits sized for a village LAN: every member
// may hold a reservation, and relayed connections are not cut after 2
// minutes or 128 KiB as on the public network.
func lanRelayResources() relayv2.Resources {
	r := relayv2.DefaultResources()
	r.Limit = nil
	r.ReservationTTL = 30 * time.Minute
	r.MaxReservations = 256
	r.MaxCircuits = 32
	r.BufferSize = 32 << 10
	r.MaxReservationsPerIP = 256
	r.MaxReservationsPerASN = 256
	return r
}

func (n *Node) newDHT(h host.Host) (*dht.IpfsDHT, error) {
	var boot []peer.AddrInfo
	for _, s := range n.cfg.Bootstrap {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap %q: %v", ErrBadConfig, s, err)
		}
		boot = append(boot, *ai)
	}
	return dht.New(h,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(DHTPrefix),
		dht.BootstrapPeers(boot...),
	)
}

// dhtDiscovery bootstraps the DHT, then advertises the node under the
// community rendezvous key and looks for others, once a minute.
func (n *Node) dhtDiscovery() {
	defer n.wg.Done()
	if err := n.kad.Bootstrap(n.ctx); err != nil {
		n.log.Warn("dht bootstrap", "err", err)
	}
	rd := drouting.NewRoutingDiscovery(n.kad)
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if len(n.kad.RoutingTable().ListPeers()) > 0 {
			ctx, cancel := context.WithTimeout(n.ctx, 20*time.Second)
			if _, err := rd.Advertise(ctx, rendezvous); err != nil {
				n.log.Debug("dht advertise", "err", err)
			}
			ch, err := rd.FindPeers(ctx, rendezvous)
			if err == nil {
				for ai := range ch {
					if ai.ID != n.h.ID() && len(ai.Addrs) > 0 {
						n.addCandidate(ai, false)
					}
				}
			}
			cancel()
		}
		t.Reset(time.Minute)
	}
}

// Host returns the libp2p host, for subsystems that run their own protocols
// over the mesh (SetStreamHandler, NewStream). The host is owned by the
// Node: do not Close it.
func (n *Node) Host() host.Host { return n.h }

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.h.ID() }

// SetStreamHandler registers a handler for a protocol of another subsystem
// on the mesh host. Streams come only from community members (PSK).
func (n *Node) SetStreamHandler(p protocol.ID, h network.StreamHandler) {
	n.h.SetStreamHandler(p, h)
}

// NewStream opens a stream for protocol p to member id, dialling it if
// needed (directly or through a relay).
func (n *Node) NewStream(ctx context.Context, id peer.ID, p protocol.ID) (network.Stream, error) {
	s, err := n.h.NewStream(ctx, id, p)
	if err != nil {
		return nil, fmt.Errorf("mesh: new stream to %s for %s: %w", id, p, err)
	}
	return s, nil
}

// Close stops the node: discovery, liveness, pubsub and the host. It is
// idempotent; later calls return the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		subs := n.subs
		n.subs = map[*Subscription]struct{}{}
		n.mu.Unlock()
		n.cancel()
		n.mdns.close()
		var errs []error
		if n.sub != nil {
			n.sub.Cancel()
		}
		if n.topic != nil {
			_ = n.topic.Close()
		}
		if n.relay != nil {
			errs = append(errs, n.relay.Close())
		}
		if n.kad != nil {
			errs = append(errs, n.kad.Close())
		}
		if n.h != nil {
			errs = append(errs, n.h.Close())
		}
		n.wg.Wait()
		for s := range subs {
			close(s.c)
		}
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("mesh close: %w", err)
		}
	})
	return n.closeErr
}

// Members returns a snapshot of the membership view, sorted by peer ID.
// The node itself is not included.
func (n *Node) Members() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m.snapshot())
	}
	sortMembers(out)
	return out
}

// Self returns this node as a Member: its ID, its listen addresses, its
// last announcement (nil before the first Announce), State up, Reach direct.
func (n *Node) Self() Member {
	var addrs []string
	for _, a := range n.h.Addrs() {
		addrs = append(addrs, a.String())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return Member{
		ID: n.h.ID(), Name: nameOf(n.last), State: StateUp, Reach: ReachDirect,
		Addrs: addrs, LastSeen: time.Now(), Announcement: n.last.clone(),
	}
}

// Status is the mesh as the LAN page shows it.
type Status struct {
	Self    Member         `json:"self"`
	Members []Member       `json:"members"`
	Counts  map[string]int `json:"counts"` // by state: "up", "suspect", "down"
	// Relays are the members holding a relay reservation for this node.
	Relays []peer.ID `json:"relays"`
}

// Status returns a snapshot for the LAN page "Mesh" view (JSON-ready).
func (n *Node) Status() Status {
	st := Status{Self: n.Self(), Members: n.Members(), Counts: map[string]int{}}
	for _, m := range st.Members {
		st.Counts[m.State.String()]++
	}
	n.mu.Lock()
	for id := range n.reservations {
		st.Relays = append(st.Relays, id)
	}
	n.mu.Unlock()
	slices.Sort(st.Relays)
	return st
}

// Subscribe returns a subscription to membership changes and announcements.
// buf is the channel capacity (minimum 16).
func (n *Node) Subscribe(buf int) *Subscription {
	buf = max(buf, 16)
	c := make(chan Event, buf)
	s := &Subscription{C: c, c: c}
	s.unsub = func(s *Subscription) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[s]; ok {
			delete(n.subs, s)
			close(s.c)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(c)
		return s
	}
	n.subs[s] = struct{}{}
	return s
}

// emitLocked sends e to every subscriber without blocking. Called with mu.
func (n *Node) emitLocked(e Event) {
	for s := range n.subs {
		s.send(e)
	}
}

// Announce publishes a as this node's current announcement: the node fills
// in Version, Node, Epoch, Seq and Time, gossips it and keeps it for the
// anti-entropy sync. The node republishes the last announcement every
// Config.AnnounceInterval. The caller keeps ownership of a.
func (n *Node) Announce(a Announcement) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return fmt.Errorf("announce: %w", ErrClosed)
	}
	a2 := a.clone()
	n.seq++
	a2.Version, a2.Node, a2.Epoch, a2.Seq = AnnouncementVersion, n.h.ID().String(), n.epoch, n.seq
	a2.Time = time.Now().UnixMilli()
	if err := a2.validate(); err != nil {
		n.seq--
		n.mu.Unlock()
		return fmt.Errorf("announce: %w: %v", ErrBadMessage, err)
	}
	s, err := sealAnnouncement(a2, n.key)
	if err != nil {
		n.seq--
		n.mu.Unlock()
		return fmt.Errorf("announce: %w", err)
	}
	n.last = a2
	n.lastAnnounce = time.Now()
	n.store.add(s)
	n.emitLocked(Event{Kind: EventAnnouncement, Time: time.Now(), Announcement: a2.clone(), Via: "self"})
	n.mu.Unlock()
	if err := n.topic.Publish(n.ctx, s.raw); err != nil {
		// Not lost: the anti-entropy sync replays it.
		n.log.Debug("publish announcement", "seq", a2.Seq, "err", err)
	}
	return nil
}

// validate is the GossipSub validator: only correctly signed announcements
// whose origin is the pubsub author propagate.
func (n *Node) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) bool {
	s, err := decodeEnvelope(msg.Data)
	if err != nil {
		n.log.Debug("rejecting gossip", "from", msg.ReceivedFrom, "err", err)
		return false
	}
	if author, err := peer.IDFromBytes(msg.From); err != nil || author != s.origin {
		return false
	}
	msg.ValidatorData = s
	return true
}

func (n *Node) readGossip() {
	defer n.wg.Done()
	for {
		msg, err := n.sub.Next(n.ctx)
		if err != nil {
			return
		}
		s, ok := msg.ValidatorData.(*signedAnnouncement)
		if !ok || s.origin == n.h.ID() {
			continue
		}
		n.receive(s, "gossip")
	}
}

// receive records an announcement from gossip or sync and delivers it if
// new. It reports whether it was new.
func (n *Node) receive(s *signedAnnouncement, via string) bool {
	if s.origin == n.h.ID() {
		return false
	}
	if !n.store.add(s) {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return true
	}
	now := time.Now()
	m := n.memberLocked(s.origin, now)
	if m.ann == nil || s.a.Epoch > m.ann.Epoch || (s.a.Epoch == m.ann.Epoch && s.a.Seq > m.ann.Seq) {
		m.ann = s.a
	}
	m.lastSeen = now
	n.emitLocked(Event{Kind: EventAnnouncement, Time: now, Announcement: s.a.clone(), Via: via})
	return true
}

// memberLocked returns the record of id, creating a suspect member if it is
// new (known from an announcement, not from a connection). Called with mu.
func (n *Node) memberLocked(id peer.ID, now time.Time) *memberState {
	m := n.members[id]
	if m == nil {
		m = &memberState{id: id, state: StateSuspect, since: now}
		n.members[id] = m
		delete(n.cands, id)
		if n.h.Network().Connectedness(id) == network.Connected {
			n.refreshReachLocked(m, now)
		} else {
			n.emitLocked(Event{Kind: EventMember, Time: now, Member: m.snapshot()})
		}
	}
	return m
}

// kickMaintain asks the maintenance loop to run soon.
func (n *Node) kickMaintain() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// nextUpLocked returns the next member that is up, round-robin over the
// sorted member list so periodic sync visits everyone in turn, or "".
func (n *Node) nextUpLocked() peer.ID {
	var ups []peer.ID
	for id, m := range n.members {
		if m.state == StateUp {
			ups = append(ups, id)
		}
	}
	if len(ups) == 0 {
		return ""
	}
	slices.Sort(ups)
	n.syncNext = (n.syncNext + 1) % len(ups)
	return ups[n.syncNext]
}
