package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The pre-tokenizers split text into words before BPE merging. They are
// hand-written equivalents of the regular expressions llama.cpp uses
// (src/unicode.cpp), run over code points:
//
//	gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//	llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	        ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//	qwen2:  the llama3 expression with \p{N} instead of \p{N}{1,3}
//
// Each stage refines the segments of the previous one and never looks
// across a segment boundary, as llama.cpp's offsets do.

// flags of one code point, as llama.cpp's unicode_cpt_flags.
type cptFlags uint8

const (
	fInRange cptFlags = 1 << iota // any code point inside the segment
	fLetter
	fNumber
	fSpace
	fPunct
)

// isSpaceCpt is llama.cpp's unicode_set_whitespace.
func isSpaceCpt(r rune) bool {
	switch r {
	case 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680,
		0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

func flagsOf(r rune) cptFlags {
	f := fInRange
	if r < 0x80 {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			f |= fLetter
		case r >= '0' && r <= '9':
			f |= fNumber
		case r == ' ' || (r >= 0x09 && r <= 0x0D):
			f |= fSpace
		default:
			if unicode.IsPunct(r) {
				f |= fPunct
			}
		}
		return f
	}
	if isSpaceCpt(r) {
		f |= fSpace
	}
	switch {
	case unicode.IsLetter(r):
		f |= fLetter
	case unicode.IsNumber(r):
		f |= fNumber
	case unicode.IsPunct(r):
		f |= fPunct
	}
	return f
}

// seg is a code-point span [start, end).
type seg struct{ start, end int }

type splitter struct {
	cpts  []rune
	flags []cptFlags
}

func (s *splitter) cpt(pos int, g seg) rune {
	if pos >= g.start && pos < g.end {
		return s.cpts[pos]
	}
	return -1
}

func (s *splitter) flag(pos int, g seg) cptFlags {
	if pos >= g.start && pos < g.end {
		return s.flags[pos]
	}
	return 0
}

// pretokenize splits text into byte-level encoded words.
func pretokenize(kind preKind, text string, words []string) []string {
	var s splitter
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		// invalid bytes become U+FFFD one byte at a time, as in llama.cpp
		s.cpts = append(s.cpts, r)
		i += n
	}
	s.flags = make([]cptFlags, len(s.cpts))
	for i, r := range s.cpts {
		s.flags[i] = flagsOf(r)
	}
	segs := []seg{{0, len(s.cpts)}}
	if len(s.cpts) == 0 {
		return words
	}
	switch kind {
	case preDefault:
		segs = s.classRuns(segs, func(r rune, f cptFlags) bool {
			if f&fSpace != 0 && r >= 0x80 {
				return false
			}
			return f&fPunct != 0 || strings.ContainsRune("$+<=>^~|", r)
		}, false)
		segs = s.gpt2(segs)
		segs = s.classRuns(segs, func(r rune, f cptFlags) bool {
			return f&fNumber != 0 && (r < 0x80 || f&fSpace == 0)
		}, false)
		segs = s.threeDigits(segs)
	case preGPT2:
		segs = s.gpt2(segs)
	case preLlama3:
		segs = s.llama3(segs, 3)
	case preQwen2:
		segs = s.llama3(segs, 1)
	case preStarcoder:
		segs = s.classRuns(segs, func(r rune, f cptFlags) bool { return f&fNumber != 0 }, true)
		segs = s.gpt2(segs)
	}
	var b strings.Builder
	var u [4]byte
	for _, g := range segs {
		b.Reset()
		for _, r := range s.cpts[g.start:g.end] {
			n := utf8.EncodeRune(u[:], r)
			for _, c := range u[:n] {
				b.WriteString(byteToUnicode[c])
			}
		}
		words = append(words, b.String())
	}
	return words
}

// classRuns splits each segment into runs matching a character class
// (regex "[class]+", or "[class]" when single) and the gaps between them.
func (s *splitter) classRuns(in []seg, match func(rune, cptFlags) bool, single bool) []seg {
	var out []seg
	for _, g := range in {
		prev := g.start
		for pos := g.start; pos < g.end; {
			if !match(s.cpts[pos], s.flags[pos]) {
				pos++
				continue
			}
			if pos > prev {
				out = append(out, seg{prev, pos})
			}
			end := pos + 1
			if !single {
				for end < g.end && match(s.cpts[end], s.flags[end]) {
					end++
				}
			}
			out = append(out, seg{pos, end})
			pos, prev = end, end
		}
		if g.end > prev {
			out = append(out, seg{prev, g.end})
		}
	}
	return out
}

// threeDigits splits out every run of three ASCII digits ("[0-9][0-9][0-9]").
func (s *splitter) threeDigits(in []seg) []seg {
	isDigit := func(r rune) bool { return r >= '0' && r <= '9' }
	var out []seg
	for _, g := range in {
		prev := g.start
		for pos := g.start; pos+3 <= g.end; {
			if isDigit(s.cpts[pos]) && isDigit(s.cpts[pos+1]) && isDigit(s.cpts[pos+2]) {
				if pos > prev {
					out = append(out, seg{prev, pos})
				}
				out = append(out, seg{pos, pos + 3})
				pos += 3
				prev = pos
				continue
			}
			pos++
		}
		if g.end > prev {
			out = append(out, seg{prev, g.end})
		}
	}
	return out
}

func isOther(f cptFlags) bool {
	return f&(fSpace|fLetter|fNumber) == 0 && f&fInRange != 0
}

// gpt2 is the GPT-2 expression (llama.cpp unicode_regex_split_custom_gpt2).
func (s *splitter) gpt2(in []seg) []seg {
	var out []seg
	for _, g := range in {
		prevEnd := g.start
		add := func(end int) int {
			n := end - prevEnd
			if n > 0 {
				out = append(out, seg{prevEnd, end})
			}
			prevEnd = end
			return n
		}
		for pos := g.start; pos < g.end; {
			c := s.cpt(pos, g)
			f := s.flag(pos, g)
			if c == '\'' && pos+1 < g.end {
				n := s.cpt(pos+1, g)
				if n == 's' || n == 't' || n == 'm' || n == 'd' {
					pos += add(pos + 2)
					continue
				}
				if pos+2 < g.end {
					nn := s.cpt(pos+2, g)
					if (n == 'r' && nn == 'e') || (n == 'v' && nn == 'e') || (n == 'l' && nn == 'l') {
						pos += add(pos + 3)
						continue
					}
				}
			}
			f2 := f
			if c == ' ' {
				f2 = s.flag(pos+1, g)
			}
			sp := 0
			if c == ' ' {
				sp = 1
			}
			if f2&fLetter != 0 {
				pos += sp
				for f2&fLetter != 0 {
					pos++
					f2 = s.flag(pos, g)
				}
				add(pos)
				continue
			}
			if f2&fNumber != 0 {
				pos += sp
				for f2&fNumber != 0 {
					pos++
					f2 = s.flag(pos, g)
				}
				add(pos)
				continue
			}
			if isOther(f2) {
				pos += sp
				for isOther(f2) {
					pos++
					f2 = s.flag(pos, g)
				}
				add(pos)
				continue
			}
			nws := 0
			for s.flag(pos+nws, g)&fSpace != 0 {
				nws++
			}
			if nws > 1 && s.cpt(pos+nws, g) != -1 { // \s+(?!\S)
				pos += nws - 1
				add(pos)
				continue
			}
			if nws > 0 {
				pos += nws
				add(pos)
				continue
			}
			pos++
			add(pos)
		}
	}
	return out
}

// llama3 is the llama-3 expression (llama.cpp
// unicode_regex_split_custom_llama3); maxDigits 1 gives qwen2's.
func (s *splitter) llama3(in []seg, maxDigits int) []seg {
	var out []seg
	for _, g := range in {
		prevEnd := g.start
		add := func(end int) int {
			n := end - prevEnd
			if n > 0 {
				out = append(out, seg{prevEnd, end})
			}
			prevEnd = end
			return n
		}
		for pos := g.start; pos < g.end; {
			c := s.cpt(pos, g)
			f := s.flag(pos, g)
			if c == '\'' && pos+1 < g.end {
				n := asciiLower(s.cpt(pos+1, g))
				if n == 's' || n == 't' || n == 'm' || n == 'd' {
					pos += add(pos + 2)
					continue
				}
				if pos+2 < g.end {
					nn := asciiLower(s.cpt(pos+2, g))
					if (n == 'r' && nn == 'e') || (n == 'v' && nn == 'e') || (n == 'l' && nn == 'l') {
						pos += add(pos + 3)
						continue
					}
				}
			}
			// [^\r\n\p{L}\p{N}]?\p{L}+
			if !(c == '\r' || c == '\n' || f&fNumber != 0) {
				if f&fLetter != 0 || s.flag(pos+1, g)&fLetter != 0 {
					pos++
					for s.flag(pos, g)&fLetter != 0 {
						pos++
					}
					add(pos)
					continue
				}
			}
			// \p{N}{1,maxDigits}
			if f&fNumber != 0 {
				ini := pos
				for s.flag(pos, g)&fNumber != 0 {
					pos++
					if pos-ini >= maxDigits {
						add(pos)
						ini = pos
					}
				}
				add(pos)
				continue
			}
			// <space>?[^\s\p{L}\p{N}]+[\r\n]*
			f2 := f
			if c == ' ' {
				f2 = s.flag(pos+1, g)
			}
			if f2&(fSpace|fLetter|fNumber) == 0 && f != 0 {
				if c == ' ' {
					pos++
				}
				for isOther(f2) {
					pos++
					f2 = s.flag(pos, g)
				}
				c2 := s.cpt(pos, g)
				for c2 == '\r' || c2 == '\n' {
					pos++
					c2 = s.cpt(pos, g)
				}
				add(pos)
				continue
			}
			nws, lastRN := 0, 0
			for s.flag(pos+nws, g)&fSpace != 0 {
				c2 := s.cpt(pos+nws, g)
				if c2 == '\r' || c2 == '\n' {
					lastRN = pos + nws + 1
				}
				nws++
			}
			if lastRN > 0 { // \s*[\r\n]+
				pos = lastRN
				add(pos)
				continue
			}
			if nws > 1 && s.cpt(pos+nws, g) != -1 { // \s+(?!\S)
				pos += nws - 1
				add(pos)
				continue
			}
			if nws > 0 {
				pos += nws
				add(pos)
				continue
			}
			pos++
			add(pos)
		}
	}
	return out
}

func asciiLower(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}
