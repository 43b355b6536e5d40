package clove

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestOnionPeelEveryHop(t *testing.T) {
	for _, L := range []int{1, 2, 3, 5} {
		H := L + 1
		ids, hops := testPath(t, H)
		payload := []byte("the clove inside the onion, never visible to a relay")
		const size = 2048
		deadline := time.Now().Add(time.Minute).UnixMilli()
		pkt, keys, err := buildPacket(hops, deadline, payload, size)
		if err != nil {
			t.Fatal(err)
		}
		seen := [][]byte{}
		for i := 0; i < H; i++ {
			if len(pkt) != size {
				t.Fatalf("L=%d hop %d: packet %d bytes, want %d", L, i, len(pkt), size)
			}
			for j, s := range seen {
				if bytes.Equal(s, pkt) {
					t.Fatalf("L=%d: link %d and %d carry identical bytes", L, j, i)
				}
			}
			seen = append(seen, pkt)
			p, err := peel(ids[i].priv, pkt, H)
			if err != nil {
				t.Fatalf("L=%d hop %d: %v", L, i, err)
			}
			// Even all relays together hold only ciphertext: the payload
			// is inside the serving node's layer.
			if i < H-1 && (bytes.Contains(pkt, payload[:16]) || bytes.Contains(p.out, payload[:16])) {
				t.Fatalf("L=%d: relay %d sees the payload", L, i)
			}
			if p.keys != keys[i] {
				t.Fatalf("L=%d hop %d: keys differ from the sender's", L, i)
			}
			if p.r.deadline != deadline {
				t.Fatalf("deadline %d, want %d", p.r.deadline, deadline)
			}
			if i < H-1 {
				if p.r.kind != hopForward || p.r.next != ids[i+1].ID() {
					t.Fatalf("L=%d hop %d: routing %+v, want forward to %s", L, i, p.r, ids[i+1].ID())
				}
				pkt = p.out
				continue
			}
			if p.r.kind != hopDeliver || !bytes.Equal(p.out, payload) {
				t.Fatalf("L=%d last hop: kind %d payload %q", L, p.r.kind, p.out)
			}
		}
	}
}

func TestOnionWrongHopRejected(t *testing.T) {
	ids, hops := testPath(t, 3)
	pkt, _, err := buildPacket(hops, 0, []byte("x"), 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peel(ids[1].priv, pkt, 3); !errors.Is(err, ErrTampered) {
		t.Fatalf("hop 1 peeled hop 0's layer: err %v", err)
	}
}

// TestOnionBitFlips flips every bit of a packet (sampled densely) at every
// hop and expects the hop that receives it to refuse it.
func TestOnionBitFlips(t *testing.T) {
	const H, size = 3, 1024
	ids, hops := testPath(t, H)
	pkt, _, err := buildPacket(hops, 0, []byte("flip me"), size)
	if err != nil {
		t.Fatal(err)
	}
	step := 1
	if testing.Short() {
		step = 7
	}
	for hop := 0; hop < H; hop++ {
		for bit := 0; bit < size*8; bit += step {
			bad := bytes.Clone(pkt)
			bad[bit/8] ^= 1 << (bit % 8)
			if _, err := peel(ids[hop].priv, bad, H); err == nil {
				t.Fatalf("hop %d accepted packet with bit %d flipped", hop, bit)
			}
		}
		p, err := peel(ids[hop].priv, pkt, H)
		if err != nil {
			t.Fatal(err)
		}
		pkt = p.out
	}
}

func TestReplyLayers(t *testing.T) {
	const H = 4
	ids, hops := testPath(t, H)
	pkt, keys, err := buildPacket(hops, 0, []byte("q"), 1024)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]hopKeys, H)
	for i := 0; i < H; i++ {
		p, err := peel(ids[i].priv, pkt, H)
		if err != nil {
			t.Fatal(err)
		}
		got[i], pkt = p.keys, p.out
	}
	body, err := sealReply(&got[H-1], frameReply, []byte("answer"), 1024)
	if err != nil {
		t.Fatal(err)
	}
	links := [][]byte{bytes.Clone(body)}
	for i := H - 2; i >= 0; i-- {
		replyLayer(&got[i].reply, frameReply, body, body)
		if len(body) != 1024 {
			t.Fatalf("reply body %d bytes at hop %d", len(body), i)
		}
		links = append(links, bytes.Clone(body))
	}
	for i := range links {
		for j := i + 1; j < len(links); j++ {
			if bytes.Equal(links[i], links[j]) {
				t.Fatalf("reply links %d and %d identical", i, j)
			}
		}
	}
	out, err := openReply(keys, frameReply, body)
	if err != nil || string(out) != "answer" {
		t.Fatalf("openReply = %q, %v", out, err)
	}
	for bit := 0; bit < len(body)*8; bit += 13 {
		bad := bytes.Clone(body)
		bad[bit/8] ^= 1 << (bit % 8)
		if _, err := openReply(keys, frameReply, bad); !errors.Is(err, ErrTampered) {
			t.Fatalf("reply bit %d flipped: err %v", bit, err)
		}
	}
}
