package ledger

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// seedTxs makes a few genuine, fully signed transactions for fuzz seeds.
func seedTxs(f *testing.F) (*Node, *Node, []*Tx) {
	clk := newClock()
	a, b := newNode(f, testRules(), clk), newNode(f, testRules(), clk, WithPolicy(allowAll))
	t1 := mustTransfer(f, a, b, 1234)
	t2, err := transfer(a, b, Terms{Payer: b.ID(), Payee: a.ID(), Purpose: PurposeInference, Bioregion: "danube",
		Observations: []Observation{{Property: PropSolarPower, Value: 212.5, Unit: "W", Time: clk.Now(), SensorID: "ina219", Simulated: true}},
		Receipt:      &Receipt{ModelHash: "sha256:00ff", TokensIn: 10, TokensOut: 20, MilliJoules: 3000}})
	if err != nil {
		f.Fatal(err)
	}
	return a, b, []*Tx{t1, t2}
}

// checkCanonical: whatever decodes re-encodes to the same bytes.
func checkCanonical(t *testing.T, in []byte, m interface{ MarshalBinary() ([]byte, error) }) {
	out, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("decoded value re-encodes differently:\n in %x\nout %x", in, out)
	}
}

func FuzzDecodeTx(f *testing.F) {
	_, _, txs := seedTxs(f)
	for _, tx := range txs {
		raw, _ := tx.MarshalBinary()
		f.Add(raw)
		f.Add(raw[:len(raw)/2])
	}
	f.Add([]byte{tagTx, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		tx, err := DecodeTx(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		checkCanonical(t, in, tx)
		_ = tx.Verify()
		_ = tx.ID()
	})
}

func FuzzDecodeEntry(f *testing.F) {
	a, _, txs := seedTxs(f)
	for _, tx := range txs {
		e, _ := tx.EntryFor(a.ID())
		raw, _ := e.MarshalBinary()
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := DecodeEntry(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		checkCanonical(t, in, e)
		if err := e.Verify(); err == nil {
			_ = e.Hash()
		}
	})
}

func FuzzDecodeProposal(f *testing.F) {
	clk := newClock()
	a, b := newNode(f, testRules(), clk), newNode(f, testRules(), clk)
	hb, _ := b.Head(b.ID())
	p, err := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 5, Purpose: "seed"}, hb)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := p.MarshalBinary()
	f.Add(raw)
	f.Add(raw[:40])
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := DecodeProposal(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		checkCanonical(t, in, p)
		if p.Verify() == nil && p.Body.Payee == b.ID() {
			// A verified proposal to b: countersigning either works or
			// refuses with a reason; the store stays consistent.
			_, _ = b.Countersign(p)
			if err := b.Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzDecodeFork(f *testing.F) {
	clk := newClock()
	a, b, c := newNode(f, testRules(), clk), newNode(f, testRules(), clk), newNode(f, testRules(), clk)
	tw := openNode(f, f.TempDir(), a.key, a.rules, clk)
	x := mustTransfer(f, a, b, 1)
	y := mustTransfer(f, tw, c, 2)
	ex, _ := x.EntryFor(a.ID())
	ey, _ := y.EntryFor(a.ID())
	raw, _ := (&Fork{A: ex, B: ey}).MarshalBinary()
	f.Add(raw)
	f.Add(raw[:len(raw)-1])
	f.Fuzz(func(t *testing.T, in []byte) {
		fk, err := DecodeFork(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		checkCanonical(t, in, fk)
		if err := fk.Verify(); err == nil && fk.Kind() == "" {
			t.Fatal("verified proof of no kind")
		}
	})
}

// FuzzSyncMessage decodes single sync/countersign message bodies.
func FuzzSyncMessage(f *testing.F) {
	_, _, txs := seedTxs(f)
	var batch []byte
	for _, tx := range txs {
		raw, _ := tx.MarshalBinary()
		batch = appendBlob(batch, raw)
	}
	f.Add(msgTxs, batch)
	f.Add(msgHello, hello{Kind: kindSync, Member: txs[0].Body.Payer}.encode())
	f.Add(msgSummary, encodeSummary([]summaryItem{{Member: txs[0].Body.Payer, Head: Head{Seq: 3}}}))
	f.Add(msgReject, encodeRemoteError(ErrLimit))
	f.Add(msgDone, []byte{})
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		v, err := DecodeSyncMessage(typ, payload)
		if err != nil && v != nil {
			t.Fatalf("value %T with error %v", v, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error without sentinel: %v", err)
		}
	})
}

// fuzzStream feeds fuzzed bytes to a node as the peer's side of a stream.
type fuzzStream struct {
	io.Reader
	io.Writer
}

// FuzzSyncStream runs a whole Sync against a peer that sends arbitrary
// bytes: Sync must return (no hang, no panic) and the store must stay
// consistent; genuine transactions in the input are accepted.
func FuzzSyncStream(f *testing.F) {
	a, b, txs := seedTxs(f)
	var good bytes.Buffer
	writeMsg(&good, msgHello, hello{Kind: kindSync, Member: a.ID()}.encode())
	writeMsg(&good, msgSummaryEnd, nil)
	var batch []byte
	for _, tx := range txs {
		raw, _ := tx.MarshalBinary()
		batch = appendBlob(batch, raw)
	}
	writeMsg(&good, msgTxs, batch)
	writeMsg(&good, msgDone, nil)
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()-7])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	clk := newClock()
	n := newNode(f, testRules(), clk)
	_ = b
	f.Fuzz(func(t *testing.T, in []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = n.Sync(ctx, fuzzStream{bytes.NewReader(in), io.Discard})
		if err := n.Check(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzCountersignStream runs ServeCountersign against arbitrary bytes.
func FuzzCountersignStream(f *testing.F) {
	clk := newClock()
	a, b := newNode(f, testRules(), clk), newNode(f, testRules(), clk)
	hb, _ := b.Head(b.ID())
	p, _ := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 5}, hb)
	a.CancelPending()
	raw, _ := p.MarshalBinary()
	var good bytes.Buffer
	writeMsg(&good, msgHello, hello{Kind: kindCountersign, Member: a.ID()}.encode())
	writeMsg(&good, msgProposal, raw)
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:30])
	f.Fuzz(func(t *testing.T, in []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = b.ServeCountersign(ctx, fuzzStream{bytes.NewReader(in), io.Discard})
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
	})
}
