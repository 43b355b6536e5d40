package api

import (
	"os"
	"testing"

	"github.com/univrs/hypha/inference/chat"
	"github.com/univrs/hypha/inference/gguf"
	"github.com/univrs/hypha/inference/tokenizer"
)

// TestLlama3PromptSingleBOS: the Llama 3.2 template writes <|begin_of_text|>
// itself and the vocabulary asks for a BOS too; the prompt must start with
// exactly one BOS, and the template's header tokens must be parsed as
// special tokens, not text.
func TestLlama3PromptSingleBOS(t *testing.T) {
	f, err := gguf.Open("../tokenizer/testdata/ggml-vocab-llama-bpe.gguf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../chat/testdata/meta-llama-Llama-3.2-3B-Instruct.jinja")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	lm := &loadedModel{file: &modelFile{Name: "llama3", tok: tok, tmpl: tmpl}}
	s := &Server{}
	ids, text, err := s.chatPrompt(lm, []chat.Message{{Role: "user", Content: "Hi"}})
	if err != nil {
		t.Fatal(err)
	}
	bos := tok.BOS()
	if ids[0] != bos || ids[1] == bos {
		t.Fatalf("prompt %q starts %v, want one BOS %d", text, ids[:3], bos)
	}
	hdr, _ := tok.TokenID("<|start_header_id|>")
	eot, _ := tok.TokenID("<|eot_id|>")
	if ids[1] != hdr {
		t.Errorf("second token %d, want <|start_header_id|> %d", ids[1], hdr)
	}
	found := false
	for _, id := range ids {
		found = found || id == eot
	}
	if !found || !tok.IsEOG(eot) {
		t.Error("<|eot_id|> must be parsed as its token and end generation")
	}
	if got := tok.Decode(ids, true); got != text {
		t.Errorf("prompt does not decode back to the rendered text:\n%q\n%q", got, text)
	}
}
