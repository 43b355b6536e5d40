package api

import (
	"errors"
	"strings"
	"testing"
)

// Every decoder of request bodies returns a value or an error wrapping
// ErrBadRequest; it never panics, and accepted values are valid.

func FuzzDecodeChatCompletion(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stop":["x","y"],"max_tokens":5,"temperature":0.2,"seed":-3,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"assistant","content":null}],"n":2}`,
		`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`,
		`{"messages":[],"tools":[{"type":"function"}]}`, `[]`, `null`, `{"messages":"x"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, p, err := decodeChatCompletion(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not wrapping ErrBadRequest: %v", err)
			}
			return
		}
		if len(req.Messages) == 0 || p.MaxTokens < 0 || p.Sampling.Temperature < 0 || p.Sampling.Temperature > 2 || len(p.Stop) > 4 {
			t.Fatalf("accepted invalid request: %+v %+v", req, p)
		}
	})
}

func FuzzDecodeCompletion(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"hi","max_tokens":0,"echo":true,"logprobs":0}`,
		`{"model":"m","prompt":["hi"],"stop":"x"}`,
		`{"model":"m","prompt":[1,2,3]}`, `{"prompt":[[1,2],[3]]}`, `{"prompt":["a","b"]}`,
		`{"prompt":"x","echo":true,"logprobs":1,"stream":true}`, `{"prompt":{}}`, `{"logprobs":9}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, p, err := decodeCompletion(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not wrapping ErrBadRequest: %v", err)
			}
			return
		}
		if p.MaxTokens < 0 || (req.Echo && req.Logprobs != nil && req.Stream) {
			t.Fatalf("accepted invalid request: %+v %+v", req, p)
		}
	})
}

func FuzzDecodeOllamaChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"temperature":0,"num_predict":3,"stop":["a"]}}`,
		`{"model":"m","messages":[{"role":"USER","content":"hi","images":["aGk="]}]}`,
		`{"model":"m","format":"json"}`, `{"options":{"seed":"x"}}`, `{"stream":false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, p, err := decodeOllamaChat(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not wrapping ErrBadRequest: %v", err)
			}
			return
		}
		if p.Sampling.Temperature < 0 {
			t.Fatalf("accepted negative temperature")
		}
	})
}

func FuzzDecodeOllamaGenerate(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"hi","raw":true,"context":[1,2],"options":{"num_predict":-1}}`,
		`{"model":"m","prompt":"hi","template":"{{ .Prompt }}"}`, `{"images":["x"]}`, `{"context":[-1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, _, err := decodeOllamaGenerate(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not wrapping ErrBadRequest: %v", err)
			}
			return
		}
		if req.Template != "" || len(req.Images) > 0 {
			t.Fatalf("accepted unsupported fields: %+v", req)
		}
	})
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		body, want string
		dec        func([]byte) error
	}{
		{`{"messages":[{"role":"user","content":5}]}`, "content", chatDec},
		{`{"messages":[{"role":"robot","content":"x"}]}`, `messages[0].role "robot"`, chatDec},
		{`{"messages":[{"role":"user","content":"x"}],"temperature":3}`, "temperature 3", chatDec},
		{`{"messages":[{"role":"user","content":"x"}],"max_tokens":"many"}`, `"max_tokens"`, chatDec},
		{`{"messages":[{"role":"user","content":"x"}],"n":3}`, "n=3", chatDec},
		{`{"prompt":["a","b"]}`, "exactly one prompt", compDec},
		{`{"prompt":"x","logprobs":7}`, "logprobs 7", compDec},
		{`{"model":"m"} {"model":"n"}`, "more than one JSON value", compDec},
	} {
		err := c.dec([]byte(c.body))
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.body, err, c.want)
		}
	}
}

func chatDec(b []byte) error { _, _, err := decodeChatCompletion(b); return err }
func compDec(b []byte) error { _, _, err := decodeCompletion(b); return err }

func TestStopper(t *testing.T) {
	for _, c := range []struct {
		stops  []string
		pieces []string
		want   string
		stop   bool
	}{
		{nil, []string{"ab", "cd"}, "abcd", false},
		{[]string{"cd"}, []string{"ab", "c", "d", "ef"}, "ab", true},
		{[]string{"cd"}, []string{"abc", "x"}, "abcx", false},
		{[]string{"END", "\n\n"}, []string{"one\n", "\ntwo END"}, "one", true},
		{[]string{"xyz"}, []string{"xy"}, "xy", false}, // released at the end
		{[]string{"b", "abc"}, []string{"zab"}, "za", true},
	} {
		st := stopper{stops: c.stops}
		var got strings.Builder
		stopped := false
		for _, p := range c.pieces {
			out, s := st.push(p)
			got.WriteString(out)
			if s {
				stopped = true
				break
			}
		}
		if !stopped {
			got.WriteString(st.flush())
		}
		if got.String() != c.want || stopped != c.stop {
			t.Errorf("stops %q pieces %q: got %q (stop %v), want %q (stop %v)", c.stops, c.pieces, got.String(), stopped, c.want, c.stop)
		}
	}
}

// FuzzStopper: however the text is cut into pieces, the released text is
// exactly the text before the first stop string (or all of it).
func FuzzStopper(f *testing.F) {
	f.Add("hello world END more", "END", "o w", 3)
	f.Add("aaab", "aab", "", 1)
	f.Add("no stop here", "zz", "\n", 2)
	f.Fuzz(func(t *testing.T, text, stop1, stop2 string, cut int) {
		stops := []string{stop1, stop2}
		want, wantStop := text, false
		first := -1
		for _, s := range stops {
			if s == "" {
				continue
			}
			if i := strings.Index(text, s); i >= 0 && (first < 0 || i < first) {
				first = i
			}
		}
		if first >= 0 {
			want, wantStop = text[:first], true
		}
		step := 1 + (cut&7+8)%8
		st := stopper{stops: stops}
		var got strings.Builder
		stopped := false
		for i := 0; i < len(text) && !stopped; i += step {
			out, s := st.push(text[i:min(i+step, len(text))])
			got.WriteString(out)
			stopped = s
		}
		if !stopped {
			got.WriteString(st.flush())
		}
		if got.String() != want || stopped != wantStop {
			t.Fatalf("stops %q, text %q in steps of %d: got %q (stop %v), want %q (stop %v)", stops, text, step, got.String(), stopped, want, wantStop)
		}
	})
}
