//go:build unix

package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// refharness is where `make engine-refharness` installs llama.cpp's
// prebuilt library (node-llama-cpp); CI installs it before the tests.
func refharness(t testing.TB) string {
	dir, _ := filepath.Abs("../../out/refharness")
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed (make engine-refharness)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/node-llama-cpp")); err != nil {
		t.Skip("llama.cpp reference not installed (make engine-refharness)")
	}
	return dir
}

// corpus generates n strings mixing what tokenizers find hard: runs of
// spaces, tabs and newlines, digits, contractions in both cases,
// punctuation, several scripts, emoji sequences, combining marks, special
// token texts and random code points.
func corpus(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	pieces := []string{
		"Hello", "world", "the", "The", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\n ",
		"'s", "'S", "'ll", "'LL", "'re", "'ve", "'d", "'m", "'t", "' ", "don't", "I'M",
		"0", "7", "42", "123", "2024", "3.14159", "1,000,000", "٣٤٥", "ⅷ",
		".", ",", "!", "?", "...", "--", "(", ")", "[", "]", "{", "}", "<", ">", "=", "+", "$", "^", "~", "|", "`", "@", "#", "%", "&", "*", "/", "\\", "\"", "_",
		"нещо", "Български", "我想在", "apple", "工作", "天～", "កាន់តែ", "ពិសេស", "العربية", "עברית", "ελληνικά", "日本語の", "한국어",
		"🦙", "🚀", "😶‍🌫️", "✅", "👍🏽", "🇫🇷", "e\u0301", "n\u0303", "\u00a0", "\u2009", "\u3000", "\u2581", "\u200b",
		"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<s>", "</s>", "<unk>", "<|user|>", "<|end|>", "<|assistant|>",
		"func main() {", "x := y + 1", "# Title", "- item", "http://example.com/a?b=c",
	}
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for k := r.IntN(12); k >= 0; k-- {
			if r.IntN(8) == 0 { // a random valid code point
				var c rune
				switch r.IntN(3) {
				case 0:
					c = rune(0x20 + r.IntN(0x60))
				case 1:
					c = rune(0xA0 + r.IntN(0xD800-0xA0))
				default:
					c = rune(0xE000 + r.IntN(0x10FFFF-0xE000))
				}
				if c >= 0xFDD0 && c <= 0xFDEF || c&0xFFFE == 0xFFFE {
					c = 'x'
				}
				b.WriteRune(c)
				continue
			}
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		out[i] = b.String()
	}
	return out
}

// benchText is the text both tokenizers are timed on (about 10 KiB).
func benchText() string {
	return strings.Repeat("The quick brown fox jumps over the lazy dog. I'm sure it's 1234 km away!\n"+
		"Привет, мир! 我想在apple工作1314151天～ 🦙.cpp func main() { x := y + 1 }\n\n", 60)
}

type refResult struct {
	Plain       [][]int32 `json:"plain"`
	Special     [][]int32 `json:"special"`
	BenchTokens int       `json:"bench_tokens"`
	BenchMS     float64   `json:"bench_ms"`
	BenchCPUMS  float64   `json:"bench_cpu_ms"`
}

// cpuTime is the CPU time this process has used: on a machine shared with
// other jobs it measures work done, where wall time measures contention.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runRef(t testing.TB, dir, vocab string, strs []string, reps int) refResult {
	tmp := t.TempDir()
	in, out, bench := filepath.Join(tmp, "in.json"), filepath.Join(tmp, "out.json"), filepath.Join(tmp, "bench.txt")
	b, _ := json.Marshal(strs)
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bench, []byte(benchText()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "testdata/tokref.mjs", dir, vocab, in, out, bench, "20")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama.cpp reference: %v\n%s", err, msg)
	}
	var res refResult
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestParityRandomVsLlamaCpp tokenizes 1500 generated strings per
// vocabulary with llama.cpp itself and with this package, with and without
// special-token parsing: every id sequence must be identical. It also
// reports the speed of both on the same text.
func TestParityRandomVsLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama.cpp through node")
	}
	dir := refharness(t)
	strs := corpus(1500, 2026)
	for _, name := range vocabs {
		t.Run(name, func(t *testing.T) {
			tk := load(t, name)
			ref := runRef(t, dir, filepath.Join("testdata", "ggml-vocab-"+name+".gguf"), strs, 20)
			bad := 0
			for i, s := range strs {
				for _, c := range []struct {
					parse bool
					want  []int32
				}{{false, ref.Plain[i]}, {true, ref.Special[i]}} {
					got := tk.Encode(s, false, c.parse)
					if len(got) == 0 && len(c.want) == 0 {
						continue
					}
					if !reflect.DeepEqual(got, c.want) {
						if bad++; bad <= 5 {
							t.Errorf("parseSpecial=%v %q:\n got %v\nwant %v", c.parse, s, got, c.want)
						}
					}
				}
			}
			text := benchText()
			tk.Encode(text, false, false) // warm-up, as the reference does
			start, cpu0 := time.Now(), cpuTime()
			n := 0
			for range 20 {
				n += len(tk.Encode(text, false, false))
			}
			wall, cpu := time.Since(start), cpuTime()-cpu0
			goTPS := float64(n) / cpu.Seconds()
			refTPS := float64(ref.BenchTokens) / (ref.BenchCPUMS / 1000)
			t.Logf("%s: %d/%d strings identical (x2 modes); encode per CPU-second: %.0f tokens/s, llama.cpp %.0f tokens/s, ratio %.2f (wall: %.0f vs %.0f tokens/s)",
				name, len(strs)-bad, len(strs), goTPS, refTPS, goTPS/refTPS, float64(n)/wall.Seconds(), float64(ref.BenchTokens)/(ref.BenchMS/1000))
		})
	}
}
