package tokenizer

import "unicode/utf8"

// symbol is a span of the text being merged, linked to its neighbours.
type symbol struct {
	prev, next int
	start, n   int // byte span in the session text
}

// utf8Len is llama.cpp's unicode_len_utf8: the sequence length announced by
// a lead byte (continuation bytes count as 1).
func utf8Len(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

func splitSymbols(text string, syms []symbol) []symbol {
	syms = syms[:0]
	for off, i := 0, 0; off < len(text); i++ {
		n := min(utf8Len(text[off]), len(text)-off)
		next := i + 1
		if off+n == len(text) {
			next = -1
		}
		syms = append(syms, symbol{prev: i - 1, next: next, start: off, n: n})
		off += n
	}
	return syms
}

// ---- SentencePiece-style merging by score (llama.cpp llm_tokenizer_spm) ----

type spmBigram struct {
	left, right int
	score       float32
	size        int
}

// spmQueue is a max-heap on score (ties: smaller left first), written out
// for the element type: container/heap's interface calls cost a third of
// the encoding time.
type spmQueue []spmBigram

func (q spmQueue) less(i, j int) bool {
	if q[i].score != q[j].score {
		return q[i].score > q[j].score
	}
	return q[i].left < q[j].left
}

func (q *spmQueue) push(x spmBigram) {
	*q = append(*q, x)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *spmQueue) pop() spmBigram {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

type spmSession struct {
	text     string
	syms     []symbol
	queue    spmQueue
	revMerge map[string][2]int
}

func (s *spmSession) tokenize(t *Tokenizer, text string, out []int32) []int32 {
	if text == "" {
		return out
	}
	s.text = text
	s.syms = splitSymbols(text, s.syms)
	s.queue = s.queue[:0]
	s.revMerge = make(map[string][2]int)
	for i := 1; i < len(s.syms); i++ {
		s.tryAdd(t, i-1, i)
	}
	for len(s.queue) > 0 {
		bg := s.queue.pop()
		l, r := &s.syms[bg.left], &s.syms[bg.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != bg.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			s.syms[r.next].prev = bg.left
		}
		s.tryAdd(t, l.prev, bg.left)
		s.tryAdd(t, bg.left, l.next)
	}
	for i := 0; i != -1; i = s.syms[i].next {
		out = s.resegment(t, i, out)
	}
	return out
}

func (s *spmSession) tryAdd(t *Tokenizer, left, right int) {
	if left == -1 || right == -1 {
		return
	}
	l, r := s.syms[left], s.syms[right]
	w := s.text[l.start : l.start+l.n+r.n]
	id, ok := t.toID[w]
	if !ok {
		return
	}
	s.queue.push(spmBigram{left: left, right: right, score: t.scores[id], size: len(w)})
	s.revMerge[w] = [2]int{left, right}
}

func (s *spmSession) resegment(t *Tokenizer, i int, out []int32) []int32 {
	sym := s.syms[i]
	w := s.text[sym.start : sym.start+sym.n]
	if id, ok := t.toID[w]; ok {
		return append(out, id)
	}
	p, ok := s.revMerge[w]
	if !ok {
		for j := 0; j < len(w); j++ {
			if id := t.byteTokens[w[j]]; id >= 0 {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
		return out
	}
	out = s.resegment(t, p[0], out)
	return s.resegment(t, p[1], out)
}

// ---- byte-level BPE merging by rank (llama.cpp llm_tokenizer_bpe) ----

type bpeBigram struct {
	left, right int
	text        string
	rank        int32
}

// bpeQueue is a min-heap on rank (ties: smaller left first).
type bpeQueue []bpeBigram

func (q bpeQueue) less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].left < q[j].left
}

func (q *bpeQueue) push(x bpeBigram) {
	*q = append(*q, x)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *bpeQueue) pop() bpeBigram {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

type bpeSession struct {
	word  string
	syms  []symbol
	queue bpeQueue
	key   []byte
	words []string
}

func (s *bpeSession) tokenize(t *Tokenizer, text string, out []int32) []int32 {
	s.words = pretokenize(t.pre, text, s.words[:0])
	for _, w := range s.words {
		out = s.word1(t, w, out)
	}
	return out
}

func (s *bpeSession) word1(t *Tokenizer, w string, out []int32) []int32 {
	if t.ignoreMerges {
		if id, ok := t.toID[w]; ok {
			return append(out, id)
		}
	}
	s.word = w
	s.syms = splitSymbols(w, s.syms)
	s.queue = s.queue[:0]
	for i := 1; i < len(s.syms); i++ {
		s.add(t, i-1, i)
	}
	for len(s.queue) > 0 {
		bg := s.queue.pop()
		l, r := &s.syms[bg.left], &s.syms[bg.right]
		if l.n == 0 || r.n == 0 {
			continue
		}
		if l.start+l.n != r.start || w[l.start:r.start+r.n] != bg.text {
			continue // outdated
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			s.syms[r.next].prev = bg.left
		}
		s.add(t, l.prev, bg.left)
		s.add(t, bg.left, l.next)
	}
	for _, sym := range s.syms {
		if sym.n == 0 {
			continue
		}
		piece := w[sym.start : sym.start+sym.n]
		if id, ok := t.toID[piece]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(piece); j++ {
			if id, ok := t.toID[piece[j:j+1]]; ok {
				out = append(out, id)
			}
		}
	}
	return out
}

func (s *bpeSession) add(t *Tokenizer, left, right int) {
	if left == -1 || right == -1 {
		return
	}
	l, r := s.syms[left], s.syms[right]
	s.key = append(s.key[:0], s.word[l.start:l.start+l.n]...)
	s.key = append(s.key, ' ')
	s.key = append(s.key, s.word[r.start:r.start+r.n]...)
	rank, ok := t.ranks[string(s.key)] // no allocation for map lookups
	if !ok {
		return
	}
	s.queue.push(bpeBigram{left: left, right: right, rank: rank,
		text: s.word[l.start : r.start+r.n]})
}

// ---- GPT-2 byte-level alphabet ----

// byteToUnicode maps each byte to the printable rune GPT-2 uses for it.
var byteToUnicode [256]string

// unicodeToByte is the inverse of byteToUnicode.
var unicodeToByte = map[rune]byte{}

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		var r rune
		if (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			r = rune(b)
		} else {
			r = rune(256 + n)
			n++
		}
		byteToUnicode[b] = string(r)
		unicodeToByte[r] = byte(b)
	}
}

// decodeByteLevel maps a gpt2 token text back to its bytes.
func decodeByteLevel(w string) string {
	b := make([]byte, 0, len(w))
	for _, r := range w {
		if c, ok := unicodeToByte[r]; ok {
			b = append(b, c)
			continue
		}
		// llama.cpp writes a marker for runes outside the alphabet
		b = append(b, "[UNK_BYTE_0x"...)
		var u [4]byte
		k := utf8.EncodeRune(u[:], r)
		for _, c := range u[:k] {
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		}
		b = append(b, w...)
		b = append(b, ']')
	}
	return string(b)
}
