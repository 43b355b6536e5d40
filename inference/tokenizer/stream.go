package tokenizer

import "unicode/utf8"

// StreamDecoder turns generated tokens into text one token at a time and
// never emits a partial UTF-8 sequence: bytes of a character split across
// tokens (byte-fallback tokens, byte-level BPE pieces) are held back until
// the character is complete. Control tokens produce no text.
//
// A StreamDecoder is not safe for concurrent use; use one per generation.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte
	// Special makes control tokens render as their text.
	Special bool
}

// NewStreamDecoder starts decoding a new generation.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t}
}

// Add appends one token and returns the text that became complete.
func (d *StreamDecoder) Add(id int32) string {
	d.pending = append(d.pending, d.t.Piece(id, d.Special)...)
	n := completePrefix(d.pending)
	out := string(d.pending[:n])
	d.pending = append(d.pending[:0], d.pending[n:]...)
	return out
}

// Flush returns whatever is held back (an incomplete or invalid sequence,
// as bytes) and resets the decoder.
func (d *StreamDecoder) Flush() string {
	out := string(d.pending)
	d.pending = d.pending[:0]
	return out
}

// completePrefix is the length of the longest prefix of b that does not end
// inside a UTF-8 sequence that could still be completed. Bytes that can
// never become valid are released as they are.
func completePrefix(b []byte) int {
	// look back at most 3 bytes for the start of an unfinished sequence
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		c := b[i]
		if c < 0x80 {
			return len(b)
		}
		if c&0xC0 == 0x80 {
			continue // continuation byte
		}
		need := utf8Len(c)
		if c < 0xC2 || c > 0xF4 {
			return len(b) // not a valid lead byte: nothing to wait for
		}
		if len(b)-i < need {
			if utf8.FullRune(b[i:]) { // invalid continuation: give up waiting
				return len(b)
			}
			return i
		}
		return len(b)
	}
	return len(b)
}
