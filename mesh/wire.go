package mesh

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Wire format versions and limits. Every message the mesh decodes from the
// network is bounded by one of these sizes before it is parsed.
const (
	// AnnouncementVersion is the current Announcement.Version.
	AnnouncementVersion = 1
	// SyncVersion is the version of the anti-entropy digest.
	SyncVersion = 1

	maxBodySize     = 16 << 10 // one announcement body
	maxEnvelopeSize = 24 << 10 // body (base64) + signature + framing
	maxDigestSize   = 1 << 20  // one digest (up to maxDigestOrigins origins)
	maxDigestOrigin = 4096     // origins in one digest
	maxMissPerEntry = 1024     // missing sequence numbers per origin in a digest

	maxNameLen    = 64
	maxRoles      = 16
	maxRoleLen    = 32
	maxModels     = 64
	maxModelName  = 128
	maxSensors    = 64
	maxSensorName = 64
	maxBioregion  = 128
)

// signingDomain separates announcement signatures from any other use of the
// node key.
const signingDomain = "hypha-mesh-announcement-v1\x00"

// Announcement is what a node tells the community about itself. It is
// gossiped on the announcement topic and replayed by the anti-entropy sync.
//
// The fields Version, Node, Epoch, Seq and Time are set by Node.Announce;
// the caller fills in the rest. An Announcement value is immutable once
// published: the Node never modifies one handed out in an Event or Member.
type Announcement struct {
	// Version of the announcement format (AnnouncementVersion).
	Version int `json:"v"`
	// Node is the peer ID (string form) of the node that announced.
	Node string `json:"node"`
	// Epoch identifies one run of the node (its start time in Unix
	// nanoseconds); sequence numbers restart at 1 in every epoch.
	Epoch int64 `json:"epoch"`
	// Seq is the per-node, per-epoch sequence number, starting at 1.
	Seq uint64 `json:"seq"`
	// Time is when the announcement was made (Unix milliseconds).
	Time int64 `json:"time"`

	// Name is the steward-given node name.
	Name string `json:"name,omitempty"`
	// Roles the node offers, e.g. "inference", "sensors", "relay".
	Roles []string `json:"roles,omitempty"`
	// Models the node serves, with their current load.
	Models []Model `json:"models,omitempty"`
	// Load is the overall load of the node, 0 (idle) to 1 (saturated).
	Load float64 `json:"load,omitempty"`
	// Sensors summarises current sensor readings by name (e.g.
	// "solar_w": 120.5).
	Sensors map[string]float64 `json:"sensors,omitempty"`
	// Bioregion is the bioregion the node accounts in.
	Bioregion string `json:"bioregion,omitempty"`
	// Location is where the node is, if the steward set it.
	Location *Location `json:"location,omitempty"`
}

// Model is one model a node serves.
type Model struct {
	Name string `json:"name"`
	// Hash identifies the exact weights (e.g. sha256 of the GGUF file).
	Hash string `json:"hash,omitempty"`
	// Load of this model's serving slots, 0 to 1.
	Load float64 `json:"load,omitempty"`
	// Queue is the number of requests waiting.
	Queue int `json:"queue,omitempty"`
}

// Location is a WGS84 position.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// clone returns a deep copy of a.
func (a *Announcement) clone() *Announcement {
	if a == nil {
		return nil
	}
	c := *a
	c.Roles = append([]string(nil), a.Roles...)
	c.Models = append([]Model(nil), a.Models...)
	if a.Sensors != nil {
		c.Sensors = make(map[string]float64, len(a.Sensors))
		for k, v := range a.Sensors {
			c.Sensors[k] = v
		}
	}
	if a.Location != nil {
		l := *a.Location
		c.Location = &l
	}
	return &c
}

// validate checks the bounds and invariants of a decoded announcement.
func (a *Announcement) validate() error {
	switch {
	case a.Version < 1:
		return fmt.Errorf("version %d: want >= 1", a.Version)
	case a.Seq == 0:
		return errors.New("seq 0: sequence numbers start at 1")
	case a.Epoch <= 0:
		return fmt.Errorf("epoch %d: want > 0", a.Epoch)
	case len(a.Name) > maxNameLen || !utf8.ValidString(a.Name):
		return fmt.Errorf("name %q: want valid UTF-8 of at most %d bytes", truncate(a.Name), maxNameLen)
	case len(a.Roles) > maxRoles:
		return fmt.Errorf("%d roles: at most %d", len(a.Roles), maxRoles)
	case len(a.Models) > maxModels:
		return fmt.Errorf("%d models: at most %d", len(a.Models), maxModels)
	case len(a.Sensors) > maxSensors:
		return fmt.Errorf("%d sensors: at most %d", len(a.Sensors), maxSensors)
	case len(a.Bioregion) > maxBioregion:
		return fmt.Errorf("bioregion of %d bytes: at most %d", len(a.Bioregion), maxBioregion)
	case !finite(a.Load) || a.Load < 0:
		return fmt.Errorf("load %v: want a finite value >= 0", a.Load)
	}
	if _, err := peer.Decode(a.Node); err != nil {
		return fmt.Errorf("node %q: %w", truncate(a.Node), err)
	}
	for _, r := range a.Roles {
		if r == "" || len(r) > maxRoleLen {
			return fmt.Errorf("role %q: want 1 to %d bytes", truncate(r), maxRoleLen)
		}
	}
	for _, m := range a.Models {
		if m.Name == "" || len(m.Name) > maxModelName || len(m.Hash) > maxModelName {
			return fmt.Errorf("model %q: want a name of 1 to %d bytes", truncate(m.Name), maxModelName)
		}
		if !finite(m.Load) || m.Load < 0 || m.Queue < 0 {
			return fmt.Errorf("model %q: negative load or queue", truncate(m.Name))
		}
	}
	for k, v := range a.Sensors {
		if k == "" || len(k) > maxSensorName || !finite(v) {
			return fmt.Errorf("sensor %q: want a name of 1 to %d bytes and a finite value", truncate(k), maxSensorName)
		}
	}
	if l := a.Location; l != nil {
		if !finite(l.Lat) || !finite(l.Lon) || l.Lat < -90 || l.Lat > 90 || l.Lon < -180 || l.Lon > 180 {
			return fmt.Errorf("location %v,%v: out of range", l.Lat, l.Lon)
		}
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// DecodeAnnouncement parses and validates an announcement body. It does not
// check any signature; use DecodeEnvelope for bytes from the network.
func DecodeAnnouncement(b []byte) (*Announcement, error) {
	if len(b) > maxBodySize {
		return nil, fmt.Errorf("decode announcement of %d bytes: %w (limit %d)", len(b), ErrTooLarge, maxBodySize)
	}
	var a Announcement
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("decode announcement: %w: %v", ErrBadMessage, err)
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("decode announcement: %w: %v", ErrBadMessage, err)
	}
	return &a, nil
}

// envelope is a signed announcement as it travels: the exact body bytes and
// the origin's signature over signingDomain+body.
type envelope struct {
	Version int    `json:"v"`
	Body    []byte `json:"body"`
	Sig     []byte `json:"sig"`
}

// signedAnnouncement is a verified envelope together with its decoded body.
type signedAnnouncement struct {
	raw    []byte // the encoded envelope, forwarded as is
	origin peer.ID
	a      *Announcement
}

// sealAnnouncement encodes and signs a with key.
func sealAnnouncement(a *Announcement, key crypto.PrivKey) (*signedAnnouncement, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("seal announcement: %w", err)
	}
	if len(body) > maxBodySize {
		return nil, fmt.Errorf("seal announcement of %d bytes: %w (limit %d)", len(body), ErrTooLarge, maxBodySize)
	}
	sig, err := key.Sign(append([]byte(signingDomain), body...))
	if err != nil {
		return nil, fmt.Errorf("seal announcement: %w", err)
	}
	raw, err := json.Marshal(envelope{Version: AnnouncementVersion, Body: body, Sig: sig})
	if err != nil {
		return nil, fmt.Errorf("seal announcement: %w", err)
	}
	id, err := peer.Decode(a.Node)
	if err != nil {
		return nil, fmt.Errorf("seal announcement: node %q: %w", a.Node, err)
	}
	return &signedAnnouncement{raw: raw, origin: id, a: a.clone()}, nil
}

// DecodeEnvelope parses a signed announcement as received from the network,
// checks the origin's signature and validates the body. The origin's public
// key is taken from its peer ID (ed25519 peer IDs embed the key).
func DecodeEnvelope(b []byte) (*Announcement, error) {
	s, err := decodeEnvelope(b)
	if err != nil {
		return nil, err
	}
	return s.a, nil
}

func decodeEnvelope(b []byte) (*signedAnnouncement, error) {
	if len(b) > maxEnvelopeSize {
		return nil, fmt.Errorf("decode envelope of %d bytes: %w (limit %d)", len(b), ErrTooLarge, maxEnvelopeSize)
	}
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode envelope: %w: %v", ErrBadMessage, err)
	}
	if e.Version < 1 {
		return nil, fmt.Errorf("decode envelope: %w: version %d", ErrBadMessage, e.Version)
	}
	a, err := DecodeAnnouncement(e.Body)
	if err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	id, _ := peer.Decode(a.Node) // validated above
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("decode envelope: node %s: %w: no public key in peer ID: %v", id, ErrBadMessage, err)
	}
	ok, err := pub.Verify(append([]byte(signingDomain), e.Body...), e.Sig)
	if err != nil || !ok {
		return nil, fmt.Errorf("decode envelope from %s seq %d: %w", id, a.Seq, ErrBadSignature)
	}
	return &signedAnnouncement{raw: append([]byte(nil), b...), origin: id, a: a}, nil
}

// digest is the anti-entropy request: for every origin the sender knows,
// the epoch, the highest sequence number it holds and the sequence numbers
// it is missing below that.
type digest struct {
	Version int           `json:"v"`
	Have    []digestEntry `json:"have"`
}

type digestEntry struct {
	Origin string   `json:"o"`
	Epoch  int64    `json:"e"`
	Hi     uint64   `json:"hi"`
	Miss   []uint64 `json:"miss,omitempty"`
}

// decodeDigest parses and validates an anti-entropy digest.
func decodeDigest(b []byte) (*digest, error) {
	if len(b) > maxDigestSize {
		return nil, fmt.Errorf("decode digest of %d bytes: %w (limit %d)", len(b), ErrTooLarge, maxDigestSize)
	}
	var d digest
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode digest: %w: %v", ErrBadMessage, err)
	}
	if d.Version < 1 {
		return nil, fmt.Errorf("decode digest: %w: version %d", ErrBadMessage, d.Version)
	}
	if len(d.Have) > maxDigestOrigin {
		return nil, fmt.Errorf("decode digest: %w: %d origins (limit %d)", ErrBadMessage, len(d.Have), maxDigestOrigin)
	}
	for _, e := range d.Have {
		if _, err := peer.Decode(e.Origin); err != nil {
			return nil, fmt.Errorf("decode digest: %w: origin %q: %v", ErrBadMessage, truncate(e.Origin), err)
		}
		if len(e.Miss) > maxMissPerEntry {
			return nil, fmt.Errorf("decode digest: %w: origin %s: %d missing (limit %d)", ErrBadMessage, e.Origin, len(e.Miss), maxMissPerEntry)
		}
		for _, m := range e.Miss {
			if m == 0 || m >= e.Hi {
				return nil, fmt.Errorf("decode digest: %w: origin %s: missing seq %d outside 1..%d", ErrBadMessage, e.Origin, m, e.Hi)
			}
		}
	}
	return &d, nil
}

// writeFrame writes b with a uvarint length prefix.
func writeFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readFrame reads one uvarint-length-prefixed frame of at most max bytes.
// It returns io.EOF only when the stream ends cleanly before a frame.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read frame length: %w: %v", ErrBadMessage, err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("read frame of %d bytes: %w (limit %d)", n, ErrTooLarge, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read frame of %d bytes: %w: %v", n, ErrBadMessage, err)
	}
	return b, nil
}
