package hwtest

import (
	"fmt"
	"math"
	"strings"
)

// ModelSpec is a model size and quantisation the recommendation considers.
type ModelSpec struct {
	Name          string  `json:"name"`
	ParamsB       float64 `json:"params_b"`        // parameters, billions
	Quant         string  `json:"quant"`           // GGUF quantisation
	BitsPerWeight float64 `json:"bits_per_weight"` // average over the file, incl. scales
}

// Bytes is the size of the weights: ParamsB·10⁹·BitsPerWeight/8.
func (m ModelSpec) Bytes() uint64 {
	return uint64(math.Round(m.ParamsB * 1e9 * m.BitsPerWeight / 8))
}

// Catalogue is the list of model sizes the recommendation considers. Bits
// per weight are llama.cpp's averages for the whole GGUF file (Q4_K_M ≈ 4.85,
// Q8_0 = 8.5), parameter counts those of common open models of the size.
var Catalogue = []ModelSpec{
	{"0.5B Q4_K_M (Qwen2.5-0.5B class)", 0.49, "Q4_K_M", 4.85},
	{"1.5B Q4_K_M (Qwen2.5-1.5B class)", 1.54, "Q4_K_M", 4.85},
	{"3B Q4_K_M (Llama-3.2-3B class)", 3.21, "Q4_K_M", 4.85},
	{"8B Q4_K_M (Llama-3.1-8B class)", 8.03, "Q4_K_M", 4.85},
	{"8B Q8_0 (Llama-3.1-8B class)", 8.03, "Q8_0", 8.5},
	{"14B Q4_K_M (Qwen2.5-14B class)", 14.8, "Q4_K_M", 4.85},
	{"32B Q4_K_M (Qwen2.5-32B class)", 32.8, "Q4_K_M", 4.85},
	{"70B Q4_K_M (Llama-3.1-70B class)", 70.6, "Q4_K_M", 4.85},
}

// Memory the recommendation keeps out of the model's reach, and the
// working memory a model needs beyond its weights.
const (
	// SystemReserve is left to the kernel, hyphad and the page cache.
	SystemReserve = 768 << 20
	// RuntimeOverhead covers a 4k-token KV cache and activations of a
	// small model; ModelOverheadFraction scales with the weights.
	RuntimeOverhead       = 512 << 20
	ModelOverheadFraction = 0.10
	// UsableTokensPerSec is the decode speed below which a chat model
	// is not worth serving; GoodTokensPerSec reads as fluent.
	UsableTokensPerSec = 2.0
	GoodTokensPerSec   = 5.0
)

// ModelFit is the recommendation for one ModelSpec on this box.
type ModelFit struct {
	ModelSpec
	Bytes uint64 `json:"bytes"`
	Fits  bool   `json:"fits"` // weights + overhead fit in memory
	// TokensPerSec is the memory-bound decode estimate
	// bandwidth / weight bytes (each generated token streams every weight
	// once); 0 when the bandwidth is unknown. It is an upper bound: compute,
	// cache misses and the KV cache make real engines reach a fraction.
	TokensPerSec float64 `json:"tokens_per_sec"`
}

// PredictTokensPerSec is the memory-bound decode estimate: each generated
// token streams every weight once, so tokens/s ≈ bandwidth (bytes/s) /
// weightBytes. It returns 0 when either is unknown. Use it with the size of
// a real GGUF's weights to compare with an engine's measured speed.
func PredictTokensPerSec(bandwidth float64, weightBytes uint64) float64 {
	if bandwidth <= 0 || weightBytes == 0 {
		return 0
	}
	return bandwidth / float64(weightBytes)
}

// Fit computes the fit of m on a box with memTotal bytes of RAM and the
// given memory bandwidth (bytes/s).
func Fit(m ModelSpec, memTotal uint64, bandwidth float64) ModelFit {
	b := m.Bytes()
	need := float64(b)*(1+ModelOverheadFraction) + RuntimeOverhead
	usable := float64(memTotal) - SystemReserve
	f := ModelFit{ModelSpec: m, Bytes: b, Fits: usable > 0 && need <= usable}
	f.TokensPerSec = math.Round(PredictTokensPerSec(bandwidth, b)*10) / 10
	return f
}

// Verdict is the qualification outcome.
type Verdict struct {
	// Grade is one of "inference" (serves a ≥3B model at ≥5 tok/s,
	// GoodTokensPerSec), "light-inference" (some model at ≥2 tok/s,
	// UsableTokensPerSec), "relay" (mesh, ledger
	// and sensors only) or "unknown" (bandwidth not measured).
	Grade   string   `json:"grade"`
	Summary string   `json:"summary"`
	Reasons []string `json:"reasons,omitempty"`
}

// DecodeBandwidth is the bandwidth the estimate uses: the measured read
// bandwidth when present (decode streams the weights), else the copy
// bandwidth.
func (m Memory) DecodeBandwidth() float64 {
	if m.ReadBandwidthBytesPerSec > 0 {
		return m.ReadBandwidthBytesPerSec
	}
	return m.BandwidthBytesPerSec
}

// Recommend fills r.Models and r.Verdict from the probed facts.
func Recommend(r *Report) {
	r.Models = r.Models[:0]
	for _, m := range Catalogue {
		r.Models = append(r.Models, Fit(m, r.Memory.TotalBytes, r.Memory.DecodeBandwidth()))
	}
	var v Verdict
	// The catalogue is sorted by size: keep the largest usable and the
	// largest fluent model that fit.
	var usable, good *ModelFit
	for i := range r.Models {
		f := &r.Models[i]
		if f.Fits && f.TokensPerSec >= UsableTokensPerSec {
			usable = f
		}
		if f.Fits && f.TokensPerSec >= GoodTokensPerSec {
			good = f
		}
	}
	switch {
	case r.Memory.DecodeBandwidth() <= 0:
		v.Grade = "unknown"
		v.Summary = "memory bandwidth not measured: cannot predict inference speed"
	case usable == nil:
		v.Grade = "relay"
		v.Summary = "too little memory or bandwidth for a chat model: use as mesh relay, ledger and sensor node"
	case good != nil && good.ParamsB >= 3:
		v.Grade = "inference"
		v.Summary = fmt.Sprintf("serves %s at about %.1f tokens/s", good.Name, good.TokensPerSec)
	default:
		v.Grade = "light-inference"
		v.Summary = fmt.Sprintf("serves small models: %s at about %.1f tokens/s", usable.Name, usable.TokensPerSec)
	}
	if usable != nil && good != nil && usable != good && v.Grade == "inference" {
		v.Summary += fmt.Sprintf("; up to %s at about %.1f tokens/s", usable.Name, usable.TokensPerSec)
	}
	if r.Memory.TotalBytes > 0 && r.Memory.TotalBytes < 2<<30 {
		v.Reasons = append(v.Reasons, fmt.Sprintf("only %s of RAM", fmtBytes(float64(r.Memory.TotalBytes))))
	}
	switch {
	case r.CPU.AVX512:
		v.Reasons = append(v.Reasons, "AVX-512: the fastest CPU kernels apply")
	case r.CPU.AVX2:
		v.Reasons = append(v.Reasons, "AVX2: SIMD kernels apply")
	case r.CPU.NEON:
		v.Reasons = append(v.Reasons, "NEON: SIMD kernels apply")
	default:
		v.Reasons = append(v.Reasons, "no AVX2 or NEON: portable kernels only, decode may be compute-bound below the estimate")
	}
	if len(r.GPUs) > 0 {
		names := make([]string, 0, len(r.GPUs))
		for _, g := range r.GPUs {
			names = append(names, g.Vendor)
		}
		v.Reasons = append(v.Reasons, fmt.Sprintf("GPU found (%s): for GPU inference run llama-server/Ollama/vLLM under the vendor OS and add it as an external engine",
			strings.Join(names, ", ")))
	}
	for _, t := range r.Temperatures {
		if t.Celsius >= 85 {
			v.Reasons = append(v.Reasons, fmt.Sprintf("hot: %s at %.0f °C — check cooling before serving", t.Source, t.Celsius))
			break
		}
	}
	r.Verdict = v
}

func fmtBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
