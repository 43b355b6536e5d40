package verify

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestWriteReadReports(t *testing.T) {
	var rs []*Report
	for e := int64(0); e < 10; e++ {
		for v := range 3 {
			rs = append(rs, report(t, v, nodeBase, e, 0.5))
		}
	}
	var buf bytes.Buffer
	if err := WriteReports(&buf, rs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReports(&buf, 0)
	if err != nil || len(back) != len(rs) {
		t.Fatalf("%d reports, %v", len(back), err)
	}
	for i := range rs {
		if !same(rs[i], back[i]) {
			t.Fatalf("report %d differs", i)
		}
	}
	// one EncodeReports blob (no newline) is a valid stream
	if back, err := ReadReports(bytes.NewReader(EncodeReports(rs[:4])), 0); err != nil || len(back) != 4 {
		t.Fatalf("single batch: %d %v", len(back), err)
	}
	// empty input: no reports
	if back, err := ReadReports(strings.NewReader(""), 0); err != nil || len(back) != 0 {
		t.Fatalf("empty: %d %v", len(back), err)
	}
	// a bad second line: the first line's reports and an error naming line 2
	two := string(EncodeReports(rs[:2])) + "\n[{\"v\":1}]\n"
	back, err = ReadReports(strings.NewReader(two), 0)
	if len(back) != 2 || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: %d %v", len(back), err)
	}
	// byte bound
	var big bytes.Buffer
	WriteReports(&big, rs)
	if _, err := ReadReports(bytes.NewReader(big.Bytes()), int64(big.Len()-10)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("over the bound: %v", err)
	}
	// a line over MaxBatchSize
	long := "[" + strings.Repeat(" ", MaxBatchSize) + "]\n"
	if _, err := ReadReports(strings.NewReader(long), 0); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("long line: %v", err)
	}
}

// TestWriteReportsSplitsBatches: more than MaxBatch reports become several
// lines that each decode on their own.
func TestWriteReportsSplitsBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("signs 4,100 reports")
	}
	k, _ := testKey(t, 0)
	_, node := testKey(t, nodeBase)
	var rs []*Report
	for e := range int64(MaxBatch + 4) {
		r := &Report{Community: community, Epoch: e, Node: node, Model: "m", Credit: 1, Challenges: 1}
		if err := r.Sign(k); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	var buf bytes.Buffer
	if err := WriteReports(&buf, rs); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 2 {
		t.Fatalf("%d lines, want 2", n)
	}
	back, err := ReadReports(&buf, 0)
	if err != nil || len(back) != len(rs) {
		t.Fatalf("%d reports, %v", len(back), err)
	}
}

func FuzzReadReports(f *testing.F) {
	var buf bytes.Buffer
	WriteReports(&buf, []*Report{report(f, 0, nodeBase, 1, 0.5), report(f, 1, nodeBase, 1, 0.25)})
	f.Add(buf.Bytes())
	f.Add([]byte("[]\n[]\n"))
	f.Add([]byte("\n\n[null]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ReadReports(bytes.NewReader(b), 1<<20)
		for i, r := range rs {
			if r == nil || r.Check() != nil {
				t.Fatalf("report %d does not check (err %v)", i, err)
			}
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error of no class: %v", err)
		}
	})
}
