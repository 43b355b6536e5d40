package ledger

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// Limits are a member's credit limits in milli-units: its balance must stay
// within [Min, Max]. Min is usually negative (how far a member may go into
// debt to the community), Max positive (how much it may hoard).
type Limits struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

// Allows reports whether balance lies within the limits.
func (l Limits) Allows(balance int64) bool { return balance >= l.Min && balance <= l.Max }

// Purposes with a meaning to the rules. Any other purpose is free text.
const (
	// PurposeInference pays for a served inference request (carries a Receipt).
	PurposeInference = "inference"
	// PurposeDemurrage is a periodic transfer from a member to the commons.
	PurposeDemurrage = "demurrage"
	// PurposeCorrection compensates an earlier transaction (Body.Corrects).
	PurposeCorrection = "correction"
)

// Observed properties the pricing rule reads from a transaction's
// observations (see EnergyFrom).
const (
	PropSolarPower = "solar_power" // W or kW: photovoltaic production
	PropLoadPower  = "load_power"  // W or kW: the node's (or site's) consumption
	PropBatterySoC = "battery_soc" // %: battery state of charge
)

// Rules are the community's economic rules; the community config fills them.
// All amounts are milli-units of Unit. The zero value allows no credit at
// all; start from DefaultRules. Rules must not be mutated while a Node uses
// them.
type Rules struct {
	// Unit is the credit unit named in every transaction (default "credit").
	Unit string `json:"unit"`
	// DefaultLimits apply to members without an entry in Limits.
	DefaultLimits Limits `json:"default_limits"`
	// Limits are per-member overrides.
	Limits map[MemberID]Limits `json:"limits,omitempty"`
	// Commons is the community's commons account (zero: none). Fees and
	// demurrage go to it; it spends like any member, with its own key.
	Commons MemberID `json:"commons"`
	// FeeBasisPoints is a fee on every transaction paid by the payer to the
	// Commons, in 1/10000 of the amount, rounded down (0: no fee). Not
	// charged when a party is the Commons.
	FeeBasisPoints int64 `json:"fee_basis_points"`
	// DemurrageBasisPointsPerDay is the share of a positive balance a member
	// owes the commons per day (0: none). It is collected by a transaction
	// with purpose PurposeDemurrage proposed by the commons; a member's node
	// countersigns it up to the amount due (see DemurrageDue).
	DemurrageBasisPointsPerDay int64 `json:"demurrage_basis_points_per_day"`
	// Pricing prices inference.
	Pricing Pricing `json:"pricing"`
	// ProposalTTL is how long a proposal may be countersigned (default 30s).
	ProposalTTL time.Duration `json:"proposal_ttl"`
	// ProposalGrace is how long after expiry a proposer keeps its chain
	// locked in case the countersigned transaction is still on its way
	// (default 2m); it covers clock skew between nodes.
	ProposalGrace time.Duration `json:"proposal_grace"`
}

// DefaultRules are sensible starting rules: unit "credit", limits of
// -100 / +1000 credits, no fees, no demurrage, DefaultPricing.
func DefaultRules() Rules {
	return Rules{
		Unit:          "credit",
		DefaultLimits: Limits{Min: -100_000, Max: 1_000_000},
		Pricing:       DefaultPricing(),
		ProposalTTL:   30 * time.Second,
		ProposalGrace: 2 * time.Minute,
	}
}

func (r *Rules) unit() string {
	if r.Unit == "" {
		return "credit"
	}
	return r.Unit
}

func (r *Rules) ttl() time.Duration {
	if r.ProposalTTL <= 0 {
		return 30 * time.Second
	}
	return r.ProposalTTL
}

func (r *Rules) grace() time.Duration {
	if r.ProposalGrace <= 0 {
		return 2 * time.Minute
	}
	return r.ProposalGrace
}

// LimitsFor returns m's limits.
func (r *Rules) LimitsFor(m MemberID) Limits {
	if l, ok := r.Limits[m]; ok {
		return l
	}
	return r.DefaultLimits
}

// FeeFor returns the fee the payer owes the commons on a transaction of
// amount between payer and payee.
func (r *Rules) FeeFor(payer, payee MemberID, amount int64) int64 {
	if r.Commons.IsZero() || r.FeeBasisPoints <= 0 || payer == r.Commons || payee == r.Commons {
		return 0
	}
	return mulDiv(amount, r.FeeBasisPoints, 10_000)
}

// DemurrageDue returns the demurrage owed on balance held for elapsed:
// floor(balance * DemurrageBasisPointsPerDay * elapsed / (10000 * 24h)),
// zero for non-positive balances.
func (r *Rules) DemurrageDue(balance int64, elapsed time.Duration) int64 {
	if balance <= 0 || elapsed <= 0 || r.DemurrageBasisPointsPerDay <= 0 || r.Commons.IsZero() {
		return 0
	}
	n := new(big.Int).SetInt64(balance)
	n.Mul(n, big.NewInt(r.DemurrageBasisPointsPerDay))
	n.Mul(n, big.NewInt(elapsed.Milliseconds()))
	n.Quo(n, big.NewInt(10_000*24*3600*1000))
	if !n.IsInt64() || n.Int64() > balance {
		return balance
	}
	return n.Int64()
}

// mulDiv returns floor(a*b/c) for non-negative a, b and positive c without
// overflow.
func mulDiv(a, b, c int64) int64 {
	n := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	n.Quo(n, big.NewInt(c))
	if !n.IsInt64() {
		return math.MaxInt64
	}
	return n.Int64()
}

// Pricing prices a served inference request in milli-units:
//
//	base   = ceil((tokens_in*InPer1k + tokens_out*OutPer1k) / 1000)
//	       + ceil(millijoules*PerKJ / 1e6)
//	surplus = max(0, solar_power - load_power)                  (watts)
//	factor = 1000 - MaxDiscountPermille * min(surplus, SurplusFullW) / SurplusFullW
//	       + ScarcityPermille   if surplus == 0 and battery_soc < LowBatteryPercent
//	price  = max(MinPrice, ceil(base * factor / 1000))
//
// So serving is cheaper while the sun delivers more than the node uses (down
// to 1000-MaxDiscountPermille per mille of the base price at SurplusFullW of
// surplus), and dearer when the battery is low and there is no surplus. The
// energy situation is read from the transaction's own observations (see
// EnergyFrom), so every node can recompute and check the price.
type Pricing struct {
	InPer1k             int64 `json:"in_per_1k"`             // milli-units per 1000 prompt tokens
	OutPer1k            int64 `json:"out_per_1k"`            // milli-units per 1000 generated tokens
	PerKJ               int64 `json:"per_kj"`                // milli-units per kJ spent serving
	MinPrice            int64 `json:"min_price"`             // floor of any inference price
	SurplusFullW        int64 `json:"surplus_full_w"`        // surplus (W) at which the full discount applies
	MaxDiscountPermille int64 `json:"max_discount_permille"` // 0..1000
	LowBatteryPercent   int64 `json:"low_battery_percent"`   // battery SoC under which scarcity applies
	ScarcityPermille    int64 `json:"scarcity_permille"`     // surcharge per mille of base
}

// DefaultPricing: 0.1 credit per 1000 prompt tokens, 1 credit per 1000
// generated tokens, 0.05 credit per kJ, at least 0.001 credit; up to half
// price with 200 W of solar surplus; +25% when the battery is under 20% and
// there is no surplus.
func DefaultPricing() Pricing {
	return Pricing{InPer1k: 100, OutPer1k: 1000, PerKJ: 50, MinPrice: 1,
		SurplusFullW: 200, MaxDiscountPermille: 500, LowBatteryPercent: 20, ScarcityPermille: 250}
}

// Enabled reports whether the pricing rule prices anything.
func (p Pricing) Enabled() bool {
	return p.InPer1k > 0 || p.OutPer1k > 0 || p.PerKJ > 0 || p.MinPrice > 0
}

// Energy is the energy situation at the moment of a transaction.
type Energy struct {
	SolarW     float64 `json:"solar_w"`
	LoadW      float64 `json:"load_w"`
	BatteryPct float64 `json:"battery_pct"`
	HasSolar   bool    `json:"has_solar"`
	HasLoad    bool    `json:"has_load"`
	HasBattery bool    `json:"has_battery"`
}

// EnergyFrom extracts the energy situation from observations: the last
// observation of PropSolarPower, PropLoadPower (unit "W" or "kW") and
// PropBatterySoC (unit "%"). Others are ignored.
func EnergyFrom(obs []Observation) Energy {
	var e Energy
	watts := func(o Observation) (float64, bool) {
		switch strings.TrimSpace(o.Unit) {
		case "W":
			return o.Value, true
		case "kW":
			return o.Value * 1000, true
		case "mW":
			return o.Value / 1000, true
		}
		return 0, false
	}
	for _, o := range obs {
		switch o.Property {
		case PropSolarPower:
			if w, ok := watts(o); ok {
				e.SolarW, e.HasSolar = w, true
			}
		case PropLoadPower:
			if w, ok := watts(o); ok {
				e.LoadW, e.HasLoad = w, true
			}
		case PropBatterySoC:
			if o.Unit == "%" {
				e.BatteryPct, e.HasBattery = o.Value, true
			}
		}
	}
	return e
}

// SurplusW is the solar surplus in whole watts (never negative).
func (e Energy) SurplusW() int64 {
	s := math.Floor(e.SolarW - e.LoadW)
	if !e.HasSolar || s <= 0 || math.IsNaN(s) {
		return 0
	}
	if s > 1e12 {
		return 1e12
	}
	return int64(s)
}

// maxTokens bounds token counts accepted by the price function.
const maxTokens = 1 << 32

// Price returns the price of a served request under the energy situation e.
func (p Pricing) Price(r Receipt, e Energy) (int64, error) {
	if r.TokensIn > maxTokens || r.TokensOut > maxTokens || r.MilliJoules > 1<<50 {
		return 0, fmt.Errorf("price receipt: tokens %d/%d or %d mJ out of range: %w", r.TokensIn, r.TokensOut, r.MilliJoules, ErrInvalid)
	}
	ceilDiv := func(n, d *big.Int) *big.Int {
		q, m := new(big.Int).QuoRem(n, d, new(big.Int))
		if m.Sign() > 0 {
			q.Add(q, big.NewInt(1))
		}
		return q
	}
	tok := new(big.Int).Mul(new(big.Int).SetUint64(r.TokensIn), big.NewInt(p.InPer1k))
	tok.Add(tok, new(big.Int).Mul(new(big.Int).SetUint64(r.TokensOut), big.NewInt(p.OutPer1k)))
	base := ceilDiv(tok, big.NewInt(1000))
	en := new(big.Int).Mul(new(big.Int).SetUint64(r.MilliJoules), big.NewInt(p.PerKJ))
	base.Add(base, ceilDiv(en, big.NewInt(1_000_000)))

	factor := int64(1000)
	surplus := e.SurplusW()
	if p.SurplusFullW > 0 && p.MaxDiscountPermille > 0 {
		s := min(surplus, p.SurplusFullW)
		factor -= min(p.MaxDiscountPermille, 1000) * s / p.SurplusFullW
	}
	if surplus == 0 && e.HasBattery && e.BatteryPct < float64(p.LowBatteryPercent) {
		factor += max(p.ScarcityPermille, 0)
	}
	price := ceilDiv(new(big.Int).Mul(base, big.NewInt(factor)), big.NewInt(1000))
	if !price.IsInt64() || price.Int64() > maxAmount {
		return 0, fmt.Errorf("price receipt: %s milli-units above %d: %w", price, int64(maxAmount), ErrInvalid)
	}
	return max(price.Int64(), p.MinPrice), nil
}

// rulesJSON is Rules with durations as Go duration strings ("30s").
type rulesJSON struct {
	plainRules
	ProposalTTL   jsonDuration `json:"proposal_ttl"`
	ProposalGrace jsonDuration `json:"proposal_grace"`
}

type plainRules Rules

// jsonDuration is a time.Duration written as "1m30s"; it also reads
// integer nanoseconds.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %v: %w", s, err, ErrMalformed)
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s: want a string like \"30s\" or nanoseconds: %w", b, ErrMalformed)
	}
	*d = jsonDuration(n)
	return nil
}

// MarshalJSON writes the rules with durations as strings ("30s") and
// per-member limits keyed by hex member id.
func (r Rules) MarshalJSON() ([]byte, error) {
	return json.Marshal(rulesJSON{plainRules: plainRules(r), ProposalTTL: jsonDuration(r.ProposalTTL), ProposalGrace: jsonDuration(r.ProposalGrace)})
}

// UnmarshalJSON reads rules written by MarshalJSON (durations may also be
// integer nanoseconds). Missing fields keep their zero value.
func (r *Rules) UnmarshalJSON(b []byte) error {
	var v rulesJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("decode ledger rules: %w", err)
	}
	*r = Rules(v.plainRules)
	r.ProposalTTL, r.ProposalGrace = time.Duration(v.ProposalTTL), time.Duration(v.ProposalGrace)
	return nil
}
