package verify

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ReportVersion is the schema version of reports this build writes and reads.
const ReportVersion = 1

// Size bounds of reports and batches.
const (
	MaxReportSize  = 4 << 10
	MaxBatchSize   = 4 << 20
	MaxBatch       = 4096
	maxChallenges  = 1024
	maxSigSize     = 512
	maxNameBytes   = 256 // community and model names
	maxPeerIDBytes = 128
)

// reportDomain separates report signatures from every other signature a
// node key makes (libp2p handshakes, ledger entries, ...).
const reportDomain = "hypha/verify/report/v1\x00"

// Report is one verifier's signed statement about one serving node in one
// epoch. A Report is a plain value: not safe for concurrent mutation; the
// Book never mutates the reports it holds.
type Report struct {
	Version    int     `json:"v"`
	Community  string  `json:"community"`
	Epoch      int64   `json:"epoch"`
	Verifier   string  `json:"verifier"` // libp2p peer ID (string form)
	Node       string  `json:"node"`     // peer ID of the verified node
	Model      string  `json:"model"`
	Credit     float64 `json:"credit"` // mean credit of this epoch's challenges, [0,1]
	Challenges int     `json:"challenges"`
	Perplexity float64 `json:"perplexity"` // mean perplexity of the answers (for people)
	Time       int64   `json:"time"`       // unix ms
	Sig        []byte  `json:"sig"`
}

// signedBytes is the canonical encoding of every field but Sig, behind a
// domain-separation prefix: fixed-width integers and floats (IEEE bits,
// big-endian) and length-prefixed strings.
func (r *Report) signedBytes() []byte {
	b := make([]byte, 0, 256)
	b = append(b, reportDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Version))
	str := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	str(r.Community)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Epoch))
	str(r.Verifier)
	str(r.Node)
	str(r.Model)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Credit))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Challenges))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Perplexity))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	return b
}

// Sign sets Version (when 0) and Verifier (when empty) from k and signs the
// report. k must be the key of Verifier.
func (r *Report) Sign(k crypto.PrivKey) error {
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return fmt.Errorf("sign report: %w", err)
	}
	if r.Version == 0 {
		r.Version = ReportVersion
	}
	if r.Verifier == "" {
		r.Verifier = id.String()
	}
	if r.Verifier != id.String() {
		return fmt.Errorf("sign report: verifier %s, key belongs to %s: %w", r.Verifier, id, ErrBadSignature)
	}
	if err := r.checkFields(); err != nil {
		return fmt.Errorf("sign report: %w", err)
	}
	sig, err := k.Sign(r.signedBytes())
	if err != nil {
		return fmt.Errorf("sign report: %w", err)
	}
	r.Sig = sig
	return nil
}

// Check verifies the fields' ranges and the signature by the key inside the
// Verifier peer ID.
func (r *Report) Check() error {
	if err := r.checkFields(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	id, _ := peer.Decode(r.Verifier) // checkFields decoded it
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("report by %s: the peer ID does not embed its public key: %w", r.Verifier, ErrBadSignature)
	}
	if len(r.Sig) == 0 || len(r.Sig) > maxSigSize {
		return fmt.Errorf("report by %s: signature of %d bytes: %w", r.Verifier, len(r.Sig), ErrBadSignature)
	}
	ok, err := pub.Verify(r.signedBytes(), r.Sig)
	if err != nil || !ok {
		return fmt.Errorf("report by %s on %s epoch %d: signature does not verify: %w", r.Verifier, r.Node, r.Epoch, ErrBadSignature)
	}
	return nil
}

func (r *Report) checkFields() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, ErrMalformed)...)
	}
	if r.Version != ReportVersion {
		return bad("version %d, this build reads %d", r.Version, ReportVersion)
	}
	if err := checkName("community", r.Community); err != nil {
		return err
	}
	if err := checkName("model", r.Model); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"verifier", r.Verifier}, {"node", r.Node}} {
		if len(f.v) == 0 || len(f.v) > maxPeerIDBytes {
			return bad("%s peer ID of %d bytes", f.name, len(f.v))
		}
		if _, err := peer.Decode(f.v); err != nil {
			return bad("%s %q is not a peer ID", f.name, f.v)
		}
	}
	if r.Epoch < 0 {
		return bad("epoch %d is negative", r.Epoch)
	}
	if !(r.Credit >= 0 && r.Credit <= 1) {
		return bad("credit %v is not in [0,1]", r.Credit)
	}
	if r.Challenges < 1 || r.Challenges > maxChallenges {
		return bad("%d challenges, want 1..%d", r.Challenges, maxChallenges)
	}
	if !(r.Perplexity >= 0 && r.Perplexity <= math.MaxFloat64) {
		return bad("perplexity %v is not a finite number >= 0", r.Perplexity)
	}
	if r.Time < 0 {
		return bad("time %d is negative", r.Time)
	}
	return nil
}

func checkName(field, s string) error {
	if strings.TrimSpace(s) == "" || len(s) > maxNameBytes {
		return fmt.Errorf("%s %.40q: empty or longer than %d bytes: %w", field, s, maxNameBytes, ErrMalformed)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %.40q is not UTF-8: %w", field, s, ErrMalformed)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return fmt.Errorf("%s %.40q contains control character %U: %w", field, s, c, ErrMalformed)
		}
	}
	return nil
}

// key identifies what a report is about: one verifier's word on one node
// in one epoch.
type key struct {
	verifier, node string
	epoch          int64
}

func (r *Report) key() key { return key{r.Verifier, r.Node, r.Epoch} }

// same reports whether a and b are the same signed statement.
func same(a, b *Report) bool {
	return bytes.Equal(a.signedBytes(), b.signedBytes())
}

// DecodeReport decodes one report from untrusted bytes: strict JSON (no
// unknown fields, no trailing data, at most MaxReportSize bytes), field
// ranges and the signature.
func DecodeReport(b []byte) (*Report, error) {
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("decode report: %d bytes, at most %d: %w", len(b), MaxReportSize, ErrMalformed)
	}
	var r Report
	if err := strictJSON(b, &r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("decode %w", err)
	}
	return &r, nil
}

func strictJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("empty input: %w", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value: %w", ErrMalformed)
	}
	return nil
}

// EncodeReports encodes a batch of reports for gossip or anti-entropy sync
// (a JSON array). Nil reports and reports whose fields are out of range
// (which no receiver would accept, and NaN has no JSON form) are left out.
// The caller keeps batches within MaxBatch reports.
func EncodeReports(rs []*Report) []byte {
	ok := make([]*Report, 0, len(rs))
	for _, r := range rs {
		if r != nil && r.checkFields() == nil {
			ok = append(ok, r)
		}
	}
	b, err := json.Marshal(ok)
	if err != nil {
		return []byte("[]") // unreachable: checked fields are all encodable
	}
	return b
}

// DecodeReports decodes a batch from untrusted bytes (at most MaxBatchSize
// bytes and MaxBatch reports); every report is decoded and checked as by
// DecodeReport, and the first bad one fails the batch, named by index.
func DecodeReports(b []byte) ([]*Report, error) {
	if len(b) > MaxBatchSize {
		return nil, fmt.Errorf("decode reports: %d bytes, at most %d: %w", len(b), MaxBatchSize, ErrMalformed)
	}
	var raw []json.RawMessage
	if err := strictJSON(b, &raw); err != nil {
		return nil, fmt.Errorf("decode reports: %w", err)
	}
	if len(raw) > MaxBatch {
		return nil, fmt.Errorf("decode reports: %d reports, at most %d: %w", len(raw), MaxBatch, ErrMalformed)
	}
	out := make([]*Report, 0, len(raw))
	for i, rb := range raw {
		r, err := DecodeReport(rb)
		if err != nil {
			return nil, fmt.Errorf("decode reports: report %d: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}
