//go:build goexperiment.simd && amd64

package quant

import (
	"simd/archsimd"
	"unsafe"
)

// AVX2+FMA kernels (GOEXPERIMENT=simd), chosen at init when the CPU has
// them. They compute the same integer block sums as the generic kernels
// and as llama.cpp's AVX2 kernels; only the float accumulation order differs.
func init() {
	if !archsimd.X86.AVX2() || !archsimd.X86.FMA() {
		return
	}
	KernelName = "avx2"
	dotF32 = dotF32AVX2
	dotF16 = dotF16AVX2
	dotQ8_0 = dotQ8_0AVX2
	dotQ8_0x4 = dotQ8_0x4AVX2
	dotQ4Kx4 = dotQ4Kx4AVX2
	dotQ4_0 = dotQ4_0AVX2
	dotQ4K = dotQ4KAVX2
	dotQ6K = dotQ6KAVX2
	DotF32 = dotF32sAVX2
	AXPY = axpyAVX2
}

func hsum(v archsimd.Float32x8) float32 {
	var a [8]float32
	v.Store(&a)
	return hsum8(&a)
}

func f8(p *float32) *[8]float32 { return (*[8]float32)(unsafe.Pointer(p)) }
func i8x32(p *int8) *[32]int8   { return (*[32]int8)(unsafe.Pointer(p)) }
func b32(p *byte) *[32]int8     { return (*[32]int8)(unsafe.Pointer(p)) }
func u32(p *byte) *[32]uint8    { return (*[32]uint8)(unsafe.Pointer(p)) }
func u16(p *byte) *[16]uint8    { return (*[16]uint8)(unsafe.Pointer(p)) }

func dotF32sAVX2(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var acc0, acc1 archsimd.Float32x8
	i := 0
	for ; i+16 <= n; i += 16 {
		acc0 = archsimd.LoadFloat32x8(f8(&a[i])).MulAdd(archsimd.LoadFloat32x8(f8(&b[i])), acc0)
		acc1 = archsimd.LoadFloat32x8(f8(&a[i+8])).MulAdd(archsimd.LoadFloat32x8(f8(&b[i+8])), acc1)
	}
	for ; i+8 <= n; i += 8 {
		acc0 = archsimd.LoadFloat32x8(f8(&a[i])).MulAdd(archsimd.LoadFloat32x8(f8(&b[i])), acc0)
	}
	s := hsum(acc0.Add(acc1))
	for ; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func axpyAVX2(a float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	av := archsimd.BroadcastFloat32x8(a)
	i := 0
	for ; i+8 <= n; i += 8 {
		archsimd.LoadFloat32x8(f8(&x[i])).MulAdd(av, archsimd.LoadFloat32x8(f8(&y[i]))).Store(f8(&y[i]))
	}
	for ; i < n; i++ {
		y[i] += a * x[i]
	}
}

func dotF32AVX2(w []byte, x []float32) float32 {
	n := len(x)
	if n == 0 {
		return 0
	}
	_ = w[4*n-1]
	wf := unsafe.Slice((*float32)(unsafe.Pointer(&w[0])), n)
	return dotF32sAVX2(wf, x)
}

// f16x8 converts 8 halves to float32: magnitude bits moved into place and
// rescaled by 2^112 (exact for normal and subnormal values; infinities and
// NaNs in weights are not preserved), then the sign.
func f16x8(p *byte) archsimd.Float32x8 {
	h := archsimd.LoadUint16x8((*[8]uint16)(unsafe.Pointer(p))).ExtendToUint32()
	sign := h.And(archsimd.BroadcastUint32x8(0x8000)).ShiftAllLeft(16)
	mag := h.And(archsimd.BroadcastUint32x8(0x7fff)).ShiftAllLeft(13).AsFloat32x8().Mul(archsimd.BroadcastFloat32x8(0x1p112))
	return mag.AsUint32x8().Or(sign).AsFloat32x8()
}

func dotF16AVX2(w []byte, x []float32) float32 {
	n := len(x)
	if n == 0 {
		return 0
	}
	_ = w[2*n-1]
	var acc0, acc1 archsimd.Float32x8
	i := 0
	for ; i+16 <= n; i += 16 {
		acc0 = f16x8(&w[2*i]).MulAdd(archsimd.LoadFloat32x8(f8(&x[i])), acc0)
		acc1 = f16x8(&w[2*i+16]).MulAdd(archsimd.LoadFloat32x8(f8(&x[i+8])), acc1)
	}
	for ; i+8 <= n; i += 8 {
		acc0 = f16x8(&w[2*i]).MulAdd(archsimd.LoadFloat32x8(f8(&x[i])), acc0)
	}
	s := hsum(acc0.Add(acc1))
	for ; i < n; i++ {
		s += F16ToF32(le.Uint16(w[2*i:])) * x[i]
	}
	return s
}

var ones16 = archsimd.BroadcastInt16x16(1)

// mulSumI8Pairs is llama.cpp's mul_sum_i8_pairs_float: sum of x*y in
// int32 lanes (pairs of 4), as float.
func mulSumI8Pairs(x, y archsimd.Int8x32) archsimd.Float32x8 {
	ax := x.Abs().AsUint8x32()
	sy := y.CopySign(x)
	return ax.DotProductPairsSaturated(sy).DotProductPairs(ones16).ConvertToFloat32()
}

func dotQ8_0AVX2(w []byte, xd []float32, xq []int8, nb int) float32 {
	if nb == 0 {
		return 0
	}
	_ = w[nb*BlockQ8_0-1]
	_ = xq[nb*QK8_0-1]
	_ = xd[nb-1]
	var acc archsimd.Float32x8
	for b := 0; b < nb; b++ {
		blk := w[b*BlockQ8_0:]
		d := archsimd.BroadcastFloat32x8(F16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * xd[b])
		qx := archsimd.LoadInt8x32(b32(&blk[2]))
		qy := archsimd.LoadInt8x32(i8x32(&xq[b*QK8_0]))
		acc = mulSumI8Pairs(qx, qy).MulAdd(d, acc)
	}
	return hsum(acc)
}

// dotQ8_0x4AVX2 is dotQ8_0AVX2 for four activations at once: the same
// operations per activation (so the same results), one weight load.
func dotQ8_0x4AVX2(w []byte, acts []Act, nb int, out []float32) {
	if nb == 0 {
		clear(out[:4])
		return
	}
	_ = w[nb*BlockQ8_0-1]
	a0, a1, a2, a3 := &acts[0], &acts[1], &acts[2], &acts[3]
	for _, a := range acts[:4] {
		_ = a.Q[nb*QK8_0-1]
		_ = a.D[nb-1]
	}
	var c0, c1, c2, c3 archsimd.Float32x8
	for b := 0; b < nb; b++ {
		blk := w[b*BlockQ8_0:]
		dw := F16ToF32(uint16(blk[0]) | uint16(blk[1])<<8)
		qx := archsimd.LoadInt8x32(b32(&blk[2]))
		ax := qx.Abs().AsUint8x32()
		o := b * QK8_0
		c0 = ax.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&a0.Q[o])).CopySign(qx)).DotProductPairs(ones16).ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(dw*a0.D[b]), c0)
		c1 = ax.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&a1.Q[o])).CopySign(qx)).DotProductPairs(ones16).ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(dw*a1.D[b]), c1)
		c2 = ax.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&a2.Q[o])).CopySign(qx)).DotProductPairs(ones16).ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(dw*a2.D[b]), c2)
		c3 = ax.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&a3.Q[o])).CopySign(qx)).DotProductPairs(ones16).ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(dw*a3.D[b]), c3)
	}
	out[0], out[1], out[2], out[3] = hsum(c0), hsum(c1), hsum(c2), hsum(c3)
}

func dotQ4_0AVX2(w []byte, xd []float32, xq []int8, nb int) float32 {
	if nb == 0 {
		return 0
	}
	_ = w[nb*BlockQ4_0-1]
	_ = xq[nb*QK4_0-1]
	_ = xd[nb-1]
	m0F := archsimd.BroadcastUint8x32(0x0f)
	off8 := archsimd.BroadcastInt8x32(8)
	var acc archsimd.Float32x8
	for b := 0; b < nb; b++ {
		blk := w[b*BlockQ4_0:]
		d := archsimd.BroadcastFloat32x8(F16ToF32(uint16(blk[0])|uint16(blk[1])<<8) * xd[b])
		lo := archsimd.LoadUint8x16(u16(&blk[2]))
		hi := lo.AsUint16x8().ShiftAllRight(4).AsUint8x16()
		var v archsimd.Uint8x32
		qx := v.SetLo(lo).SetHi(hi).And(m0F).AsInt8x32().Sub(off8)
		qy := archsimd.LoadInt8x32(i8x32(&xq[b*QK4_0]))
		acc = mulSumI8Pairs(qx, qy).MulAdd(d, acc)
	}
	return hsum(acc)
}

func dotQ4KAVX2(w []byte, xd []float32, xq []int8, bsums []int16, nb int) float32 {
	if nb == 0 {
		return 0
	}
	_ = w[nb*BlockQ4_K-1]
	_ = xq[nb*QK_K-1]
	_ = bsums[nb*16-1]
	_ = xd[nb-1]
	m0F := archsimd.BroadcastUint8x32(0x0f)
	var acc archsimd.Float32x8
	var mins float32
	for b := 0; b < nb; b++ {
		blk := w[b*BlockQ4_K : (b+1)*BlockQ4_K]
		sc, m := unpackScalesK4(blk[4:16])
		bs := bsums[b*16 : b*16+16]
		var summ int32
		for j := 0; j < 16; j++ {
			summ += int32(bs[j]) * m[j/2]
		}
		var sumi archsimd.Int32x8
		for j := 0; j < 4; j++ {
			q := archsimd.LoadUint8x32(u32(&blk[16+32*j]))
			lo := q.And(m0F)
			hi := q.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F)
			ylo := archsimd.LoadInt8x32(i8x32(&xq[b*QK_K+64*j]))
			yhi := archsimd.LoadInt8x32(i8x32(&xq[b*QK_K+64*j+32]))
			plo := lo.DotProductPairsSaturated(ylo).DotProductPairs(archsimd.BroadcastInt16x16(int16(sc[2*j])))
			phi := hi.DotProductPairsSaturated(yhi).DotProductPairs(archsimd.BroadcastInt16x16(int16(sc[2*j+1])))
			sumi = sumi.Add(plo).Add(phi)
		}
		d := F16ToF32(le.Uint16(blk[0:])) * xd[b]
		acc = sumi.ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(d), acc)
		mins += F16ToF32(le.Uint16(blk[2:])) * xd[b] * float32(summ)
	}
	return hsum(acc) - mins
}

func q6dot(q archsimd.Uint8x32, y *int8, a, b int8) archsimd.Int32x8 {
	var sv archsimd.Int16x16
	scv := sv.SetLo(archsimd.BroadcastInt16x8(int16(a))).SetHi(archsimd.BroadcastInt16x8(int16(b)))
	return q.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(y))).DotProductPairs(scv)
}

// q4kSum is the integer part of one Q4_K block against one Q8_K block, as in dotQ4KAVX2.
func q4kSum(l0, h0, l1, h1, l2, h2, l3, h3 archsimd.Uint8x32, y []int8, s0, s1, s2, s3, s4, s5, s6, s7 archsimd.Int16x16) archsimd.Int32x8 {
	_ = y[255]
	var sumi archsimd.Int32x8
	sumi = sumi.Add(l0.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[0]))).DotProductPairs(s0)).Add(h0.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[32]))).DotProductPairs(s1))
	sumi = sumi.Add(l1.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[64]))).DotProductPairs(s2)).Add(h1.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[96]))).DotProductPairs(s3))
	sumi = sumi.Add(l2.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[128]))).DotProductPairs(s4)).Add(h2.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[160]))).DotProductPairs(s5))
	sumi = sumi.Add(l3.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[192]))).DotProductPairs(s6)).Add(h3.DotProductPairsSaturated(archsimd.LoadInt8x32(i8x32(&y[224]))).DotProductPairs(s7))
	return sumi
}

// dotQ4Kx4AVX2 is dotQ4KAVX2 for four activations sharing the weight
// decoding; per activation the operations (and results) are the same.
func dotQ4Kx4AVX2(w []byte, acts []Act, nb int, out []float32) {
	if nb == 0 {
		clear(out[:4])
		return
	}
	_ = w[nb*BlockQ4_K-1]
	for _, a := range acts[:4] {
		_ = a.Q[nb*QK_K-1]
		_ = a.D[nb-1]
		_ = a.BSums[nb*16-1]
	}
	m0F := archsimd.BroadcastUint8x32(0x0f)
	var acc [4]archsimd.Float32x8
	var mins [4]float32
	for b := 0; b < nb; b++ {
		blk := w[b*BlockQ4_K : (b+1)*BlockQ4_K]
		sc, m := unpackScalesK4(blk[4:16])
		q0 := archsimd.LoadUint8x32(u32(&blk[16]))
		q1 := archsimd.LoadUint8x32(u32(&blk[48]))
		q2 := archsimd.LoadUint8x32(u32(&blk[80]))
		q3 := archsimd.LoadUint8x32(u32(&blk[112]))
		l0, h0 := q0.And(m0F), q0.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F)
		l1, h1 := q1.And(m0F), q1.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F)
		l2, h2 := q2.And(m0F), q2.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F)
		l3, h3 := q3.And(m0F), q3.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F)
		s0, s1 := archsimd.BroadcastInt16x16(int16(sc[0])), archsimd.BroadcastInt16x16(int16(sc[1]))
		s2, s3 := archsimd.BroadcastInt16x16(int16(sc[2])), archsimd.BroadcastInt16x16(int16(sc[3]))
		s4, s5 := archsimd.BroadcastInt16x16(int16(sc[4])), archsimd.BroadcastInt16x16(int16(sc[5]))
		s6, s7 := archsimd.BroadcastInt16x16(int16(sc[6])), archsimd.BroadcastInt16x16(int16(sc[7]))
		dw := F16ToF32(le.Uint16(blk[0:]))
		dmin := F16ToF32(le.Uint16(blk[2:]))
		for t := 0; t < 4; t++ {
			a := &acts[t]
			bs := a.BSums[b*16 : b*16+16]
			var summ int32
			for j := 0; j < 16; j++ {
				summ += int32(bs[j]) * m[j/2]
			}
			sumi := q4kSum(l0, h0, l1, h1, l2, h2, l3, h3, a.Q[b*QK_K:(b+1)*QK_K], s0, s1, s2, s3, s4, s5, s6, s7)
			acc[t] = sumi.ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(dw*a.D[b]), acc[t])
			mins[t] += dmin * a.D[b] * float32(summ)
		}
	}
	for t := 0; t < 4; t++ {
		out[t] = hsum(acc[t]) - mins[t]
	}
}

func dotQ6KAVX2(w []byte, xd []float32, xq []int8, bsums []int16, nb int) float32 {
	if nb == 0 {
		return 0
	}
	_ = w[nb*BlockQ6_K-1]
	_ = xq[nb*QK_K-1]
	_ = bsums[nb*16-1]
	_ = xd[nb-1]
	m0F := archsimd.BroadcastUint8x32(0x0f)
	m30 := archsimd.BroadcastUint8x32(0x30)
	var acc archsimd.Float32x8
	var bias float32
	for b := 0; b < nb; b++ {
		blk := w[b*BlockQ6_K : (b+1)*BlockQ6_K]
		sc := (*[16]int8)(unsafe.Pointer(&blk[192]))
		bs := bsums[b*16 : b*16+16]
		// the 6-bit values are stored +32: subtract 32*sum(y) per group
		var corr int32
		for g := 0; g < 16; g++ {
			corr += int32(bs[g]) * int32(sc[g])
		}
		y := xq[b*QK_K : (b+1)*QK_K]
		var sumi archsimd.Int32x8
		for n := 0; n < 2; n++ {
			qlA := archsimd.LoadUint8x32(u32(&blk[64*n]))
			qlB := archsimd.LoadUint8x32(u32(&blk[64*n+32]))
			qh := archsimd.LoadUint8x32(u32(&blk[128+32*n]))
			qhw := qh.AsUint16x16()
			q1 := qlA.And(m0F).Or(qhw.ShiftAllLeft(4).AsUint8x32().And(m30))
			q2 := qlB.And(m0F).Or(qhw.ShiftAllLeft(2).AsUint8x32().And(m30))
			q3 := qlA.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F).Or(qh.And(m30))
			q4 := qlB.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(m0F).Or(qhw.ShiftAllRight(2).AsUint8x32().And(m30))
			g := 8 * n
			sumi = sumi.Add(q6dot(q1, &y[128*n], sc[g], sc[g+1]))
			sumi = sumi.Add(q6dot(q2, &y[128*n+32], sc[g+2], sc[g+3]))
			sumi = sumi.Add(q6dot(q3, &y[128*n+64], sc[g+4], sc[g+5]))
			sumi = sumi.Add(q6dot(q4, &y[128*n+96], sc[g+6], sc[g+7]))
		}
		d := F16ToF32(le.Uint16(blk[208:])) * xd[b]
		acc = sumi.ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(d), acc)
		bias += d * float32(32*corr)
	}
	return hsum(acc) - bias
}
