package ledger

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// snapshot is what a forged input must not change.
type snapshot struct {
	accounts []Account
	heads    map[MemberID]Head
}

func snap(t *testing.T, n *Node) snapshot {
	t.Helper()
	acc, err := n.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{accounts: acc, heads: map[MemberID]Head{}}
	for _, a := range acc {
		s.heads[a.Member] = a.Head
	}
	return s
}

func (s snapshot) equal(o snapshot) bool {
	if len(s.accounts) != len(o.accounts) {
		return false
	}
	for i := range s.accounts {
		if s.accounts[i] != o.accounts[i] {
			return false
		}
	}
	return true
}

func TestForgedEntriesAreRejectedAndLoseNothing(t *testing.T) {
	clk := newClock()
	a, b, c := newNode(t, testRules(), clk), newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	mustTransfer(t, a, b, 100)
	good := mustTransfer(t, b, a, 30)
	mustTransfer(t, a, b, 7)
	mallory := newKey(t)

	clone := func() *Tx {
		raw, _ := good.MarshalBinary()
		t2, err := DecodeTx(raw)
		if err != nil {
			t.Fatal(err)
		}
		return t2
	}
	tests := []struct {
		name   string
		forge  func() *Tx
		target error
	}{
		{"bad signature", func() *Tx { f := clone(); f.PayerSig[5] ^= 0x40; return f }, ErrBadSignature},
		{"altered amount", func() *Tx { f := clone(); f.Body.Amount = 3000; return f }, ErrBadSignature},
		{"wrong prev hash", func() *Tx { f := clone(); f.Body.PayerPos.Prev[0] ^= 1; return f }, ErrBadSignature},
		{"wrong key", func() *Tx {
			f := clone()
			f.PayerSig = f.Body.Sign(mallory) // signed by someone who is not the payer
			return f
		}, ErrBadSignature},
		{"both signed by an impostor", func() *Tx {
			f := clone()
			f.Body.Amount = 1
			f.PayerSig, f.PayeeSig = f.Body.Sign(mallory), f.Body.Sign(mallory)
			return f
		}, ErrBadSignature},
		{"seq 1 with a prev hash", func() *Tx {
			bd := clone().Body // b pays a
			bd.PayerPos = Position{Seq: 1, Prev: Hash{1}}
			return signBoth(bd, b.key, a.key)
		}, ErrWrongPrev},
		{"non-positive amount", func() *Tx {
			bd := clone().Body
			bd.Amount = -5
			return signBoth(bd, b.key, a.key)
		}, ErrInvalid},
		{"fee to a party", func() *Tx {
			bd := clone().Body
			bd.Fee, bd.Commons = 5, bd.Payee
			return signBoth(bd, b.key, a.key)
		}, ErrInvalid},
		{"missing signature", func() *Tx { f := clone(); f.PayeeSig = nil; return f }, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snap(t, c)
			forged := tt.forge()
			_, err := c.Ingest(forged)
			if !errors.Is(err, tt.target) {
				t.Fatalf("Ingest: %v, want %v", err, tt.target)
			}
			t.Logf("rejected: %v", err)
			// A batch holding one forged tx stores nothing at all.
			h, _ := a.Chain(a.ID(), 1, 10)
			if _, err := c.Ingest(h[0].Tx, forged); !errors.Is(err, tt.target) {
				t.Fatalf("Ingest batch: %v, want %v", err, tt.target)
			}
			if !before.equal(snap(t, c)) {
				t.Fatal("forged input changed the store")
			}
			if err := c.Check(); err != nil {
				t.Fatal(err)
			}
			// The same through the encoded entry.
			e, err := forged.EntryFor(forged.Body.Payer)
			if err == nil {
				raw, _ := e.MarshalBinary()
				if de, err := DecodeEntry(raw); err == nil {
					if err := de.Verify(); !errors.Is(err, tt.target) {
						t.Fatalf("entry Verify: %v, want %v", err, tt.target)
					}
				}
			}
		})
	}
	// The genuine transactions still sync into c afterwards.
	p1, p2 := net.Pipe()
	go a.Sync(context.Background(), p2)
	if _, err := c.Sync(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	if got := balance(t, c, a.ID()); got != -77 {
		t.Errorf("c sees A at %d after sync, want -77", got)
	}
}

func TestEntryWithWrongPositionIsRejected(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	tx := mustTransfer(t, a, b, 10)
	e, _ := tx.EntryFor(a.ID())
	e.Seq = 2
	if err := e.Verify(); !errors.Is(err, ErrWrongPrev) {
		t.Fatalf("entry at a seq its tx does not name: %v, want ErrWrongPrev", err)
	}
}

func TestProposalNamingAStaleHeadIsRejected(t *testing.T) {
	clk := newClock()
	a, b, c := newNode(t, testRules(), clk), newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	stale, _ := b.Head(b.ID())
	mustTransfer(t, c, b, 5) // b's head moves on
	p, err := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 10}, stale)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Countersign(p); !errors.Is(err, ErrWrongPrev) {
		t.Fatalf("stale head: %v, want ErrWrongPrev", err)
	} else {
		t.Logf("rejected: %v", err)
	}
}

// twin opens a second node with the same key as n, holding a copy of n's
// transactions: the tool of a member who wants to double-spend.
func twin(t *testing.T, n *Node, clk *fakeClock) *Node {
	tw := openNode(t, t.TempDir(), n.key, n.rules, clk)
	p1, p2 := net.Pipe()
	go n.Sync(context.Background(), p2)
	if _, err := tw.Sync(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	return tw
}

func syncPair(t testing.TB, x, y *Node) {
	t.Helper()
	p1, p2 := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := y.Sync(ctx, p2); errc <- err }()
	if _, err := x.Sync(ctx, p1); err != nil {
		t.Fatalf("sync %s<->%s: %v", x.ID().Short(), y.ID().Short(), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("sync %s<->%s (other side): %v", y.ID().Short(), x.ID().Short(), err)
	}
}

func TestDoubleSpendProducesAPortableProof(t *testing.T) {
	clk := newClock()
	a, b, c, d := newNode(t, testRules(), clk), newNode(t, testRules(), clk), newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	mustTransfer(t, b, a, 500)
	aTwin := twin(t, a, clk)
	// A spends the same chain position twice: with B from one copy, with C
	// from the other. Neither B nor C can tell at signing time.
	spend1 := mustTransfer(t, a, b, 400)
	spend2 := mustTransfer(t, aTwin, c, 400)
	if p1, _ := spend1.Body.PosOf(a.ID()); p1 != mustPos(spend2, a.ID()) {
		t.Fatal("the two spends do not take the same position")
	}
	syncPair(t, b, c)
	for _, n := range []*Node{b, c} {
		q, _ := n.Quarantined()
		if len(q) != 1 || q[0] != a.ID() {
			t.Fatalf("%s quarantines %v, want [A]", n.ID().Short(), q)
		}
	}
	forks, err := b.Forks()
	if err != nil || len(forks) != 1 {
		t.Fatalf("B holds %d proofs (%v), want 1", len(forks), err)
	}
	raw, err := forks[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Exported bytes verify on a node that saw neither spend.
	f, err := DecodeFork(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Verify(); err != nil {
		t.Fatalf("proof does not verify: %v", err)
	}
	if f.Author() != a.ID() || f.Kind() != ForkSameSeq {
		t.Errorf("proof against %s of kind %q", f.Author().Short(), f.Kind())
	}
	if err := d.AddProof(f); err != nil {
		t.Fatal(err)
	}
	if v, err := d.View(5, Day, time.Time{}); err != nil || len(v.Forks) != 1 || !v.Forks[0].Since.Equal(clk.Now()) || v.Forks[0].Member != a.ID() {
		t.Fatalf("D's view of the fork: %+v, %v", v.Forks, err)
	}
	if q, _ := d.Quarantined(); len(q) != 1 || q[0] != a.ID() {
		t.Fatalf("D quarantines %v after the proof", q)
	}
	// Quarantined: nobody countersigns with A any more, in either role.
	if _, err := transfer(a, b, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 1}); !errors.Is(err, ErrQuarantined) {
		t.Errorf("B countersigning with A: %v, want ErrQuarantined", err)
	}
	if _, err := transfer(d, a, Terms{Payer: d.ID(), Payee: a.ID(), Amount: 1}); !errors.Is(err, ErrQuarantined) {
		t.Errorf("D proposing to A: %v, want ErrQuarantined", err)
	}
	// Tampered proofs do not verify.
	bad, _ := DecodeFork(raw)
	bad.B.Tx.Body.Amount++
	if err := bad.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered proof: %v, want ErrBadSignature", err)
	}
	same := &Fork{A: f.A, B: f.A}
	if err := same.Verify(); !errors.Is(err, ErrNoFork) {
		t.Errorf("proof of one entry twice: %v, want ErrNoFork", err)
	}
	// Sync spreads the proof: a node that syncs with B learns it.
	e := newNode(t, testRules(), clk)
	syncPair(t, e, b)
	if q, _ := e.Quarantined(); len(q) != 1 {
		t.Errorf("E quarantines %v after syncing with B", q)
	}
}

func mustPos(tx *Tx, m MemberID) Position {
	p, _ := tx.Body.PosOf(m)
	return p
}

func TestBrokenLinkIsAFork(t *testing.T) {
	clk := newClock()
	a, b, c := newNode(t, testRules(), clk), newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	aTwin := twin(t, a, clk)
	mustTransfer(t, a, b, 10)          // A seq 1 with B
	x := mustTransfer(t, aTwin, c, 10) // A seq 1 with C
	y := mustTransfer(t, aTwin, c, 10) // A seq 2 with C, links to x
	// D sees only A's seq-1 entry with B and A's seq-2 entry with C.
	d := newNode(t, testRules(), clk)
	syncPair(t, d, b)
	if _, err := d.Ingest(y); err != nil {
		t.Fatal(err)
	}
	q, _ := d.Quarantined()
	if len(q) != 1 || q[0] != a.ID() {
		t.Fatalf("D quarantines %v, want [A]", q)
	}
	forks, _ := d.Forks()
	if len(forks) != 1 || forks[0].Kind() != ForkBrokenLink || forks[0].Verify() != nil {
		t.Fatalf("D's proofs: %v", forks)
	}
	_ = x
}

func TestPayAndServeCountersignOverTCP(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	rules := testRules()
	rules.Limits = map[MemberID]Limits{b.ID(): {Min: -100, Max: 3000}}
	a.rules, b.rules = rules, rules
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	served := make(chan error, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, err := b.ServeCountersign(ctx, conn)
				served <- err
			}()
		}
	}()
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	conn := dial()
	tx, err := a.Pay(ctx, conn, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 2500, Purpose: "bread"})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b} {
		got, err := n.Tx(tx.ID())
		if err != nil || got.Body.Amount != 2500 {
			t.Fatalf("%s does not hold the tx: %v", n.ID().Short(), err)
		}
	}
	// A refusal travels back with its reason.
	conn = dial()
	_, err = a.Pay(ctx, conn, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 1000})
	conn.Close()
	if !errors.Is(err, ErrRejected) || !errors.Is(err, ErrLimit) {
		t.Fatalf("over B's maximum: %v, want ErrRejected and ErrLimit", err)
	}
	t.Logf("refused: %v", err)
	if serr := <-served; !errors.Is(serr, ErrLimit) {
		t.Fatalf("server side: %v", serr)
	}
	if pend, _ := a.Pending(); pend != nil {
		t.Error("rejected proposal left the chain locked")
	}
	// B proposes (the server asking to be paid): roles reversed.
	conn = dial()
	tx2, err := b.Pay(ctx, conn, Terms{Payer: b.ID(), Payee: a.ID(), Amount: 500})
	conn.Close()
	if err == nil || tx2 != nil {
		// b dialled itself: the stream reaches b, not a.
		t.Fatalf("paying over a stream to the wrong member succeeded: %v", err)
	}
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("wrong member: %v, want ErrProtocol", err)
	}
	<-served
}

func TestCompleteRejectsABadCountersignature(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	hb, _ := b.Head(b.ID())
	p, err := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 10}, hb)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := b.Countersign(p)
	if err != nil {
		t.Fatal(err)
	}
	forged := *tx
	forged.PayeeSig = append([]byte(nil), tx.PayeeSig...)
	forged.PayeeSig[0] ^= 1
	if err := a.Complete(&forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Complete with a bad countersignature: %v, want ErrBadSignature", err)
	}
	if got := balance(t, a, a.ID()); got != 0 {
		t.Fatalf("balance changed to %d", got)
	}
	if err := a.Complete(tx); err != nil {
		t.Fatal(err)
	}
	if got := balance(t, a, a.ID()); got != -10 {
		t.Fatalf("balance %d after completing, want -10", got)
	}
}

func TestProposalWithAWrongPrevOfTheProposerIsRejected(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	mustTransfer(t, a, b, 10) // B knows A's entry at seq 1
	ha, _ := a.Head(a.ID())
	hb, _ := b.Head(b.ID())
	for _, pos := range []Position{
		{Seq: 2, Prev: Hash{0xba, 0xd}}, // does not link to A's seq-1 entry
		{Seq: 1},                        // reuses a seq B already holds
	} {
		body := Body{Payer: a.ID(), Payee: b.ID(), PayerPos: pos, PayeePos: hb.Next(), Amount: 5, Unit: "credit",
			Created: clk.Now(), Expires: clk.Now().Add(time.Minute)}
		body.normalize()
		_, err := b.Countersign(&Proposal{Body: body, Proposer: a.ID(), Sig: body.Sign(a.key)})
		if !errors.Is(err, ErrWrongPrev) {
			t.Fatalf("proposal at %d/%s (A's head %d): %v, want ErrWrongPrev", pos.Seq, pos.Prev.String()[:4], ha.Seq, err)
		}
		t.Logf("rejected: %v", err)
	}
	if got := balance(t, b, b.ID()); got != 10 {
		t.Fatalf("B's balance changed to %d", got)
	}
}

// A peer that vanishes in the middle of a sync leaves a consistent store:
// each batch is stored entirely or not at all.
func TestSyncCutAnywhereLeavesAConsistentStore(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk, WithPolicy(allowAll))
	var txs []*Tx
	for i := range 6 {
		txs = append(txs, mustTransfer(t, a, b, int64(10+i)))
	}
	var stream bytes.Buffer
	writeMsg(&stream, msgHello, hello{Kind: kindSync, Member: a.ID()}.encode())
	writeMsg(&stream, msgSummaryEnd, nil)
	var batch []byte
	for _, tx := range txs {
		raw, _ := tx.MarshalBinary()
		batch = appendBlob(batch, raw)
	}
	writeMsg(&stream, msgTxs, batch)
	writeMsg(&stream, msgDone, nil)
	full := stream.Bytes()
	for _, cut := range []int{0, 3, 10, len(full) / 2, len(full) - 6, len(full) - 1, len(full)} {
		c := newNode(t, testRules(), clk)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Sync(ctx, fuzzStream{bytes.NewReader(full[:cut]), io.Discard})
		cancel()
		if (err == nil) != (cut == len(full)) {
			t.Fatalf("cut at %d/%d: err %v", cut, len(full), err)
		}
		if err := c.Check(); err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		recent, _ := c.Recent(100)
		if len(recent) != 0 && len(recent) != len(txs) {
			t.Fatalf("cut at %d: %d of %d txs stored", cut, len(recent), len(txs))
		}
	}
}

// A sync larger than one message travels in several batches.
func TestSyncManyBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("verifies thousands of signatures")
	}
	ka, kb, txs := genChain(1500)
	clk := newClock()
	src := openNode(t, t.TempDir(), ka, testRules(), clk)
	if _, err := src.Ingest(txs...); err != nil {
		t.Fatal(err)
	}
	dst := openNode(t, t.TempDir(), kb, testRules(), clk)
	p1, p2 := net.Pipe()
	go src.Sync(context.Background(), p2)
	st, err := dst.Sync(context.Background(), p1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := txs[0].MarshalBinary()
	if st.New != len(txs) || len(txs)*len(raw) <= batchTargetBytes {
		t.Fatalf("stats %+v (%d bytes of txs)", st, len(txs)*len(raw))
	}
	for _, m := range []MemberID{MemberOfKey(ka), MemberOfKey(kb)} {
		h, _ := dst.Head(m)
		if h.Seq != 1500 {
			t.Errorf("head of %s at %d", m.Short(), h.Seq)
		}
		if err := dst.VerifyChain(m); err != nil {
			t.Error(err)
		}
	}
}

// A node that is behind sends only the tail of its chains, not all of them.
func TestSyncBehindSendsLittle(t *testing.T) {
	ka, kb, txs := genChain(110)
	clk := newClock()
	x := openNode(t, t.TempDir(), ka, testRules(), clk)
	y := openNode(t, t.TempDir(), kb, testRules(), clk)
	if _, err := x.Ingest(txs[:100]...); err != nil {
		t.Fatal(err)
	}
	if _, err := y.Ingest(txs...); err != nil {
		t.Fatal(err)
	}
	p1, p2 := net.Pipe()
	res := make(chan SyncStats, 1)
	go func() { st, _ := y.Sync(context.Background(), p2); res <- st }()
	stx, err := x.Sync(context.Background(), p1)
	if err != nil {
		t.Fatal(err)
	}
	sty := <-res
	if sty.Sent != 10 || stx.New != 10 {
		t.Errorf("ahead side sent %d, behind side stored %d new; want 10 and 10", sty.Sent, stx.New)
	}
	if stx.Sent > 12 {
		t.Errorf("behind side sent %d txs back, want at most 12 (from the checkpoint at 94)", stx.Sent)
	}
	t.Logf("ahead sent %d, behind sent %d", sty.Sent, stx.Sent)
}
