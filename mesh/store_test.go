package mesh

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func seal(t *testing.T, sk crypto.PrivKey, id peer.ID, epoch int64, seq uint64) *signedAnnouncement {
	t.Helper()
	s, err := sealAnnouncement(testAnnouncement(id, epoch, seq), sk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func seqsOf(ss []*signedAnnouncement) []uint64 {
	var out []uint64
	for _, s := range ss {
		out = append(out, s.a.Seq)
	}
	return out
}

// viaWire passes a digest through its encoding, as the sync protocol does.
func viaWire(t *testing.T, d *digest) *digest {
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := decodeDigest(b)
	if err != nil {
		t.Fatal(err)
	}
	return d2
}

// TestStorePartition plays the partition story: B saw 1..3 from A, missed
// 4..6 while apart, then got 7 by gossip. A sync with A's store gives B
// exactly 4, 5, 6, and a second sync gives nothing.
func TestStorePartition(t *testing.T) {
	sk, id := testKey(t, 1)
	a, b := newStore(256), newStore(256)
	for seq := uint64(1); seq <= 7; seq++ {
		s := seal(t, sk, id, 100, seq)
		if !a.add(s) {
			t.Fatalf("seq %d not new in A", seq)
		}
		if seq <= 3 || seq == 7 {
			b.add(s)
		}
	}
	if a.add(seal(t, sk, id, 100, 3)) {
		t.Fatal("duplicate seq 3 reported new")
	}
	got := a.missing(viaWire(t, b.digest()), 100)
	if want := []uint64{4, 5, 6}; !slices.Equal(seqsOf(got), want) {
		t.Fatalf("missing = %v, want %v", seqsOf(got), want)
	}
	for _, s := range got {
		if !b.add(s) {
			t.Fatalf("seq %d not new in B", s.a.Seq)
		}
	}
	if got := a.missing(viaWire(t, b.digest()), 100); len(got) != 0 {
		t.Fatalf("after sync, missing = %v, want none", seqsOf(got))
	}
}

func TestStoreNewcomerAndEpochs(t *testing.T) {
	sk, id := testKey(t, 1)
	a := newStore(256)
	for seq := uint64(1); seq <= 5; seq++ {
		a.add(seal(t, sk, id, 100, seq))
	}
	// A newcomer gets only the latest state of an origin it never heard of.
	if got := seqsOf(a.missing(viaWire(t, newStore(256).digest()), 100)); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("newcomer gets %v, want [5]", got)
	}
	// A restart (new epoch) supersedes the old run entirely.
	b := newStore(256)
	b.add(seal(t, sk, id, 100, 5))
	if !a.add(seal(t, sk, id, 200, 1)) {
		t.Fatal("new epoch not accepted")
	}
	if a.add(seal(t, sk, id, 100, 6)) {
		t.Fatal("old epoch accepted after a new one")
	}
	got := a.missing(viaWire(t, b.digest()), 100)
	if len(got) != 1 || got[0].a.Epoch != 200 || got[0].a.Seq != 1 {
		t.Fatalf("peer behind an epoch gets %v", seqsOf(got))
	}
	if s := a.latest(id); s == nil || s.a.Epoch != 200 {
		t.Fatalf("latest = %+v", s)
	}
}

func TestStoreWindow(t *testing.T) {
	sk, id := testKey(t, 1)
	a := newStore(4)
	for seq := uint64(1); seq <= 10; seq++ {
		a.add(seal(t, sk, id, 1, seq))
	}
	if a.add(seal(t, sk, id, 1, 6)) {
		t.Fatal("seq 6 outside the window (7..10) accepted")
	}
	got := seqsOf(a.missing(&digest{Version: 1, Have: []digestEntry{{Origin: id.String(), Epoch: 1, Hi: 1}}}, 100))
	if !slices.Equal(got, []uint64{7, 8, 9, 10}) {
		t.Fatalf("missing = %v, want the window 7..10", got)
	}
	if got := seqsOf(a.missing(&digest{Version: 1, Have: []digestEntry{{Origin: id.String(), Epoch: 1, Hi: 1}}}, 2)); len(got) != 2 {
		t.Fatalf("limit 2 returned %v", got)
	}
}
