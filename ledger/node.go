package ledger

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Option tunes a Node.
type Option func(*Node)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(n *Node) { n.log = l } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(n *Node) { n.now = now } }

// WithBioregion sets the bioregion this node names in the transactions it
// proposes when the caller names none (default "").
func WithBioregion(b string) Option { return func(n *Node) { n.bioregion = b } }

// WithNoSync skips fsync on commit (default off). Only for tests and
// benchmarks: a power cut may lose acknowledged entries. A process crash
// does not.
func WithNoSync() Option { return func(n *Node) { n.noSync = true } }

// WithPolicy adds a check run before this node countersigns a proposal, after
// the community rules (default none). Returning an error refuses; the
// counterparty sees its text. Without a policy a node countersigns proposals
// that pay it, but refuses (ErrNotApproved) proposals in which it pays and
// the payee proposed (bills), except demurrage the rules define; the
// gateway approves the bills it expects with Approvals.Policy. It runs with
// the node's write lock held: it must be quick and must not call the Node.
func WithPolicy(p func(*Proposal) error) Option { return func(n *Node) { n.policy = p } }

// WithForkHandler sets a function called (without locks held) with every
// fork proof this node discovers, e.g. to gossip it (default none).
func WithForkHandler(f func(*Fork)) Option { return func(n *Node) { n.onFork = f } }

// Node is one member's ledger: its key, the community rules and a bbolt
// store holding its own chain and every chain it has learnt by sync. All
// methods are safe for concurrent use; chain-changing operations are
// serialised.
type Node struct {
	key       ed25519.PrivateKey
	id        MemberID
	rules     Rules
	log       *slog.Logger
	now       func() time.Time
	bioregion string
	noSync    bool
	policy    func(*Proposal) error
	onFork    func(*Fork)

	db *bolt.DB

	mu     sync.Mutex // serialises writes; guards closed
	closed bool
}

// Open opens (or creates) the ledger file at path for the member holding
// key. The file remembers its member: opening it with another key fails.
func Open(path string, key ed25519.PrivateKey, rules Rules, opts ...Option) (*Node, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("open ledger %s: private key of %d bytes: %w", path, len(key), ErrInvalid)
	}
	n := &Node{key: key, id: MemberOf(key.Public().(ed25519.PublicKey)), rules: rules, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(n)
	}
	db, err := openDB(path, n.id, n.noSync)
	if err != nil {
		return nil, err
	}
	n.db = db
	return n, nil
}

// Close closes the store. It is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	return n.db.Close()
}

// ID is this node's member id (its public key).
func (n *Node) ID() MemberID { return n.id }

// Rules returns the rules the node applies.
func (n *Node) Rules() Rules { return n.rules }

func (n *Node) view(fn func(*bolt.Tx) error) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return n.db.View(fn)
}

// updateLocked runs fn in a write transaction; n.mu must be held.
func (n *Node) updateLocked(fn func(*bolt.Tx) error) error {
	if n.closed {
		return ErrClosed
	}
	return n.db.Update(fn)
}

// Terms describe a transaction to propose. Exactly one of Payer and Payee is
// this node. Amount may be 0 for a transaction with a Receipt: the node then
// prices it with the community's pricing rule.
type Terms struct {
	Payer        MemberID
	Payee        MemberID
	Amount       int64 // milli-units; 0 with a Receipt: priced by the rule
	Purpose      string
	Bioregion    string        // default: the node's (WithBioregion)
	Corrects     Hash          // the transaction this one compensates, if any
	Observations []Observation // zero times are set to the proposal's time
	Receipt      *Receipt
}

// pendingLocked returns the outstanding proposal, clearing it if it has
// completed or expired past the grace period. n.mu must be held.
func (n *Node) pendingLocked() (*Proposal, error) {
	var p *Proposal
	completed := false
	err := n.db.View(func(btx *bolt.Tx) error {
		raw := btx.Bucket(bPending).Get(keyOut)
		if raw == nil {
			return nil
		}
		var err error
		p, err = DecodeProposal(raw)
		if err != nil {
			return fmt.Errorf("%w: pending proposal: %w", ErrCorrupt, err)
		}
		id := p.Body.ID()
		completed = btx.Bucket(bTx).Get(id[:]) != nil // e.g. learnt by sync
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case p == nil:
		return nil, nil
	case completed:
		return nil, n.clearPendingLocked()
	case n.now().After(p.Body.Expires.Add(n.rules.grace())):
		n.log.Info("ledger: outstanding proposal expired", "tx", p.Body.ID().String()[:8], "counterparty", p.Body.Counterparty(n.id).Short())
		return nil, n.clearPendingLocked()
	}
	return p, nil
}

func (n *Node) clearPendingLocked() error {
	return n.db.Update(func(btx *bolt.Tx) error {
		b := btx.Bucket(bPending)
		if b.Get(keyOut) == nil {
			return nil
		}
		return b.Delete(keyOut)
	})
}

// Pending returns this node's outstanding proposal, or nil.
func (n *Node) Pending() (*Proposal, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	return n.pendingLocked()
}

// CancelPending forgets the outstanding proposal. Only safe when the
// counterparty is known not to have countersigned it (for example it
// answered with a rejection); otherwise wait for expiry.
func (n *Node) CancelPending() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	return n.clearPendingLocked()
}

// Propose builds, checks and signs a transaction with the counterparty whose
// current chain head is cpHead, and locks this node's chain until the
// proposal completes (Complete) or expires. The result never changes a
// balance by itself.
func (n *Node) Propose(terms Terms, cpHead Head) (*Proposal, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if terms.Payer != n.id && terms.Payee != n.id {
		return nil, fmt.Errorf("propose: %w", ErrNotParty)
	}
	if p, err := n.pendingLocked(); err != nil {
		return nil, fmt.Errorf("propose: %w", err)
	} else if p != nil {
		return nil, fmt.Errorf("propose: tx %s with %s outstanding until %s: %w", p.Body.ID().String()[:8], p.Body.Counterparty(n.id).Short(), p.Body.Expires.Add(n.rules.grace()).Format(time.RFC3339), ErrChainLocked)
	}
	now := n.now()
	b := Body{
		Payer: terms.Payer, Payee: terms.Payee, Amount: terms.Amount,
		Unit: n.rules.unit(), Purpose: terms.Purpose, Bioregion: terms.Bioregion,
		Created: now, Expires: now.Add(n.rules.ttl()), Corrects: terms.Corrects,
		Observations: append([]Observation(nil), terms.Observations...),
	}
	if b.Bioregion == "" {
		b.Bioregion = n.bioregion
	}
	for i := range b.Observations {
		if b.Observations[i].Time.IsZero() {
			b.Observations[i].Time = now // a snapshot without times is of this moment
		}
	}
	if terms.Receipt != nil {
		r := *terms.Receipt
		b.Receipt = &r
		if b.Amount == 0 && n.rules.Pricing.Enabled() {
			price, err := n.rules.Pricing.Price(r, EnergyFrom(b.Observations))
			if err != nil {
				return nil, fmt.Errorf("propose: %w", err)
			}
			b.Amount = price
		}
	}
	if fee := n.rules.FeeFor(b.Payer, b.Payee, b.Amount); fee > 0 {
		b.Fee, b.Commons = fee, n.rules.Commons
	}
	b.normalize()
	var err error
	err = n.db.View(func(btx *bolt.Tx) error {
		cp := b.Counterparty(n.id)
		if btx.Bucket(bQuar).Get(cp[:]) != nil {
			return fmt.Errorf("counterparty %s: %w", cp.Short(), ErrQuarantined)
		}
		myPos := getHead(btx, n.id).Next()
		if n.id == b.Payer {
			b.PayerPos, b.PayeePos = myPos, cpHead.Next()
		} else {
			b.PayeePos, b.PayerPos = myPos, cpHead.Next()
		}
		return n.checkRulesTx(btx, &b)
	})
	if err != nil {
		return nil, fmt.Errorf("propose: %w", err)
	}
	p := &Proposal{Body: b, Proposer: n.id, Sig: b.Sign(n.key)}
	raw, _ := p.MarshalBinary()
	err = n.db.Update(func(btx *bolt.Tx) error { return btx.Bucket(bPending).Put(keyOut, raw) })
	if err != nil {
		return nil, fmt.Errorf("propose: %w", err)
	}
	return p, nil
}

// checkRulesTx checks a body against the community rules from this node's
// point of view (it is one of the parties): structure, unit, fee, price,
// demurrage, and this node's own credit limits at its current chain head.
func (n *Node) checkRulesTx(btx *bolt.Tx, b *Body) error {
	if err := b.checkEncodable(); err != nil {
		return err
	}
	if err := b.Validate(); err != nil {
		return err
	}
	if b.Unit != n.rules.unit() {
		return fmt.Errorf("unit %q, community unit is %q: %w", b.Unit, n.rules.unit(), ErrInvalid)
	}
	if want := n.rules.FeeFor(b.Payer, b.Payee, b.Amount); b.Fee != want {
		return fmt.Errorf("fee %d, rules say %d: %w", b.Fee, want, ErrInvalid)
	}
	if b.Fee > 0 && b.Commons != n.rules.Commons {
		return fmt.Errorf("fee paid to %s, commons is %s: %w", b.Commons.Short(), n.rules.Commons.Short(), ErrInvalid)
	}
	if b.Receipt != nil && n.rules.Pricing.Enabled() {
		want, err := n.rules.Pricing.Price(*b.Receipt, EnergyFrom(b.Observations))
		if err != nil {
			return err
		}
		if b.Amount != want {
			return fmt.Errorf("inference of %d+%d tokens, %d mJ priced %d, rule says %d: %w",
				b.Receipt.TokensIn, b.Receipt.TokensOut, b.Receipt.MilliJoules, b.Amount, want, ErrPrice)
		}
	}
	bal := getI64(btx.Bucket(bBal), n.id[:])
	if b.Purpose == PurposeDemurrage && b.Payer == n.id && b.Payee == n.rules.Commons {
		due := n.rules.DemurrageDue(bal, b.Created.Sub(lastDemurrage(btx, n.id)))
		if b.Amount > due {
			return fmt.Errorf("demurrage %d, due %d: %w", b.Amount, due, ErrInvalid)
		}
	}
	// Limits bind each signer at its own chain head. This node has no
	// other outstanding proposal (its chain is locked while it has one), so
	// the head balance is the worst case. A transaction that moves a
	// balance back toward its limits (after the limits were tightened) is
	// allowed.
	after := bal + b.Delta(n.id)
	lim := n.rules.LimitsFor(n.id)
	if !lim.Allows(after) {
		toward := (bal < lim.Min && after > bal && after <= lim.Max) || (bal > lim.Max && after < bal && after >= lim.Min)
		if !toward {
			return fmt.Errorf("balance of %s would be %d, limits [%d, %d]: %w", n.id.Short(), after, lim.Min, lim.Max, ErrLimit)
		}
	}
	return nil
}

// lastDemurrage is when m last paid demurrage, or the time of its first
// entry, as far as this store knows m's chain.
func lastDemurrage(btx *bolt.Tx, m MemberID) time.Time {
	var first, last time.Time
	c := btx.Bucket(bChain).Cursor()
	for k, v := c.Seek(m[:]); k != nil && bytes.HasPrefix(k, m[:]); k, v = c.Next() {
		t, err := loadTx(btx, v)
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = t.Body.Created
		}
		if t.Body.Purpose == PurposeDemurrage && t.Body.Payer == m {
			last = t.Body.Created
		}
	}
	if last.IsZero() {
		return first
	}
	return last
}

// DemurrageDue returns the demurrage m owes the commons now, from this
// node's view of m's chain (the commons node proposes it; m's node accepts
// up to what its own chain says is due).
func (n *Node) DemurrageDue(m MemberID) (int64, error) {
	var due int64
	err := n.view(func(btx *bolt.Tx) error {
		since := lastDemurrage(btx, m)
		if since.IsZero() {
			return nil
		}
		due = n.rules.DemurrageDue(getI64(btx.Bucket(bBal), m[:]), n.now().Sub(since))
		return nil
	})
	return due, err
}

// Countersign checks a proposal addressed to this node against the rules,
// this node's limits and chain head, signs it and appends the completed
// transaction. It returns the complete transaction for the proposer.
func (n *Node) Countersign(p *Proposal) (*Tx, error) {
	if err := p.Verify(); err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	}
	b := &p.Body
	if p.Proposer == n.id || (b.Payer != n.id && b.Payee != n.id) {
		return nil, fmt.Errorf("countersign: proposal by %s for %s and %s: %w", p.Proposer.Short(), b.Payer.Short(), b.Payee.Short(), ErrNotParty)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if now := n.now(); now.After(b.Expires) {
		return nil, fmt.Errorf("countersign: proposal expired at %s (now %s): %w", b.Expires.Format(time.RFC3339), now.Format(time.RFC3339), ErrExpired)
	}
	if pend, err := n.pendingLocked(); err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	} else if pend != nil {
		return nil, fmt.Errorf("countersign: %w", ErrChainLocked)
	}
	t := &Tx{Body: *b}
	err := n.db.View(func(btx *bolt.Tx) error {
		if btx.Bucket(bQuar).Get(p.Proposer[:]) != nil {
			return fmt.Errorf("proposer %s: %w", p.Proposer.Short(), ErrQuarantined)
		}
		myPos, _ := b.PosOf(n.id)
		if head := getHead(btx, n.id); myPos != head.Next() {
			return fmt.Errorf("proposal puts me at seq %d after %s, my head is seq %d %s: %w",
				myPos.Seq, myPos.Prev.String()[:8], head.Seq, head.Hash.String()[:8], ErrWrongPrev)
		}
		// The proposer's claimed position must not contradict what this
		// node knows of its chain.
		pp, _ := b.PosOf(p.Proposer)
		if known := getHead(btx, p.Proposer); known.Seq >= pp.Seq {
			return fmt.Errorf("proposer %s claims seq %d, its chain is known up to %d: %w", p.Proposer.Short(), pp.Seq, known.Seq, ErrWrongPrev)
		}
		if pp.Seq > 1 {
			before, err := entriesAt(btx, p.Proposer, pp.Seq-1)
			if err != nil {
				return err
			}
			if len(before) > 0 && before[0].Hash() != pp.Prev {
				return fmt.Errorf("proposer %s seq %d names prev %s, known entry is %s: %w", p.Proposer.Short(), pp.Seq, pp.Prev.String()[:8], before[0].Hash().String()[:8], ErrWrongPrev)
			}
		}
		return n.checkRulesTx(btx, b)
	})
	if err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	}
	// Receiving credit needs no approval beyond the rules. Paying what the
	// payee asks for does: a node never pays a bill it did not expect,
	// except demurrage the rules define.
	demurrage := b.Purpose == PurposeDemurrage && b.Payee == n.rules.Commons && !n.rules.Commons.IsZero()
	if n.id == b.Payer && n.policy == nil && !demurrage {
		return nil, fmt.Errorf("countersign: %s asks %s: no policy approves payments proposed by the payee: %w",
			b.Payee.Short(), FormatMilli(b.Amount+b.Fee), ErrNotApproved)
	}
	if n.policy != nil {
		if err := n.policy(p); err != nil {
			return nil, fmt.Errorf("countersign: policy: %w", err)
		}
	}
	sig := b.Sign(n.key)
	if n.id == b.Payer {
		t.PayerSig, t.PayeeSig = sig, p.Sig
	} else {
		t.PayeeSig, t.PayerSig = sig, p.Sig
	}
	// The proposer's signature was verified above and ours was just made:
	// no need to verify the complete transaction again.
	if _, err := n.insertLocked([]*Tx{t}, nil); err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	}
	return t, nil
}

// Complete appends the countersigned transaction of this node's outstanding
// proposal and unlocks the chain.
func (n *Node) Complete(t *Tx) error {
	if err := t.Body.Validate(); err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	p, err := n.pendingLocked()
	if err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	id := t.ID()
	// For our own proposal only the counterparty's signature is new;
	// anything else is verified in full.
	if p != nil && p.Body.ID() == id && bytes.Equal(p.Sig, t.sigOf(n.id)) {
		cp := t.Body.Counterparty(n.id)
		if sig := t.sigOf(cp); len(sig) != ed25519.SignatureSize || !ed25519.Verify(cp.PublicKey(), signMessage(id), sig) {
			return fmt.Errorf("complete: tx %s: counterparty %s signature: %w", id.String()[:8], cp.Short(), ErrBadSignature)
		}
	} else if err := t.Verify(); err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	if p == nil || p.Body.ID() != id {
		if _, err := n.insertLocked([]*Tx{t}, nil); err != nil {
			return fmt.Errorf("complete: %w", err)
		}
		if p == nil {
			return nil // already completed, e.g. learnt by sync
		}
		return fmt.Errorf("complete: tx %s is not the outstanding proposal %s: %w", t.ID().String()[:8], p.Body.ID().String()[:8], ErrProtocol)
	}
	// Append and unlock in one bbolt transaction.
	_, err = n.insertLocked([]*Tx{t}, func(btx *bolt.Tx) error { return btx.Bucket(bPending).Delete(keyOut) })
	if err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	return nil
}

// Ingest verifies complete transactions learnt from elsewhere (sync, gossip)
// and stores those not yet known, all in one bbolt transaction. It returns
// how many were new. Invalid transactions are rejected before anything is
// written: either all valid ones are stored or none.
func (n *Node) Ingest(txs ...*Tx) (int, error) {
	if err := verifyAll(txs); err != nil {
		return 0, fmt.Errorf("ingest: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return 0, ErrClosed
	}
	return n.insertLocked(txs, nil)
}

// insertLocked stores verified transactions, and runs also (if not nil) in
// the same bbolt transaction; n.mu must be held.
func (n *Node) insertLocked(txs []*Tx, also func(*bolt.Tx) error) (int, error) {
	var forks []*Fork
	added := 0
	err := n.updateLocked(func(btx *bolt.Tx) error {
		forks, added = forks[:0], 0
		for _, t := range txs {
			raw, _ := t.MarshalBinary()
			res, err := insertTx(btx, t, raw, n.now())
			if err != nil {
				return err
			}
			if res.New {
				added++
			}
			forks = append(forks, res.Forks...)
		}
		if also != nil {
			return also(btx)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, f := range forks {
		n.log.Warn("ledger: fork proof, member quarantined", "member", f.Author().Short(), "seq", f.Seq(), "kind", f.Kind())
		if n.onFork != nil {
			go n.onFork(f)
		}
	}
	return added, nil
}

// AddProof verifies a fork proof received from elsewhere, stores it (with
// both its transactions) and quarantines its author.
func (n *Node) AddProof(f *Fork) error {
	if err := f.Verify(); err != nil {
		return fmt.Errorf("add proof: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if _, err := n.insertLocked([]*Tx{f.A.Tx, f.B.Tx}, nil); err != nil {
		return fmt.Errorf("add proof: %w", err)
	}
	// For a broken link whose entries are not adjacent in this node's
	// index, make sure the proof itself is stored.
	return n.updateLocked(func(btx *bolt.Tx) error { return storeProof(btx, f, n.now()) })
}

// verifyAll verifies transactions, spreading large batches over the CPUs
// (signature checks dominate sync). It returns the error of the first
// invalid transaction in input order.
func verifyAll(txs []*Tx) error {
	workers := min(runtime.GOMAXPROCS(0), len(txs)/32)
	if workers <= 1 {
		for _, t := range txs {
			if err := t.Verify(); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, len(txs))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(txs); i += workers {
				errs[i] = txs[i].Verify()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// CorrectionOf returns the terms of the compensating transaction that
// reverses t (ValueFlows `corrects`): the payee pays the amount back, naming
// t. The fee, if any, is not reversed (it is a separate flow to the
// commons). Nothing is deleted: both transactions stay in both chains.
func CorrectionOf(t *Tx) Terms {
	return Terms{
		Payer: t.Body.Payee, Payee: t.Body.Payer, Amount: t.Body.Amount,
		Purpose: PurposeCorrection, Bioregion: t.Body.Bioregion, Corrects: t.ID(),
	}
}
