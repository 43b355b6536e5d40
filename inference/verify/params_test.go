package verify

import (
	"testing"
	"time"
)

func TestParams(t *testing.T) {
	d := DefaultParams()
	if got := ParamsFrom(ReputationParams{}); got != d {
		t.Errorf("ParamsFrom(zero) = %v, want %v", got, d)
	}
	got := ParamsFrom(ReputationParams{Initial: 0.6, Threshold: 0.3, Alpha: 0.5, Beta: 0.5, Abnormal: 0.3, Gamma: 0.4,
		Window: 8, EpochSeconds: 30, ChallengesPerEpoch: 4})
	want := Params{Alpha: 0.5, Beta: 0.5, Abnormal: 0.3, Gamma: 0.4, Window: 8, Initial: 0.6, Threshold: 0.3,
		Epoch: 30 * time.Second, Challenges: 4}
	if got != want {
		t.Errorf("ParamsFrom = %v, want %v", got, want)
	}
	if (Params{}).withDefaults() != d {
		t.Error("zero Params do not mean the defaults")
	}
	p := Params{Epoch: 60 * time.Second}
	for _, c := range []struct {
		unix int64
		want int64
	}{{0, 0}, {59, 0}, {60, 1}, {1_700_000_000, 28_333_333}, {-1, -1}} {
		if got := p.EpochOf(time.Unix(c.unix, 0)); got != c.want {
			t.Errorf("EpochOf(%d) = %d, want %d", c.unix, got, c.want)
		}
	}
	if s := p.EpochStart(3); s.Unix() != 180 || p.EpochOf(s) != 3 || p.EpochOf(s.Add(-time.Nanosecond)) != 2 {
		t.Errorf("EpochStart(3) = %v", s)
	}
}
