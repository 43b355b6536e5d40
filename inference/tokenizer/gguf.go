package tokenizer

import (
	"fmt"
	"math"
)

// Metadata is the part of a GGUF file's key/value metadata the tokenizer
// reads. *gguf.File (inference/gguf) satisfies it; so can any map-backed
// test double.
type Metadata interface {
	String(key string) (string, bool)
	Uint(key string) (uint64, bool)
	Bool(key string) (bool, bool)
	Strings(key string) ([]string, bool)
	Float32s(key string) ([]float32, bool)
	Int32s(key string) ([]int32, bool)
}

// GGUF metadata keys read by FromGGUF.
const (
	KeyModel          = "tokenizer.ggml.model"
	KeyPre            = "tokenizer.ggml.pre"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenType      = "tokenizer.ggml.token_type"
	KeyMerges         = "tokenizer.ggml.merges"
	KeyBOS            = "tokenizer.ggml.bos_token_id"
	KeyEOS            = "tokenizer.ggml.eos_token_id"
	KeyEOT            = "tokenizer.ggml.eot_token_id"
	KeyEOM            = "tokenizer.ggml.eom_token_id"
	KeyUNK            = "tokenizer.ggml.unknown_token_id"
	KeyPAD            = "tokenizer.ggml.padding_token_id"
	KeyAddBOS         = "tokenizer.ggml.add_bos_token"
	KeyAddEOS         = "tokenizer.ggml.add_eos_token"
	KeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
	KeyChatTemplate   = "tokenizer.chat_template"
	KeyName           = "general.name"
)

// VocabFromGGUF reads the tokenizer.ggml.* metadata into a Vocab.
func VocabFromGGUF(m Metadata) (Vocab, error) {
	v := Vocab{BOS: -1, EOS: -1, EOT: -1, EOM: -1, UNK: -1, PAD: -1}
	var ok bool
	if v.Model, ok = m.String(KeyModel); !ok {
		return v, fmt.Errorf("%s: missing: %w", KeyModel, ErrInvalidVocab)
	}
	v.Pre, _ = m.String(KeyPre)
	v.Name, _ = m.String(KeyName)
	if v.Tokens, ok = m.Strings(KeyTokens); !ok {
		return v, fmt.Errorf("%s: missing: %w", KeyTokens, ErrInvalidVocab)
	}
	v.Scores, _ = m.Float32s(KeyScores)
	if tt, ok := m.Int32s(KeyTokenType); ok {
		v.Types = make([]TokenType, len(tt))
		for i, x := range tt {
			v.Types[i] = TokenType(x)
		}
	}
	v.Merges, _ = m.Strings(KeyMerges)
	for _, k := range []struct {
		key string
		dst *int32
	}{{KeyBOS, &v.BOS}, {KeyEOS, &v.EOS}, {KeyEOT, &v.EOT}, {KeyEOM, &v.EOM}, {KeyUNK, &v.UNK}, {KeyPAD, &v.PAD}} {
		if id, ok := m.Uint(k.key); ok {
			if id >= uint64(len(v.Tokens)) || id > math.MaxInt32 {
				continue // llama.cpp: "bad special token", keep the default
			}
			*k.dst = int32(id)
		}
	}
	if b, ok := m.Bool(KeyAddBOS); ok {
		v.AddBOS = &b
	}
	if b, ok := m.Bool(KeyAddEOS); ok {
		v.AddEOS = &b
	}
	if b, ok := m.Bool(KeyAddSpacePrefix); ok {
		v.AddSpacePrefix = &b
	}
	return v, nil
}

// FromGGUF builds the Tokenizer described by a GGUF file's metadata.
func FromGGUF(m Metadata) (*Tokenizer, error) {
	v, err := VocabFromGGUF(m)
	if err != nil {
		return nil, err
	}
	return New(v)
}
