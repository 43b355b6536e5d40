package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/univrs/hypha/inference/gguf"
)

// Block geometry of the supported formats.
const (
	QK8_0 = 32
	QK4_0 = 32
	QK_K  = 256

	BlockQ8_0 = 34  // f16 d, int8 qs[32]
	BlockQ4_0 = 18  // f16 d, uint8 qs[16]
	BlockQ4_K = 144 // f16 d, f16 dmin, uint8 scales[12], uint8 qs[128]
	BlockQ6_K = 210 // uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d
)

// Supported reports whether t can be dequantised and multiplied here.
func Supported(t gguf.TensorType) bool {
	switch t {
	case gguf.TensorF32, gguf.TensorF16, gguf.TensorBF16, gguf.TensorQ8_0, gguf.TensorQ4_0, gguf.TensorQ4_K, gguf.TensorQ6_K:
		return true
	}
	return false
}

// RowBytes returns the byte size of a row of n elements of type t.
func RowBytes(t gguf.TensorType, n int) (int, error) {
	elems, bytes, ok := t.BlockSize()
	if !ok || !Supported(t) {
		return 0, fmt.Errorf("quant: tensor type %v is not supported", t)
	}
	if int64(n)%elems != 0 {
		return 0, fmt.Errorf("quant: row of %d elements is not a multiple of the %v block size %d", n, t, elems)
	}
	return int(int64(n) / elems * bytes), nil
}

var le = binary.LittleEndian

// Dequantize decodes len(dst) elements of type t from src, which must hold
// exactly RowBytes(t, len(dst)) bytes (callers check sizes once at load time).
func Dequantize(t gguf.TensorType, src []byte, dst []float32) {
	switch t {
	case gguf.TensorF32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case gguf.TensorF16:
		for i := range dst {
			dst[i] = F16ToF32(le.Uint16(src[2*i:]))
		}
	case gguf.TensorBF16:
		for i := range dst {
			dst[i] = BF16ToF32(le.Uint16(src[2*i:]))
		}
	case gguf.TensorQ8_0:
		for b := 0; b < len(dst)/QK8_0; b++ {
			blk := src[b*BlockQ8_0:]
			d := F16ToF32(le.Uint16(blk))
			for j := 0; j < QK8_0; j++ {
				dst[b*QK8_0+j] = float32(int8(blk[2+j])) * d
			}
		}
	case gguf.TensorQ4_0:
		for b := 0; b < len(dst)/QK4_0; b++ {
			blk := src[b*BlockQ4_0:]
			d := F16ToF32(le.Uint16(blk))
			y := dst[b*QK4_0:]
			for j := 0; j < 16; j++ {
				q := blk[2+j]
				y[j] = float32(int(q&0xf)-8) * d
				y[j+16] = float32(int(q>>4)-8) * d
			}
		}
	case gguf.TensorQ4_K:
		for b := 0; b < len(dst)/QK_K; b++ {
			dequantQ4K(src[b*BlockQ4_K:b*BlockQ4_K+BlockQ4_K], dst[b*QK_K:b*QK_K+QK_K])
		}
	case gguf.TensorQ6_K:
		for b := 0; b < len(dst)/QK_K; b++ {
			dequantQ6K(src[b*BlockQ6_K:b*BlockQ6_K+BlockQ6_K], dst[b*QK_K:b*QK_K+QK_K])
		}
	default:
		panic(fmt.Sprintf("quant: Dequantize of unsupported type %v", t))
	}
}

// scaleMinK4 is ggml's get_scale_min_k4.
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return (q[j+4] & 0xf) | ((q[j-4] >> 6) << 4), (q[j+4] >> 4) | ((q[j] >> 6) << 4)
}

func dequantQ4K(blk []byte, y []float32) {
	d := F16ToF32(le.Uint16(blk[0:]))
	dmin := F16ToF32(le.Uint16(blk[2:]))
	scales := blk[4:16]
	q := blk[16:]
	is := 0
	for j := 0; j < QK_K; j += 64 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := 0; l < 32; l++ {
			y[j+l] = d1*float32(q[l]&0xf) - m1
		}
		for l := 0; l < 32; l++ {
			y[j+32+l] = d2*float32(q[l]>>4) - m2
		}
		q = q[32:]
		is += 2
	}
}

func dequantQ6K(blk []byte, y []float32) {
	ql := blk[0:128]
	qh := blk[128:192]
	sc := blk[192:208]
	d := F16ToF32(le.Uint16(blk[208:]))
	for n := 0; n < QK_K; n += 128 {
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int8((ql[l]&0xf)|((qh[l]>>0)&3)<<4) - 32
			q2 := int8((ql[l+32]&0xf)|((qh[l]>>2)&3)<<4) - 32
			q3 := int8((ql[l]>>4)|((qh[l]>>4)&3)<<4) - 32
			q4 := int8((ql[l+32]>>4)|((qh[l]>>6)&3)<<4) - 32
			y[n+l] = d * float32(int8(sc[is])) * float32(q1)
			y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
		ql = ql[64:]
		qh = qh[32:]
		sc = sc[8:]
	}
}

// nearestInt is ggml's nearest_int: round half to even for |f| < 2^22.
func nearestInt(f float32) int32 {
	return int32(math.RoundToEven(float64(f)))
}

// Quantize encodes src (a whole number of blocks) as type t with ggml's
// reference quantisers and returns the bytes.
func Quantize(t gguf.TensorType, src []float32) ([]byte, error) {
	n, err := RowBytes(t, len(src))
	if err != nil {
		return nil, err
	}
	out := make([]byte, n)
	switch t {
	case gguf.TensorF32:
		for i, v := range src {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case gguf.TensorF16:
		for i, v := range src {
			le.PutUint16(out[2*i:], F32ToF16(v))
		}
	case gguf.TensorBF16:
		for i, v := range src {
			le.PutUint16(out[2*i:], F32ToBF16(v))
		}
	case gguf.TensorQ8_0:
		for b := 0; b < len(src)/QK8_0; b++ {
			x := src[b*QK8_0 : b*QK8_0+QK8_0]
			blk := out[b*BlockQ8_0:]
			var amax float32
			for _, v := range x {
				amax = max(amax, abs32(v))
			}
			d := amax / 127
			var id float32
			if d != 0 {
				id = 1 / d
			}
			le.PutUint16(blk, F32ToF16(d))
			for j, v := range x {
				blk[2+j] = byte(int8(math.Round(float64(v * id))))
			}
		}
	case gguf.TensorQ4_0:
		for b := 0; b < len(src)/QK4_0; b++ {
			x := src[b*QK4_0 : b*QK4_0+QK4_0]
			blk := out[b*BlockQ4_0:]
			var amax, mx float32
			for _, v := range x {
				if abs32(v) > amax {
					amax, mx = abs32(v), v
				}
			}
			d := mx / -8
			var id float32
			if d != 0 {
				id = 1 / d
			}
			le.PutUint16(blk, F32ToF16(d))
			for j := 0; j < 16; j++ {
				x0 := min(15, int8(x[j]*id+8.5))
				x1 := min(15, int8(x[16+j]*id+8.5))
				blk[2+j] = byte(x0) | byte(x1)<<4
			}
		}
	case gguf.TensorQ4_K:
		for b := 0; b < len(src)/QK_K; b++ {
			quantQ4K(src[b*QK_K:b*QK_K+QK_K], out[b*BlockQ4_K:b*BlockQ4_K+BlockQ4_K])
		}
	case gguf.TensorQ6_K:
		for b := 0; b < len(src)/QK_K; b++ {
			quantQ6K(src[b*QK_K:b*QK_K+QK_K], out[b*BlockQ6_K:b*BlockQ6_K+BlockQ6_K])
		}
	}
	return out, nil
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// makeQKX2Quants is ggml's make_qkx2_quants (use_mad = false).
func makeQKX2Quants(nmax int32, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	n := len(x)
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < n; i++ {
		mn = min(mn, x[i])
		mx = max(mx, x[i])
		w := weights[i]
		sumW += w
		sumX += w * x[i]
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -mn
	}
	iscale := float32(nmax) / (mx - mn)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := max(0, min(nmax, nearestInt(iscale*(x[i]-mn))))
		L[i] = uint8(l)
		diff := scale*float32(l) + mn - x[i]
		bestError += weights[i] * diff * diff
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + rdelta*float32(is) + float32(nmax)) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := max(0, min(nmax, nearestInt(iscale*(x[i]-mn))))
			Laux[i] = uint8(l)
			w := weights[i]
			sumL += w * float32(l)
			sumL2 += w * float32(l) * float32(l)
			sumXL += w * float32(l) * x[i]
		}
		D := sumW*sumL2 - sumL*sumL
		if D > 0 {
			thisScale := (sumW*sumXL - sumX*sumL) / D
			thisMin := (sumL2*sumX - sumL*sumXL) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := thisScale*float32(Laux[i]) + thisMin - x[i]
				curError += weights[i] * diff * diff
			}
			if curError < bestError {
				copy(L[:n], Laux[:n])
				bestError = curError
				scale = thisScale
				mn = thisMin
			}
		}
	}
	return scale, -mn
}

func quantQ4K(x []float32, blk []byte) {
	var L, Laux [QK_K]uint8
	var weights [32]float32
	var scales, mins [QK_K / 32]float32
	var maxScale, maxMin float32
	for j := 0; j < QK_K/32; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += v * v
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(15, xs, weights[:], L[32*j:], Laux[32*j:], -1, 0.1, 20)
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := blk[4:16]
	for i := range sc {
		sc[i] = 0
	}
	for j := 0; j < QK_K/32; j++ {
		ls := uint8(min(63, nearestInt(invScale*scales[j])))
		lm := uint8(min(63, nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = (ls & 0xf) | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	dh, dminh := F32ToF16(maxScale/63), F32ToF16(maxMin/63)
	le.PutUint16(blk[0:], dh)
	le.PutUint16(blk[2:], dminh)
	for j := 0; j < QK_K/32; j++ {
		s, m := scaleMinK4(j, sc)
		d := F16ToF32(dh) * float32(s)
		if d == 0 {
			continue
		}
		dm := F16ToF32(dminh) * float32(m)
		for ii := 0; ii < 32; ii++ {
			L[32*j+ii] = uint8(max(0, min(15, nearestInt((x[32*j+ii]+dm)/d))))
		}
	}
	q := blk[16:]
	for j := 0; j < QK_K; j += 64 {
		for l := 0; l < 32; l++ {
			q[l] = L[j+l] | L[j+l+32]<<4
		}
		q = q[32:]
	}
}

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no weights.
func makeQXQuants(nmax int32, x []float32, L []int8) float32 {
	var mx, amax float32
	for _, v := range x {
		if abs32(v) > amax {
			amax, mx = abs32(v), v
		}
	}
	if amax < 1e-15 {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	iscale := -float32(nmax) / mx
	var sumLX, sumL2 float32
	for i, v := range x {
		l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
		L[i] = int8(l + nmax)
		w := v * v
		sumLX += w * v * float32(l)
		sumL2 += w * float32(l) * float32(l)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + 0.1*float32(is)) / mx
		sumLX, sumL2 = 0, 0
		for _, v := range x {
			l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
			w := v * v
			sumLX += w * v * float32(l)
			sumL2 += w * float32(l) * float32(l)
		}
		if sumL2 > 0 && sumLX*sumLX > best*sumL2 {
			for i, v := range x {
				l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
				L[i] = int8(nmax + l)
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

func quantQ6K(x []float32, blk []byte) {
	var L [QK_K]int8
	var scales [QK_K / 16]float32
	var maxScale, maxAbsScale float32
	for ib := 0; ib < QK_K/16; ib++ {
		s := makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:])
		scales[ib] = s
		if abs32(s) > maxAbsScale {
			maxAbsScale, maxScale = abs32(s), s
		}
	}
	for i := range blk {
		blk[i] = 0
	}
	if maxAbsScale < 1e-15 {
		return
	}
	iscale := -128 / maxScale
	dh := F32ToF16(1 / iscale)
	le.PutUint16(blk[208:], dh)
	sc := blk[192:208]
	for ib := range scales {
		sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	for j := 0; j < QK_K/16; j++ {
		d := F16ToF32(dh) * float32(int8(sc[j]))
		if d == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := max(-32, min(31, nearestInt(x[16*j+ii]/d)))
			L[16*j+ii] = int8(l + 32)
		}
	}
	ql := blk[0:128]
	qh := blk[128:192]
	for j := 0; j < QK_K; j += 128 {
		for l := 0; l < 32; l++ {
			q1 := uint8(L[j+l]) & 0xf
			q2 := uint8(L[j+l+32]) & 0xf
			q3 := uint8(L[j+l+64]) & 0xf
			q4 := uint8(L[j+l+96]) & 0xf
			ql[l] = q1 | q3<<4
			ql[l+32] = q2 | q4<<4
			qh[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
		}
		ql = ql[64:]
		qh = qh[32:]
	}
}
