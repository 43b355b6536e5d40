// Package mesh is the community mesh of a Hypha node: a libp2p host under
// the community's pre-shared key that finds the other boxes of the
// community on the LAN (mDNS) and beyond (a private Kad-DHT), keeps them
// connected through link failures (per-connection liveness pings, redial on
// netlink events, circuit relays through other members), tells them what
// this node offers (signed announcements on GossipSub plus an anti-entropy
// sync so that nothing sent during a partition is lost), and keeps a
// membership view for the other subsystems and the LAN page.
//
// # Lifetime and concurrency
//
// New starts everything and returns a running *Node; Close stops it and is
// idempotent. All methods of Node are safe for concurrent use. Members and
// Self return snapshots (values that never change afterwards); Announcement
// values handed out are copies. Subscriptions receive events on a buffered
// channel and never slow the node down: when a subscriber falls behind,
// events are dropped and counted (Subscription.Dropped); Members is always
// the authoritative view. Stream handlers registered with SetStreamHandler
// run on libp2p's goroutines, one per stream.
//
// # Wire formats
//
// Every message the mesh decodes from the network is size-bounded and
// validated before use: the announcement envelope (DecodeEnvelope), the
// announcement body (DecodeAnnouncement), the sync digest and the
// length-prefixed frames of the sync stream. Each has a fuzz target.
package mesh
