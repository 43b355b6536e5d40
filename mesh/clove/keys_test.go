package clove

import (
	"errors"
	"testing"
	"time"
)

func TestIdentityDeterministicAndSigned(t *testing.T) {
	priv, a := newTestIdentity(t)
	b, err := NewIdentity(priv)
	if err != nil {
		t.Fatal(err)
	}
	if a.Candidate().Key != b.Candidate().Key {
		t.Fatal("the same identity derived two onion keys")
	}
	c := a.Candidate()
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	enc, _ := c.MarshalBinary()
	var d Candidate
	if err := d.UnmarshalBinary(enc); err != nil || d.Verify() != nil {
		t.Fatalf("decoded candidate: %v", err)
	}
	_, other := newTestIdentity(t)
	forged := c
	forged.Key = other.Candidate().Key
	if err := forged.Verify(); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("forged key verified: %v", err)
	}
	stolen := other.Candidate()
	stolen.ID = c.ID
	if err := stolen.Verify(); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("another node's signed key claimed: %v", err)
	}
}

func TestParamsValidate(t *testing.T) {
	if err := (Params{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	d := DefaultParams()
	if d.N != 4 || d.K != 3 || d.L != 3 {
		t.Fatalf("defaults %+v", d)
	}
	bad := []Params{
		{K: 1}, {N: 2, K: 3}, {N: 17, K: 3}, {L: 9}, {L: -1}, {MinPacket: 1000},
		{MinPacket: 256}, {MaxPacket: 512}, {MaxPacket: 32 << 20}, {Expiry: time.Millisecond},
		{MaxSessions: -1}, {L: 8, MinPacket: 512},
	}
	for _, p := range bad {
		if err := p.Validate(); !errors.Is(err, ErrParams) {
			t.Errorf("%+v: err %v, want ErrParams", p, err)
		}
	}
	if got := d.sizeClass(1025); got != 2048 {
		t.Errorf("sizeClass(1025) = %d", got)
	}
	if got := d.sizeClass(10); got != 1024 {
		t.Errorf("sizeClass(10) = %d", got)
	}
	if got := d.sizeClass(d.MaxPacket + 1); got != 0 {
		t.Errorf("sizeClass beyond max = %d", got)
	}
}

func TestMaxMessageFits(t *testing.T) {
	for _, p := range []Params{DefaultParams(), {N: 3, K: 2, L: 1, MinPacket: 512, MaxPacket: 4096}, {N: 16, K: 16, L: 8, MinPacket: 2048, MaxPacket: 4096}} {
		p = p.WithDefaults()
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		m := p.MaxMessage()
		for _, extra := range []int{0, 1} { // a request, a reply with its status byte
			cl, err := Split(make([]byte, m+extra), p.N, p.K)
			if err != nil {
				t.Fatal(err)
			}
			req := headerLen(p.L) + 4 + cl[0].EncodedLen()
			rep := 4 + cl[0].EncodedLen() + tagLen
			if extra == 0 && req > p.MaxPacket || extra == 1 && rep > p.MaxPacket {
				t.Errorf("%+v: MaxMessage %d does not fit (request %d, reply %d bytes)", p, m, req, rep)
			}
		}
		cl, _ := Split(make([]byte, m+p.K+1), p.N, p.K)
		if headerLen(p.L)+4+cl[0].EncodedLen() <= p.MaxPacket && 4+cl[0].EncodedLen()+tagLen <= p.MaxPacket {
			t.Errorf("%+v: MaxMessage %d is not the largest", p, m)
		}
	}
}

func TestDirectory(t *testing.T) {
	var d Directory
	_, a := newTestIdentity(t)
	_, b := newTestIdentity(t)
	if err := d.Add(a.Candidate()); err != nil {
		t.Fatal(err)
	}
	enc, _ := b.Candidate().MarshalBinary()
	if err := d.AddBinary(enc); err != nil {
		t.Fatal(err)
	}
	forged := b.Candidate()
	forged.ID = a.ID()
	if err := d.Add(forged); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("forged candidate: %v", err)
	}
	if err := d.AddBinary(enc[:5]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated candidate: %v", err)
	}
	if got := d.Candidates(); len(got) != 2 {
		t.Fatalf("%d candidates, want 2", len(got))
	}
	for _, c := range d.Candidates() {
		if c.ID == a.ID() && c.Key != a.Candidate().Key {
			t.Fatal("forged key replaced the real one")
		}
	}
	d.Remove(a.ID())
	if got := d.Candidates(); len(got) != 1 || got[0].ID != b.ID() {
		t.Fatalf("after Remove: %v", got)
	}
}
