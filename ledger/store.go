package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt layout (schema version 1). Every append is one bbolt transaction.
var (
	bMeta    = []byte("meta")    // "version" -> u64; "self" -> member id
	bTx      = []byte("tx")      // txid -> canonical tx
	bChain   = []byte("chain")   // member|seq -> txid of the canonical entry (lowest entry hash)
	bFork    = []byte("fork")    // member|seq|txid -> nil: further entries at a seq
	bProof   = []byte("proof")   // member|seq|kind -> canonical fork proof
	bQuar    = []byte("quar")    // member -> u64 unix ms when this node learnt of the fork
	bBal     = []byte("bal")     // member -> i64 balance
	bHead    = []byte("head")    // member -> seq|hash: contiguous head
	bPending = []byte("pending") // "out" -> this node's outstanding proposal
	bByTime  = []byte("bytime")  // created ms|txid -> nil

	allBuckets = [][]byte{bMeta, bTx, bChain, bFork, bProof, bQuar, bBal, bHead, bPending, bByTime}

	keyVersion = []byte("version")
	keySelf    = []byte("self")
	keyOut     = []byte("out")
)

const schemaVersion = 1

func chainKey(m MemberID, seq uint64) []byte {
	k := make([]byte, 40)
	copy(k, m[:])
	binary.BigEndian.PutUint64(k[32:], seq)
	return k
}

func forkKey(m MemberID, seq uint64, id Hash) []byte {
	return append(chainKey(m, seq), id[:]...)
}

func proofKey(m MemberID, seq uint64, kind string) []byte {
	return append(chainKey(m, seq), kind...)
}

func i64bytes(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func getI64(b *bolt.Bucket, k []byte) int64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// openDB opens (creating if needed) the bbolt file and its buckets, and
// checks the schema version and the node identity.
func openDB(path string, self MemberID, noSync bool) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: noSync})
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(keyVersion); v == nil {
			if err := meta.Put(keyVersion, i64bytes(schemaVersion)); err != nil {
				return err
			}
		} else if got := getI64(meta, keyVersion); got != schemaVersion {
			return fmt.Errorf("schema version %d, this build reads %d: %w", got, schemaVersion, ErrCorrupt)
		}
		if v := meta.Get(keySelf); v == nil {
			return meta.Put(keySelf, self[:])
		} else if !bytes.Equal(v, self[:]) {
			return fmt.Errorf("file belongs to member %x, not %s: %w", v[:4], self.Short(), ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	return db, nil
}

// insertResult says what inserting a transaction changed.
type insertResult struct {
	New   bool
	Forks []*Fork // proofs found while inserting
}

// insertTxLocked stores a verified transaction in the bbolt transaction btx:
// tx record, time index, balances, both chain indexes, fork detection and
// contiguous heads. Idempotent: a known transaction changes nothing.
func insertTx(btx *bolt.Tx, t *Tx, raw []byte, now time.Time) (insertResult, error) {
	var res insertResult
	id := t.ID()
	txb := btx.Bucket(bTx)
	if txb.Get(id[:]) != nil {
		return res, nil
	}
	res.New = true
	if err := txb.Put(id[:], raw); err != nil {
		return res, err
	}
	tk := binary.BigEndian.AppendUint64(nil, uint64(t.Body.Created.UnixMilli()))
	if err := btx.Bucket(bByTime).Put(append(tk, id[:]...), nil); err != nil {
		return res, err
	}
	bal := btx.Bucket(bBal)
	members := []MemberID{t.Body.Payer, t.Body.Payee}
	if t.Body.Fee > 0 {
		members = append(members, t.Body.Commons)
	}
	for _, m := range members {
		if err := bal.Put(m[:], i64bytes(getI64(bal, m[:])+t.Body.Delta(m))); err != nil {
			return res, err
		}
	}
	for _, m := range []MemberID{t.Body.Payer, t.Body.Payee} {
		forks, err := indexEntry(btx, t, id, m, now)
		if err != nil {
			return res, err
		}
		res.Forks = append(res.Forks, forks...)
	}
	return res, nil
}

// entriesAt returns every stored entry of m at seq (canonical first).
func entriesAt(btx *bolt.Tx, m MemberID, seq uint64) ([]Entry, error) {
	var out []Entry
	ck := chainKey(m, seq)
	if id := btx.Bucket(bChain).Get(ck); id != nil {
		e, err := loadEntry(btx, m, id)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	c := btx.Bucket(bFork).Cursor()
	for k, _ := c.Seek(ck); k != nil && bytes.HasPrefix(k, ck); k, _ = c.Next() {
		e, err := loadEntry(btx, m, k[40:])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func loadTx(btx *bolt.Tx, id []byte) (*Tx, error) {
	raw := btx.Bucket(bTx).Get(id)
	if raw == nil {
		return nil, fmt.Errorf("load tx %x: %w", id[:4], ErrNotFound)
	}
	t, err := DecodeTx(raw)
	if err != nil {
		return nil, fmt.Errorf("load tx %x: %w: %w", id[:4], ErrCorrupt, err)
	}
	return t, nil
}

func loadEntry(btx *bolt.Tx, m MemberID, id []byte) (Entry, error) {
	t, err := loadTx(btx, id)
	if err != nil {
		return Entry{}, err
	}
	return t.EntryFor(m)
}

// indexEntry puts t's entry into m's chain index and detects forks.
func indexEntry(btx *bolt.Tx, t *Tx, id Hash, m MemberID, now time.Time) ([]*Fork, error) {
	e, err := t.EntryFor(m)
	if err != nil {
		return nil, err
	}
	h := e.Hash()
	chain := btx.Bucket(bChain)
	ck := chainKey(m, e.Seq)
	var forks []*Fork
	if cur := chain.Get(ck); cur != nil {
		// A second entry at the same seq: a fork.
		old, err := loadEntry(btx, m, cur)
		if err != nil {
			return nil, err
		}
		forks = append(forks, &Fork{A: old, B: e})
		// The canonical entry is the one with the lowest hash, so the
		// index does not depend on arrival order.
		if oh := old.Hash(); bytes.Compare(h[:], oh[:]) < 0 {
			if err := btx.Bucket(bFork).Put(forkKey(m, e.Seq, old.Tx.ID()), nil); err != nil {
				return nil, err
			}
			if err := chain.Put(ck, id[:]); err != nil {
				return nil, err
			}
		} else if err := btx.Bucket(bFork).Put(forkKey(m, e.Seq, id), nil); err != nil {
			return nil, err
		}
	} else if err := chain.Put(ck, id[:]); err != nil {
		return nil, err
	}
	// Links to the neighbours.
	if e.Seq > 1 {
		before, err := entriesAt(btx, m, e.Seq-1)
		if err != nil {
			return nil, err
		}
		linked := len(before) == 0
		for _, b := range before {
			if b.Hash() == e.Prev {
				linked = true
			}
		}
		if !linked {
			forks = append(forks, &Fork{A: before[0], B: e})
		}
	}
	after, err := entriesAt(btx, m, e.Seq+1)
	if err != nil {
		return nil, err
	}
	for _, a := range after {
		if a.Prev == h {
			continue
		}
		// a links to something else at e.Seq; only a proof if nothing at
		// e.Seq matches (otherwise it is covered by the same-seq proof).
		at, err := entriesAt(btx, m, e.Seq)
		if err != nil {
			return nil, err
		}
		ok := false
		for _, x := range at {
			if x.Hash() == a.Prev {
				ok = true
			}
		}
		if !ok {
			forks = append(forks, &Fork{A: e, B: a})
		}
	}
	for _, f := range forks {
		if err := storeProof(btx, f, now); err != nil {
			return nil, err
		}
	}
	if err := advanceHead(btx, m, e.Seq); err != nil {
		return nil, err
	}
	return forks, nil
}

// storeProof stores a fork proof and quarantines its author, recording
// when this node learnt of it (local information, not synced).
func storeProof(btx *bolt.Tx, f *Fork, now time.Time) error {
	m := f.Author()
	key := proofKey(m, f.Seq(), f.Kind())
	pb := btx.Bucket(bProof)
	if pb.Get(key) == nil {
		raw, err := f.MarshalBinary()
		if err != nil {
			return err
		}
		if err := pb.Put(key, raw); err != nil {
			return err
		}
	}
	q := btx.Bucket(bQuar)
	if q.Get(m[:]) == nil {
		return q.Put(m[:], binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli())))
	}
	return nil
}

func getHead(btx *bolt.Tx, m MemberID) Head {
	v := btx.Bucket(bHead).Get(m[:])
	if len(v) != 40 {
		return Head{}
	}
	var h Head
	h.Seq = binary.BigEndian.Uint64(v)
	copy(h.Hash[:], v[8:])
	return h
}

// advanceHead updates m's contiguous head after an entry at seq changed.
func advanceHead(btx *bolt.Tx, m MemberID, seq uint64) error {
	h := getHead(btx, m)
	if seq > h.Seq+1 {
		return nil // a gap remains
	}
	chain := btx.Bucket(bChain)
	s := h.Seq
	for chain.Get(chainKey(m, s+1)) != nil {
		s++
	}
	if s == 0 {
		return nil
	}
	e, err := loadEntry(btx, m, chain.Get(chainKey(m, s)))
	if err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, s)
	hh := e.Hash()
	return btx.Bucket(bHead).Put(m[:], append(v, hh[:]...))
}

// checkStore verifies the whole store: every transaction decodes and
// verifies, both its entries are indexed, balances equal a recomputation and
// sum to zero, heads are the contiguous heads, canonical entries have the
// lowest hash at their seq, and canonical chains link up to each head for
// members without a fork.
func checkStore(btx *bolt.Tx) error {
	bal := map[MemberID]int64{}
	ntx := 0
	err := btx.Bucket(bTx).ForEach(func(k, v []byte) error {
		t, err := DecodeTx(v)
		if err != nil {
			return err
		}
		if id := t.ID(); !bytes.Equal(id[:], k) {
			return fmt.Errorf("tx stored under %x has id %s: %w", k[:4], id.String()[:8], ErrCorrupt)
		}
		if err := t.Verify(); err != nil {
			return err
		}
		for _, m := range []MemberID{t.Body.Payer, t.Body.Payee} {
			pos, _ := t.Body.PosOf(m)
			cur := btx.Bucket(bChain).Get(chainKey(m, pos.Seq))
			if !bytes.Equal(cur, k) && btx.Bucket(bFork).Get(forkKey(m, pos.Seq, Hash(k))) == nil {
				return fmt.Errorf("tx %x not indexed in chain of %s at seq %d: %w", k[:4], m.Short(), pos.Seq, ErrCorrupt)
			}
			bal[m] += t.Body.Delta(m)
		}
		if t.Body.Fee > 0 {
			bal[t.Body.Commons] += t.Body.Delta(t.Body.Commons)
		}
		ntx++
		return nil
	})
	if err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	var total int64
	err = btx.Bucket(bBal).ForEach(func(k, v []byte) error {
		m := MemberID(k)
		got := getI64(btx.Bucket(bBal), k)
		if got != bal[m] {
			return fmt.Errorf("balance of %s stored %d, recomputed %d: %w", m.Short(), got, bal[m], ErrCorrupt)
		}
		delete(bal, m)
		total += got
		return nil
	})
	if err != nil {
		return fmt.Errorf("check ledger: %w", err)
	}
	for m, v := range bal {
		if v != 0 {
			return fmt.Errorf("check ledger: balance of %s missing (recomputed %d): %w", m.Short(), v, ErrCorrupt)
		}
	}
	if total != 0 {
		return fmt.Errorf("check ledger: balances sum to %d, not zero: %w", total, ErrCorrupt)
	}
	// Chains.
	members := map[MemberID]bool{}
	c := btx.Bucket(bChain).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 40 {
			return fmt.Errorf("check ledger: chain key of %d bytes: %w", len(k), ErrCorrupt)
		}
		m, seq := MemberID(k[:32]), binary.BigEndian.Uint64(k[32:])
		members[m] = true
		all, err := entriesAt(btx, m, seq)
		if err != nil {
			return fmt.Errorf("check ledger: %w", err)
		}
		if id := all[0].Tx.ID(); !bytes.Equal(id[:], v) {
			return fmt.Errorf("check ledger: chain %s seq %d: %w", m.Short(), seq, ErrCorrupt)
		}
		h0 := all[0].Hash()
		for _, e := range all[1:] {
			if h := e.Hash(); bytes.Compare(h[:], h0[:]) < 0 {
				return fmt.Errorf("check ledger: chain %s seq %d: canonical entry is not the lowest hash: %w", m.Short(), seq, ErrCorrupt)
			}
		}
	}
	for m := range members {
		if err := verifyChainTx(btx, m); err != nil {
			return fmt.Errorf("check ledger: %w", err)
		}
	}
	if n := btx.Bucket(bByTime).Stats().KeyN; n != ntx {
		return fmt.Errorf("check ledger: time index has %d keys for %d transactions: %w", n, ntx, ErrCorrupt)
	}
	return nil
}

// verifyChainTx walks m's canonical chain from seq 1 to its contiguous head
// and checks the head record and, unless m has a proven fork, every link.
func verifyChainTx(btx *bolt.Tx, m MemberID) error {
	head := getHead(btx, m)
	forked := btx.Bucket(bQuar).Get(m[:]) != nil
	chain := btx.Bucket(bChain)
	prev := ZeroHash
	var seq uint64
	for seq = 1; ; seq++ {
		id := chain.Get(chainKey(m, seq))
		if id == nil {
			break
		}
		e, err := loadEntry(btx, m, id)
		if err != nil {
			return err
		}
		if !forked && e.Prev != prev {
			return fmt.Errorf("chain of %s seq %d: prev %s, want %s: %w", m.Short(), seq, e.Prev.String()[:8], prev.String()[:8], ErrWrongPrev)
		}
		prev = e.Hash()
	}
	if head.Seq != seq-1 || (head.Seq > 0 && head.Hash != prev) {
		return fmt.Errorf("chain of %s: head record at seq %d, chain contiguous to %d: %w", m.Short(), head.Seq, seq-1, ErrCorrupt)
	}
	return nil
}
