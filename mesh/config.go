package mesh

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// PSKSize is the length of a community pre-shared key.
const PSKSize = 32

// Config configures a Node. Key and PSK are required; every other field has
// a default, documented on the field, used when it is the zero value.
type Config struct {
	// Key is the node's identity (the ed25519 key on /perm). Required.
	Key ed25519.PrivateKey
	// PSK is the community's 32-byte pre-shared key. Only nodes holding the
	// same key can complete a connection (libp2p private network). Required.
	PSK []byte

	// ListenAddrs are libp2p multiaddrs to listen on.
	// Default: /ip4/0.0.0.0/tcp/4001 and /ip6/::/tcp/4001.
	ListenAddrs []string
	// Bootstrap are multiaddrs (ending in /p2p/<id>) of community nodes
	// beyond the LAN, for the private Kad-DHT. Default: none.
	Bootstrap []string
	// ServiceName overrides the mDNS service name. Default: derived from
	// the PSK (see ServiceName), so communities never see each other.
	ServiceName string

	// DisableMDNS turns LAN discovery off (tests, or a box on a WAN link).
	DisableMDNS bool
	// DisableDHT turns the private Kad-DHT off.
	DisableDHT bool
	// DisableLinkWatch turns off the netlink watch that restarts mDNS and
	// redials when links or addresses change.
	DisableLinkWatch bool
	// Uplink enables what only helps when the node has a route to the
	// wider internet: hole punching, AutoNAT v2 and UPnP/NAT-PMP port
	// mapping. Default false (an offline LAN gains nothing from them).
	Uplink bool

	// PingInterval is the liveness ping period on every connection.
	// Default 3s.
	PingInterval time.Duration
	// PingTimeout closes a connection whose ping is not answered in time.
	// Default 3s.
	PingTimeout time.Duration
	// DownAfter is how long a member stays "suspect" (unreachable, being
	// redialled) before it is "down". Default 30s.
	DownAfter time.Duration
	// SyncInterval is the period of anti-entropy with one member (each in turn),
	// on top of the sync run on every new connection. Default 30s.
	SyncInterval time.Duration
	// AnnounceInterval republishes the last announcement (with a new
	// sequence number) so members see the node alive. Default 60s.
	AnnounceInterval time.Duration
	// History is how many recent announcements per node are kept for the
	// anti-entropy sync (1 to 1024). Default 256.
	History int
	// MaxRelays is how many directly connected members hold a circuit
	// relay reservation for this node. Default 3.
	MaxRelays int

	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
}

// ServiceName returns the mDNS service name of the community whose key is
// psk: "_hy" and 12 hex digits of a hash of the key. Nodes of different
// communities never answer each other's queries.
func ServiceName(psk []byte) string {
	h := sha256.Sum256(append([]byte("hypha-mdns-service\x00"), psk...))
	return "_hy" + hex.EncodeToString(h[:6]) + "._udp"
}

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if len(d.Key) != ed25519.PrivateKeySize {
		return d, fmt.Errorf("%w: Key is %d bytes, want an ed25519 private key of %d", ErrBadConfig, len(d.Key), ed25519.PrivateKeySize)
	}
	if len(d.PSK) != PSKSize {
		return d, fmt.Errorf("%w: PSK is %d bytes, want %d", ErrBadConfig, len(d.PSK), PSKSize)
	}
	if len(d.ListenAddrs) == 0 {
		d.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"}
	}
	for _, a := range d.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return d, fmt.Errorf("%w: listen address %q: %v", ErrBadConfig, a, err)
		}
	}
	for _, a := range d.Bootstrap {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return d, fmt.Errorf("%w: bootstrap address %q: %v", ErrBadConfig, a, err)
		}
	}
	if d.ServiceName == "" {
		d.ServiceName = ServiceName(d.PSK)
	}
	def := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	def(&d.PingInterval, 3*time.Second)
	def(&d.PingTimeout, 3*time.Second)
	def(&d.DownAfter, 30*time.Second)
	def(&d.SyncInterval, 30*time.Second)
	def(&d.AnnounceInterval, 60*time.Second)
	if d.History == 0 {
		d.History = 256
	}
	if d.History < 1 || d.History > maxMissPerEntry {
		return d, fmt.Errorf("%w: History %d, want 1 to %d", ErrBadConfig, d.History, maxMissPerEntry)
	}
	if d.MaxRelays <= 0 {
		d.MaxRelays = 3
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return d, nil
}
