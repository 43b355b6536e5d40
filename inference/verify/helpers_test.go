package verify

import (
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

const community = "00112233445566778899aabbccddeeff"

// tb is what the helpers need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
}

var (
	keysOnce sync.Once
	keys     []crypto.PrivKey
	ids      []string
)

// testKey returns the i-th of 16 fixed ed25519 node keys and its peer ID.
func testKey(t tb, i int) (crypto.PrivKey, string) {
	t.Helper()
	keysOnce.Do(func() {
		for j := range 16 {
			seed := make([]byte, ed25519.SeedSize)
			seed[0] = byte(j + 1)
			k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
			if err != nil {
				panic(err)
			}
			id, err := peer.IDFromPrivateKey(k)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k)
			ids = append(ids, id.String())
		}
	})
	return keys[i], ids[i]
}

// report returns a signed report by verifier v (key index) on node n (key
// index) for epoch e.
func report(t tb, v, n int, e int64, credit float64) *Report {
	t.Helper()
	k, _ := testKey(t, v)
	_, node := testKey(t, n)
	r := &Report{Community: community, Epoch: e, Node: node, Model: "tiny", Credit: credit,
		Challenges: 2, Perplexity: 3.5, Time: 1_700_000_000_000}
	if err := r.Sign(k); err != nil {
		t.Fatal(err)
	}
	return r
}

// committee returns the peer IDs of key indices.
func committee(t tb, idx ...int) []string {
	t.Helper()
	out := make([]string, len(idx))
	for i, j := range idx {
		_, out[i] = testKey(t, j)
	}
	return out
}

// newTestBook is a book whose clock sits at epoch 1000.
func newTestBook(_ tb, p Params, verifiers []string) *Book {
	b := NewBook(p, community, verifiers)
	b.SetNow(func() time.Time { return b.Params().EpochStart(1000).Add(time.Second) })
	return b
}
