package gateway

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ProtocolID is the libp2p stream protocol that carries one HTTP request
// to a peer's inferd and streams the response back.
//
// Both directions are a sequence of frames: one byte of type, a 4-byte
// big-endian length, the payload. A message is a head frame ('H', JSON),
// any number of data frames ('D', body bytes, sent as soon as they exist)
// and an end frame ('E', empty when the body is complete, else the error
// text). The requester half-closes after its end frame.
const ProtocolID = "/hypha/infer/1"

// Frame bounds.
const (
	maxHeadBytes = 64 << 10
	maxDataBytes = 1 << 20
	// MaxBodyBytes bounds a request body (as inferd's default).
	MaxBodyBytes = 8 << 20
)

const (
	frameHead = 'H'
	frameData = 'D'
	frameEnd  = 'E'
)

// reqHead is the head of a carried request.
type reqHead struct {
	Method string      `json:"method"`
	Path   string      `json:"path"` // path and query
	Header http.Header `json:"header,omitempty"`
}

// respHead is the head of a carried response.
type respHead struct {
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(append(hdr[:], payload...)); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// readFrame reads one frame of at most maxLen payload bytes.
func readFrame(r *bufio.Reader, maxLen int) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("frame header cut short: %w", ErrProtocol)
		}
		return 0, nil, err
	}
	typ, n := hdr[0], binary.BigEndian.Uint32(hdr[1:])
	if typ != frameHead && typ != frameData && typ != frameEnd {
		return 0, nil, fmt.Errorf("frame type 0x%02x unknown: %w", typ, ErrProtocol)
	}
	if int64(n) > int64(maxLen) {
		return 0, nil, fmt.Errorf("frame %q of %d bytes exceeds %d: %w", typ, n, maxLen, ErrProtocol)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("frame %q payload cut short at %d bytes: %w", typ, n, ErrProtocol)
	}
	return typ, p, nil
}

// allowedPath reports whether a peer may ask this node's inferd for path
// (the inference and state endpoints, nothing else).
func allowedPath(method, path string) bool {
	p, _, _ := strings.Cut(path, "?")
	switch method {
	case http.MethodGet:
		switch p {
		case "/v1/models", "/api/tags", "/hypha/cache", "/hypha/models", "/api/version", LoadPath:
			return true
		}
	case http.MethodPost:
		switch p {
		case "/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate", "/hypha/tokenize", "/api/show":
			return true
		}
	}
	return false
}

// readRequest decodes a carried request: head, data frames up to
// MaxBodyBytes, end. Untrusted input.
func readRequest(r *bufio.Reader) (reqHead, []byte, error) {
	var h reqHead
	typ, p, err := readFrame(r, maxHeadBytes)
	if err != nil {
		return h, nil, fmt.Errorf("request head: %w", err)
	}
	if typ != frameHead {
		return h, nil, fmt.Errorf("request: first frame is %q, want head: %w", typ, ErrProtocol)
	}
	if err := json.Unmarshal(p, &h); err != nil {
		return h, nil, fmt.Errorf("request head: %v: %w", err, ErrProtocol)
	}
	if !allowedPath(h.Method, h.Path) {
		return h, nil, fmt.Errorf("request %s %q: not an inference endpoint: %w", h.Method, h.Path, ErrProtocol)
	}
	var body []byte
	for {
		typ, p, err := readFrame(r, maxDataBytes)
		if err != nil {
			return h, nil, fmt.Errorf("request body: %w", err)
		}
		switch typ {
		case frameData:
			if len(body)+len(p) > MaxBodyBytes {
				return h, nil, fmt.Errorf("request body larger than %d bytes: %w", MaxBodyBytes, ErrProtocol)
			}
			body = append(body, p...)
		case frameEnd:
			if len(p) != 0 {
				return h, nil, fmt.Errorf("request aborted by the sender: %q: %w", p, ErrProtocol)
			}
			return h, body, nil
		default:
			return h, nil, fmt.Errorf("request: second head frame: %w", ErrProtocol)
		}
	}
}

// writeRequest encodes a carried request.
func writeRequest(w io.Writer, h reqHead, body []byte) error {
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := writeFrame(w, frameHead, hb); err != nil {
		return err
	}
	for len(body) > 0 {
		n := min(len(body), maxDataBytes)
		if err := writeFrame(w, frameData, body[:n]); err != nil {
			return err
		}
		body = body[n:]
	}
	return writeFrame(w, frameEnd, nil)
}

// readResponseHead decodes the head of a carried response.
func readResponseHead(r *bufio.Reader) (respHead, error) {
	var h respHead
	typ, p, err := readFrame(r, maxHeadBytes)
	if err != nil {
		return h, fmt.Errorf("response head: %w", err)
	}
	if typ == frameEnd {
		return h, fmt.Errorf("peer failed before answering: %q: %w", p, ErrProtocol)
	}
	if typ != frameHead {
		return h, fmt.Errorf("response: first frame is %q, want head: %w", typ, ErrProtocol)
	}
	if err := json.Unmarshal(p, &h); err != nil {
		return h, fmt.Errorf("response head: %v: %w", err, ErrProtocol)
	}
	if h.Status < 100 || h.Status > 999 {
		return h, fmt.Errorf("response head: status %d: %w", h.Status, ErrProtocol)
	}
	return h, nil
}

// bodyReader reads the data frames of a carried response.
type bodyReader struct {
	r    *bufio.Reader
	buf  []byte
	err  error
	done func(complete bool) // called once when the body ends or is closed
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.buf) == 0 && b.err == nil {
		typ, payload, err := readFrame(b.r, maxDataBytes)
		switch {
		case err != nil:
			b.err = fmt.Errorf("response body: %w", err)
			if errors.Is(err, io.EOF) {
				b.err = fmt.Errorf("response body: stream ended without an end frame: %w", ErrProtocol)
			}
		case typ == frameData:
			b.buf = payload
		case typ == frameEnd && len(payload) == 0:
			b.err = io.EOF
		case typ == frameEnd:
			b.err = fmt.Errorf("peer: %s: %w", payload, ErrUpstream)
		default:
			b.err = fmt.Errorf("response body: unexpected head frame: %w", ErrProtocol)
		}
	}
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	if b.done != nil {
		b.done(b.err == io.EOF)
		b.done = nil
	}
	return 0, b.err
}

func (b *bodyReader) Close() error {
	if b.done != nil {
		b.done(false)
		b.done = nil
	}
	return nil
}
