package verify

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (or a
// context error); the wrapping message names the input and what was wrong.
var (
	// ErrMalformed: bytes that do not decode as a report or batch (bad JSON,
	// unknown fields, too large, values out of range).
	ErrMalformed = errors.New("malformed report")
	// ErrBadSignature: a report whose signature does not verify under the
	// key inside its Verifier peer ID, or whose Verifier does not embed a key.
	ErrBadSignature = errors.New("bad report signature")
	// ErrWrongCommunity: a report of another community.
	ErrWrongCommunity = errors.New("report of another community")
	// ErrNotCommittee: a report by a peer that is not a committee verifier.
	ErrNotCommittee = errors.New("verifier not in the committee")
	// ErrFuture: a report for an epoch that has not started yet.
	ErrFuture = errors.New("report from the future")
	// ErrEquivocation: a verifier signed two different reports for the same
	// node and epoch. The verifier's reports are ignored from then on.
	ErrEquivocation = errors.New("verifier equivocated")
	// ErrBookFull: the Book holds MaxBookReports reports; Prune old epochs.
	ErrBookFull = errors.New("report book full")
	// ErrScore: the scoring engine refused or failed to score an answer.
	ErrScore = errors.New("scoring failed")
	// ErrNoAnswer: a serving node's answer to a challenge holds no text.
	ErrNoAnswer = errors.New("no answer text")
)
