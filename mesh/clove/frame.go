package clove

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frames on the /hypha/clove/1.0.0 stream protocol: one frame per stream,
//
//	kind (1) | link id (16) | length (be32) | packet or reply body
//
// The link id names the session on this one link (chosen by the sender of
// the forward frame, echoed by the reply), so a session looks different on
// every link. The length must be one of the packet size classes.

const (
	frameForward   = 1
	frameReply     = 2 // the final reply of a session
	frameAck       = 3 // the serving node got the clove (empty reply)
	frameHeaderLen = 1 + linkLen + 4
	linkLen        = 16
)

type linkID [linkLen]byte

type frame struct {
	kind byte
	link linkID
	data []byte
}

func (f frame) marshal() []byte {
	b := make([]byte, 0, frameHeaderLen+len(f.data))
	b = append(b, f.kind)
	b = append(b, f.link[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.data)))
	return append(b, f.data...)
}

// readFrame reads one frame and checks its kind and that its length is a
// size class of p; it never allocates more than p.MaxPacket for the body.
func readFrame(r io.Reader, p Params) (frame, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, fmt.Errorf("clove frame: header: %w", err)
	}
	f := frame{kind: h[0]}
	copy(f.link[:], h[1:])
	if f.kind != frameForward && f.kind != frameReply && f.kind != frameAck {
		return frame{}, fmt.Errorf("clove frame: kind %d: %w", f.kind, ErrMalformed)
	}
	n := binary.BigEndian.Uint32(h[1+linkLen:])
	if n > uint32(p.MaxPacket) || !p.validClass(int(n)) {
		return frame{}, fmt.Errorf("clove frame: length %d is not a size class (%d..%d, powers of two): %w",
			n, p.MinPacket, p.MaxPacket, ErrMalformed)
	}
	f.data = make([]byte, n)
	if _, err := io.ReadFull(r, f.data); err != nil {
		return frame{}, fmt.Errorf("clove frame: %d-byte body: %w", n, err)
	}
	return f, nil
}
