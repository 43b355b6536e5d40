package verify

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// WriteReports writes any number of reports as newline-separated batches
// of at most MaxBatch reports each (every line is an EncodeReports array),
// for anti-entropy streams and files that may exceed one batch. A single
// EncodeReports output is a valid one-line stream.
func WriteReports(w io.Writer, rs []*Report) error {
	bw := bufio.NewWriter(w)
	for len(rs) > 0 {
		n := min(len(rs), MaxBatch)
		b := EncodeReports(rs[:n])
		for len(b) > MaxBatchSize && n > 1 { // reports are < 4 KiB each: only a safeguard
			n /= 2
			b = EncodeReports(rs[:n])
		}
		if _, err := bw.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write reports: %w", err)
		}
		rs = rs[n:]
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write reports: %w", err)
	}
	return nil
}

// ReadReports reads what WriteReports wrote (untrusted): every line is
// decoded by DecodeReports; at most maxBytes are read in all (<= 0: no
// bound beyond MaxBatchSize per line). The first bad line fails the read,
// named by its number; reports of the lines before it are returned with
// the error, so a truncated stream still yields what arrived whole.
func ReadReports(r io.Reader, maxBytes int64) ([]*Report, error) {
	if maxBytes > 0 {
		r = io.LimitReader(r, maxBytes+1)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var out []*Report
	var read int64
	for line := 1; ; line++ {
		b, err := readLine(br, MaxBatchSize)
		read += int64(len(b))
		if maxBytes > 0 && read > maxBytes {
			return out, fmt.Errorf("read reports: more than %d bytes: %w", maxBytes, ErrMalformed)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if errors.Is(err, errLineTooLong) {
				return out, fmt.Errorf("read reports: line %d longer than %d bytes: %w", line, MaxBatchSize, ErrMalformed)
			}
			rs, derr := DecodeReports(b)
			if derr != nil {
				return out, fmt.Errorf("read reports: line %d: %w", line, derr)
			}
			out = append(out, rs...)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read reports: %w", err)
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads up to and without the next '\n' (or EOF), at most max
// bytes; a longer line is consumed and reported as errLineTooLong.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) <= max+1 {
			buf = append(buf, chunk...)
		} else if len(buf) <= max {
			buf = append(buf, chunk[:max+1-len(buf)]...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			if len(buf) > max {
				return buf, errLineTooLong
			}
			return buf, err
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		if len(buf) > max {
			return buf, errLineTooLong
		}
		return buf, nil
	}
}
