package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock shared by the nodes of a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 6, 21, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openNode opens a node on a fresh file in dir; the test's cleanup checks
// the store's consistency and closes it.
func openNode(t testing.TB, dir string, key ed25519.PrivateKey, rules Rules, clk *fakeClock, opts ...Option) *Node {
	t.Helper()
	opts = append([]Option{WithLogger(quietLogger()), WithClock(clk.Now), WithNoSync()}, opts...)
	n, err := Open(filepath.Join(dir, MemberOf(key.Public().(ed25519.PublicKey)).Short()+"-"+randName()+".db"), key, rules, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Check(); err != nil && err != ErrClosed {
			t.Errorf("store of %s inconsistent on cleanup: %v", n.ID().Short(), err)
		}
		n.Close()
	})
	return n
}

func randName() string {
	var b [4]byte
	rand.Read(b[:])
	return MemberID{b[0], b[1], b[2], b[3]}.Short()
}

func newNode(t testing.TB, rules Rules, clk *fakeClock, opts ...Option) *Node {
	return openNode(t, t.TempDir(), newKey(t), rules, clk, opts...)
}

func testRules() Rules {
	r := DefaultRules()
	r.DefaultLimits = Limits{Min: -10_000, Max: 20_000}
	return r
}

// transfer runs propose -> countersign -> complete in process.
func transfer(proposer, other *Node, terms Terms) (*Tx, error) {
	h, err := other.Head(other.ID())
	if err != nil {
		return nil, err
	}
	p, err := proposer.Propose(terms, h)
	if err != nil {
		return nil, err
	}
	t, err := other.Countersign(p)
	if err != nil {
		proposer.CancelPending()
		return nil, err
	}
	return t, proposer.Complete(t)
}

func mustTransfer(t testing.TB, payer, payee *Node, amount int64) *Tx {
	t.Helper()
	tx, err := transfer(payer, payee, Terms{Payer: payer.ID(), Payee: payee.ID(), Amount: amount, Purpose: "test"})
	if err != nil {
		t.Fatalf("transfer %d from %s to %s: %v", amount, payer.ID().Short(), payee.ID().Short(), err)
	}
	return tx
}

func balance(t testing.TB, n *Node, m MemberID) int64 {
	t.Helper()
	b, err := n.Balance(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signBoth builds a fully signed tx with arbitrary (possibly rogue) content.
func signBoth(b Body, payerKey, payeeKey ed25519.PrivateKey) *Tx {
	b.normalize()
	return &Tx{Body: b, PayerSig: b.Sign(payerKey), PayeeSig: b.Sign(payeeKey)}
}

// allowAll approves every bill (for tests where payees propose).
func allowAll(*Proposal) error { return nil }
