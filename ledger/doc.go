// Package ledger is Hypha's agent-centric mutual-credit ledger.
//
// There is no global consensus. Every member (a node, identified by its
// ed25519 public key) keeps its own hash chain of entries. A transaction
// names payer, payee, an amount in integer milli-units, the unit, a purpose,
// the chain position (sequence number and previous head hash) it takes in
// BOTH parties' chains, optional fees to the community's commons account,
// and attachments: sensor observations of the moment and an inference
// receipt. Its canonical encoding is hashed (the transaction id) and signed
// by both parties; both append it. One transaction therefore defines two
// entries, one in each party's chain, and any node holding the transaction
// can materialise and verify both.
//
// A half-signed Proposal never changes a balance and expires. While a node
// has an outstanding proposal its chain is locked: it neither proposes nor
// countersigns anything else until the proposal completes or expires (plus a
// grace period), so an honest node never forks its own chain.
//
// Two different entries by one author at the same sequence number (or an
// entry whose prev hash does not match the author's entry before it) are a
// Fork: a portable, independently verifiable proof of double-spending. A
// node that sees one stores the proof and quarantines the author: it no
// longer countersigns with that member.
//
// Balances are computed over the set of distinct, fully signed transactions
// a node knows, so the total over all accounts is exactly zero and the order
// in which transactions arrive (by sync, in any order, duplicated) never
// changes the result. Sync is a symmetric anti-entropy exchange of chains
// over any stream (see Sync); the countersigning exchange runs over a stream
// too (see Node.Pay and Node.ServeCountersign). Messages on streams are
// length-prefixed and size-bounded.
//
// Storage is a single bbolt file. Every append is one bbolt transaction, so a
// crash (SIGKILL, power cut) leaves either the whole entry or nothing.
//
// Concurrency: a Node is safe for concurrent use by multiple goroutines.
// Values returned by a Node are copies owned by the caller.
package ledger
