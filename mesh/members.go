package mesh

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// State is a member's liveness as seen by this node.
type State int

const (
	// StateUp: at least one live connection (direct or relayed).
	StateUp State = iota + 1
	// StateSuspect: no connection; the node is redialling. After
	// Config.DownAfter a suspect member becomes down.
	StateSuspect
	// StateDown: unreachable for longer than Config.DownAfter. The node
	// keeps trying, less often.
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateSuspect:
		return "suspect"
	case StateDown:
		return "down"
	}
	return "unknown"
}

// MarshalText makes State appear as "up"/"suspect"/"down" in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reach tells how a member is connected.
type Reach int

const (
	// ReachNone: not connected.
	ReachNone Reach = iota
	// ReachDirect: a direct TCP connection.
	ReachDirect
	// ReachRelayed: only through a circuit relay (another member).
	ReachRelayed
)

func (r Reach) String() string {
	switch r {
	case ReachDirect:
		return "direct"
	case ReachRelayed:
		return "relayed"
	}
	return "none"
}

// MarshalText makes Reach appear as "none"/"direct"/"relayed" in JSON.
func (r Reach) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Member is a snapshot of what this node knows about another community
// node. Members are values; a snapshot never changes after it is returned.
type Member struct {
	ID    peer.ID `json:"id"`
	Name  string  `json:"name"`
	State State   `json:"state"`
	Reach Reach   `json:"reach"`
	// Addrs are the remote addresses of the live connections (or the last
	// known ones when not connected).
	Addrs []string `json:"addrs"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// LastSeen is the last time anything was heard from the member (a
	// ping answer, a connection, an announcement).
	LastSeen time.Time `json:"last_seen"`
	// RTT is the last liveness ping round-trip time (0 if none yet).
	RTT time.Duration `json:"rtt_ns"`
	// Announcement is the member's latest announcement, nil if none yet.
	Announcement *Announcement `json:"announcement,omitempty"`
}

// EventKind tells what an Event is about.
type EventKind int

const (
	// EventMember: a member appeared or its State or Reach changed.
	EventMember EventKind = iota + 1
	// EventAnnouncement: a new announcement arrived (or this node made one).
	EventAnnouncement
)

// Event is one change delivered to a Subscription.
type Event struct {
	Kind   EventKind
	Time   time.Time
	Member Member // EventMember: the member after the change
	// Announcement and Via are set for EventAnnouncement. Via is "gossip",
	// "sync" (anti-entropy) or "self".
	Announcement *Announcement
	Via          string
}

// Subscription delivers Events. C is buffered; when the subscriber falls
// behind, events are dropped (never blocking the mesh) and counted in
// Dropped. Close is idempotent and safe to call concurrently.
type Subscription struct {
	C <-chan Event

	c       chan Event
	dropped atomic.Uint64
	once    sync.Once
	unsub   func(*Subscription)
}

// Dropped reports how many events were dropped because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close stops delivery and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() { s.unsub(s) })
}

func (s *Subscription) send(e Event) {
	select {
	case s.c <- e:
	default:
		s.dropped.Add(1)
	}
}

// memberState is the node's record of a member; guarded by Node.mu.
type memberState struct {
	id        peer.ID
	state     State
	reach     Reach
	addrs     []string
	since     time.Time
	lastSeen  time.Time
	rtt       time.Duration
	ann       *Announcement
	connSince time.Time // when the member last became connected

	// redial bookkeeping
	nextDial  time.Time
	backoff   time.Duration
	dialing   bool
	nextUp    time.Time // next direct-upgrade attempt while relayed
	lastReset time.Time // last pubsub-watchdog reset
}

func (m *memberState) snapshot() Member {
	return Member{
		ID: m.id, State: m.state, Reach: m.reach,
		Addrs: append([]string(nil), m.addrs...), Since: m.since, LastSeen: m.lastSeen,
		RTT: m.rtt, Announcement: m.ann.clone(), Name: nameOf(m.ann),
	}
}

func nameOf(a *Announcement) string {
	if a == nil {
		return ""
	}
	return a.Name
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
}
