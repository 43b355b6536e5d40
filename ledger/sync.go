package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// SyncStats reports what one Sync exchanged.
type SyncStats struct {
	Peer           MemberID `json:"peer"`
	Sent           int      `json:"sent"`     // transactions sent
	Received       int      `json:"received"` // transactions received
	New            int      `json:"new"`      // received transactions that were new here
	ProofsSent     int      `json:"proofs_sent"`
	ProofsReceived int      `json:"proofs_received"`
}

// summary item: member, contiguous head, quarantined flag, and checkpoints:
// the hashes of the canonical entries at head-1, head-2, head-4, …,
// head-2^(maxCheckpoints-1) (those >= 1). A peer that is behind finds the
// highest checkpoint at or below its own head; if its entry there has the
// same hash, the sender holds its whole prefix up to it (hash linking) and
// only the entries above it need to travel.
type summaryItem struct {
	Member      MemberID
	Head        Head
	Quarantined bool
	Checkpoints []Head // descending seq
}

const (
	maxCheckpoints   = 8
	summaryItemMax   = 32 + 8 + 32 + 1 + 1 + maxCheckpoints*40
	summaryPerMsg    = (MaxMessageSize - 16) / summaryItemMax
	maxSummaryItems  = 1 << 17 // chains per peer summary
	batchTargetBytes = MaxMessageSize / 2
)

func encodeSummary(items []summaryItem) []byte {
	e := encoder{b: make([]byte, 0, 4+len(items)*summaryItemMax)}
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(items)))
	for _, it := range items {
		e.raw(it.Member[:])
		e.u64(it.Head.Seq)
		e.raw(it.Head.Hash[:])
		e.boolean(it.Quarantined)
		cps := it.Checkpoints[:min(len(it.Checkpoints), maxCheckpoints)]
		e.u8(uint8(len(cps)))
		for _, c := range cps {
			e.u64(c.Seq)
			e.raw(c.Hash[:])
		}
	}
	return e.b
}

func decodeSummary(b []byte) ([]summaryItem, error) {
	d := decoder{what: "sync summary", b: b}
	var n int
	if c := d.take(4, "count"); c != nil {
		n = int(binary.BigEndian.Uint32(c))
	}
	if d.err == nil && n > (len(b)-4)/(32+8+32+1+1) {
		d.fail("count %d does not fit in %d payload bytes", n, len(b)-4)
	}
	var out []summaryItem
	if d.err == nil {
		out = make([]summaryItem, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var it summaryItem
		it.Member = d.id32("member")
		it.Head.Seq = d.u64("head seq")
		it.Head.Hash = d.id32("head hash")
		it.Quarantined = d.boolean("quarantined")
		k := int(d.u8("checkpoint count"))
		if d.err == nil && k > maxCheckpoints {
			d.fail("%d checkpoints, at most %d", k, maxCheckpoints)
		}
		for j := 0; j < k && d.err == nil; j++ {
			c := Head{Seq: d.u64("checkpoint seq")}
			c.Hash = d.id32("checkpoint hash")
			if d.err == nil && (c.Seq == 0 || c.Seq >= it.Head.Seq || (j > 0 && c.Seq >= it.Checkpoints[j-1].Seq)) {
				d.fail("checkpoint seq %d out of order (head %d)", c.Seq, it.Head.Seq)
			}
			it.Checkpoints = append(it.Checkpoints, c)
		}
		out = append(out, it)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// encodeBatch / decodeBatch: a sequence of u32-length-prefixed blobs.
func appendBlob(dst, blob []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(blob)))
	return append(dst, blob...)
}

func decodeBatch(what string, b []byte) ([][]byte, error) {
	var out [][]byte
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("decode %s batch at byte %d: truncated length: %w", what, off, ErrMalformed)
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		off += 4
		if n > len(b)-off {
			return nil, fmt.Errorf("decode %s batch at byte %d: item of %d bytes, %d left: %w", what, off, n, len(b)-off, ErrMalformed)
		}
		out = append(out, b[off:off+n])
		off += n
	}
	return out, nil
}

// DecodeSyncMessage decodes one sync stream message body (type byte and
// payload, as read after the length prefix) and returns what it contains.
// It exists for fuzzing and diagnostics; Sync uses the same decoders.
func DecodeSyncMessage(typ byte, payload []byte) (any, error) {
	v, err := decodeSyncMessage(typ, payload)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func decodeSyncMessage(typ byte, payload []byte) (any, error) {
	switch typ {
	case msgHello:
		return decodeHello(payload)
	case msgSummary:
		return decodeSummary(payload)
	case msgTxs:
		blobs, err := decodeBatch("tx", payload)
		if err != nil {
			return nil, err
		}
		txs := make([]*Tx, 0, len(blobs))
		for _, b := range blobs {
			t, err := DecodeTx(b)
			if err != nil {
				return nil, err
			}
			txs = append(txs, t)
		}
		return txs, nil
	case msgProofs:
		blobs, err := decodeBatch("proof", payload)
		if err != nil {
			return nil, err
		}
		var fs []*Fork
		for _, b := range blobs {
			f, err := DecodeFork(b)
			if err != nil {
				return nil, err
			}
			fs = append(fs, f)
		}
		return fs, nil
	case msgError, msgReject:
		return decodeRemoteError(payload), nil
	case msgSummaryEnd, msgDone:
		if len(payload) != 0 {
			return nil, fmt.Errorf("decode sync message %q: %d unexpected payload bytes: %w", typ, len(payload), ErrMalformed)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("decode sync message: unknown type %q: %w", typ, ErrProtocol)
}

// summary lists every member with entries in this node's store.
func (n *Node) summary() ([]summaryItem, error) {
	var out []summaryItem
	err := n.view(func(btx *bolt.Tx) error {
		c := btx.Bucket(bChain).Cursor()
		q := btx.Bucket(bQuar)
		for k, _ := c.First(); k != nil; {
			m := MemberID(k[:32])
			it := summaryItem{Member: m, Head: getHead(btx, m), Quarantined: q.Get(m[:]) != nil}
			for k := range maxCheckpoints {
				back := uint64(1) << k
				if it.Head.Seq <= back {
					break
				}
				h, ok, err := canonicalHash(btx, m, it.Head.Seq-back)
				if err != nil {
					return err
				}
				if ok {
					it.Checkpoints = append(it.Checkpoints, Head{Seq: it.Head.Seq - back, Hash: h})
				}
			}
			out = append(out, it)
			k, _ = c.Seek(chainKey(m, ^uint64(0)))
			if k != nil && bytes.HasPrefix(k, m[:]) {
				k, _ = c.Next()
			}
		}
		return nil
	})
	return out, err
}

// Sync runs one anti-entropy exchange with the node at the other end of rw,
// which runs Sync at the same time (it is symmetric). Each side sends a
// summary of every chain it knows (member, contiguous head, quarantined);
// each then sends the other every transaction it holds above the other's
// head of each chain (all of the chain when the heads disagree, so forks
// travel), and every fork proof the other lacks. Received transactions are
// verified before they are stored; invalid ones abort the exchange without
// storing the batch. After a Sync both nodes hold the union of their
// transactions: the same balances and heads. ctx bounds the exchange (see
// Pay). On failure rw is closed if it is an io.Closer.
func (n *Node) Sync(ctx context.Context, rw io.ReadWriter) (SyncStats, error) {
	stop := watchStream(ctx, rw)
	defer stop()
	var stats SyncStats
	var closeOnce sync.Once
	fail := func() {
		closeOnce.Do(func() {
			if c, ok := rw.(io.Closer); ok {
				_ = c.Close()
			}
		})
	}
	peerSummary := make(chan map[MemberID]summaryItem, 1)
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		werr = n.syncWrite(rw, peerSummary, &stats)
		if werr != nil {
			fail()
		}
	})
	rerr := n.syncRead(rw, peerSummary, &stats)
	if rerr != nil {
		fail()
	}
	wg.Wait()
	if rerr != nil {
		return stats, fmt.Errorf("sync with %s: %w", stats.Peer.Short(), ctxErr(ctx, rerr))
	}
	if werr != nil {
		return stats, fmt.Errorf("sync with %s: %w", stats.Peer.Short(), ctxErr(ctx, werr))
	}
	return stats, nil
}

func (n *Node) syncWrite(w io.Writer, peerSummary <-chan map[MemberID]summaryItem, stats *SyncStats) error {
	head, err := n.Head(n.id)
	if err != nil {
		return err
	}
	if err := writeMsg(w, msgHello, hello{Kind: kindSync, Member: n.id, Head: head}.encode()); err != nil {
		return err
	}
	mine, err := n.summary()
	if err != nil {
		return err
	}
	for i := 0; i < len(mine); i += summaryPerMsg {
		if err := writeMsg(w, msgSummary, encodeSummary(mine[i:min(i+summaryPerMsg, len(mine))])); err != nil {
			return err
		}
	}
	if err := writeMsg(w, msgSummaryEnd, nil); err != nil {
		return err
	}
	peer, ok := <-peerSummary
	if !ok {
		return nil // the reader failed; it reports the error
	}
	sent := map[Hash]bool{}
	var batch []byte
	flush := func(typ byte) error {
		if len(batch) == 0 {
			return nil
		}
		err := writeMsg(w, typ, batch)
		batch = batch[:0]
		return err
	}
	// Transactions are collected per member inside short read
	// transactions, then written outside them.
	for _, it := range mine {
		// Send the chain above the peer's head when the peer's head is an
		// entry of this node's canonical chain and neither side knows a fork
		// of it (then both prefixes are the same, by hash linking);
		// otherwise send all of it. Entries beyond a first one at a seq
		// always travel.
		from := uint64(1)
		if p, ok := peer[it.Member]; ok && p.Head.Seq > 0 && !p.Quarantined && !it.Quarantined {
			err := n.view(func(btx *bolt.Tx) error {
				if h, ok, err := canonicalHash(btx, it.Member, p.Head.Seq); err != nil || (ok && h == p.Head.Hash) {
					from = p.Head.Seq + 1 // the peer has all of this node's chain up to its head
					return err
				}
				if p.Head.Seq <= it.Head.Seq {
					return nil
				}
				// This node is behind: does the peer hold its prefix?
				for _, c := range p.Checkpoints {
					if c.Seq > it.Head.Seq {
						continue
					}
					if h, ok, err := canonicalHash(btx, it.Member, c.Seq); err != nil || (ok && h == c.Hash) {
						from = c.Seq + 1
						return err
					}
					break // diverged: send everything
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		var raws [][]byte
		err := n.view(func(btx *bolt.Tx) error {
			txb := btx.Bucket(bTx)
			add := func(id []byte) {
				h := Hash(id)
				if sent[h] {
					return
				}
				sent[h] = true
				raws = append(raws, append([]byte(nil), txb.Get(id)...))
			}
			start := chainKey(it.Member, from)
			c := btx.Bucket(bChain).Cursor()
			for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, it.Member[:]); k, v = c.Next() {
				add(v)
			}
			fc := btx.Bucket(bFork).Cursor()
			for k, _ := fc.Seek(it.Member[:]); k != nil && bytes.HasPrefix(k, it.Member[:]); k, _ = fc.Next() {
				add(k[40:])
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, raw := range raws {
			if len(batch)+len(raw)+4 > batchTargetBytes {
				if err := flush(msgTxs); err != nil {
					return err
				}
			}
			batch = appendBlob(batch, raw)
			stats.Sent++
		}
	}
	if err := flush(msgTxs); err != nil {
		return err
	}
	forks, err := n.Forks()
	if err != nil {
		return err
	}
	for _, f := range forks {
		if p, ok := peer[f.Author()]; ok && p.Quarantined {
			continue
		}
		raw, err := f.MarshalBinary()
		if err != nil {
			return err
		}
		if len(batch)+len(raw)+4 > batchTargetBytes {
			if err := flush(msgProofs); err != nil {
				return err
			}
		}
		batch = appendBlob(batch, raw)
		stats.ProofsSent++
	}
	if err := flush(msgProofs); err != nil {
		return err
	}
	return writeMsg(w, msgDone, nil)
}

func (n *Node) syncRead(r io.Reader, peerSummary chan<- map[MemberID]summaryItem, stats *SyncStats) error {
	summaryDone := false
	defer func() {
		if !summaryDone {
			close(peerSummary)
		}
	}()
	typ, payload, err := readMsg(r)
	if err != nil {
		return err
	}
	if typ == msgError {
		return decodeRemoteError(payload)
	}
	if typ != msgHello {
		return fmt.Errorf("got message %q, want hello: %w", typ, ErrProtocol)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return err
	}
	if h.Kind != kindSync {
		return fmt.Errorf("hello kind %d on a sync stream: %w", h.Kind, ErrProtocol)
	}
	stats.Peer = h.Member
	peer := map[MemberID]summaryItem{}
	for !summaryDone {
		typ, payload, err := readMsg(r)
		if err != nil {
			return err
		}
		switch typ {
		case msgSummary:
			items, err := decodeSummary(payload)
			if err != nil {
				return err
			}
			if len(peer)+len(items) > maxSummaryItems {
				return fmt.Errorf("summary of more than %d chains: %w", maxSummaryItems, ErrTooLarge)
			}
			for _, it := range items {
				peer[it.Member] = it
			}
		case msgSummaryEnd:
			summaryDone = true
			peerSummary <- peer
			close(peerSummary)
		case msgError:
			return decodeRemoteError(payload)
		default:
			return fmt.Errorf("got message %q, want summary: %w", typ, ErrProtocol)
		}
	}
	for {
		typ, payload, err := readMsg(r)
		if err != nil {
			return err
		}
		switch typ {
		case msgTxs:
			blobs, err := decodeBatch("tx", payload)
			if err != nil {
				return err
			}
			txs := make([]*Tx, 0, len(blobs))
			for _, b := range blobs {
				t, err := DecodeTx(b)
				if err != nil {
					return err
				}
				txs = append(txs, t)
			}
			stats.Received += len(txs)
			added, err := n.ingestUnknown(txs)
			stats.New += added
			if err != nil {
				return err
			}
		case msgProofs:
			blobs, err := decodeBatch("proof", payload)
			if err != nil {
				return err
			}
			for _, b := range blobs {
				f, err := DecodeFork(b)
				if err != nil {
					return err
				}
				stats.ProofsReceived++
				if q, err := n.isQuarantined(f.Author()); err != nil || q {
					if err != nil {
						return err
					}
					continue // already proven here: no write
				}
				if err := n.AddProof(f); err != nil {
					return err
				}
			}
		case msgDone:
			return nil
		case msgError:
			return decodeRemoteError(payload)
		default:
			return fmt.Errorf("got message %q during sync: %w", typ, ErrProtocol)
		}
	}
}

// ingestUnknown verifies and stores the transactions not yet known (known
// ones are skipped without verifying their signatures again).
func (n *Node) ingestUnknown(txs []*Tx) (int, error) {
	var unknown []*Tx
	err := n.view(func(btx *bolt.Tx) error {
		b := btx.Bucket(bTx)
		for _, t := range txs {
			id := t.ID()
			if b.Get(id[:]) == nil {
				unknown = append(unknown, t)
			}
		}
		return nil
	})
	if err != nil || len(unknown) == 0 {
		return 0, err
	}
	return n.Ingest(unknown...)
}

func (n *Node) isQuarantined(m MemberID) (bool, error) {
	var q bool
	err := n.view(func(btx *bolt.Tx) error { q = btx.Bucket(bQuar).Get(m[:]) != nil; return nil })
	return q, err
}

// canonicalHash is the hash of m's canonical entry at seq, if stored.
func canonicalHash(btx *bolt.Tx, m MemberID, seq uint64) (Hash, bool, error) {
	id := btx.Bucket(bChain).Get(chainKey(m, seq))
	if id == nil {
		return Hash{}, false, nil
	}
	e, err := loadEntry(btx, m, id)
	if err != nil {
		return Hash{}, false, err
	}
	return e.Hash(), true, nil
}
