package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ObservationSource gives the sensor observations of the current moment
// (the sensors subsystem's latest snapshot). Defined here, by the consumer;
// the daemon adapts the sensors package to it.
type ObservationSource interface {
	Observations(ctx context.Context) ([]Observation, error)
}

// Quote prices a served request under the energy situation of obs with the
// community's pricing rule (see Pricing).
func (n *Node) Quote(r Receipt, obs []Observation) (int64, error) {
	if !n.rules.Pricing.Enabled() {
		return 0, fmt.Errorf("quote: pricing disabled: %w", ErrInvalid)
	}
	return n.rules.Pricing.Price(r, EnergyFrom(obs))
}

// CanSpend reports whether this node could pay amount (plus the fee the
// rules add) to payee now without leaving its credit limits, nor while its
// chain is locked by an outstanding proposal. The gateway calls it before
// forwarding a request to another node, so that a request this node could
// not pay for is refused up front with the reason (wrapping ErrLimit,
// ErrChainLocked or ErrQuarantined).
func (n *Node) CanSpend(payee MemberID, amount int64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if p, err := n.pendingLocked(); err != nil {
		return fmt.Errorf("can spend: %w", err)
	} else if p != nil {
		return fmt.Errorf("can spend: %w", ErrChainLocked)
	}
	return n.db.View(func(btx *bolt.Tx) error {
		if btx.Bucket(bQuar).Get(payee[:]) != nil {
			return fmt.Errorf("can spend: payee %s: %w", payee.Short(), ErrQuarantined)
		}
		bal := getI64(btx.Bucket(bBal), n.id[:])
		after := bal - amount - n.rules.FeeFor(n.id, payee, amount)
		if lim := n.rules.LimitsFor(n.id); after < lim.Min {
			return fmt.Errorf("can spend: %s of %s would take the balance from %s to %s, below the limit %s: %w",
				FormatMilli(amount), n.rules.unit(), FormatMilli(bal), FormatMilli(after), FormatMilli(lim.Min), ErrLimit)
		}
		return nil
	})
}

// TxView is a transaction as the LAN page shows it.
type TxView struct {
	ID     Hash   `json:"id"`
	Action string `json:"action"` // "deliverService" or "transfer"
	Body
}

// ForkView is a fork proof as the LAN page shows it, with the proof's
// canonical encoding (hex) so a steward can export and verify it elsewhere.
type ForkView struct {
	Member MemberID  `json:"member"`
	Since  time.Time `json:"since"` // when this node learnt of the fork
	Seq    uint64    `json:"seq"`
	Kind   string    `json:"kind"`
	A      Hash      `json:"a"` // the two transactions
	B      Hash      `json:"b"`
	Proof  []byte    `json:"proof"` // canonical encoding (base64 in JSON)
}

// View is the ledger as the LAN page's "Ledger" view shows it.
type View struct {
	Self        MemberID         `json:"self"`
	Unit        string           `json:"unit"`
	EarnedToday int64            `json:"earned_today"` // this node, since 00:00 UTC, milli-units
	SpentToday  int64            `json:"spent_today"`  // amounts and fees paid
	Accounts    []Account        `json:"accounts"`
	Recent      []TxView         `json:"recent"`
	Bioregions  []BioregionTotal `json:"bioregions"`
	Forks       []ForkView       `json:"forks"`
	Pending     *Proposal        `json:"pending,omitempty"`
	GeneratedAt time.Time        `json:"generated_at"`
}

// View gathers the LAN page's ledger view: every account, the recent
// transactions with their attachments, bioregional totals per period since
// `since`, and fork proofs (quarantined members).
func (n *Node) View(recent int, period Period, since time.Time) (View, error) {
	v := View{Self: n.id, Unit: n.rules.unit(), GeneratedAt: n.now().UTC()}
	var err error
	if v.Accounts, err = n.Accounts(); err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	txs, err := n.Recent(recent)
	if err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	for _, t := range txs {
		v.Recent = append(v.Recent, TxView{ID: t.ID(), Action: t.Body.Action(), Body: t.Body})
	}
	if v.Bioregions, err = n.Bioregions(period, since, n.now().Add(24*time.Hour)); err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	forks, err := n.Forks()
	if err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	learnt := map[MemberID]time.Time{}
	err = n.view(func(btx *bolt.Tx) error {
		return btx.Bucket(bQuar).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				learnt[MemberID(k)] = time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC()
			}
			return nil
		})
	})
	if err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	for _, f := range forks {
		raw, _ := f.MarshalBinary()
		v.Forks = append(v.Forks, ForkView{Member: f.Author(), Since: learnt[f.Author()], Seq: f.Seq(), Kind: f.Kind(), A: f.A.Tx.ID(), B: f.B.Tx.ID(), Proof: raw})
	}
	now := n.now()
	err = n.Between(Day.Start(now), now.Add(time.Hour), func(t *Tx) error {
		if t.Body.Payee == n.id {
			v.EarnedToday += t.Body.Amount
		}
		if t.Body.Payer == n.id {
			v.SpentToday += t.Body.Amount + t.Body.Fee
		}
		if t.Body.Commons == n.id && t.Body.Fee > 0 {
			v.EarnedToday += t.Body.Fee
		}
		return nil
	})
	if err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	if v.Pending, err = n.Pending(); err != nil {
		return v, fmt.Errorf("ledger view: %w", err)
	}
	return v, nil
}
