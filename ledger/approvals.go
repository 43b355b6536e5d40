package ledger

import (
	"fmt"
	"sync"
	"time"
)

// Approvals is a countersigning policy (use WithPolicy(a.Policy)) for bills:
// payments proposed by the payee. The gateway calls Expect before it
// forwards a request to another node; when that node proposes the payment
// for the served request, the policy approves it if it does not exceed the
// expected maximum, once. Proposals that pay this node are always approved
// (the rules and limits still apply). The zero value is not usable: call
// NewApprovals. Safe for concurrent use.
type Approvals struct {
	now func() time.Time

	mu    sync.Mutex
	next  uint64
	items map[uint64]approval // guarded by mu
}

type approval struct {
	payee   MemberID
	max     int64
	expires time.Time
}

// NewApprovals returns an empty set of approvals; now is the clock (nil:
// time.Now).
func NewApprovals(now func() time.Time) *Approvals {
	if now == nil {
		now = time.Now
	}
	return &Approvals{now: now, items: map[uint64]approval{}}
}

// Expect approves one payment to payee of at most maxAmount milli-units
// (amount plus fee) proposed within ttl. cancel withdraws the approval if it
// has not been used (e.g. the request failed).
func (a *Approvals) Expect(payee MemberID, maxAmount int64, ttl time.Duration) (cancel func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	id := a.next
	a.items[id] = approval{payee: payee, max: maxAmount, expires: a.now().Add(ttl)}
	return func() {
		a.mu.Lock()
		delete(a.items, id)
		a.mu.Unlock()
	}
}

// Outstanding returns how many approvals are waiting (expired ones dropped).
func (a *Approvals) Outstanding() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropExpiredLocked()
	return len(a.items)
}

func (a *Approvals) dropExpiredLocked() {
	now := a.now()
	for id, it := range a.items {
		if now.After(it.expires) {
			delete(a.items, id)
		}
	}
}

// Policy approves p if the proposer is the payer (this node is paid) or if
// an unexpired approval for p's payee covers amount plus fee; that approval
// is used up (the smallest sufficient one).
func (a *Approvals) Policy(p *Proposal) error {
	if p.Proposer == p.Body.Payer {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropExpiredLocked()
	want := p.Body.Amount + p.Body.Fee
	var best uint64
	for id, it := range a.items {
		if it.payee == p.Body.Payee && it.max >= want && (best == 0 || it.max < a.items[best].max) {
			best = id
		}
	}
	if best == 0 {
		return fmt.Errorf("bill of %s from %s: no expected payment covers it: %w", FormatMilli(want), p.Body.Payee.Short(), ErrNotApproved)
	}
	delete(a.items, best)
	return nil
}
