package mesh

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testKey returns a deterministic libp2p key and its peer ID.
func testKey(t testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, id
}

func testAnnouncement(id peer.ID, epoch int64, seq uint64) *Announcement {
	return &Announcement{
		Version: AnnouncementVersion, Node: id.String(), Epoch: epoch, Seq: seq, Time: 1700000000000,
		Name: "kitchen-pc", Roles: []string{"inference", "sensors"},
		Models:    []Model{{Name: "qwen2.5-0.5b", Hash: "sha256:abc", Load: 0.25, Queue: 1}},
		Load:      0.5,
		Sensors:   map[string]float64{"solar_w": 120.5, "battery_pct": 81},
		Bioregion: "cascadia", Location: &Location{Lat: 47.6, Lon: -122.3},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	sk, id := testKey(t, 1)
	a := testAnnouncement(id, 42, 7)
	s, err := sealAnnouncement(a, sk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnvelope(s.raw)
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(a)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("round trip changed the announcement:\n got %s\nwant %s", gj, wj)
	}
}

func TestEnvelopeRejects(t *testing.T) {
	sk, id := testKey(t, 1)
	sk2, _ := testKey(t, 2)
	good, err := sealAnnouncement(testAnnouncement(id, 1, 1), sk)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := sealAnnouncement(testAnnouncement(id, 1, 1), sk2) // signed by another key
	if err != nil {
		t.Fatal(err)
	}
	var e envelope
	if err := json.Unmarshal(good.raw, &e); err != nil {
		t.Fatal(err)
	}
	tampered := e
	tampered.Body = bytes.Replace(e.Body, []byte("kitchen-pc"), []byte("evil-pc!!!"), 1)
	tb, _ := json.Marshal(tampered)
	badSeq := *testAnnouncement(id, 1, 1)
	badSeq.Seq = 0
	badSeqBody, _ := json.Marshal(badSeq)
	badLoc := *testAnnouncement(id, 1, 1)
	badLoc.Location = &Location{Lat: 91}
	badLocBody, _ := json.Marshal(badLoc)

	for _, tc := range []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"forged signature", forged.raw, ErrBadSignature, "bad signature"},
		{"tampered body", tb, ErrBadSignature, "bad signature"},
		{"not json", []byte("hello"), ErrBadMessage, "decode envelope"},
		{"version 0", []byte(`{"v":0}`), ErrBadMessage, "version 0"},
		{"too large", bytes.Repeat([]byte{' '}, maxEnvelopeSize+1), ErrTooLarge, "limit"},
		{"seq 0", mustEnv(t, badSeqBody), ErrBadMessage, "seq 0"},
		{"bad location", mustEnv(t, badLocBody), ErrBadMessage, "location 91"},
		{"bad node", mustEnv(t, []byte(`{"v":1,"node":"xyz","epoch":1,"seq":1}`)), ErrBadMessage, `node "xyz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEnvelope(tc.in)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
}

func mustEnv(t *testing.T, body []byte) []byte {
	b, err := json.Marshal(envelope{Version: 1, Body: body, Sig: make([]byte, 64)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeDigestRejects(t *testing.T) {
	_, id := testKey(t, 1)
	for _, tc := range []struct {
		name, in, msg string
	}{
		{"miss above hi", `{"v":1,"have":[{"o":"` + id.String() + `","e":1,"hi":5,"miss":[5]}]}`, "missing seq 5 outside 1..5"},
		{"miss zero", `{"v":1,"have":[{"o":"` + id.String() + `","e":1,"hi":5,"miss":[0]}]}`, "missing seq 0"},
		{"bad origin", `{"v":1,"have":[{"o":"nope","e":1,"hi":5}]}`, `origin "nope"`},
		{"version", `{"v":0}`, "version 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeDigest([]byte(tc.in))
			if !errors.Is(err, ErrBadMessage) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrBadMessage mentioning %q", err, tc.msg)
			}
		})
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, s := range []string{"a", "", strings.Repeat("x", 300)} {
		if err := writeFrame(&buf, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for _, want := range []string{"a", "", strings.Repeat("x", 300)} {
		got, err := readFrame(r, 1000)
		if err != nil || string(got) != want {
			t.Fatalf("readFrame = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readFrame(r, 1000); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	buf.Reset()
	_ = writeFrame(&buf, make([]byte, 2000))
	if _, err := readFrame(bufio.NewReader(&buf), 1000); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized frame: %v, want ErrTooLarge", err)
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{5, 'a'})), 1000); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("truncated frame: %v, want ErrBadMessage", err)
	}
}

// FuzzDecodeEnvelope: no input panics, and whatever decodes re-validates.
func FuzzDecodeEnvelope(f *testing.F) {
	sk, id := testKey(f, 1)
	s, err := sealAnnouncement(testAnnouncement(id, 1, 1), sk)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.raw)
	f.Add([]byte(`{"v":1,"body":"e30=","sig":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if err := a.validate(); err != nil {
			t.Fatalf("decoded announcement does not validate: %v", err)
		}
	})
}

// FuzzDecodeAnnouncement covers the body decoder on its own (the signature
// check would otherwise stop the fuzzer before the body's validation).
func FuzzDecodeAnnouncement(f *testing.F) {
	_, id := testKey(f, 1)
	b, _ := json.Marshal(testAnnouncement(id, 1, 1))
	f.Add(b)
	f.Add([]byte(`{"v":1,"node":"` + id.String() + `","epoch":1,"seq":1,"sensors":{"":1}}`))
	f.Add([]byte(`{"v":2,"node":"` + id.String() + `","epoch":1,"seq":1,"location":{"lat":1e400}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAnnouncement(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		// A valid announcement survives a round trip.
		again, _ := json.Marshal(a)
		if _, err := DecodeAnnouncement(again); err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
	})
}

// FuzzDecodeDigest: no panic; accepted digests respect the limits the
// responder relies on.
func FuzzDecodeDigest(f *testing.F) {
	_, id := testKey(f, 1)
	d, _ := json.Marshal(digest{Version: 1, Have: []digestEntry{{Origin: id.String(), Epoch: 1, Hi: 9, Miss: []uint64{3, 4}}}})
	f.Add(d)
	f.Add([]byte(`{"v":1,"have":[]}`))
	f.Add([]byte(`{"v":1,"have":[{"o":"","hi":18446744073709551615}]}`))
	// A responder's store (read-only below): 20 announcements, window 16.
	st := newStore(16)
	sk, _ := testKey(f, 1)
	for seq := uint64(1); seq <= 20; seq++ {
		s, _ := sealAnnouncement(testAnnouncement(id, 1, seq), sk)
		st.add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDigest(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if len(d.Have) > maxDigestOrigin {
			t.Fatalf("%d origins accepted", len(d.Have))
		}
		for _, e := range d.Have {
			if len(e.Miss) > maxMissPerEntry {
				t.Fatalf("%d missing accepted", len(e.Miss))
			}
		}
		// The responder must cope with any accepted digest.
		if got := st.missing(d, 100); len(got) > 16 {
			t.Fatalf("missing returned %d, store holds at most 16", len(got))
		}
	})
}

// FuzzReadFrame: the sync stream framing never panics or over-allocates.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{3, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for range 100 {
			fr, err := readFrame(r, 64)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error without a sentinel: %v", err)
				}
				return
			}
			if len(fr) > 64 {
				t.Fatalf("frame of %d bytes over the limit", len(fr))
			}
		}
	})
}

// BenchmarkAnnouncement measures what every announcement costs: sealing
// (JSON + ed25519 signature) at the origin, and decoding with signature
// verification at every receiver (the GossipSub validator and the sync).
func BenchmarkAnnouncement(b *testing.B) {
	sk, id := testKey(b, 1)
	a := testAnnouncement(id, 1, 1)
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sealAnnouncement(a, sk); err != nil {
				b.Fatal(err)
			}
		}
	})
	s, _ := sealAnnouncement(a, sk)
	b.Run("decode-verify", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s.raw)))
		for b.Loop() {
			if _, err := decodeEnvelope(s.raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
