package provisioning

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// fixedKey is a deterministic steward key for fuzz seeds.
var fixedKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

func fixedManifest(f *testing.F) (*Manifest, *SignedManifest) {
	m, err := DefaultManifest("fuzzville", Steward{Name: "f", PublicKey: PublicKey(fixedKey.Public().(ed25519.PublicKey))}, t0)
	if err != nil {
		f.Fatal(err)
	}
	m.CommunityID = "00112233445566778899aabbccddeeff"
	sm, err := NewSignedManifest(m)
	if err != nil {
		f.Fatal(err)
	}
	if err := sm.Sign(fixedKey); err != nil {
		f.Fatal(err)
	}
	return m, sm
}

func FuzzManifest(f *testing.F) {
	_, sm := fixedManifest(f)
	good, _ := sm.Encode()
	f.Add(good)
	f.Add([]byte(`{"manifest":{},"signatures":[]}`))
	f.Add([]byte(`{"manifest":[1],"signatures":null}`))
	f.Add(bytes.Replace(good, []byte("fuzzville"), []byte("fuzzvillf"), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSignedManifest(b)
		if err != nil {
			return
		}
		m, err := s.Verify()
		if err != nil {
			return
		}
		// Whatever verifies must survive a re-encode and verify as an
		// update of nothing older than itself.
		if err := m.Validate(); err != nil {
			t.Fatalf("verified manifest does not validate: %v", err)
		}
		enc, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeSignedManifest(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if _, err := s2.Verify(); err != nil {
			t.Fatalf("re-encoded manifest no longer verifies: %v", err)
		}
		if _, err := VerifyUpdate(s, s2); err == nil {
			t.Fatal("a manifest is accepted as an update of itself")
		}
	})
}

func FuzzInvite(f *testing.F) {
	m, _ := fixedManifest(f)
	tok, err := NewInvite(m, fixedKey, RoleBox, nil, "seed", time.Hour, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("hypha-invite1.e30.AAAA")
	f.Add("hypha-invite1..")
	f.Add(tok[:len(tok)-3] + "abc")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := VerifyInvite(m, s, t0.Add(time.Minute))
		if err != nil {
			return
		}
		if inv.Community != m.CommunityID || !m.IsSteward(inv.Issuer) || !inv.Expires.After(t0) {
			t.Fatalf("accepted invite breaks a rule: %+v", inv)
		}
	})
}

func FuzzParsePSK(f *testing.F) {
	k, _ := NewPSK()
	f.Add(k.Encode())
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"))
	f.Add(append([]byte("/key/swarm/psk/1.0.0/\n/bin/\n"), bytes.Repeat([]byte{1}, 32)...))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePSK(b)
		if err != nil {
			return
		}
		// What we accept, libp2p reads as the same key.
		ref, err := pnet.DecodeV1PSK(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("we accept %q, libp2p rejects it: %v", b, err)
		}
		if !bytes.Equal(ref, k[:]) {
			t.Fatalf("we read %x, libp2p reads %x", k, ref)
		}
		k2, err := ParsePSK(k.Encode())
		if err != nil || k2 != k {
			t.Fatal("round trip")
		}
	})
}
