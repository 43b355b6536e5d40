package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMakeIsDeterministicAndZipf(t *testing.T) {
	s := Spec{Systems: 5, Conversations: 400, Seed: 2026}
	a, b := Make(s), Make(s)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same spec, different conversations")
	}
	if reflect.DeepEqual(a, Make(Spec{Systems: 5, Conversations: 400, Seed: 2027})) {
		t.Fatal("another seed gave the same conversations")
	}
	count := make([]int, 5)
	for _, c := range a {
		if len(c.Users) < 2 || len(c.Users) > 3 {
			t.Fatalf("conversation of %d turns, want 2-3", len(c.Users))
		}
		if !strings.HasPrefix(c.System, fmt.Sprintf("You are assistant number %d ", c.SystemIndex)) {
			t.Fatalf("system index %d does not name its prompt %.40q", c.SystemIndex, c.System)
		}
		if n := len(strings.Fields(c.System)); n != 8+220 {
			t.Fatalf("system prompt of %d words", n)
		}
		count[c.SystemIndex]++
	}
	// Zipf: popularity falls with rank, the first prompt most of all.
	for i := 1; i < len(count); i++ {
		if count[i] > count[0] {
			t.Fatalf("system prompt counts %v: the first is not the most popular", count)
		}
	}
	if count[0] < 400/4 || count[4] == 0 {
		t.Fatalf("system prompt counts %v: not a skewed distribution over all five", count)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, c := range []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 90, 7 * time.Millisecond},
		{ms(3, 1, 2), 50, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2500 * time.Microsecond},
		{ms(10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110), 90, 100 * time.Millisecond},
		{ms(1, 2), 100, 2 * time.Millisecond},
		{ms(1, 2), 0, 1 * time.Millisecond},
	} {
		if got := Percentile(c.ds, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.ds, c.p, got, c.want)
		}
	}
}

// sse answers like an OpenAI server streaming "a", "b" then what end says.
func sse(end string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Hypha-Node", "node-7")
		w.Header().Set("Content-Type", "text/event-stream")
		for _, s := range []string{"a", "b"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", s)
		}
		io.WriteString(w, end)
	}
}

func TestChat(t *testing.T) {
	ctx := context.Background()
	msgs := []Message{{Role: "user", Content: "hi"}}
	for _, c := range []struct {
		name    string
		h       http.HandlerFunc
		stream  bool
		text    string
		started bool
		cut     bool
		err     string
	}{
		{name: "stream", h: sse("data: [DONE]\n\n"), stream: true, text: "ab", started: true},
		{name: "error event", h: sse("data: {\"error\":{\"message\":\"node died\"}}\n\n"), stream: true, started: true, cut: true, err: "node died"},
		{name: "no done", h: sse(""), stream: true, started: true, cut: true, err: "without [DONE]"},
		{name: "nothing", h: func(w http.ResponseWriter, r *http.Request) {}, stream: true, err: "before any event"},
		{name: "status", h: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }, err: "status 503: busy"},
		{name: "json", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":"whole"}}]}`)
		}, text: "whole"},
		{name: "bad json", h: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"choi`) }, err: "not a chat completion"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			rep, err := Chat(ctx, srv.Client(), srv.URL, "m", msgs, 2, c.stream)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one saying %q", err, c.err)
				}
				if errors.Is(err, ErrCut) != c.cut {
					t.Fatalf("errors.Is(%v, ErrCut) = %v", err, !c.cut)
				}
			} else if err != nil || rep.Text != c.text {
				t.Fatalf("got %q, %v; want %q", rep.Text, err, c.text)
			}
			if rep.Started != c.started {
				t.Fatalf("Started = %v", rep.Started)
			}
		})
	}
}

func TestRunCarriesRepliesAndStopsOnFailure(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls.Add(1)
		if strings.Contains(string(b), "fail") {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		// every turn after the first carries the previous reply "ab"
		if n := strings.Count(string(b), `"role":"user"`); strings.Count(string(b), `"content":"ab"`) != n-1 {
			http.Error(w, "previous replies missing: "+string(b), http.StatusBadRequest)
			return
		}
		sse("data: [DONE]\n\n")(w, r)
	}))
	defer srv.Close()
	convs := []Conversation{{System: "s", Users: []string{"1", "2", "3"}}, {System: "s", Users: []string{"1", "fail", "3"}}}
	var failed []string
	samples, errs := Run(context.Background(), convs, 10, Options{Model: "m", Clients: 1,
		Target: func(int) (*http.Client, string) { return srv.Client(), srv.URL },
		Failed: func(conv, turn int, err error) { failed = append(failed, fmt.Sprintf("%d/%d", conv, turn)) }})
	if errs != 1 || len(samples) != 4 || calls.Load() != 5 || fmt.Sprint(failed) != "[11/1]" {
		t.Fatalf("errs %d, samples %d, calls %d, failed %v", errs, len(samples), calls.Load(), failed)
	}
	for _, s := range samples {
		if s.Node != "node-7" || s.TTFT <= 0 || s.Total < s.TTFT {
			t.Fatalf("sample %+v", s)
		}
	}
	if st := Summarize(samples); st.N != 4 || st.MedianTTFT <= 0 || st.P90Total < st.MedianTotal {
		t.Fatalf("stats %+v", st)
	}
}
