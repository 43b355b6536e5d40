package provisioning

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// PSKSize is the length in bytes of a community's pre-shared mesh key.
const PSKSize = 32

// PSK is a community's pre-shared mesh key. The libp2p private-network
// protector (pnet) takes it as PSK[:].
type PSK [PSKSize]byte

const (
	pskHeader = "/key/swarm/psk/1.0.0/"
	pskBase16 = "/base16/"
	pskBase64 = "/base64/"
	pskBin    = "/bin/"
)

// NewPSK returns a fresh random key.
func NewPSK() (PSK, error) {
	var k PSK
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("new psk: %w", err)
	}
	return k, nil
}

// Encode returns the key in the swarm.key file format of libp2p
// ("/key/swarm/psk/1.0.0/", "/base16/", 64 hex digits, each on a line), which
// libp2p's pnet.DecodeV1PSK and IPFS's swarm.key readers accept.
func (k PSK) Encode() []byte {
	return []byte(pskHeader + "\n" + pskBase16 + "\n" + hex.EncodeToString(k[:]) + "\n")
}

// Fingerprint is a short, non-secret identifier of the key (first 8 bytes of
// its SHA-256), safe to log and to show on the LAN page.
func (k PSK) Fingerprint() string {
	return fingerprint(k[:])
}

// ParsePSK decodes a key file in libp2p's V1 format. It accepts the base16,
// base64 and bin encodings that pnet.DecodeV1PSK accepts, but is stricter:
// the key must be exactly 32 bytes and nothing but whitespace may follow it.
func ParsePSK(b []byte) (PSK, error) {
	var k PSK
	fail := func(format string, a ...any) (PSK, error) {
		return PSK{}, fmt.Errorf("parse psk: %s: %w", fmt.Sprintf(format, a...), ErrMalformed)
	}
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(bytes.TrimRight(line, "\r")) != pskHeader {
		return fail("first line must be %q", pskHeader)
	}
	enc, rest, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return fail("missing encoding line")
	}
	switch string(bytes.TrimRight(enc, "\r")) {
	case pskBase16:
		s := bytes.TrimSpace(rest)
		if len(s) != 2*PSKSize {
			return fail("base16 key has %d digits, want %d", len(s), 2*PSKSize)
		}
		if _, err := hex.Decode(k[:], s); err != nil {
			return fail("base16 key: %v", err)
		}
	case pskBase64:
		s := bytes.TrimSpace(rest)
		d, err := base64.StdEncoding.DecodeString(string(s))
		if err != nil {
			return fail("base64 key: %v", err)
		}
		if len(d) != PSKSize {
			return fail("base64 key is %d bytes, want %d", len(d), PSKSize)
		}
		copy(k[:], d)
	case pskBin:
		if len(rest) < PSKSize || len(bytes.TrimSpace(rest[PSKSize:])) != 0 {
			return fail("bin key is %d bytes, want %d", len(rest), PSKSize)
		}
		copy(k[:], rest[:PSKSize])
	default:
		return fail("unknown encoding %q", bytes.TrimRight(enc, "\r"))
	}
	if k == (PSK{}) {
		return fail("key is all zeros")
	}
	return k, nil
}
