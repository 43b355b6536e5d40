package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Account is one member's standing as this node sees it.
type Account struct {
	Member      MemberID `json:"member"`
	Balance     int64    `json:"balance"` // milli-units
	Limits      Limits   `json:"limits"`
	Head        Head     `json:"head"`
	Quarantined bool     `json:"quarantined"`
	Commons     bool     `json:"commons,omitempty"`
}

// Balance returns m's balance over every transaction this node knows.
func (n *Node) Balance(m MemberID) (int64, error) {
	var v int64
	err := n.view(func(btx *bolt.Tx) error { v = getI64(btx.Bucket(bBal), m[:]); return nil })
	return v, err
}

// Head returns the contiguous head of m's chain as this node knows it.
func (n *Node) Head(m MemberID) (Head, error) {
	var h Head
	err := n.view(func(btx *bolt.Tx) error { h = getHead(btx, m); return nil })
	return h, err
}

// Accounts returns every member this node knows of, ordered by member id.
// Balances sum to exactly zero.
func (n *Node) Accounts() ([]Account, error) {
	var out []Account
	err := n.view(func(btx *bolt.Tx) error {
		q := btx.Bucket(bQuar)
		return btx.Bucket(bBal).ForEach(func(k, v []byte) error {
			m := MemberID(k)
			out = append(out, Account{
				Member: m, Balance: int64(binary.BigEndian.Uint64(v)), Limits: n.rules.LimitsFor(m),
				Head: getHead(btx, m), Quarantined: q.Get(k) != nil, Commons: m == n.rules.Commons,
			})
			return nil
		})
	})
	return out, err
}

// Tx returns the transaction with id, or ErrNotFound.
func (n *Node) Tx(id Hash) (*Tx, error) {
	var t *Tx
	err := n.view(func(btx *bolt.Tx) error {
		var err error
		t, err = loadTx(btx, id[:])
		return err
	})
	return t, err
}

// Recent returns up to limit transactions, newest (by creation time) first.
func (n *Node) Recent(limit int) ([]*Tx, error) {
	var out []*Tx
	err := n.view(func(btx *bolt.Tx) error {
		c := btx.Bucket(bByTime).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			t, err := loadTx(btx, k[8:])
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// Between calls fn for every transaction created in [from, to), oldest
// first, inside a read transaction; fn must not call the Node.
func (n *Node) Between(from, to time.Time, fn func(*Tx) error) error {
	return n.view(func(btx *bolt.Tx) error {
		c := btx.Bucket(bByTime).Cursor()
		start := binary.BigEndian.AppendUint64(nil, uint64(max(from.UnixMilli(), 0)))
		for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
			if int64(binary.BigEndian.Uint64(k)) >= to.UnixMilli() {
				break
			}
			t, err := loadTx(btx, k[8:])
			if err != nil {
				return err
			}
			if err := fn(t); err != nil {
				return err
			}
		}
		return nil
	})
}

// Chain returns up to limit canonical entries of m's chain from seq from on.
func (n *Node) Chain(m MemberID, from uint64, limit int) ([]Entry, error) {
	var out []Entry
	err := n.view(func(btx *bolt.Tx) error {
		c := btx.Bucket(bChain).Cursor()
		for k, v := c.Seek(chainKey(m, max(from, 1))); k != nil && bytes.HasPrefix(k, m[:]) && len(out) < limit; k, v = c.Next() {
			e, err := loadEntry(btx, m, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// VerifyChain verifies every signature and link of m's canonical chain up to
// its contiguous head.
func (n *Node) VerifyChain(m MemberID) error {
	return n.view(func(btx *bolt.Tx) error {
		chain := btx.Bucket(bChain)
		for seq := uint64(1); ; seq++ {
			id := chain.Get(chainKey(m, seq))
			if id == nil {
				break
			}
			e, err := loadEntry(btx, m, id)
			if err != nil {
				return err
			}
			if err := e.Verify(); err != nil {
				return fmt.Errorf("verify chain of %s: %w", m.Short(), err)
			}
		}
		if err := verifyChainTx(btx, m); err != nil {
			return fmt.Errorf("verify chain: %w", err)
		}
		return nil
	})
}

// Check verifies the whole store (signatures, indexes, balances, zero sum,
// heads, links). It reads everything: use it at startup or in tests.
func (n *Node) Check() error { return n.view(checkStore) }

// Forks returns every fork proof this node holds.
func (n *Node) Forks() ([]*Fork, error) {
	var out []*Fork
	err := n.view(func(btx *bolt.Tx) error {
		return btx.Bucket(bProof).ForEach(func(k, v []byte) error {
			f, err := DecodeFork(v)
			if err != nil {
				return fmt.Errorf("%w: proof %x: %w", ErrCorrupt, k[:4], err)
			}
			out = append(out, f)
			return nil
		})
	})
	return out, err
}

// Quarantined returns the members with a proven fork, ordered by id.
func (n *Node) Quarantined() ([]MemberID, error) {
	var out []MemberID
	err := n.view(func(btx *bolt.Tx) error {
		return btx.Bucket(bQuar).ForEach(func(k, _ []byte) error {
			out = append(out, MemberID(k))
			return nil
		})
	})
	return out, err
}

// Period is the length of a bioregional accounting period.
type Period int

// Periods.
const (
	Day Period = iota
	Week
	Month
)

// Start returns the start (UTC) of the period containing t. Weeks start on
// Monday.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch p {
	case Week:
		return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
	case Month:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return d
}

// BioregionTotal is the account of one bioregion over one period.
type BioregionTotal struct {
	Bioregion    string    `json:"bioregion"`
	Period       time.Time `json:"period"` // start of the period, UTC
	Transactions int       `json:"transactions"`
	Volume       int64     `json:"volume"` // milli-units moved (amounts, not fees)
	Fees         int64     `json:"fees"`
	Services     int       `json:"services"` // transactions with an inference receipt
	TokensIn     uint64    `json:"tokens_in"`
	TokensOut    uint64    `json:"tokens_out"`
	MilliJoules  uint64    `json:"millijoules"` // energy spent serving
	// SolarMilliJoules is the part of MilliJoules covered by the sun: each
	// service's energy times min(1, solar_power / load_power) of its
	// observations (0 without both). SolarMilliJoules/MilliJoules is the
	// solar share.
	SolarMilliJoules uint64 `json:"solar_millijoules"`
	// MeanSolarW is the mean of the solar power observations attached to
	// the period's transactions (SolarSamples of them).
	MeanSolarW   float64 `json:"mean_solar_w"`
	SolarSamples int     `json:"solar_samples"`
	Observations int     `json:"observations"`
	SimulatedObs int     `json:"simulated_observations"`
}

// Bioregions accounts flows and energy per bioregion and period for the
// transactions created in [from, to), ordered by bioregion then period.
func (n *Node) Bioregions(p Period, from, to time.Time) ([]BioregionTotal, error) {
	type key struct {
		region string
		start  time.Time
	}
	acc := map[key]*BioregionTotal{}
	err := n.Between(from, to, func(t *Tx) error {
		k := key{t.Body.Bioregion, p.Start(t.Body.Created)}
		a := acc[k]
		if a == nil {
			a = &BioregionTotal{Bioregion: k.region, Period: k.start}
			acc[k] = a
		}
		a.Transactions++
		a.Volume += t.Body.Amount
		a.Fees += t.Body.Fee
		if r := t.Body.Receipt; r != nil {
			a.Services++
			a.TokensIn += r.TokensIn
			a.TokensOut += r.TokensOut
			a.MilliJoules += r.MilliJoules
			if e := EnergyFrom(t.Body.Observations); e.HasSolar && e.HasLoad && e.LoadW > 0 && e.SolarW > 0 {
				a.SolarMilliJoules += uint64(float64(r.MilliJoules) * min(1, e.SolarW/e.LoadW))
			}
		}
		for _, o := range t.Body.Observations {
			a.Observations++
			if o.Simulated {
				a.SimulatedObs++
			}
		}
		if e := EnergyFrom(t.Body.Observations); e.HasSolar {
			a.MeanSolarW += (e.SolarW - a.MeanSolarW) / float64(a.SolarSamples+1)
			a.SolarSamples++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]BioregionTotal, 0, len(acc))
	for _, a := range acc {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b BioregionTotal) int {
		if a.Bioregion != b.Bioregion {
			if a.Bioregion < b.Bioregion {
				return -1
			}
			return 1
		}
		return a.Period.Compare(b.Period)
	})
	return out, nil
}
