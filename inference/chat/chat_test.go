package chat

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files (then check them by hand)")

// cases render every real template in testdata/ with the same inputs; the
// golden outputs were checked by reading each template by hand.
var cases = []struct {
	name string
	msgs []Message
	opts Options
}{
	{"conversation", []Message{
		{"system", "You are terse."},
		{"user", "Hi there"},
		{"assistant", "Hello! How can I help?"},
		{"user", "What is 2+2?"},
	}, Options{AddGenerationPrompt: true}},
	{"user-only", []Message{{"user", "  Tell me a joke.  "}}, Options{AddGenerationPrompt: true}},
	{"no-thinking", []Message{
		{"user", "Hi"},
		{"assistant", "\nHello."},
	}, Options{Vars: map[string]any{"enable_thinking": false}}},
}

var now = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jinja")
	if err != nil || len(files) != 4 {
		t.Fatalf("want the 4 real templates in testdata, got %v %v", files, err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := Parse(string(src))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cases {
			name := strings.TrimSuffix(filepath.Base(f), ".jinja") + "." + c.name
			t.Run(name, func(t *testing.T) {
				opts := c.opts
				opts.BOSToken, opts.EOSToken, opts.Now = "<|begin_of_text|>", "<|end_of_text|>", now
				got, err := tp.Render(c.msgs, opts)
				if err != nil {
					t.Fatal(err)
				}
				golden := filepath.Join("testdata", name+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if got != string(want) {
					t.Errorf("rendered:\n%s\nwant:\n%s", got, want)
				}
			})
		}
	}
}

func TestParseError(t *testing.T) {
	for _, src := range []string{
		"{% for m in messages %}{{ m.content }}", // unclosed for
		"{{ messages[0].content ",                // unclosed expression
		"{% if %}x{% endif %}",                   // empty condition
		"{% include '/etc/passwd' %}",            // may not load files: fails at render
	} {
		tp, err := Parse(src)
		if err == nil {
			_, err = tp.Render([]Message{{"user", "x"}}, Options{})
			if !errors.Is(err, ErrRender) {
				t.Errorf("%q: Parse ok, Render = %v, want ErrRender", src, err)
			}
			continue
		}
		if !errors.Is(err, ErrParse) {
			t.Errorf("%q: %v, want ErrParse", src, err)
		}
		if strings.Contains(err.Error(), "failed to parse template '") {
			t.Errorf("%q: error repeats the template source: %v", src, err)
		}
	}
}

func TestRange(t *testing.T) {
	for src, want := range map[string]string{
		"{% for i in range(3) %}{{ i }}{% endfor %}":                                      "012",
		"{% for i in range(2, 8, 3) %}{{ i }},{% endfor %}":                               "2,5,",
		"{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}":                               "531",
		"{% for i in range(0) %}x{% endfor %}":                                            "",
		"{% for i in range(10) %}{% if i > 1 %}{% break %}{% endif %}{{ i }}{% endfor %}": "01",
	} {
		tp, err := Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got, err := tp.Render(nil, Options{}); got != want || err != nil {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
	tp, err := Parse("{% for i in range(1000000000) %}x{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Render(nil, Options{}); !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("huge range: %v", err)
	}
}

func TestRaiseException(t *testing.T) {
	tp, err := Parse(`{% if messages|length == 0 %}{{ raise_exception("no messages!") }}{% endif %}ok`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Render(nil, Options{}); !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), "no messages!") {
		t.Errorf("Render = %v, want ErrRender with the template's message", err)
	}
	if s, err := tp.Render([]Message{{"user", "x"}}, Options{}); s != "ok" || err != nil {
		t.Errorf("Render = %q, %v", s, err)
	}
}

type meta map[string]string

func (m meta) String(k string) (string, bool) { v, ok := m[k]; return v, ok }

func TestFromGGUFFallback(t *testing.T) {
	tp, fallback, err := FromGGUF(meta{})
	if err != nil || !fallback {
		t.Fatalf("FromGGUF(no template) = %v, %v", fallback, err)
	}
	got, err := tp.Render([]Message{{"system", "S"}, {"user", "U"}}, Options{AddGenerationPrompt: true})
	want := "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
	if err != nil || got != want {
		t.Errorf("ChatML = %q, %v; want %q", got, err, want)
	}
	if _, _, err := FromGGUF(meta{KeyChatTemplate: "{% for %}"}); !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), KeyChatTemplate) {
		t.Errorf("bad template: %v", err)
	}
}

func TestConcurrentRender(t *testing.T) {
	src, err := os.ReadFile("testdata/Qwen-Qwen3-0.6B.jinja")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tp.Render(cases[0].msgs, Options{AddGenerationPrompt: true})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if got, err := tp.Render(cases[0].msgs, Options{AddGenerationPrompt: true}); got != want || err != nil {
					t.Errorf("concurrent render differs: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzParse: any template text parses or fails with ErrParse, and renders
// or fails with ErrRender; never a panic.
func FuzzParse(f *testing.F) {
	f.Add(ChatML)
	f.Add("{% for m in messages %}{{ m.content|trim }}{% endfor %}")
	f.Add("{{ messages[::-1][0].content.split('x')[-1].lstrip('\\n') }}")
	f.Add("{%- set ns = namespace(a=1) %}{{ ns.a }}")
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := Parse(src)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("Parse: %v", err)
			}
			return
		}
		if _, err := tp.Render([]Message{{"user", "hi"}}, Options{AddGenerationPrompt: true}); err != nil && !errors.Is(err, ErrRender) {
			t.Fatalf("Render: %v", err)
		}
	})
}
