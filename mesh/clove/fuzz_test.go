package clove

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// fixedPath returns h identities derived from fixed seeds, so fuzz corpora
// stay meaningful between runs.
func fixedPath(t testing.TB, h int) ([]*Identity, []pathHop) {
	ids := make([]*Identity, h)
	hops := make([]pathHop, h)
	for i := range ids {
		priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = NewIdentity(priv); err != nil {
			t.Fatal(err)
		}
		hops[i] = pathHop{id: ids[i].ID(), pub: ids[i].priv.PublicKey()}
	}
	return ids, hops
}

func isDecodeErr(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrTampered)
}

// FuzzPeel feeds arbitrary packets to the first hop of a 3-hop path.
func FuzzPeel(f *testing.F) {
	const H = 3
	ids, hops := fixedPath(f, H)
	pkt, _, err := buildPacket(hops, time.Now().Add(time.Hour).UnixMilli(), []byte("seed"), 1024)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pkt)
	p, _ := peel(ids[0].priv, pkt, H)
	f.Add(p.out)
	f.Add(make([]byte, 1024))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, id := range ids[:2] {
			p, err := peel(id.priv, b, H)
			if err != nil {
				if !isDecodeErr(err) {
					t.Fatalf("error %v wraps neither ErrMalformed nor ErrTampered", err)
				}
				continue
			}
			if len(p.out) != len(b) && p.r.kind == hopForward {
				t.Fatalf("forwarded packet changed size %d -> %d", len(b), len(p.out))
			}
		}
	})
}

// FuzzPeelDeliver fuzzes the payload framing the serving node reads.
func FuzzPeelDeliver(f *testing.F) {
	ids, hops := fixedPath(f, 1)
	f.Add([]byte("seed"), 1024)
	f.Add([]byte{}, 512)
	f.Fuzz(func(t *testing.T, payload []byte, size int) {
		if size < 0 || size > 1<<16 {
			return
		}
		pkt, _, err := buildPacket(hops, 1, payload, size)
		if err != nil {
			return
		}
		p, err := peel(ids[0].priv, pkt, 1)
		if !pow2(size) {
			if err == nil {
				t.Fatalf("accepted a %d-byte packet", size)
			}
			return
		}
		if err != nil || !bytes.Equal(p.out, payload) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseRouting(f *testing.F) {
	_, hops := fixedPath(f, 1)
	f.Add(routing{kind: hopForward, deadline: 5, next: hops[0].id}.marshal())
	f.Add(routing{kind: hopDeliver}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRouting(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		if !bytes.Equal(r.marshal(), b) {
			t.Fatal("routing does not re-encode to the same bytes")
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	p := DefaultParams()
	f.Add(frame{kind: frameForward, data: make([]byte, 1024)}.marshal())
	f.Add(frame{kind: frameReply, data: make([]byte, 2048)}.marshal())
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := readFrame(bytes.NewReader(b), p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !p.validClass(len(fr.data)) || !bytes.Equal(fr.marshal(), b[:frameHeaderLen+len(fr.data)]) {
			t.Fatal("frame does not round-trip")
		}
	})
}

// FuzzOpenReply feeds arbitrary reply bodies to the asker.
func FuzzOpenReply(f *testing.F) {
	ids, hops := fixedPath(f, 3)
	pkt, keys, err := buildPacket(hops, 1, []byte("q"), 1024)
	if err != nil {
		f.Fatal(err)
	}
	var got []hopKeys
	for _, id := range ids {
		p, err := peel(id.priv, pkt, 3)
		if err != nil {
			f.Fatal(err)
		}
		got, pkt = append(got, p.keys), p.out
	}
	body, _ := sealReply(&got[2], frameReply, []byte("answer"), 1024)
	for i := 1; i >= 0; i-- {
		replyLayer(&got[i].reply, frameReply, body, body)
	}
	f.Add(body)
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := openReply(keys, frameReply, b)
		if err != nil {
			if !isDecodeErr(err) {
				t.Fatal(err)
			}
			return
		}
		if len(out) > len(b) {
			t.Fatal("reply longer than its body")
		}
	})
}

func FuzzCandidate(f *testing.F) {
	ids, _ := fixedPath(f, 1)
	b, _ := ids[0].Candidate().MarshalBinary()
	f.Add(b)
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Candidate
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		out, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("candidate does not round-trip: %v", err)
		}
		_ = c.Verify()
	})
}
