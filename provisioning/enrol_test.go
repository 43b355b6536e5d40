package provisioning

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/pnet"
)

func TestVerifyEnrolment(t *testing.T) {
	_, c, ada := newCommunity(t)
	node, _ := NewStewardKey() // any ed25519 key stands for a node identity
	nodeKey := PublicKey(node.Public().(ed25519.PublicKey))
	other, _ := NewStewardKey()
	otherKey := PublicKey(other.Public().(ed25519.PublicKey))

	bound, _ := NewInvite(c.Manifest, ada, RoleBox, nodeKey, "pump house", time.Hour, t0)
	open, _ := NewInvite(c.Manifest, ada, RoleBox, nil, "", time.Hour, t0)
	steward, _ := NewInvite(c.Manifest, ada, RoleSteward, otherKey, "", time.Hour, t0)
	if _, err := VerifyEnrolment(c.Manifest, bound, nodeKey, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyEnrolment(c.Manifest, open, otherKey, t0); err != nil {
		t.Fatalf("unbound invite: %v", err)
	}
	if _, err := VerifyEnrolment(c.Manifest, bound, otherKey, t0); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "bound to node") {
		t.Fatalf("invite used by another node: %v", err)
	}
	if _, err := VerifyEnrolment(c.Manifest, steward, otherKey, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("steward invite as box enrolment: %v", err)
	}
}

// TestManifestFixtureV1 keeps version-1 manifests readable: the fixture was
// written by this code's first release and must verify forever.
func TestManifestFixtureV1(t *testing.T) {
	b, err := os.ReadFile("testdata/manifest-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	sm, err := DecodeSignedManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sm.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Fixture Valley" || m.CommunityID != "00112233445566778899aabbccddeeff" || m.Clove != (CloveParams{N: 5, K: 3, L: 3}) ||
		!m.IsSteward(PublicKey(fixedSteward().Public().(ed25519.PublicKey))) {
		t.Fatalf("fixture manifest %+v", m)
	}
}

func fixedSteward() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)) }

// TestPSKSeparatesCommunities: libp2p's private-network protector keyed
// with our PSK lets two boxes of one community talk, and turns the traffic
// of a box of another community into noise (its handshake then fails).
func TestPSKSeparatesCommunities(t *testing.T) {
	a, _ := NewPSK()
	b, _ := NewPSK()
	for _, tc := range []struct {
		name     string
		k1, k2   PSK
		readable bool
	}{{"same community", a, a, true}, {"other community", a, b, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				pc, err := pnet.NewProtectedConn(tc.k2[:], c)
				if err != nil {
					got <- nil
					return
				}
				buf := make([]byte, 24)
				io.ReadFull(pc, buf)
				got <- buf
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pc, err := pnet.NewProtectedConn(tc.k1[:], c)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("/multistream/1.0.0\nhey!\n")
			pc.Write(msg)
			if r := <-got; bytes.Equal(r, msg) != tc.readable {
				t.Fatalf("readable=%v, got %q", !tc.readable, r)
			}
		})
	}
}

func TestRules(t *testing.T) {
	b, _ := os.ReadFile("testdata/manifest-v1.json")
	sm, _ := DecodeSignedManifest(b)
	m, err := sm.Verify()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range m.Rules() {
		got[r.Name] = r.Value
	}
	for k, v := range map[string]string{
		"debt limit": "1000 spore", "commons share": "5.0% to commons", "manifest updates": "1 of 1 stewards",
		"anonymous requests": "5 cloves, any 3 rebuild, 3-hop paths", "solar discount": "50%",
	} {
		if got[k] != v {
			t.Errorf("rule %q = %q, want %q", k, got[k], v)
		}
	}
}
