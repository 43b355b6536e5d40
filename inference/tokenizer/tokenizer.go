// Package tokenizer turns text into token ids and back, driven by the
// tokenizer metadata of a GGUF file, with the same results as llama.cpp.
//
// Two vocabulary types are supported: "llama" (SentencePiece-style BPE over
// scores, with <0xXX> byte fallback) and "gpt2" (byte-level BPE over a merge
// list, with the pre-tokenizers named by tokenizer.ggml.pre: "default",
// "gpt-2", "llama3"/"llama-bpe", "qwen2", "smollm"/"starcoder" and their
// aliases). The llama-3 and qwen2 pre-tokenizer regular expressions use
// Unicode classes and look-ahead that Go's regexp lacks, so the splitter is
// hand-written (pretokenize.go).
//
// A *Tokenizer is immutable after construction and safe for concurrent use.
// A *StreamDecoder is not: use one per generation.
package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors; errors returned by this package wrap one of them.
var (
	// ErrInvalidVocab reports vocabulary metadata that is missing or
	// inconsistent (no tokens, arrays of different lengths, a merge that is
	// not "a b", ...).
	ErrInvalidVocab = errors.New("tokenizer: invalid vocabulary")
	// ErrUnsupported reports a well-formed vocabulary of a kind this package
	// does not implement (another tokenizer.ggml.model or .pre).
	ErrUnsupported = errors.New("tokenizer: unsupported")
)

// TokenType is the per-token type of tokenizer.ggml.token_type.
type TokenType int32

// Token types, numbered as in llama.cpp (LLAMA_TOKEN_TYPE_*).
const (
	TypeUndefined   TokenType = 0
	TypeNormal      TokenType = 1
	TypeUnknown     TokenType = 2
	TypeControl     TokenType = 3
	TypeUserDefined TokenType = 4
	TypeUnused      TokenType = 5
	TypeByte        TokenType = 6
)

// attribute bits, as llama.cpp's llama_token_attr.
type attr uint16

const (
	attrUndefined attr = 1 << iota
	attrUnknown
	attrUnused
	attrNormal
	attrControl
	attrUserDefined
	attrByte
	attrNormalized
	attrLStrip
	attrRStrip
)

func attrOf(t TokenType) attr {
	switch t {
	case TypeUnknown:
		return attrUnknown
	case TypeUnused:
		return attrUnused
	case TypeNormal:
		return attrNormal
	case TypeControl:
		return attrControl
	case TypeUserDefined:
		return attrUserDefined
	case TypeByte:
		return attrByte
	}
	return attrUndefined
}

// Vocab is the raw tokenizer description, as stored in GGUF metadata under
// tokenizer.ggml.*. Use FromGGUF to fill it from a file, or fill it by hand
// and call New.
type Vocab struct {
	Model  string      // tokenizer.ggml.model: "llama" or "gpt2"
	Pre    string      // tokenizer.ggml.pre (gpt2 only); "" means "default"
	Name   string      // general.name (llama.cpp applies per-model quirks, e.g. phi-3)
	Tokens []string    // tokenizer.ggml.tokens
	Scores []float32   // tokenizer.ggml.scores (llama); may be nil
	Types  []TokenType // tokenizer.ggml.token_type; may be nil (all normal)
	Merges []string    // tokenizer.ggml.merges (gpt2): "left right", in rank order

	// Special token ids; -1 means none. Zero values are replaced by the
	// llama.cpp defaults of the model type when SetDefaults is true.
	BOS, EOS, EOT, EOM, UNK, PAD int32
	// AddBOS/AddEOS are tokenizer.ggml.add_bos_token/add_eos_token; nil
	// means the model type's default.
	AddBOS, AddEOS *bool
	// AddSpacePrefix is tokenizer.ggml.add_space_prefix; nil means the
	// default (true for llama, false for gpt2).
	AddSpacePrefix *bool
}

type preKind int

const (
	preNone      preKind = iota // llama (SPM): no pre-tokenizer
	preDefault                  // cascade of four regexes
	preGPT2                     // the GPT-2 regex alone
	preLlama3                   // llama-3: \p{N}{1,3}
	preQwen2                    // qwen2: \p{N}
	preStarcoder                // \p{N} split, then the GPT-2 regex
)

// Tokenizer encodes and decodes text for one vocabulary.
// It is immutable and safe for concurrent use.
type Tokenizer struct {
	spm          bool
	pre          preKind
	tokens       []string
	scores       []float32
	attrs        []attr
	toID         map[string]int32
	ranks        map[string]int32 // "left right" -> merge rank
	special      []int32          // control/user-defined/unknown ids, longest text first
	eog          map[int32]bool
	pieces       []string // token_to_piece(special=true) cache
	bos, eos     int32
	eot, unk     int32
	addBOS       bool
	addEOS       bool
	spacePrefix  bool
	ignoreMerges bool
	cleanSpaces  bool
	byteTokens   [256]int32 // byte -> token id, -1 if none
}

// New builds a Tokenizer from a Vocab. It fails with ErrInvalidVocab or
// ErrUnsupported; the error names the offending field.
func New(v Vocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer.ggml.tokens: empty: %w", ErrInvalidVocab)
	}
	if v.Scores != nil && len(v.Scores) != n {
		return nil, fmt.Errorf("tokenizer.ggml.scores: %d entries for %d tokens: %w", len(v.Scores), n, ErrInvalidVocab)
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("tokenizer.ggml.token_type: %d entries for %d tokens: %w", len(v.Types), n, ErrInvalidVocab)
	}
	t := &Tokenizer{
		tokens: make([]string, n),
		scores: v.Scores,
		attrs:  make([]attr, n),
		toID:   make(map[string]int32, n),
		eog:    map[int32]bool{},
		eot:    -1,
	}
	if t.scores == nil {
		t.scores = make([]float32, n)
	}
	for i, w := range v.Tokens {
		if w == "" {
			w = fmt.Sprintf("[EMPTY_%d]", i)
		}
		t.tokens[i] = w
		t.toID[w] = int32(i)
		t.attrs[i] = attrNormal
		if v.Types != nil {
			t.attrs[i] = attrOf(v.Types[i])
		}
	}

	// Model type and its defaults (llama.cpp llama_vocab::impl::load).
	var bos, eos, unk int32
	switch v.Model {
	case "llama":
		t.spm = true
		t.pre = preNone
		bos, eos, unk = 1, 2, 0
		t.spacePrefix = true
		t.addBOS = true
	case "gpt2":
		if len(v.Merges) == 0 {
			return nil, fmt.Errorf("tokenizer.ggml.merges: missing for a gpt2 vocabulary: %w", ErrInvalidVocab)
		}
		bos, eos, unk = 11, 11, -1
		t.cleanSpaces = true
		switch v.Pre {
		case "", "default":
			t.pre = preDefault
		case "llama3", "llama-v3", "llama-bpe", "falcon3":
			t.pre = preLlama3
			t.ignoreMerges = true
			t.addBOS = true
		case "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2":
			t.pre = preQwen2
			t.cleanSpaces = false
		case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
			"jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais":
			t.pre = preGPT2
		case "starcoder", "refact", "smollm", "codeshell", "exaone", "minerva-7b":
			t.pre = preStarcoder
			if v.Pre == "smollm" {
				t.cleanSpaces = false
			}
		case "command-r":
			t.pre = preStarcoder
			t.cleanSpaces = false
		default:
			return nil, fmt.Errorf("tokenizer.ggml.pre %q: %w", v.Pre, ErrUnsupported)
		}
		t.ranks = make(map[string]int32, len(v.Merges))
		for i, m := range v.Merges {
			// llama.cpp splits at the first space after the first byte.
			p := -1
			if len(m) > 1 {
				if j := strings.IndexByte(m[1:], ' '); j >= 0 {
					p = j + 1
				}
			}
			if p < 0 {
				return nil, fmt.Errorf("tokenizer.ggml.merges[%d] %q: not \"left right\": %w", i, m, ErrInvalidVocab)
			}
			if _, dup := t.ranks[m]; !dup {
				t.ranks[m] = int32(i)
			}
		}
	case "":
		return nil, fmt.Errorf("tokenizer.ggml.model: missing: %w", ErrInvalidVocab)
	default:
		return nil, fmt.Errorf("tokenizer.ggml.model %q: %w", v.Model, ErrUnsupported)
	}
	if v.AddSpacePrefix != nil {
		t.spacePrefix = *v.AddSpacePrefix
	}
	pick := func(id, def int32) int32 {
		if id >= 0 && int(id) < n {
			return id
		}
		if id < 0 {
			return def
		}
		return def // out of range: llama.cpp warns and keeps the default
	}
	t.bos, t.eos, t.unk = pick(v.BOS, bos), pick(v.EOS, eos), pick(v.UNK, unk)
	if v.EOT >= 0 && int(v.EOT) < n {
		t.eot = v.EOT
	}
	eom := int32(-1)
	if v.EOM >= 0 && int(v.EOM) < n {
		eom = v.EOM
	}
	if v.AddBOS != nil {
		t.addBOS = *v.AddBOS
	}
	if v.AddEOS != nil {
		t.addEOS = *v.AddEOS
	}
	if t.addBOS && t.bos < 0 {
		return nil, fmt.Errorf("tokenizer.ggml.add_bos_token set without a BOS token: %w", ErrInvalidVocab)
	}
	if t.addEOS && t.eos < 0 {
		return nil, fmt.Errorf("tokenizer.ggml.add_eos_token set without an EOS token: %w", ErrInvalidVocab)
	}

	// Byte tokens.
	for b := 0; b < 256; b++ {
		t.byteTokens[b] = -1
		if t.spm {
			if id, ok := t.toID[fmt.Sprintf("<0x%02X>", b)]; ok {
				t.byteTokens[b] = id
			} else if id, ok := t.toID[string([]byte{byte(b)})]; ok {
				t.byteTokens[b] = id
			}
		} else if id, ok := t.toID[byteToUnicode[b]]; ok {
			t.byteTokens[b] = id
		}
	}

	t.markSpecialByText(eom)

	// Special tokens, longest first (parsed out of text before tokenizing).
	for i, a := range t.attrs {
		if a&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.special = append(t.special, int32(i))
		}
	}
	sort.SliceStable(t.special, func(a, b int) bool {
		return len(t.tokens[t.special[a]]) > len(t.tokens[t.special[b]])
	})

	// Per-model attribute quirks (llama.cpp: phi-3 strips spaces right of
	// special tokens).
	name := strings.ToLower(v.Name)
	if strings.Contains(name, "phi-3") || strings.Contains(name, "phi3") {
		for _, id := range t.special {
			t.attrs[id] |= attrRStrip
		}
		if id, ok := t.toID["</s>"]; ok {
			t.attrs[id] |= attrRStrip
		}
		for _, w := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			if id, ok := t.toID[w]; ok {
				t.attrs[id] &^= attrRStrip
			}
		}
	}

	t.pieces = make([]string, n)
	for i := range t.tokens {
		t.pieces[i] = t.piece(int32(i))
	}
	return t, nil
}

// NumTokens is the vocabulary size.
func (t *Tokenizer) NumTokens() int { return len(t.tokens) }

// BOS is the beginning-of-sequence token id, or -1.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS is the end-of-sequence token id, or -1.
func (t *Tokenizer) EOS() int32 { return t.eos }

// AddBOS reports whether Encode with addSpecial prepends BOS.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// IsEOG reports whether id ends a generation (EOS, EOT, <|im_end|>, ...).
func (t *Tokenizer) IsEOG(id int32) bool { return t.eog[id] }

// Token is the raw vocabulary text of id ("" if out of range).
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// TokenID looks up the id of a token's exact vocabulary text.
func (t *Tokenizer) TokenID(text string) (int32, bool) {
	id, ok := t.toID[text]
	return id, ok
}

// IsControl reports whether id is a control or unknown token (rendered as
// nothing by Decode unless special tokens are asked for).
func (t *Tokenizer) IsControl(id int32) bool {
	return id >= 0 && int(id) < len(t.attrs) && t.attrs[id]&(attrControl|attrUnknown) != 0
}

// Encode tokenizes text. addSpecial adds BOS/EOS as the vocabulary asks
// (tokenizer.ggml.add_bos_token ...); parseSpecial recognises the text of
// control tokens such as "<|im_start|>" and emits their ids (user-defined
// tokens are always recognised, as in llama.cpp). Invalid UTF-8 never
// fails: gpt2 vocabularies see U+FFFD, llama vocabularies byte tokens.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int32 {
	out := make([]int32, 0, len(text)/3+2)
	frags := t.partition(text, parseSpecial)
	if t.spm {
		prevSpecial := true
		if addSpecial && t.addBOS {
			out = append(out, t.bos)
		}
		var s spmSession
		for _, f := range frags {
			if f.id >= 0 {
				out = append(out, f.id)
				prevSpecial = true
				continue
			}
			txt := f.text
			if t.spacePrefix && prevSpecial {
				txt = " " + txt
			}
			out = s.tokenize(t, strings.ReplaceAll(txt, " ", "\u2581"), out)
			prevSpecial = false
		}
		if addSpecial && t.addEOS {
			out = append(out, t.eos)
		}
		return out
	}
	if addSpecial && t.addBOS {
		out = append(out, t.bos)
	}
	var s bpeSession
	for _, f := range frags {
		if f.id >= 0 {
			out = append(out, f.id)
			continue
		}
		out = s.tokenize(t, f.text, out)
	}
	if addSpecial && t.addEOS {
		out = append(out, t.eos)
	}
	return out
}

type fragment struct {
	id   int32 // >= 0: a special token; -1: raw text
	text string
}

// partition splits text at occurrences of special tokens
// (llama.cpp tokenizer_st_partition).
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{id: -1, text: text}}
	for _, sid := range t.special {
		a := t.attrs[sid]
		if !parseSpecial && a&(attrControl|attrUnknown) != 0 {
			continue
		}
		st := t.tokens[sid]
		var next []fragment
		changed := false
		for _, f := range frags {
			if f.id >= 0 || !strings.Contains(f.text, st) {
				next = append(next, f)
				continue
			}
			changed = true
			rest := f.text
			for {
				i := strings.Index(rest, st)
				if i < 0 {
					if rest != "" {
						next = append(next, fragment{id: -1, text: rest})
					}
					break
				}
				left := rest[:i]
				if a&attrLStrip != 0 {
					left = strings.TrimRight(left, cSpace)
				}
				if left != "" {
					next = append(next, fragment{id: -1, text: left})
				}
				next = append(next, fragment{id: sid})
				rest = rest[i+len(st):]
				if a&attrRStrip != 0 {
					rest = strings.TrimLeft(rest, cSpace)
				}
			}
		}
		if changed {
			frags = next
		}
	}
	return frags
}

// cSpace is C's isspace set.
const cSpace = " \t\n\v\f\r"

// piece renders one token as llama.cpp's token_to_piece with special=true.
func (t *Tokenizer) piece(id int32) string {
	a := t.attrs[id]
	w := t.tokens[id]
	if a&(attrControl|attrUnknown|attrUserDefined) != 0 {
		return w
	}
	if t.spm {
		if a&attrNormal != 0 {
			return strings.ReplaceAll(w, "\u2581", " ")
		}
		if a&attrByte != 0 {
			if b, ok := parseByteToken(w); ok {
				return string([]byte{b})
			}
		}
		return ""
	}
	if a&attrNormal != 0 {
		return decodeByteLevel(w)
	}
	return ""
}

func parseByteToken(w string) (byte, bool) {
	if len(w) != 6 || w[:3] != "<0x" || w[5] != '>' {
		return 0, false
	}
	var b byte
	for _, c := range []byte(w[3:5]) {
		b <<= 4
		switch {
		case c >= '0' && c <= '9':
			b |= c - '0'
		case c >= 'A' && c <= 'F':
			b |= c - 'A' + 10
		case c >= 'a' && c <= 'f':
			b |= c - 'a' + 10
		default:
			return 0, false
		}
	}
	return b, true
}

// Piece is the text of one token; control and unknown tokens are "" unless
// special is true. The bytes may be part of a UTF-8 sequence.
func (t *Tokenizer) Piece(id int32, special bool) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	if !special && t.attrs[id]&(attrControl|attrUnknown) != 0 {
		return ""
	}
	return t.pieces[id]
}

// Decode turns ids back into text as llama.cpp's llama_detokenize with
// remove_special=false: control tokens are dropped unless special is true,
// a llama vocabulary's added leading space is removed, and vocabularies
// that ask for it get their spaces before punctuation cleaned up. Ids out
// of range are skipped.
func (t *Tokenizer) Decode(ids []int32, special bool) string {
	var b strings.Builder
	removeSpace := t.spacePrefix
	for _, id := range ids {
		p := t.Piece(id, special)
		if removeSpace && strings.HasPrefix(p, " ") {
			p = p[1:]
		}
		removeSpace = false
		b.WriteString(p)
	}
	if !t.cleanSpaces {
		return b.String()
	}
	return cleanSpaces(b.String())
}

// cleanSpaces applies llama.cpp's three clean-up passes.
func cleanSpaces(s string) string {
	text := []byte(s)
	// pass 1: " ?", " !", " .", " ,"
	out := text[:0:0]
	for i := 0; i < len(text); i++ {
		x := text[i]
		if i > 0 && text[i-1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',') {
			out = out[:len(out)-1]
		}
		out = append(out, x)
	}
	text = out
	// pass 2: " ' " -> "'"
	out = text[:0:0]
	for i := 0; i < len(text); i++ {
		x := text[i]
		if i > 0 && x == '\'' && i+1 < len(text) && text[i-1] == ' ' && text[i+1] == ' ' {
			out = out[:len(out)-1]
			out = append(out, x)
			text[i+1] = 0 // llama.cpp blanks the next space and skips it
			i++
			continue
		}
		out = append(out, x)
	}
	text = out
	// pass 3: " 's", " 'm", " 're", " 've"
	out = text[:0:0]
	for i := 0; i < len(text); i++ {
		x := text[i]
		if i > 0 && text[i-1] == ' ' && x == '\'' && i+1 < len(text) {
			x1 := text[i+1]
			if x1 == 's' || x1 == 'm' {
				out = out[:len(out)-1]
			} else if i+2 < len(text) && ((x1 == 'r' && text[i+2] == 'e') || (x1 == 'v' && text[i+2] == 'e')) {
				out = out[:len(out)-1]
			}
		}
		out = append(out, x)
	}
	return string(out)
}

// Token texts llama.cpp recognises as special whatever the vocabulary's
// token types say (llama-vocab.cpp, as in the llama.cpp release of
// node-llama-cpp 3.22.1, the project's reference).
var (
	eotTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
		"<EOT>", "_<EOT>", "[EOT]", "<end_of_utterance>"}
	fimTexts = [][]string{
		{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|code_prefix|>", "<|prefix|>"},
		{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "<|code_suffix|>", "<|suffix|>"},
		{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|code_middle|>", "<|middle|>"},
		{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},             // end generation
		{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}, // end generation
		{"<|file_sep|>"}, // ends generation
	}
	eogTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
		"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
		"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>"}
)

// firstID is the lowest id among the tokens with one of these texts.
func (t *Tokenizer) firstID(texts []string) int32 {
	best := int32(-1)
	for _, w := range texts {
		if id, ok := t.toID[w]; ok && (best < 0 || id < best) {
			best = id
		}
	}
	return best
}

// markSpecialByText finds EOT, FIM and end-of-generation tokens by their
// text, marks them control (added to their type, as llama.cpp does) and
// builds the end-of-generation set.
func (t *Tokenizer) markSpecialByText(eom int32) {
	if t.eot < 0 {
		t.eot = t.firstID(eotTexts)
	}
	if t.eot >= 0 {
		t.attrs[t.eot] |= attrControl
	}
	if eom < 0 {
		eom = t.firstID([]string{"<|eom_id|>"})
	}
	if eom >= 0 {
		t.attrs[eom] |= attrControl
	}
	for i, texts := range fimTexts {
		if id := t.firstID(texts); id >= 0 {
			t.attrs[id] |= attrControl
			if i >= 3 {
				t.eog[id] = true
			}
		}
	}
	for _, w := range eogTexts {
		if id, ok := t.toID[w]; ok {
			t.eog[id] = true
			t.attrs[id] |= attrControl
		}
	}
	// gpt-oss: these always render
	for _, w := range []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"} {
		if id, ok := t.toID[w]; ok {
			t.attrs[id] = attrUserDefined
		}
	}
	for _, id := range []int32{t.eos, t.eot, eom} {
		if id >= 0 {
			t.eog[id] = true
		}
	}
	eogText := func(w string) (int32, bool) {
		id, ok := t.toID[w]
		return id, ok && t.eog[id]
	}
	// o200k_harmony and solar-open: "<|end|>" does not end generation
	if end, ok := eogText("<|end|>"); ok {
		_, ret := eogText("<|return|>")
		_, call := eogText("<|call|>")
		_, calls := eogText("<|calls|>")
		_, flush := eogText("<|flush|>")
		if (ret && (call || calls)) || ((call || calls) && flush) {
			delete(t.eog, end)
			t.attrs[end] = attrUserDefined
		}
	}
	// gemma4: "</s>" is text
	if s, ok := eogText("</s>"); ok {
		if _, tr := eogText("<|tool_response>"); tr {
			delete(t.eog, s)
			t.attrs[s] = attrNormal
		}
	}
}
