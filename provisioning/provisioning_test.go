package provisioning

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	// Cheap password hashes for the suite; TestPasswordHash checks the
	// production cost.
	argonCost.time, argonCost.memory = 1, 1024
	os.Exit(m.Run())
}

func newCommunity(t *testing.T) (string, *Community, ed25519.PrivateKey) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "village")
	c, priv, err := Init(dir, InitOptions{
		Name: "Wiesental", Bioregion: "Upper Rhine", Location: Location{Lat: 47.7, Lon: 7.8},
		StewardName: "Ada", Password: "correct horse battery", Now: t0,
		BootstrapPeers: []string{"/ip4/192.168.1.10/tcp/4001"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, c, priv
}

func TestPSKCompatibleWithLibp2p(t *testing.T) {
	k, err := NewPSK()
	if err != nil {
		t.Fatal(err)
	}
	enc := k.Encode()
	ref, err := pnet.DecodeV1PSK(bytes.NewReader(enc))
	if err != nil {
		t.Fatalf("libp2p rejects our psk file: %v", err)
	}
	if !bytes.Equal(ref, k[:]) {
		t.Fatal("libp2p decodes a different key")
	}
	got, err := ParsePSK(enc)
	if err != nil || got != k {
		t.Fatalf("ParsePSK(Encode()) = %x, %v", got, err)
	}
	if len(k.Fingerprint()) != 16 {
		t.Fatalf("fingerprint %q", k.Fingerprint())
	}
}

func TestParsePSKErrors(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "first line"},
		{"wrong header", "/key/swarm/psk/2.0.0/\n/base16/\n" + hex64, "first line"},
		{"no encoding", "/key/swarm/psk/1.0.0/", "first line"},
		{"unknown encoding", "/key/swarm/psk/1.0.0/\n/base32/\n" + hex64, "unknown encoding"},
		{"short", "/key/swarm/psk/1.0.0/\n/base16/\nabcd", "has 4 digits"},
		{"long", "/key/swarm/psk/1.0.0/\n/base16/\n" + hex64 + "00", "has 66 digits"},
		{"not hex", "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("zz", 32), "base16 key"},
		{"zero", "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("00", 32), "all zeros"},
		{"bad base64", "/key/swarm/psk/1.0.0/\n/base64/\n!!!", "base64 key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePSK([]byte(tc.in))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
	// CRLF files and base64 are accepted.
	if _, err := ParsePSK([]byte("/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + hex64 + "\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePSK([]byte("/key/swarm/psk/1.0.0/\n/base64/\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n")); err != nil {
		t.Fatal(err)
	}
}

func TestInitBakeLoad(t *testing.T) {
	dir, c, priv := newCommunity(t)
	if c.Manifest.Name != "Wiesental" || c.Manifest.Serial != 1 || len(c.Manifest.Stewards) != 1 {
		t.Fatalf("manifest %+v", c.Manifest)
	}
	if _, _, err := Init(dir, InitOptions{Name: "again", Password: "12345678"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	perm := t.TempDir()
	if err := BakePerm(dir, perm); err != nil {
		t.Fatal(err)
	}
	// The steward's private key never lands on the image, in any form.
	seed := priv.Seed()
	keyPEM, _ := os.ReadFile(filepath.Join(dir, StewardKey))
	filepath.WalkDir(perm, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, seed) || bytes.Contains(b, keyPEM) || d.Name() == StewardKey {
			t.Errorf("%s holds the steward private key", p)
		}
		return nil
	})
	for _, f := range []string{PSKFile, PasswordFile} {
		st, err := os.Stat(filepath.Join(perm, PermSubdir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, st.Mode(), err)
		}
	}
	got, err := LoadCommunity(perm)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != c.ID() || got.PSK != c.PSK || got.Manifest.Location.Lat != 47.7 {
		t.Fatalf("loaded %+v, want %+v", got.Manifest, c.Manifest)
	}
	if err := got.CheckStewardPassword("correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := got.CheckStewardPassword("wrong horse battery"); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := LoadCommunity(t.TempDir()); !errors.Is(err, ErrNotProvisioned) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("blank perm: %v, want ErrNotProvisioned and fs.ErrNotExist", err)
	}
	// A manifest without its PSK is damaged, not blank.
	os.Remove(filepath.Join(perm, PermSubdir, PSKFile))
	if _, err := LoadCommunity(perm); !errors.Is(err, ErrMalformed) || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "psk is missing") {
		t.Fatalf("perm without psk: %v", err)
	}
}

// tamper rewrites the baked manifest through f and returns LoadCommunity's error.
func tamper(t *testing.T, perm string, f func(sm *SignedManifest)) error {
	t.Helper()
	p := filepath.Join(perm, PermSubdir, ManifestFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := DecodeSignedManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	sm.Body, _ = sm.compactBody()
	f(sm)
	nb, _ := json.Marshal(sm)
	if err := os.WriteFile(p, nb, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCommunity(perm)
	return err
}

func TestLoadCommunityRejectsTampering(t *testing.T) {
	dir, _, _ := newCommunity(t)
	intruder, _ := NewStewardKey()
	for _, tc := range []struct {
		name string
		f    func(sm *SignedManifest)
		want error
		msg  string
	}{
		{"changed name", func(sm *SignedManifest) {
			sm.Body = bytes.Replace(sm.Body, []byte("Wiesental"), []byte("Wiesentak"), 1)
		}, ErrBadSignature, "forged or altered"},
		{"raised debt limit", func(sm *SignedManifest) {
			sm.Body = bytes.Replace(sm.Body, []byte(`"debt_limit":1000`), []byte(`"debt_limit":9000`), 1)
		}, ErrBadSignature, "forged or altered"},
		{"unsigned", func(sm *SignedManifest) { sm.Signatures = nil }, ErrNotEnoughSignatures, "0 valid steward signatures, threshold is 1"},
		{"signed by a stranger", func(sm *SignedManifest) {
			sm.Signatures = []Signature{signRaw(sm, intruder)}
		}, ErrNotEnoughSignatures, "threshold is 1"},
		{"intruder adds itself as steward", func(sm *SignedManifest) {
			m, _ := sm.Manifest()
			m.Stewards = []Steward{{Name: "x", PublicKey: PublicKey(intruder.Public().(ed25519.PublicKey))}}
			nb, _ := json.Marshal(m)
			sm.Body = nb // signature of the founder no longer matches; the intruder's key is not counted
			sm.Signatures = append(sm.Signatures, signRaw(sm, intruder))
		}, nil, ""}, // self-consistent forgery: only VerifyUpdate / the baked anchor stops it (see TestUpdates)
		{"junk signature appended for the founder's key", func(sm *SignedManifest) {
			// Two signatures by one key: the valid one counts, the junk is ignored.
			sm.Signatures = append([]Signature{{Key: sm.Signatures[0].Key, Sig: make([]byte, 64)}}, sm.Signatures...)
		}, nil, ""},
		{"unknown field", func(sm *SignedManifest) {
			sm.Body = bytes.Replace(sm.Body, []byte(`{"version"`), []byte(`{"evil":1,"version"`), 1)
		}, ErrMalformed, "unknown field"},
		{"future version", func(sm *SignedManifest) {
			sm.Body = bytes.Replace(sm.Body, []byte(`"version":1`), []byte(`"version":2`), 1)
		}, ErrUnsupportedVersion, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			perm := t.TempDir()
			if err := BakePerm(dir, perm); err != nil {
				t.Fatal(err)
			}
			err := tamper(t, perm, tc.f)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("self-consistent manifest rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	t.Run("corrupt psk", func(t *testing.T) {
		perm := t.TempDir()
		BakePerm(dir, perm)
		os.WriteFile(filepath.Join(perm, PermSubdir, PSKFile), []byte("/key/swarm/psk/1.0.0/\n/base16/\nxyz\n"), 0o600)
		if _, err := LoadCommunity(perm); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "psk") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestUpdatesNeedStewardThreshold(t *testing.T) {
	dir, c0, ada := newCommunity(t)
	perm := t.TempDir()
	if err := BakePerm(dir, perm); err != nil {
		t.Fatal(err)
	}
	bob, _ := NewStewardKey()
	bobPub := PublicKey(bob.Public().(ed25519.PublicKey))

	// Ada invites Bob as steward; the update adding him needs only Ada (threshold 1).
	tok, err := NewInvite(c0.Manifest, ada, RoleSteward, bobPub, "Bob", 48*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	add, err := AddStewardFromInvite(c0.Manifest, tok, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if done, err := ProposeUpdate(dir, ada, t0.Add(time.Hour), add); err != nil || !done {
		t.Fatalf("add steward: done=%v err=%v", done, err)
	}
	c1, _ := OpenDir(dir)
	if c1.Manifest.Serial != 2 || !c1.Manifest.IsSteward(bobPub) {
		t.Fatalf("serial 2: %+v", c1.Manifest)
	}
	// The box accepts serial 2 over serial 1.
	b1, _ := c1.Signed.Encode()
	if _, err := ApplyUpdate(perm, b1); err != nil {
		t.Fatal(err)
	}
	// Raise the threshold to 2: every manifest must also verify on its own,
	// so this needs both signatures.
	if done, err := ProposeUpdate(dir, ada, t0.Add(2*time.Hour), func(m *Manifest) error { m.StewardThreshold = 2; return nil }); err != nil || done {
		t.Fatalf("threshold 2 by Ada alone: done=%v err=%v, want pending", done, err)
	}
	if done, err := SignPending(dir, bob); err != nil || !done {
		t.Fatalf("threshold 2 signed by Bob: done=%v err=%v", done, err)
	}
	c2, _ := OpenDir(dir)
	// Now Ada alone cannot change the debt limit: it stays pending.
	done, err := ProposeUpdate(dir, ada, t0.Add(3*time.Hour), func(m *Manifest) error { m.Credit.DebtLimit = 5000; return nil })
	if err != nil || done {
		t.Fatalf("single signature: done=%v err=%v, want pending", done, err)
	}
	pb, _ := os.ReadFile(filepath.Join(dir, PendingFile))
	pending, _ := DecodeSignedManifest(pb)
	if _, err := VerifyUpdate(c2.Signed, pending); !errors.Is(err, ErrNotEnoughSignatures) {
		t.Fatalf("pending verifies: %v", err)
	}
	if done, err := SignPending(dir, bob); err != nil || !done {
		t.Fatalf("bob signs: done=%v err=%v", done, err)
	}
	c3, _ := OpenDir(dir)
	if c3.Manifest.Credit.DebtLimit != 5000 || c3.Manifest.Serial != 4 {
		t.Fatalf("serial 4: %+v", c3.Manifest)
	}
	if _, err := SignPending(dir, bob); !errors.Is(err, ErrNoPending) {
		t.Fatalf("nothing pending: %v", err)
	}
	// Stale: serial 2 again after serial 4.
	b3, _ := c3.Signed.Encode()
	if _, err := ApplyUpdate(perm, b3); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyUpdate(perm, b1); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "serial 2 is not newer than current serial 4") {
		t.Fatalf("replay: %v", err)
	}
	// Another community's manifest is refused.
	odir, _, _ := newCommunity(t)
	oc, _ := OpenDir(odir)
	if _, err := VerifyUpdate(c3.Signed, oc.Signed); !errors.Is(err, ErrWrongCommunity) {
		t.Fatalf("other community: %v", err)
	}
	// An intruder's self-signed successor (it names itself the only steward)
	// verifies on its own but is not an update: no current steward signed it.
	intr, _ := NewStewardKey()
	fake, _ := Successor(c3.Signed, t0.Add(5*time.Hour))
	fake.Stewards = []Steward{{PublicKey: PublicKey(intr.Public().(ed25519.PublicKey))}}
	fake.StewardThreshold = 1
	fsm, _ := NewSignedManifest(fake)
	if err := fsm.Sign(intr); err != nil {
		t.Fatal(err)
	}
	fb, _ := fsm.Encode()
	if _, err := ApplyUpdate(perm, fb); !errors.Is(err, ErrNotEnoughSignatures) || !strings.Contains(err.Error(), "by current stewards: 0 valid") {
		t.Fatalf("hostile takeover: %v", err)
	}
	// A wrong chain link is refused.
	bad, _ := Successor(c3.Signed, t0.Add(6*time.Hour))
	bad.Previous = strings.Repeat("0", 64)
	bsm, _ := NewSignedManifest(bad)
	bsm.Sign(ada)
	bsm.Sign(bob)
	if _, err := VerifyUpdate(c3.Signed, bsm); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "names previous") {
		t.Fatalf("broken chain: %v", err)
	}
	got, _ := LoadCommunity(perm)
	if got.Manifest.Serial != 4 {
		t.Fatalf("box at serial %d after refused updates, want 4", got.Manifest.Serial)
	}
}

func TestInvites(t *testing.T) {
	dir, c, ada := newCommunity(t)
	_ = dir
	m := c.Manifest
	tok, err := NewInvite(m, ada, RoleBox, nil, "kitchen box", 72*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := VerifyInvite(m, tok, t0.Add(71*time.Hour))
	if err != nil || inv.Role != RoleBox || inv.Name != "kitchen box" {
		t.Fatalf("valid invite: %+v %v", inv, err)
	}
	_, oc, _ := newCommunity(t)
	stranger, _ := NewStewardKey()
	if _, err := NewInvite(m, stranger, RoleBox, nil, "", time.Hour, t0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("stranger issues: %v", err)
	}
	forged := func() string {
		// A stranger signs an invite naming itself issuer.
		om := m.Clone()
		om.Stewards = append(om.Stewards, Steward{PublicKey: PublicKey(stranger.Public().(ed25519.PublicKey))})
		s, _ := NewInvite(om, stranger, RoleBox, nil, "", time.Hour, t0)
		return s
	}()
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, invitePrefix), ".")
	flipped := []byte(payload)
	flipped[10] ^= 1
	for _, tc := range []struct {
		name, tok string
		now       time.Time
		want      error
		msg       string
	}{
		{"expired", tok, t0.Add(72 * time.Hour), ErrExpired, "expired at 2026-11-04T12:00:00Z"},
		{"from the future", tok, t0.Add(-time.Hour), ErrExpired, "in the future"},
		{"other community", tok, t0, ErrWrongCommunity, "for community"},
		{"forged issuer", forged, t0, ErrBadSignature, "is not a steward"},
		{"tampered payload", invitePrefix + string(flipped) + "." + sig, t0, ErrMalformed, "invite token"},
		{"truncated", tok[:len(tok)-5], t0, ErrMalformed, "invite token"},
		{"short signature", tok[:len(tok)-4], t0, ErrMalformed, "signature is 61 bytes"},
		{"no prefix", "hello", t0, ErrMalformed, "does not start with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := m
			if tc.name == "other community" {
				mm = oc.Manifest
			}
			_, err := VerifyInvite(mm, tc.tok, tc.now)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
	// A payload change that still decodes must fail the signature.
	inv2, p2, _, _ := DecodeInvite(tok)
	inv2.Role = RoleSteward
	inv2.Subject = PublicKey(stranger.Public().(ed25519.PublicKey))
	p3, _ := json.Marshal(inv2)
	_ = p2
	swapped := invitePrefix + b64(p3) + "." + sig
	if _, err := VerifyInvite(m, swapped, t0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("role escalation: %v", err)
	}
	if _, err := NewInvite(m, ada, RoleSteward, nil, "", time.Hour, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("steward invite without key: %v", err)
	}
	if _, err := NewInvite(m, ada, RoleBox, nil, "", 40*24*time.Hour, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("too long ttl: %v", err)
	}
}

func TestManifestValidation(t *testing.T) {
	k, _ := NewStewardKey()
	for _, tc := range []struct {
		name string
		f    func(m *Manifest)
		msg  string
	}{
		{"no name", func(m *Manifest) { m.Name = " " }, "name is empty"},
		{"control char", func(m *Manifest) { m.Name = "a\x07b" }, "control character"},
		{"lat", func(m *Manifest) { m.Location.Lat = 91 }, "WGS84"},
		{"threshold", func(m *Manifest) { m.StewardThreshold = 2 }, "steward_threshold 2 with 1 stewards"},
		{"dup steward", func(m *Manifest) { m.Stewards = append(m.Stewards, m.Stewards[0]) }, "listed twice"},
		{"clove k>n", func(m *Manifest) { m.Clove = CloveParams{N: 2, K: 3, L: 3} }, "clove n=2 k=3"},
		{"share", func(m *Manifest) { m.Credit.CommonsShare = 1 }, "commons_share"},
		{"peer", func(m *Manifest) { m.BootstrapPeers = []string{"1.2.3.4:4001"} }, "not a multiaddr"},
		{"reputation", func(m *Manifest) { m.Reputation.Threshold = 2 }, "reputation"},
		{"serial 0", func(m *Manifest) { m.Serial = 0 }, "serial is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := DefaultManifest("x", Steward{PublicKey: PublicKey(k.Public().(ed25519.PublicKey))}, t0)
			tc.f(m)
			err := m.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}

func TestPasswordHash(t *testing.T) {
	saved := argonCost
	argonCost.time, argonCost.memory = argonTime, argonMemory
	h, err := HashStewardPassword("s3cret-pass")
	argonCost = saved
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q", h)
	}
	if err := CheckStewardPassword(h, "s3cret-pass"); err != nil {
		t.Fatal(err)
	}
	if err := CheckStewardPassword(h, "s3cret-pasS"); !errors.Is(err, ErrBadPassword) {
		t.Fatal(err)
	}
	if _, err := HashStewardPassword("short"); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=3,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if err := CheckStewardPassword(bad, "x"); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
