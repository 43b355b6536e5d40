package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// decodeBody reads one JSON value of at most MaxRequestBytes into v.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body larger than %d bytes: %w", mbe.Limit, ErrBadRequest)
		}
		return fmt.Errorf("reading request body: %w", err)
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes exactly one JSON value; errors name what was wrong.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("empty request body: %w", ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %q: %s is not a valid %s: %w", te.Field, te.Value, te.Type, ErrBadRequest)
		}
		return fmt.Errorf("request body: %v: %w", err, ErrBadRequest)
	}
	if dec.More() {
		return fmt.Errorf("request body: more than one JSON value: %w", ErrBadRequest)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrModelNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrOverloaded):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 499 // client closed request (nginx convention); nobody reads it
	}
	return http.StatusInternalServerError
}

func (s *Server) retryAfter(w http.ResponseWriter) {
	secs := int((s.cfg.RetryAfter + 999_999_999) / 1_000_000_000)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
}

// openAIError writes an error in the OpenAI shape.
func (s *Server) openAIError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	typ, code := "server_error", ""
	switch status {
	case http.StatusBadRequest:
		typ = "invalid_request_error"
	case http.StatusNotFound:
		typ, code = "invalid_request_error", "model_not_found"
	case http.StatusTooManyRequests:
		typ, code = "rate_limit_error", "rate_limit_exceeded"
		s.retryAfter(w)
	case http.StatusServiceUnavailable:
		s.retryAfter(w)
	}
	if status >= 500 {
		s.log.Warn("inferd: request failed", "err", err)
	}
	e := map[string]any{"message": err.Error(), "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	writeJSON(w, status, map[string]any{"error": e})
}

// ollamaError writes an error in the Ollama shape; overload is 503.
func (s *Server) ollamaError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		status = http.StatusServiceUnavailable
		s.retryAfter(w)
	}
	if status >= 500 {
		s.log.Warn("inferd: request failed", "err", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// streamWriter sends events lazily: nothing is written (so an error can
// still become a proper HTTP status) until the first event.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctype   string
	started bool
}

func newStream(w http.ResponseWriter, ctype string) *streamWriter {
	return &streamWriter{w: w, rc: http.NewResponseController(w), ctype: ctype}
}

func (sw *streamWriter) start() {
	if sw.started {
		return
	}
	sw.started = true
	h := sw.w.Header()
	h.Set("Content-Type", sw.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	sw.w.WriteHeader(http.StatusOK)
}

// sse writes one Server-Sent Event "data: <json>".
func (sw *streamWriter) sse(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sw.raw(append(append([]byte("data: "), b...), '\n', '\n'))
}

// ndjson writes one JSON line.
func (sw *streamWriter) ndjson(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sw.raw(append(b, '\n'))
}

func (sw *streamWriter) raw(b []byte) error {
	sw.start()
	if _, err := sw.w.Write(b); err != nil {
		return err
	}
	return sw.rc.Flush()
}
