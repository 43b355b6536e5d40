package verify

import (
	"fmt"
	"math"
	"time"
)

// Params are the committee's and the reputation's parameters. The zero
// value of any field means its default (see DefaultParams), so the zero
// Params is usable.
type Params struct {
	// R(T) = Alpha·R(T−1) + β_T·C(T), β_T = Beta unless punished.
	Alpha, Beta float64
	// An epoch whose median credit is below Abnormal is abnormal. When the
	// abnormal share of the last Window scored epochs exceeds Gamma,
	// β_T = (Window+1)/(Window + c/Gamma + 2) with c abnormal epochs.
	Abnormal, Gamma float64
	Window          int
	// Initial is the reputation of a node before any report; a node is
	// trusted while its reputation is >= Threshold.
	Initial, Threshold float64
	// Epoch is the length of a verification epoch (whole seconds).
	Epoch time.Duration
	// Challenges is the number of challenges each verifier sends each
	// serving node per epoch.
	Challenges int
}

// DefaultParams are PlanetServe's values (α 0.4, β 0.6, abnormal below 0.4,
// γ 0.2, window 5, epoch 60 s) with Hypha's initial reputation 0.5,
// threshold 0.2 and 2 challenges per node, verifier and epoch.
func DefaultParams() Params {
	return Params{Alpha: 0.4, Beta: 0.6, Abnormal: 0.4, Gamma: 0.2, Window: 5,
		Initial: 0.5, Threshold: 0.2, Epoch: 60 * time.Second, Challenges: 2}
}

// ReputationParams mirrors provisioning.ReputationParams field for field (a
// domain package may not import another), so the manifest's values convert
// directly: verify.ParamsFrom(verify.ReputationParams(m.Reputation)).
type ReputationParams struct {
	Initial            float64
	Threshold          float64
	DecayPerDay        float64 // not used: reputation changes only with reports
	Alpha              float64
	Beta               float64
	Abnormal           float64
	Gamma              float64
	Window             int
	EpochSeconds       int
	ChallengesPerEpoch int
}

// ParamsFrom turns a community's reputation settings into Params; zero
// fields take their defaults (so a threshold of exactly 0 cannot be
// expressed; use a tiny value).
func ParamsFrom(r ReputationParams) Params {
	p := Params{Alpha: r.Alpha, Beta: r.Beta, Abnormal: r.Abnormal, Gamma: r.Gamma, Window: r.Window,
		Initial: r.Initial, Threshold: r.Threshold, Epoch: time.Duration(r.EpochSeconds) * time.Second,
		Challenges: r.ChallengesPerEpoch}
	return p.withDefaults()
}

// withDefaults fills zero (and invalid) fields with the defaults.
func (p Params) withDefaults() Params {
	d := DefaultParams()
	frac := func(v *float64, def float64) {
		if *v <= 0 || *v > 1 || math.IsNaN(*v) {
			*v = def
		}
	}
	frac(&p.Alpha, d.Alpha)
	frac(&p.Beta, d.Beta)
	frac(&p.Abnormal, d.Abnormal)
	frac(&p.Gamma, d.Gamma)
	frac(&p.Initial, d.Initial)
	frac(&p.Threshold, d.Threshold)
	if p.Window <= 0 {
		p.Window = d.Window
	}
	if p.Epoch < time.Second {
		p.Epoch = d.Epoch
	}
	if p.Challenges <= 0 {
		p.Challenges = d.Challenges
	}
	return p
}

func (p Params) epochSeconds() int64 { return max(1, int64(p.withDefaults().Epoch/time.Second)) }

// EpochOf is the epoch t falls in: floor(unix seconds / epoch seconds).
// Every node derives the same epochs from its clock.
func (p Params) EpochOf(t time.Time) int64 {
	s, e := t.Unix(), p.epochSeconds()
	q := s / e
	if s%e < 0 {
		q--
	}
	return q
}

// EpochStart is the first instant of epoch e.
func (p Params) EpochStart(e int64) time.Time { return time.Unix(e*p.epochSeconds(), 0) }

func (p Params) String() string {
	return fmt.Sprintf("α %.2f β %.2f abnormal<%.2f γ %.2f window %d initial %.2f threshold %.2f epoch %s challenges %d",
		p.Alpha, p.Beta, p.Abnormal, p.Gamma, p.Window, p.Initial, p.Threshold, p.Epoch, p.Challenges)
}
