package clove

import (
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// newTestIdentity returns a fresh ed25519 libp2p key and its onion identity.
func newTestIdentity(t testing.TB) (crypto.PrivKey, *Identity) {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewIdentity(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, id
}

// testPath returns h identities and the sender's view of them as a path.
func testPath(t testing.TB, h int) ([]*Identity, []pathHop) {
	t.Helper()
	ids := make([]*Identity, h)
	hops := make([]pathHop, h)
	for i := range ids {
		_, ids[i] = newTestIdentity(t)
		hops[i] = pathHop{id: ids[i].ID(), pub: ids[i].priv.PublicKey()}
	}
	return ids, hops
}
