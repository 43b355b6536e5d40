// Package chat renders a conversation into a model's prompt with the Jinja
// chat template stored in GGUF metadata (tokenizer.chat_template), using
// github.com/nikolalohinski/gonja/v2 configured like Hugging Face's
// apply_chat_template (trim_blocks, lstrip_blocks, raise_exception,
// strftime_now).
//
// A *Template is immutable after Parse and safe for concurrent use.
package chat

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// Sentinel errors; errors returned by this package wrap one of them.
var (
	// ErrParse reports a template that is not valid Jinja (or uses a
	// construct gonja does not support).
	ErrParse = errors.New("chat: template does not parse")
	// ErrRender reports a template that failed while rendering, including
	// the template's own raise_exception.
	ErrRender = errors.New("chat: template failed to render")
)

// KeyChatTemplate is the GGUF metadata key of the template.
const KeyChatTemplate = "tokenizer.chat_template"

// ChatML is the fallback template for models whose GGUF has none.
const ChatML = `{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}`

// Message is one turn of a conversation.
type Message struct {
	Role    string // "system", "user", "assistant", "tool"
	Content string
}

// Options are the template variables besides messages.
type Options struct {
	// AddGenerationPrompt appends the opening of an assistant turn.
	AddGenerationPrompt bool
	// BOSToken and EOSToken are the texts of the model's BOS/EOS tokens
	// (bos_token, eos_token in the template).
	BOSToken, EOSToken string
	// Now is the time strftime_now reports; zero means time.Now().
	Now time.Time
	// Vars are extra variables (e.g. "enable_thinking": false).
	Vars map[string]any
}

// Template is a parsed chat template.
type Template struct {
	src string
	tpl *exec.Template
}

// Source is the template text.
func (t *Template) Source() string { return t.src }

// Parse compiles a Jinja chat template. A template that does not parse
// yields an error wrapping ErrParse that says where.
func Parse(src string) (tmpl *Template, err error) {
	defer func() { // gonja's parser is not hardened against every input
		if r := recover(); r != nil {
			tmpl, err = nil, fmt.Errorf("%w: %v", ErrParse, r)
		}
	}()
	cfg := config.New()
	cfg.TrimBlocks = true
	cfg.LeftStripBlocks = true
	env := &exec.Environment{
		Context: exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables).
			Update(exec.NewContext(map[string]any{"range": boundedRange})),
		Filters:           builtins.Filters,
		Tests:             builtins.Tests,
		ControlStructures: builtins.ControlStructures,
		Methods:           methods,
	}
	if err := checkBounded(src); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	tpl, err := exec.NewTemplate(rootName, cfg, &oneTemplate{src: src}, env)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrParse, shortParseError(err))
	}
	return &Template{src: src, tpl: tpl}, nil
}

// shortParseError drops gonja's copy of the whole template source.
func shortParseError(err error) string {
	if u := errors.Unwrap(err); u != nil {
		return u.Error()
	}
	return err.Error()
}

var _ = gonja.FromString // the package is configured here rather than through gonja's globals

// methods are gonja's built-in methods with str.replace fixed: gonja v2.9.1
// makes its count argument mandatory, Python (and templates) do not.
var methods = func() exec.Methods {
	m := builtins.Methods
	strs := map[string]exec.Method[string]{}
	for _, name := range strings.Fields(`capitalize capwords casefold center count encode endswith
		expandtabs find format format_map isalnum isalpha isascii isdecimal isdigit islower
		isnumeric isprintable isspace istitle isupper join ljust lower lstrip partition
		removeprefix removesuffix rfind rjust rpartition rsplit rstrip split splitlines
		startswith strip swapcase title upper zfill`) {
		if f, ok := m.Str.Get(name); ok {
			strs[name] = f
		}
	}
	strs["replace"] = func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		var old, repl string
		count := -1
		if err := args.Take(
			exec.PositionalArgument("old", nil, exec.StringArgument(&old)),
			exec.PositionalArgument("new", nil, exec.StringArgument(&repl)),
			exec.PositionalArgument("count", exec.AsValue(-1), exec.IntArgument(&count)),
		); err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		return strings.Replace(self, old, repl, count), nil
	}
	for name, trim := range map[string]func(string, string) string{
		"strip": strings.Trim, "lstrip": strings.TrimLeft, "rstrip": strings.TrimRight,
	} {
		// gonja v2.9.1's default cutset is the rune ' ', which it then rejects
		strs[name] = func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
			if len(args.KwArgs) > 0 || len(args.Args) > 1 {
				return nil, exec.ErrInvalidCall(fmt.Errorf("%s takes at most one positional argument", name))
			}
			cutset := " \t\n\r\v\f"
			if len(args.Args) == 1 && !args.Args[0].IsNil() {
				if !args.Args[0].IsString() {
					return nil, exec.ErrInvalidCall(fmt.Errorf("%s: argument is not a string", name))
				}
				cutset = args.Args[0].String()
			}
			return trim(self, cutset), nil
		}
	}
	m.Str = exec.NewMethodSet(strs)
	return m
}()

const rootName = "chat_template"

// oneTemplate is a loader that serves the template itself once (to the
// parser), so a template from an untrusted model file can neither include
// files nor extend or include itself.
type oneTemplate struct {
	src    string
	served atomic.Bool
}

func (o *oneTemplate) Read(path string) (io.Reader, error) {
	if path != rootName || o.served.Swap(true) {
		return nil, fmt.Errorf("chat template may not load %q", path)
	}
	return strings.NewReader(o.src), nil
}

func (o *oneTemplate) Resolve(path string) (string, error) {
	if path != rootName {
		return "", fmt.Errorf("chat template may not load %q", path)
	}
	return path, nil
}

func (o *oneTemplate) Inherit(string) (loaders.Loader, error) { return o, nil }

var _ loaders.Loader = (*oneTemplate)(nil)

// MaxRange bounds the length of range(): gonja's own range has no bound
// (a template could loop for hours) and leaks a goroutine when a loop
// breaks early; this one returns a list.
const MaxRange = 100_000

func boundedRange(_ *exec.Evaluator, params *exec.VarArgs) ([]int, error) {
	var a [3]int
	if len(params.Args) < 1 || len(params.Args) > 3 || len(params.KwArgs) > 0 {
		return nil, exec.ErrInvalidCall(errors.New("range([start, ]stop[, step]) takes 1 to 3 integers"))
	}
	for i, v := range params.Args {
		if !v.IsInteger() {
			return nil, exec.ErrInvalidCall(fmt.Errorf("range: argument %d is not an integer", i+1))
		}
		a[i] = v.Integer()
	}
	start, stop, step := 0, a[0], 1
	if len(params.Args) >= 2 {
		start, stop = a[0], a[1]
	}
	if len(params.Args) == 3 {
		step = a[2]
	}
	if step == 0 {
		return nil, exec.ErrInvalidCall(errors.New("range: step cannot be 0"))
	}
	n := 0
	if step > 0 && stop > start {
		n = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		n = (start - stop - step - 1) / -step
	}
	if n > MaxRange {
		return nil, exec.ErrInvalidCall(fmt.Errorf("range of %d items exceeds %d", n, MaxRange))
	}
	out := make([]int, n)
	for i := range out {
		out[i] = start + i*step
	}
	return out, nil
}

// Bounds on what a template may do. gonja's parser and renderer recurse
// without a limit and Go cannot recover from a stack overflow, so a model
// file must not be able to make them recurse deeply.
const (
	// MaxTemplateBytes bounds a template's size (real ones are < 20 KiB).
	MaxTemplateBytes = 256 << 10
	maxNesting       = 128 // brackets and blocks
)

var (
	macroDef  = regexp.MustCompile(`\{%-?\s*macro\s+([A-Za-z_][A-Za-z0-9_]*)`)
	macroEnd  = regexp.MustCompile(`\{%-?\s*endmacro\b`)
	blockOpen = regexp.MustCompile(`\{%-?\s*(if|for|macro|call|filter|block|raw|with)\b`)
	blockEnd  = regexp.MustCompile(`\{%-?\s*end(if|for|macro|call|filter|block|raw|with)\b`)
)

// checkBounded refuses templates that could exhaust the stack: too large,
// too deeply nested, or with (mutually) recursive macros.
func checkBounded(src string) error {
	if len(src) > MaxTemplateBytes {
		return fmt.Errorf("template of %d bytes exceeds %d", len(src), MaxTemplateBytes)
	}
	depth, maxDepth := 0, 0
	for _, c := range []byte(src) {
		switch c {
		case '(', '[', '{':
			depth++
			maxDepth = max(maxDepth, depth)
		case ')', ']', '}':
			depth = max(depth-1, 0)
		}
	}
	if maxDepth > maxNesting {
		return fmt.Errorf("brackets nested %d deep (limit %d)", maxDepth, maxNesting)
	}
	depth = 0
	opens := blockOpen.FindAllStringIndex(src, -1)
	ends := blockEnd.FindAllStringIndex(src, -1)
	for i, j := 0, 0; i < len(opens) || j < len(ends); {
		if j >= len(ends) || (i < len(opens) && opens[i][0] < ends[j][0]) {
			if depth++; depth > maxNesting {
				return fmt.Errorf("blocks nested more than %d deep", maxNesting)
			}
			i++
		} else {
			depth--
			j++
		}
	}
	// macro call graph: body text of each macro mentions which macros?
	defs := macroDef.FindAllStringSubmatchIndex(src, -1)
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = src[d[2]:d[3]]
	}
	calls := map[string][]string{}
	for i, d := range defs {
		body := src[d[1]:]
		if e := macroEnd.FindStringIndex(body); e != nil {
			body = body[:e[0]]
		}
		for _, n := range names {
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(n) + `\s*\(`).MatchString(body) {
				calls[names[i]] = append(calls[names[i]], n)
			}
		}
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("macro %q is recursive", n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, m := range calls[n] {
			if err := visit(m); err != nil {
				return err
			}
		}
		state[n] = 2
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return err
		}
	}
	return nil
}

// Render applies the template to msgs.
func (t *Template) Render(msgs []Message, opts Options) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("%w: %v", ErrRender, r)
		}
	}()
	ms := make([]any, len(msgs))
	for i, m := range msgs {
		ms[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	vars := map[string]any{
		"messages":              ms,
		"add_generation_prompt": opts.AddGenerationPrompt,
		"bos_token":             opts.BOSToken,
		"eos_token":             opts.EOSToken,
		"raise_exception": func(msg string) (string, error) {
			return "", errors.New(msg)
		},
		"strftime_now": func(format string) string {
			return strftime(now, format)
		},
	}
	for k, v := range opts.Vars {
		vars[k] = v
	}
	s, err := t.tpl.ExecuteToString(exec.NewContext(vars))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrRender, err)
	}
	return s, nil
}

// strftime implements the strftime directives chat templates use.
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// Metadata is what FromGGUF needs of a GGUF file (*gguf.File satisfies it).
type Metadata interface {
	String(key string) (string, bool)
}

// FromGGUF parses the model's chat template, or ChatML when it has none.
// fallback reports whether ChatML was used.
func FromGGUF(m Metadata) (t *Template, fallback bool, err error) {
	src, ok := m.String(KeyChatTemplate)
	if !ok || strings.TrimSpace(src) == "" {
		t, err := Parse(ChatML)
		return t, true, err
	}
	t, err = Parse(src)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", KeyChatTemplate, err)
	}
	return t, false, nil
}
