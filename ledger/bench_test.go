package ledger

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// genChain makes n fully signed transactions alternating between two
// members, each extending both chains.
func genChain(n int) (ka, kb ed25519.PrivateKey, txs []*Tx) {
	var sa, sb [32]byte
	sa[0], sb[0] = 1, 2
	ka, kb = ed25519.NewKeyFromSeed(sa[:]), ed25519.NewKeyFromSeed(sb[:])
	a, b := MemberOfKey(ka), MemberOfKey(kb)
	ha, hb := Head{}, Head{}
	t0 := time.Date(2026, 6, 21, 0, 0, 0, 0, time.UTC)
	for i := range n {
		payer, payee, kp, ke := a, b, ka, kb
		hp, he := &ha, &hb
		if i%2 == 1 {
			payer, payee, kp, ke, hp, he = b, a, kb, ka, &hb, &ha
		}
		body := Body{Payer: payer, Payee: payee, PayerPos: hp.Next(), PayeePos: he.Next(), Amount: int64(1 + i%50),
			Unit: "credit", Purpose: "bench", Bioregion: "lab", Created: t0.Add(time.Duration(i) * time.Millisecond),
			Expires:      t0.Add(time.Duration(i)*time.Millisecond + time.Minute),
			Observations: []Observation{{Property: PropSolarPower, Value: float64(i % 300), Unit: "W", Time: t0, SensorID: "sim", Simulated: true}}}
		tx := signBoth(body, kp, ke)
		txs = append(txs, tx)
		ep, _ := tx.EntryFor(payer)
		ee, _ := tx.EntryFor(payee)
		*hp = Head{Seq: ep.Seq, Hash: ep.Hash()}
		*he = Head{Seq: ee.Seq, Hash: ee.Hash()}
	}
	return ka, kb, txs
}

func benchOpen(b *testing.B, key ed25519.PrivateKey, noSync bool) *Node {
	b.Helper()
	opts := []Option{WithLogger(quietLogger())}
	if noSync {
		opts = append(opts, WithNoSync())
	}
	rules := DefaultRules()
	rules.DefaultLimits = Limits{Min: -1 << 50, Max: 1 << 50}
	n, err := Open(filepath.Join(b.TempDir(), "l.db"), key, rules, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

// BenchmarkCountersignedTx: propose -> countersign -> both append, in
// process, with and without fsync. One op = one transaction = two entries.
func BenchmarkCountersignedTx(b *testing.B) {
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			x, y := benchOpen(b, newKey(b), mode.noSync), benchOpen(b, newKey(b), mode.noSync)
			mustTransfer(b, x, y, 1) // warm up
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p, q := x, y
				if i%2 == 1 {
					p, q = y, x
				}
				if _, err := transfer(p, q, Terms{Payer: p.ID(), Payee: q.ID(), Amount: 3, Purpose: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
		})
	}
}

// BenchmarkPayOverTCP: the full countersigning exchange over a TCP
// connection on 127.0.0.1 (fsync on), one connection per transaction.
func BenchmarkPayOverTCP(b *testing.B) {
	x, y := benchOpen(b, newKey(b), false), benchOpen(b, newKey(b), false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx := context.Background()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			y.ServeCountersign(ctx, c)
			c.Close()
		}
	}()
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := x.Pay(ctx, c, Terms{Payer: x.ID(), Payee: y.ID(), Amount: 1}); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}

// BenchmarkAppend: storing verified transactions (appends to two chains
// each) in batches of 1 (one fsync each) and 256.
func BenchmarkAppend(b *testing.B) {
	_, _, txs := genChain(20_000)
	for _, batch := range []int{1, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var sk [32]byte
			sk[0] = 9
			n := benchOpen(b, ed25519.NewKeyFromSeed(sk[:]), false)
			next := 0
			raw := rawBboltPerBatch(b, txs, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if next+batch > len(txs) {
					b.StopTimer()
					n = benchOpen(b, ed25519.NewKeyFromSeed(sk[:]), false)
					next = 0
					b.StartTimer()
				}
				if _, err := n.Ingest(txs[next : next+batch]...); err != nil {
					b.Fatal(err)
				}
				next += batch
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "tx/s")
			b.ReportMetric(float64(2*b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(raw), "x_raw_bbolt")
		})
	}
}

// rawBboltPerBatch is the reference: the time per batch of putting the same
// encoded transactions into a plain bbolt bucket (one Update per batch,
// fsync on), without verification or indexes.
func rawBboltPerBatch(b *testing.B, txs []*Tx, batch int) time.Duration {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rounds := min(len(txs)/batch, 40)
	st := time.Now()
	for r := range rounds {
		err := db.Update(func(btx *bolt.Tx) error {
			bk, err := btx.CreateBucketIfNotExists([]byte("tx"))
			if err != nil {
				return err
			}
			for _, t := range txs[r*batch : (r+1)*batch] {
				id := t.ID()
				raw, _ := t.MarshalBinary()
				if err := bk.Put(id[:], raw); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(st) / time.Duration(rounds)
}

// BenchmarkSync: a node holding N transactions syncs them to an empty node
// over net.Pipe (verify + store on the receiver, fsync on). One op = one
// full sync of N transactions.
func BenchmarkSync(b *testing.B) {
	for _, size := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("txs=%d", size), func(b *testing.B) {
			_, _, txs := genChain(size)
			var s1, s2 [32]byte
			s1[0], s2[0] = 7, 8
			src := benchOpen(b, ed25519.NewKeyFromSeed(s1[:]), true)
			if _, err := src.Ingest(txs...); err != nil {
				b.Fatal(err)
			}
			raw, _ := txs[0].MarshalBinary()
			b.SetBytes(int64(size * len(raw)))
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				dst := benchOpen(b, ed25519.NewKeyFromSeed(s2[:]), false)
				p1, p2 := net.Pipe()
				b.StartTimer()
				go src.Sync(context.Background(), p2)
				st, err := dst.Sync(context.Background(), p1)
				if err != nil || st.New != size {
					b.Fatalf("sync: %+v %v", st, err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "tx/s")
			b.ReportMetric(float64(2*b.N*size)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkVerifyChain: verifying every signature and link of a chain of N
// entries from the store, compared in the same run with the floor of two
// bare ed25519 verifications per entry ("x_floor" = chain time / floor).
func BenchmarkVerifyChain(b *testing.B) {
	for _, size := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("entries=%d", size), func(b *testing.B) {
			ka, _, txs := genChain(size)
			n := benchOpen(b, ka, true)
			if _, err := n.Ingest(txs...); err != nil {
				b.Fatal(err)
			}
			// The floor, measured now on the same machine.
			pub := ka.Public().(ed25519.PublicKey)
			msg := signMessage(txs[0].ID())
			sig := txs[0].PayerSig
			st := time.Now()
			for range 2 * size {
				ed25519.Verify(pub, msg, sig)
			}
			floor := time.Since(st)
			b.ResetTimer()
			for b.Loop() {
				if err := n.VerifyChain(MemberOfKey(ka)); err != nil {
					b.Fatal(err)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(size)/per.Seconds(), "entries/s")
			b.ReportMetric(float64(per)/float64(floor), "x_floor")
		})
	}
}
