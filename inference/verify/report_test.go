package verify

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestReportSignCheck(t *testing.T) {
	r := report(t, 0, nodeBase, 42, 0.75)
	if r.Version != ReportVersion || r.Verifier != ids[0] {
		t.Fatalf("Sign did not fill version/verifier: %+v", r)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	back, err := DecodeReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if !same(back, r) || string(back.Sig) != string(r.Sig) {
		t.Fatalf("round trip: %+v", back)
	}
	// every signed field is covered
	for name, f := range map[string]func(r *Report){
		"community":  func(r *Report) { r.Community += "x" },
		"epoch":      func(r *Report) { r.Epoch++ },
		"node":       func(r *Report) { r.Node = ids[nodeBase+1] },
		"model":      func(r *Report) { r.Model += "x" },
		"credit":     func(r *Report) { r.Credit = 0.7500001 },
		"challenges": func(r *Report) { r.Challenges++ },
		"perplexity": func(r *Report) { r.Perplexity++ },
		"time":       func(r *Report) { r.Time++ },
		"verifier":   func(r *Report) { r.Verifier = ids[1] },
		"sig":        func(r *Report) { r.Sig = append([]byte(nil), r.Sig...); r.Sig[3] ^= 1 },
	} {
		c := *r
		f(&c)
		if err := c.Check(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("changed %s: %v, want ErrBadSignature", name, err)
		}
	}
	// a key that is not the verifier's
	c := *r
	if err := c.Sign(keys[1]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signing %s's report with another key: %v", r.Verifier, err)
	}
}

func TestDecodeReportErrors(t *testing.T) {
	good := report(t, 0, nodeBase, 42, 0.75)
	enc := func(f func(m map[string]any)) string {
		b, _ := json.Marshal(good)
		var m map[string]any
		json.Unmarshal(b, &m)
		f(m)
		b, _ = json.Marshal(m)
		return string(b)
	}
	for _, c := range []struct {
		name, in string
		want     error
		msg      string
	}{
		{"empty", "", ErrMalformed, "empty input"},
		{"not json", "{", ErrMalformed, "unexpected EOF"},
		{"array", "[]", ErrMalformed, "cannot unmarshal array"},
		{"unknown field", enc(func(m map[string]any) { m["extra"] = 1 }), ErrMalformed, `unknown field "extra"`},
		{"trailing", enc(func(map[string]any) {}) + "{}", ErrMalformed, "trailing data"},
		{"too large", strings.Repeat(" ", MaxReportSize+1), ErrMalformed, "4097 bytes, at most 4096"},
		{"version", enc(func(m map[string]any) { m["v"] = 2 }), ErrMalformed, "version 2, this build reads 1"},
		{"credit", enc(func(m map[string]any) { m["credit"] = 1.5 }), ErrMalformed, "credit 1.5 is not in [0,1]"},
		{"challenges", enc(func(m map[string]any) { m["challenges"] = 0 }), ErrMalformed, "0 challenges"},
		{"epoch", enc(func(m map[string]any) { m["epoch"] = -1 }), ErrMalformed, "epoch -1 is negative"},
		{"node", enc(func(m map[string]any) { m["node"] = "not-a-peer" }), ErrMalformed, `node "not-a-peer" is not a peer ID`},
		{"model", enc(func(m map[string]any) { m["model"] = "a\u0001b" }), ErrMalformed, "control character"},
		{"community", enc(func(m map[string]any) { m["community"] = "" }), ErrMalformed, "community"},
		{"perplexity", enc(func(m map[string]any) { m["perplexity"] = -1 }), ErrMalformed, "perplexity -1"},
		{"no sig", enc(func(m map[string]any) { delete(m, "sig") }), ErrBadSignature, "signature of 0 bytes"},
		{"tampered", enc(func(m map[string]any) { m["credit"] = 0.1 }), ErrBadSignature, "does not verify"},
		{"rsa-style id", enc(func(m map[string]any) { m["verifier"] = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N" }), ErrBadSignature, "does not embed its public key"},
	} {
		_, err := DecodeReport([]byte(c.in))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %v containing %q", c.name, err, c.want, c.msg)
		}
	}
}

func TestReportBatch(t *testing.T) {
	var rs []*Report
	for v := range 3 {
		rs = append(rs, report(t, v, nodeBase+v, int64(v), float64(v)/3))
	}
	back, err := DecodeReports(EncodeReports(rs))
	if err != nil || len(back) != 3 {
		t.Fatalf("%d reports, %v", len(back), err)
	}
	for i := range rs {
		if !same(rs[i], back[i]) {
			t.Errorf("report %d differs", i)
		}
	}
	if b, err := DecodeReports(EncodeReports(nil)); err != nil || len(b) != 0 {
		t.Errorf("empty batch: %v %v", b, err)
	}
	bad := *rs[1]
	bad.Credit = 0.9
	if _, err := DecodeReports(EncodeReports([]*Report{rs[0], &bad})); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "report 1:") {
		t.Errorf("batch with a forged second report: %v", err)
	}
	if _, err := DecodeReports([]byte("[null]")); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "report 0:") {
		t.Errorf("null report: %v", err)
	}
	many := "[" + strings.Repeat("{},", MaxBatch) + "{}]"
	if _, err := DecodeReports([]byte(many)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "4097 reports, at most 4096") {
		t.Errorf("too many: %v", err)
	}
	if _, err := DecodeReports(make([]byte, MaxBatchSize+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("too large: %v", err)
	}
}

func FuzzDecodeReport(f *testing.F) {
	r := report(f, 0, nodeBase, 42, 0.75)
	b, _ := json.Marshal(r)
	f.Add(b)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"credit":1e999}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReport(b)
		if err != nil {
			if r != nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrBadSignature)) {
				t.Fatalf("error %v with report %v", err, r)
			}
			return
		}
		if r.Check() != nil {
			t.Fatal("decoded report does not check")
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeReport(again); err != nil && len(again) <= MaxReportSize {
			t.Fatalf("re-encoded report does not decode: %v", err)
		}
	})
}

func FuzzDecodeReports(f *testing.F) {
	f.Add(EncodeReports([]*Report{report(f, 0, nodeBase, 1, 0.5), report(f, 1, nodeBase, 1, 0.25)}))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[null, {}]`))
	f.Add([]byte(`{"reports": []}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeReports(b)
		if err != nil {
			if rs != nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrBadSignature)) {
				t.Fatalf("error %v with %d reports", err, len(rs))
			}
			return
		}
		for i, r := range rs {
			if r == nil || r.Check() != nil {
				t.Fatalf("report %d does not check", i)
			}
		}
	})
}

func TestEncodeReportsSkipsInvalid(t *testing.T) {
	good := report(t, 0, nodeBase, 1, 0.5)
	bad := *good
	bad.Credit = math.NaN()
	rs, err := DecodeReports(EncodeReports([]*Report{nil, &bad, good}))
	if err != nil || len(rs) != 1 || !same(rs[0], good) {
		t.Fatalf("%d reports, %v", len(rs), err)
	}
}
