package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/univrs/hypha/inference/route"
)

// requestReadTimeout bounds how long a peer may take to send its request.
const requestReadTimeout = 30 * time.Second

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// servePeer answers one /hypha/infer/1 stream: the carried request goes to
// the local inferd, its response streams back frame by frame. A peer
// that resets the stream cancels the generation.
func (g *Gateway) servePeer(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(requestReadTimeout))
	br := newBufReader(s)
	h, body, err := readRequest(br)
	if err != nil {
		g.log.Debug("gateway: bad peer request", "peer", s.Conn().RemotePeer(), "err", err)
		_ = writeFrame(s, frameEnd, []byte(err.Error()))
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	from := s.Conn().RemotePeer().String()
	if h.Method == http.MethodGet && h.Path == LoadPath { // answered here, not by inferd
		b, _ := json.Marshal(map[string]int{"queued_tokens": g.servedExcept(from)})
		hb, _ := json.Marshal(respHead{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}})
		if writeFrame(s, frameHead, hb) == nil && writeFrame(s, frameData, b) == nil {
			_ = writeFrame(s, frameEnd, nil)
		}
		return
	}
	if h.Method == http.MethodPost && h.Path != "/hypha/tokenize" && h.Path != "/api/show" {
		defer g.addServed(from, queuedOf(h.Header.Get(QueuedHeader), len(body)))()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // after the request only a reset can come: cancel then
		_, err := io.Copy(io.Discard, br)
		if err != nil {
			cancel()
		}
	}()
	go func() {
		select {
		case <-g.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	var rd io.Reader
	if h.Method == http.MethodPost {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, h.Method, g.cfg.Local+h.Path, rd)
	if err != nil {
		_ = writeFrame(s, frameEnd, []byte(err.Error()))
		return
	}
	for _, k := range []string{"Content-Type", "Accept"} {
		if v := h.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		_ = writeFrame(s, frameEnd, []byte(fmt.Sprintf("local inferd: %v", err)))
		return
	}
	defer resp.Body.Close()
	rh := respHead{Status: resp.StatusCode, Header: http.Header{}}
	for _, k := range []string{"Content-Type", "Retry-After", "Cache-Control"} {
		if v := resp.Header.Get(k); v != "" {
			rh.Header.Set(k, v)
		}
	}
	hb, _ := json.Marshal(rh)
	if err := writeFrame(s, frameHead, hb); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if werr := writeFrame(s, frameData, buf[:n]); werr != nil {
				return // the requester went away; ctx is cancelled by the reset
			}
		}
		if errors.Is(err, io.EOF) {
			_ = writeFrame(s, frameEnd, nil)
			return
		}
		if err != nil {
			_ = writeFrame(s, frameEnd, []byte(fmt.Sprintf("local inferd: %v", err)))
			return
		}
	}
}

// maxQueuedClaim bounds what a peer may claim one request costs.
const maxQueuedClaim = 1 << 20

// queuedOf is the tokens a peer's request is expected to cost: its
// QueuedHeader claim, bounded, or without one a guess from the body
// size (about 4 bytes a token) plus the default output.
func queuedOf(claim string, bodyBytes int) int {
	if q, err := strconv.Atoi(claim); err == nil && q >= 0 {
		return min(q, maxQueuedClaim)
	}
	return bodyBytes/4 + route.DefaultExpectedOutput
}
