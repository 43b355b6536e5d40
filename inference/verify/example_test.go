package verify_test

import (
	"fmt"

	"github.com/univrs/hypha/inference/verify"
	"github.com/univrs/hypha/provisioning"
)

// The community manifest's reputation settings convert directly (the two
// structs have the same fields); zero fields take the defaults.
func ExampleParamsFrom() {
	m := provisioning.ReputationParams{Initial: 0.5, Threshold: 0.3, DecayPerDay: 0.05, EpochSeconds: 30}
	p := verify.ParamsFrom(verify.ReputationParams(m))
	fmt.Println(p)
	// Output: α 0.40 β 0.60 abnormal<0.40 γ 0.20 window 5 initial 0.50 threshold 0.30 epoch 30s challenges 2
}
