package ledger

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTransferUpdatesBothChainsAndBalances(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	tx1 := mustTransfer(t, a, b, 1500)
	tx2 := mustTransfer(t, b, a, 400)
	tx3 := mustTransfer(t, a, b, 1)

	for _, n := range []*Node{a, b} {
		if got := balance(t, n, a.ID()); got != -1101 {
			t.Errorf("%s sees A's balance %d, want -1101", n.ID().Short(), got)
		}
		if got := balance(t, n, b.ID()); got != 1101 {
			t.Errorf("%s sees B's balance %d, want 1101", n.ID().Short(), got)
		}
		for _, m := range []MemberID{a.ID(), b.ID()} {
			if err := n.VerifyChain(m); err != nil {
				t.Errorf("VerifyChain: %v", err)
			}
			h, _ := n.Head(m)
			if h.Seq != 3 {
				t.Errorf("head of %s on %s: seq %d, want 3", m.Short(), n.ID().Short(), h.Seq)
			}
		}
	}
	chain, err := a.Chain(a.ID(), 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 || chain[0].Tx.ID() != tx1.ID() || chain[1].Tx.ID() != tx2.ID() || chain[2].Tx.ID() != tx3.ID() {
		t.Fatalf("A's chain is not tx1, tx2, tx3: %v", chain)
	}
	if chain[1].Prev != chain[0].Hash() || chain[2].Prev != chain[1].Hash() || !chain[0].Prev.IsZero() {
		t.Error("A's chain does not link")
	}
	recent, _ := b.Recent(2)
	if len(recent) != 2 {
		t.Fatalf("Recent(2) returned %d", len(recent))
	}
}

func TestProposalNeverChangesBalanceAndExpires(t *testing.T) {
	clk := newClock()
	rules := testRules()
	a, b := newNode(t, rules, clk), newNode(t, rules, clk)
	hb, _ := b.Head(b.ID())
	p, err := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 700, Purpose: "tea"}, hb)
	if err != nil {
		t.Fatal(err)
	}
	if got := balance(t, a, a.ID()); got != 0 {
		t.Errorf("half-signed proposal changed A's balance to %d", got)
	}
	// The chain is locked while the proposal is outstanding.
	if _, err := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 1}, hb); !errors.Is(err, ErrChainLocked) {
		t.Errorf("second proposal: %v, want ErrChainLocked", err)
	}
	clk.Advance(rules.ProposalTTL + time.Second)
	if _, err := b.Countersign(p); !errors.Is(err, ErrExpired) {
		t.Errorf("countersign after expiry: %v, want ErrExpired", err)
	}
	if got := balance(t, b, b.ID()); got != 0 {
		t.Errorf("expired proposal changed B's balance to %d", got)
	}
	if _, err := a.Propose(Terms{Payer: a.ID(), Payee: b.ID(), Amount: 1}, hb); !errors.Is(err, ErrChainLocked) {
		t.Errorf("proposal within the grace period: %v, want ErrChainLocked", err)
	}
	clk.Advance(rules.ProposalGrace)
	if pend, _ := a.Pending(); pend != nil {
		t.Error("proposal still pending after expiry and grace")
	}
	mustTransfer(t, a, b, 5)
	if got := balance(t, a, a.ID()); got != -5 {
		t.Errorf("A's balance %d, want -5", got)
	}
}

func TestLearningACompletedProposalBySyncUnlocksTheChain(t *testing.T) {
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
	// The reply is lost; A learns the transaction another way.
	if _, err := a.Ingest(tx); err != nil {
		t.Fatal(err)
	}
	if pend, _ := a.Pending(); pend != nil {
		t.Error("chain still locked after the completed transaction arrived")
	}
	mustTransfer(t, a, b, 1)
}

func TestCreditLimits(t *testing.T) {
	clk := newClock()
	rules := testRules()
	a, b := newNode(t, rules, clk), newNode(t, rules, clk)
	rules.Limits = map[MemberID]Limits{b.ID(): {Min: -100, Max: 3000}}
	a.rules, b.rules = rules, rules

	_, err := transfer(a, b, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 10_001})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("payer over its minimum: %v, want ErrLimit", err)
	}
	mustTransfer(t, a, b, 3000)
	// B is at its maximum: as payee it refuses more.
	_, err = transfer(a, b, Terms{Payer: a.ID(), Payee: b.ID(), Amount: 1})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("payee over its maximum: %v, want ErrLimit", err)
	}
	if got := balance(t, b, b.ID()); got != 3000 {
		t.Errorf("B's balance %d after refused transfer, want 3000", got)
	}
	// B may always pay its way back down.
	mustTransfer(t, b, a, 3100)
	if _, err := transfer(b, a, Terms{Payer: b.ID(), Payee: a.ID(), Amount: 1}); !errors.Is(err, ErrLimit) {
		t.Fatalf("B below its minimum: %v, want ErrLimit", err)
	}
}

func TestFeesGoToCommonsAndTotalStaysZero(t *testing.T) {
	clk := newClock()
	commonsKey := newKey(t)
	rules := testRules()
	rules.Commons = MemberOfKey(commonsKey)
	rules.FeeBasisPoints = 250 // 2.5%
	a, b := newNode(t, rules, clk), newNode(t, rules, clk)
	tx := mustTransfer(t, a, b, 1000)
	if tx.Body.Fee != 25 || tx.Body.Commons != rules.Commons {
		t.Fatalf("fee %d to %s, want 25 to commons", tx.Body.Fee, tx.Body.Commons.Short())
	}
	accts, err := b.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[MemberID]int64{a.ID(): -1025, b.ID(): 1000, rules.Commons: 25}
	var total int64
	for _, ac := range accts {
		total += ac.Balance
		if ac.Balance != want[ac.Member] {
			t.Errorf("balance of %s: %d, want %d", ac.Member.Short(), ac.Balance, want[ac.Member])
		}
	}
	if total != 0 || len(accts) != 3 {
		t.Errorf("total %d over %d accounts, want 0 over 3", total, len(accts))
	}
	// A proposal with a fee the rules do not ask for is refused.
	hb, _ := b.Head(b.ID())
	body := Body{Payer: a.ID(), Payee: b.ID(), Amount: 1000, Fee: 1, Commons: rules.Commons, Unit: "credit",
		Created: clk.Now(), Expires: clk.Now().Add(time.Minute)}
	ha, _ := a.Head(a.ID())
	body.PayerPos, body.PayeePos = ha.Next(), hb.Next()
	body.normalize()
	if _, err := b.Countersign(&Proposal{Body: body, Proposer: a.ID(), Sig: body.Sign(a.key)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong fee: %v, want ErrInvalid", err)
	}
}

func TestDemurrageIsATransferToCommons(t *testing.T) {
	clk := newClock()
	commonsKey := newKey(t)
	rules := testRules()
	rules.Commons = MemberOfKey(commonsKey)
	rules.DemurrageBasisPointsPerDay = 10 // 0.1% a day
	a, b := newNode(t, rules, clk), newNode(t, rules, clk)
	commons := openNode(t, t.TempDir(), commonsKey, rules, clk)
	mustTransfer(t, a, b, 10_000)
	clk.Advance(10 * 24 * time.Hour)
	due := rules.DemurrageDue(10_000, 10*24*time.Hour)
	if due != 100 {
		t.Fatalf("DemurrageDue = %d, want 100", due)
	}
	syncPair(t, commons, b)
	if got, err := commons.DemurrageDue(b.ID()); err != nil || got != due {
		t.Fatalf("commons computes %d due from B (%v), want %d", got, err, due)
	}
	if _, err := transfer(commons, b, Terms{Payer: b.ID(), Payee: commons.ID(), Amount: due + 1, Purpose: PurposeDemurrage}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("demurrage above due: %v, want ErrInvalid", err)
	}
	mustDemurrage, err := transfer(commons, b, Terms{Payer: b.ID(), Payee: commons.ID(), Amount: due, Purpose: PurposeDemurrage})
	if err != nil {
		t.Fatal(err)
	}
	if got := balance(t, b, b.ID()); got != 10_000-due {
		t.Errorf("B's balance after demurrage %d", got)
	}
	// Just paid: nothing more is due.
	if _, err := transfer(commons, b, Terms{Payer: b.ID(), Payee: commons.ID(), Amount: 1, Purpose: PurposeDemurrage}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("second demurrage right after the first: %v, want ErrInvalid", err)
	}
	_ = mustDemurrage
}

func TestCorrectionIsACompensatingEntry(t *testing.T) {
	clk := newClock()
	a, b := newNode(t, testRules(), clk), newNode(t, testRules(), clk)
	wrong := mustTransfer(t, a, b, 900)
	terms := CorrectionOf(wrong)
	if terms.Payer != b.ID() || terms.Payee != a.ID() || terms.Amount != 900 || terms.Corrects != wrong.ID() {
		t.Fatalf("CorrectionOf: %+v", terms)
	}
	fix, err := transfer(b, a, terms)
	if err != nil {
		t.Fatal(err)
	}
	if got := balance(t, a, a.ID()); got != 0 {
		t.Errorf("A's balance after correction %d, want 0", got)
	}
	for _, id := range []Hash{wrong.ID(), fix.ID()} {
		if _, err := a.Tx(id); err != nil {
			t.Errorf("tx %s gone: %v", id.String()[:8], err)
		}
	}
	got, _ := a.Tx(fix.ID())
	if got.Body.Corrects != wrong.ID() {
		t.Error("correction does not name the corrected tx")
	}
}

func TestPricingFormula(t *testing.T) {
	p := DefaultPricing()
	obs := func(solar, load, batt float64) []Observation {
		return []Observation{
			{Property: PropSolarPower, Value: solar, Unit: "W"},
			{Property: PropLoadPower, Value: load, Unit: "W"},
			{Property: PropBatterySoC, Value: batt, Unit: "%"},
		}
	}
	r := Receipt{TokensIn: 2000, TokensOut: 500, MilliJoules: 3_000_000}
	// base = ceil((2000*100 + 500*1000)/1000) + ceil(3e6*50/1e6) = 700 + 150 = 850
	tests := []struct {
		name string
		e    Energy
		want int64
	}{
		{"no energy data", Energy{}, 850},
		{"no surplus, battery fine", EnergyFrom(obs(50, 80, 60)), 850},
		{"half surplus", EnergyFrom(obs(180, 80, 60)), 638},  // factor 750: ceil(850*0.75)
		{"full surplus", EnergyFrom(obs(0.5, 0.1, 90)), 850}, // kW would be needed; W: 0.4 W surplus -> 0
		{"surplus beyond full", EnergyFrom(obs(900, 100, 90)), 425},
		{"low battery no sun", EnergyFrom(obs(0, 40, 10)), 1063}, // factor 1250
		{"kW units", EnergyFrom([]Observation{{Property: PropSolarPower, Value: 0.3, Unit: "kW"}, {Property: PropLoadPower, Value: 100, Unit: "W"}}), 425},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Price(r, tt.e)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("price %d, want %d", got, tt.want)
			}
		})
	}
	if got, _ := p.Price(Receipt{}, Energy{}); got != p.MinPrice {
		t.Errorf("empty receipt priced %d, want MinPrice %d", got, p.MinPrice)
	}
	if _, err := p.Price(Receipt{TokensIn: 1 << 40}, Energy{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("absurd receipt: %v, want ErrInvalid", err)
	}
}

func TestInferenceTransactionIsPricedAndChecked(t *testing.T) {
	clk := newClock()
	approvals := NewApprovals(clk.Now)
	server, client := newNode(t, testRules(), clk, WithBioregion("lower-danube")), newNode(t, testRules(), clk, WithPolicy(approvals.Policy))
	obs := []Observation{
		{Property: PropSolarPower, Value: 300, Unit: "W", Time: clk.Now(), SensorID: "ina219-0x40"},
		{Property: PropLoadPower, Value: 100, Unit: "W", Time: clk.Now(), SensorID: "rapl", Simulated: true},
		{Property: "air_temperature", Value: 23.72, Unit: "Cel", Time: clk.Now(), SensorID: "bme280-0x76"},
	}
	rc := &Receipt{ModelHash: "sha256:abc", TokensIn: 1000, TokensOut: 1000, MilliJoules: 2_000_000}
	// An unexpected bill is refused.
	_, err := transfer(server, client, Terms{Payer: client.ID(), Payee: server.ID(), Purpose: PurposeInference, Observations: obs, Receipt: rc})
	if !errors.Is(err, ErrNotApproved) {
		t.Fatalf("unexpected bill: %v, want ErrNotApproved", err)
	}
	// The client's gateway expects it (at most 0.7 credit) before sending
	// the request; the server proposes with amount 0: priced by the rule
	// (full surplus, half price).
	approvals.Expect(server.ID(), 700, time.Minute)
	tx, err := transfer(server, client, Terms{Payer: client.ID(), Payee: server.ID(), Purpose: PurposeInference, Observations: obs, Receipt: rc})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Body.Amount != 600 { // base 100+1000+100=1200, half price
		t.Errorf("priced %d, want 600", tx.Body.Amount)
	}
	if tx.Body.Bioregion != "lower-danube" || tx.Body.Action() != "deliverService" {
		t.Errorf("bioregion %q action %q", tx.Body.Bioregion, tx.Body.Action())
	}
	// Overcharging is refused by the payer.
	_, err = transfer(server, client, Terms{Payer: client.ID(), Payee: server.ID(), Amount: 601, Purpose: PurposeInference, Observations: obs, Receipt: rc})
	if !errors.Is(err, ErrPrice) {
		t.Fatalf("overcharge: %v, want ErrPrice", err)
	}
	// The approval was used once; a bill above an approval is refused.
	if n := approvals.Outstanding(); n != 0 {
		t.Fatalf("%d approvals outstanding after the bill", n)
	}
	approvals.Expect(server.ID(), 599, time.Minute)
	if _, err := transfer(server, client, Terms{Payer: client.ID(), Payee: server.ID(), Purpose: PurposeInference, Observations: obs, Receipt: rc}); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("bill above the approval: %v, want ErrNotApproved", err)
	}
	// Approvals expire.
	approvals.Expect(server.ID(), 10_000, time.Minute)
	clk.Advance(2 * time.Minute)
	if n := approvals.Outstanding(); n != 0 {
		t.Fatalf("%d approvals outstanding after expiry", n)
	}
}

func TestRulesJSON(t *testing.T) {
	raw, err := os.ReadFile("testdata/rules-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var r Rules
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	m, _ := ParseMemberID("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
	if r.Unit != "hour" || r.LimitsFor(m) != (Limits{-50000, 500000}) || r.LimitsFor(MemberID{1}) != (Limits{-20000, 200000}) ||
		r.ProposalTTL != 45*time.Second || r.ProposalGrace != 3*time.Minute || r.FeeBasisPoints != 100 ||
		r.Pricing != DefaultPricing() || r.Commons.Short() != "4cb5abf6" {
		t.Fatalf("decoded %+v", r)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"proposal_grace":"3m0s"`) {
		t.Errorf("durations not written as strings: %s", out)
	}
	var back Rules
	if err := json.Unmarshal(out, &back); err != nil || back.ProposalGrace != r.ProposalGrace || back.LimitsFor(m) != r.LimitsFor(m) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"proposal_ttl":"soon"}`), &back); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad duration: %v, want ErrMalformed", err)
	}
}
