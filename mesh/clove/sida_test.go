package clove

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"pgregory.net/rapid"
)

func TestSplitCombineAnyK(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 8).Draw(t, "n")
		k := rapid.IntRange(2, n).Draw(t, "k")
		msg := rapid.SliceOfN(rapid.Byte(), 0, 5000).Draw(t, "msg")
		cloves, err := Split(msg, n, k)
		if err != nil {
			t.Fatal(err)
		}
		// Round-trip every clove through its binary encoding.
		for i := range cloves {
			b, err := cloves[i].MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != cloves[i].EncodedLen() {
				t.Fatalf("encoded %d bytes, EncodedLen %d", len(b), cloves[i].EncodedLen())
			}
			if cloves[i], err = DecodeClove(b); err != nil {
				t.Fatal(err)
			}
		}
		perm := rapid.Permutation(seq(n)).Draw(t, "perm")
		sub := make([]Clove, k)
		for i := range sub {
			sub[i] = cloves[perm[i]]
		}
		got, rej, err := Combine(sub)
		if err != nil || !bytes.Equal(got, msg) || len(rej) != 0 {
			t.Fatalf("combine %d of %d: err %v rejected %v equal %v", k, n, err, rej, bytes.Equal(got, msg))
		}
		// k-1 cloves never rebuild it.
		if _, _, err := Combine(sub[:k-1]); !errors.Is(err, ErrNotEnough) {
			t.Fatalf("combine %d of %d (k=%d): err %v, want ErrNotEnough", k-1, n, k, err)
		}
		// k-1 distinct plus duplicates of them are still not enough.
		dup := append(append([]Clove(nil), sub[:k-1]...), sub[0])
		if _, _, err := Combine(dup); !errors.Is(err, ErrNotEnough) {
			t.Fatalf("duplicates counted: err %v", err)
		}
	})
}

// TestBitFlipDetected flips one bit of one encoded clove. With exactly k
// cloves the flip must make Combine fail (never return a wrong message);
// with all n cloves (n > k) Combine must return the message and name the
// tampered clove.
func TestBitFlipDetected(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(3, 6).Draw(t, "n")
		k := rapid.IntRange(2, n-1).Draw(t, "k")
		msg := rapid.SliceOfN(rapid.Byte(), 0, 600).Draw(t, "msg")
		cloves, err := Split(msg, n, k)
		if err != nil {
			t.Fatal(err)
		}
		victim := rapid.IntRange(0, n-1).Draw(t, "victim")
		enc, _ := cloves[victim].MarshalBinary()
		bit := rapid.IntRange(0, len(enc)*8-1).Draw(t, "bit")
		enc[bit/8] ^= 1 << (bit % 8)
		bad, err := DecodeClove(enc)
		if err != nil {
			return // the decoder refused it: detected
		}
		all := append([]Clove(nil), cloves...)
		all[victim] = bad
		got, rej, err := Combine(all)
		if err != nil {
			t.Fatalf("all %d cloves with one flipped: %v", n, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("wrong message from all cloves")
		}
		if len(rej) != 1 || rej[0] != victim {
			t.Fatalf("rejected %v, want [%d] (bit %d)", rej, victim, bit)
		}
		// Exactly k including the tampered one.
		sub := []Clove{bad}
		for i := 0; len(sub) < k; i++ {
			if i != victim {
				sub = append(sub, cloves[i])
			}
		}
		if got, _, err := Combine(sub); err == nil {
			t.Fatalf("k cloves with bit %d of clove %d flipped combined without error (equal=%v)", bit, victim, bytes.Equal(got, msg))
		} else if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrNotEnough) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// TestSharesIndependentOfKey: by construction Shamir shares of fewer than k
// parties are uniform whatever the key. Check it statistically: the bytes
// of k-1 shares of the all-zero key and of the all-0xff key both pass a
// chi-square test for uniformity, and so does their difference in
// distribution (two-sample chi-square).
func TestSharesIndependentOfKey(t *testing.T) {
	const n, k = 4, 3
	rounds := 3000
	if testing.Short() {
		rounds = 1000
	}
	hist := func(fill byte) [256]int {
		var h [256]int
		for r := 0; r < rounds; r++ {
			cloves, err := splitWithKey(MessageID{}, bytes.Repeat([]byte{fill}, keyLen), []byte("m"), n, k)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cloves[:k-1] {
				for _, b := range c.Share[:keyLen] {
					h[b]++
				}
			}
		}
		return h
	}
	h0, h1 := hist(0x00), hist(0xff)
	total := float64(rounds * (k - 1) * keyLen)
	// 255 degrees of freedom: mean 255, sd ~22.6; 420 is > 7 sd (p < 1e-12).
	const limit = 420.0
	for name, h := range map[string][256]int{"key 00..": h0, "key ff..": h1} {
		var chi float64
		e := total / 256
		for _, c := range h {
			chi += (float64(c) - e) * (float64(c) - e) / e
		}
		if chi > limit || math.IsNaN(chi) {
			t.Errorf("%s: chi-square %.1f > %.0f: k-1 shares are not uniform", name, chi, limit)
		}
	}
	var chi2 float64
	for i := range h0 {
		a, b := float64(h0[i]), float64(h1[i])
		if a+b > 0 {
			chi2 += (a - b) * (a - b) / (a + b)
		}
	}
	if chi2 > limit {
		t.Errorf("two-sample chi-square %.1f > %.0f: k-1 shares depend on the key", chi2, limit)
	}
}

func TestCloveDecodeErrors(t *testing.T) {
	cloves, err := Split([]byte("hello"), 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := cloves[1].MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":     {},
		"short":     good[:10],
		"version":   mut(func(b []byte) []byte { b[0] = 9; return b }),
		"k=1":       mut(func(b []byte) []byte { b[1] = 1; return b }),
		"n<k":       mut(func(b []byte) []byte { b[2] = 2; return b }),
		"index>=n":  mut(func(b []byte) []byte { b[3] = 4; return b }),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"msglen":    mut(func(b []byte) []byte { b[23] ^= 0x40; return b }),
	}
	for name, b := range cases {
		if _, err := DecodeClove(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

func TestSplitParams(t *testing.T) {
	for _, c := range [][2]int{{1, 1}, {3, 1}, {2, 3}, {17, 3}} {
		if _, err := Split([]byte("x"), c[0], c[1]); !errors.Is(err, ErrParams) {
			t.Errorf("n=%d k=%d: err %v, want ErrParams", c[0], c[1], err)
		}
	}
}

func FuzzDecodeClove(f *testing.F) {
	cloves, _ := Split([]byte("seed message"), 4, 3)
	for _, c := range cloves {
		b, _ := c.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 3, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeClove(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		// Combining garbage must fail cleanly or succeed, never panic.
		_, _, _ = Combine([]Clove{c, c, c})
	})
}

// TestEveryBitOfEveryClove flips each bit of each clove of one message in
// turn: k cloves including the flipped one never rebuild a message, and all
// n rebuild the right one and reject exactly the flipped clove.
func TestEveryBitOfEveryClove(t *testing.T) {
	const n, k = 4, 3
	msg := []byte("a question the village asks anonymously")
	cloves, err := Split(msg, n, k)
	if err != nil {
		t.Fatal(err)
	}
	for v := range cloves {
		enc, _ := cloves[v].MarshalBinary()
		for bit := 0; bit < len(enc)*8; bit++ {
			b := bytes.Clone(enc)
			b[bit/8] ^= 1 << (bit % 8)
			bad, err := DecodeClove(b)
			if err != nil {
				continue
			}
			sub := []Clove{bad}
			for i := 0; len(sub) < k; i++ {
				if i != v {
					sub = append(sub, cloves[i])
				}
			}
			if _, _, err := Combine(sub); err == nil {
				t.Fatalf("clove %d bit %d: k cloves combined", v, bit)
			}
			all := append([]Clove(nil), cloves...)
			all[v] = bad
			got, rej, err := Combine(all)
			if err != nil || !bytes.Equal(got, msg) || len(rej) != 1 || rej[0] != v {
				t.Fatalf("clove %d bit %d: all n: err %v rejected %v", v, bit, err, rej)
			}
		}
	}
}
