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
	"time"

	"github.com/libp2p/go-libp2p/core/network"
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
