package provisioning

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ManifestVersion is the schema version of manifests this build writes and
// reads. A manifest with another version is rejected with
// ErrUnsupportedVersion; migrations go in DecodeManifest when it changes.
const ManifestVersion = 1

// MaxManifestSize bounds the size of a signed manifest file.
const MaxManifestSize = 1 << 20

// manifestDomain separates manifest signatures from every other ed25519
// signature a steward key makes.
const manifestDomain = "hypha/manifest/v1\x00"

// Manifest describes a community. It is the body of a SignedManifest; every
// copy on every box is identical byte for byte, and a change makes a new
// manifest with a higher Serial that stewards sign.
//
// A Manifest is a plain value: not safe for concurrent mutation, safe for
// concurrent reads.
type Manifest struct {
	Version     int       `json:"version"`
	CommunityID string    `json:"community_id"`       // 32 hex digits, fixed at init
	Serial      uint64    `json:"serial"`             // 1 for the founding manifest, +1 per update
	Previous    string    `json:"previous,omitempty"` // hex SHA-256 of the previous body (Serial > 1)
	IssuedAt    time.Time `json:"issued_at"`

	Name      string   `json:"name"`
	Bioregion string   `json:"bioregion,omitempty"`
	Location  Location `json:"location"`

	Stewards         []Steward `json:"stewards"`
	StewardThreshold int       `json:"steward_threshold"` // signatures needed for an update

	Credit         CreditRules      `json:"credit"`
	Verifiers      VerifierSet      `json:"verifiers"`
	Clove          CloveParams      `json:"clove"`
	BootstrapPeers []string         `json:"bootstrap_peers,omitempty"` // libp2p multiaddrs
	Reputation     ReputationParams `json:"reputation"`
}

// Location is where the community lives, in WGS84 degrees.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Steward is a person allowed to sign manifest updates and invites.
type Steward struct {
	Name      string    `json:"name"`
	PublicKey PublicKey `json:"public_key"`
}

// CreditRules are the mutual-credit rules of the community ledger. Amounts are
// integers in Unit (no fractions on the ledger).
type CreditRules struct {
	Unit           string  `json:"unit"`            // e.g. "spore"
	DebtLimit      int64   `json:"debt_limit"`      // lowest balance allowed is -DebtLimit
	CreditLimit    int64   `json:"credit_limit"`    // highest balance allowed
	CommonsAccount string  `json:"commons_account"` // account receiving the commons share
	CommonsShare   float64 `json:"commons_share"`   // fraction [0,1) of each payment to the commons
	Pricing        Pricing `json:"pricing"`
}

// Pricing sets what inference costs, in credit units.
type Pricing struct {
	PromptPerMTok     int64 `json:"prompt_per_mtok"`     // per million prompt tokens
	CompletionPerMTok int64 `json:"completion_per_mtok"` // per million generated tokens
	// SolarDiscount is the fraction [0,1] taken off the price while the
	// serving node runs on surplus renewable power.
	SolarDiscount float64 `json:"solar_discount"`
}

// VerifierSet configures output verification (PlanetServe committee).
type VerifierSet struct {
	Members       []string `json:"members,omitempty"` // libp2p peer IDs of verifier nodes
	CommitteeSize int      `json:"committee_size"`
	ChallengeRate float64  `json:"challenge_rate"` // fraction [0,1] of requests that are challenges
	// Prompts are challenge prompts the community adds to the built-in pool
	// (at most MaxChallengePrompts of at most MaxChallengePromptBytes each).
	Prompts []string `json:"prompts,omitempty"`
}

// Bounds of VerifierSet.Prompts.
const (
	MaxChallengePrompts     = 256
	MaxChallengePromptBytes = 2000
)

// CloveParams are the S-IDA parameters of anonymous requests: a request is
// split into N cloves of which any K rebuild it, each sent over an onion
// path of L hops.
type CloveParams struct {
	N int `json:"n"`
	K int `json:"k"`
	L int `json:"l"`
}

// ReputationParams tune the reputation of serving nodes. Fractions are in
// [0,1]. The fields after DecayPerDay were added after the first release:
// they are omitted from the JSON when zero, so manifests written before them
// keep their exact bytes (and signatures), and zero means the default of
// inference/verify (α 0.4, β 0.6, window 5, abnormal below 0.4, γ 0.2,
// 60 s epochs, 2 challenges per node and verifier per epoch).
type ReputationParams struct {
	Initial     float64 `json:"initial"`
	Threshold   float64 `json:"threshold"`     // below it a node gets no requests
	DecayPerDay float64 `json:"decay_per_day"` // pull towards Initial per day

	// R(T) = Alpha·R(T-1) + β·C(T), β = Beta unless the node is punished.
	Alpha float64 `json:"alpha,omitempty"`
	Beta  float64 `json:"beta,omitempty"`
	// An epoch's credit below Abnormal is abnormal; when more than Gamma of
	// the last Window scored epochs are abnormal, β shrinks (PlanetServe).
	Abnormal float64 `json:"abnormal,omitempty"`
	Gamma    float64 `json:"gamma,omitempty"`
	Window   int     `json:"window,omitempty"` // 1..64 epochs
	// EpochSeconds is the length of a verification epoch (5..86400).
	EpochSeconds int `json:"epoch_seconds,omitempty"`
	// ChallengesPerEpoch each verifier sends each serving node (1..32).
	ChallengesPerEpoch int `json:"challenges_per_epoch,omitempty"`
}

// DefaultManifest returns a founding manifest (Serial 1) with the default
// rules, a fresh community ID and founder as the only steward.
func DefaultManifest(name string, founder Steward, now time.Time) (*Manifest, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("default manifest: %w", err)
	}
	return &Manifest{
		Version:          ManifestVersion,
		CommunityID:      hex.EncodeToString(id),
		Serial:           1,
		IssuedAt:         now.UTC().Truncate(time.Second),
		Name:             name,
		Stewards:         []Steward{founder},
		StewardThreshold: 1,
		Credit: CreditRules{
			Unit: "spore", DebtLimit: 1000, CreditLimit: 10000,
			CommonsAccount: "commons", CommonsShare: 0.05,
			Pricing: Pricing{PromptPerMTok: 100, CompletionPerMTok: 400, SolarDiscount: 0.5},
		},
		Verifiers:  VerifierSet{CommitteeSize: 3, ChallengeRate: 0.02},
		Clove:      CloveParams{N: 5, K: 3, L: 3},
		Reputation: ReputationParams{Initial: 0.5, Threshold: 0.2, DecayPerDay: 0.05},
	}, nil
}

func inUnit(f float64) bool { return f >= 0 && f <= 1 && !math.IsNaN(f) }

func checkText(field, s string, max int, required bool) error {
	if required && strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long, at most %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s contains control character %U", field, r)
		}
	}
	return nil
}

// Validate checks every rule of a manifest body (not its signatures).
func (m *Manifest) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("manifest %q serial %d: %w", m.Name, m.Serial, err)
	}
	return nil
}

func (m *Manifest) validate() error {
	inv := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, ErrInvalid)...)
	}
	if m.Version != ManifestVersion {
		return fmt.Errorf("version %d, this build reads %d: %w", m.Version, ManifestVersion, ErrUnsupportedVersion)
	}
	if b, err := hex.DecodeString(m.CommunityID); err != nil || len(b) != 16 {
		return inv("community_id %q is not 32 hex digits", m.CommunityID)
	}
	if m.Serial == 0 {
		return inv("serial is 0")
	}
	if m.Serial == 1 && m.Previous != "" {
		return inv("founding manifest (serial 1) has a previous hash")
	}
	if m.Serial > 1 {
		if b, err := hex.DecodeString(m.Previous); err != nil || len(b) != sha256.Size {
			return inv("previous %q is not a hex SHA-256", m.Previous)
		}
	}
	if m.IssuedAt.IsZero() {
		return inv("issued_at is missing")
	}
	for _, c := range []struct {
		f, s string
		max  int
		req  bool
	}{{"name", m.Name, 64, true}, {"bioregion", m.Bioregion, 128, false},
		{"credit.unit", m.Credit.Unit, 16, true}, {"credit.commons_account", m.Credit.CommonsAccount, 64, true}} {
		if err := checkText(c.f, c.s, c.max, c.req); err != nil {
			return inv("%v", err)
		}
	}
	if m.Location.Lat < -90 || m.Location.Lat > 90 || m.Location.Lon < -180 || m.Location.Lon > 180 ||
		math.IsNaN(m.Location.Lat) || math.IsNaN(m.Location.Lon) {
		return inv("location %v,%v is not a WGS84 coordinate", m.Location.Lat, m.Location.Lon)
	}
	if len(m.Stewards) == 0 || len(m.Stewards) > 32 {
		return inv("%d stewards, want 1 to 32", len(m.Stewards))
	}
	seen := map[string]bool{}
	for i, s := range m.Stewards {
		if len(s.PublicKey) != ed25519.PublicKeySize {
			return inv("steward %d has no valid public key", i)
		}
		if seen[string(s.PublicKey)] {
			return inv("steward %d (%s) is listed twice", i, s.PublicKey)
		}
		seen[string(s.PublicKey)] = true
		if err := checkText(fmt.Sprintf("steward %d name", i), s.Name, 64, false); err != nil {
			return inv("%v", err)
		}
	}
	if m.StewardThreshold < 1 || m.StewardThreshold > len(m.Stewards) {
		return inv("steward_threshold %d with %d stewards", m.StewardThreshold, len(m.Stewards))
	}
	c := m.Credit
	if c.DebtLimit < 0 || c.CreditLimit <= 0 {
		return inv("credit limits debt %d, credit %d: debt must be >= 0 and credit > 0", c.DebtLimit, c.CreditLimit)
	}
	if !inUnit(c.CommonsShare) || c.CommonsShare >= 1 {
		return inv("credit.commons_share %v is not in [0,1)", c.CommonsShare)
	}
	if c.Pricing.PromptPerMTok < 0 || c.Pricing.CompletionPerMTok < 0 || !inUnit(c.Pricing.SolarDiscount) {
		return inv("pricing %+v: prices must be >= 0 and solar_discount in [0,1]", c.Pricing)
	}
	v := m.Verifiers
	if v.CommitteeSize < 1 || v.CommitteeSize > 64 || !inUnit(v.ChallengeRate) {
		return inv("verifiers: committee_size %d (1..64), challenge_rate %v ([0,1])", v.CommitteeSize, v.ChallengeRate)
	}
	if len(v.Members) > 1024 {
		return inv("verifiers: %d members, at most 1024", len(v.Members))
	}
	for i, p := range v.Members {
		if err := checkText(fmt.Sprintf("verifier %d", i), p, 128, true); err != nil {
			return inv("%v", err)
		}
	}
	if len(v.Prompts) > MaxChallengePrompts {
		return inv("verifiers: %d challenge prompts, at most %d", len(v.Prompts), MaxChallengePrompts)
	}
	for i, p := range v.Prompts {
		if err := checkText(fmt.Sprintf("challenge prompt %d", i), p, MaxChallengePromptBytes, true); err != nil {
			return inv("%v", err)
		}
	}
	k := m.Clove
	if k.K < 1 || k.N < k.K || k.N > 32 || k.L < 1 || k.L > 8 {
		return inv("clove n=%d k=%d l=%d: want 1 <= k <= n <= 32 and 1 <= l <= 8", k.N, k.K, k.L)
	}
	if len(m.BootstrapPeers) > 64 {
		return inv("%d bootstrap peers, at most 64", len(m.BootstrapPeers))
	}
	for i, p := range m.BootstrapPeers {
		if !strings.HasPrefix(p, "/") {
			return inv("bootstrap peer %d %q is not a multiaddr", i, p)
		}
		if err := checkText(fmt.Sprintf("bootstrap peer %d", i), p, 256, true); err != nil {
			return inv("%v", err)
		}
	}
	r := m.Reputation
	if !inUnit(r.Initial) || !inUnit(r.Threshold) || !inUnit(r.DecayPerDay) ||
		!inUnit(r.Alpha) || !inUnit(r.Beta) || !inUnit(r.Abnormal) || !inUnit(r.Gamma) {
		return inv("reputation %+v: every fraction must be in [0,1]", r)
	}
	if r.Window < 0 || r.Window > 64 {
		return inv("reputation window %d epochs, want 1..64 (0: default)", r.Window)
	}
	if r.EpochSeconds != 0 && (r.EpochSeconds < 5 || r.EpochSeconds > 86400) {
		return inv("reputation epoch_seconds %d, want 5..86400 (0: default)", r.EpochSeconds)
	}
	if r.ChallengesPerEpoch < 0 || r.ChallengesPerEpoch > 32 {
		return inv("reputation challenges_per_epoch %d, want 1..32 (0: default)", r.ChallengesPerEpoch)
	}
	return nil
}

// IsSteward reports whether k is one of m's stewards.
func (m *Manifest) IsSteward(k PublicKey) bool {
	for _, s := range m.Stewards {
		if s.PublicKey.Equal(k) {
			return true
		}
	}
	return false
}

// Clone returns a deep copy of m.
func (m *Manifest) Clone() *Manifest {
	c := *m
	c.Stewards = append([]Steward(nil), m.Stewards...)
	c.Verifiers.Members = append([]string(nil), m.Verifiers.Members...)
	c.Verifiers.Prompts = append([]string(nil), m.Verifiers.Prompts...)
	c.BootstrapPeers = append([]string(nil), m.BootstrapPeers...)
	return &c
}

// Signature is one steward's signature over a manifest body.
type Signature struct {
	Key PublicKey `json:"key"`
	Sig []byte    `json:"sig"` // base64 in JSON
}

// SignedManifest is the manifest.json file: the body exactly as signed, and
// the stewards' signatures over it. Methods are not safe for concurrent use.
type SignedManifest struct {
	// Body is the compact JSON encoding of a Manifest; signatures cover
	// these bytes (after json.Compact, so re-indenting the file is harmless).
	Body       json.RawMessage `json:"manifest"`
	Signatures []Signature     `json:"signatures"`
}

// NewSignedManifest encodes m as an unsigned envelope after validating it.
func NewSignedManifest(m *Manifest) (*SignedManifest, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return &SignedManifest{Body: b}, nil
}

func (s *SignedManifest) compactBody() ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, s.Body); err != nil {
		return nil, fmt.Errorf("manifest body: %v: %w", err, ErrMalformed)
	}
	return buf.Bytes(), nil
}

// Hash is the hex SHA-256 of the (compact) body: the value the next
// manifest's Previous carries.
func (s *SignedManifest) Hash() (string, error) {
	b, err := s.compactBody()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// Manifest decodes and validates the body without checking signatures.
func (s *SignedManifest) Manifest() (*Manifest, error) {
	b, err := s.compactBody()
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest body: %v: %w", err, ErrMalformed)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest body: trailing data: %w", ErrMalformed)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Sign adds priv's signature. priv must belong to a steward of the body; a
// second signature by the same key replaces the first.
func (s *SignedManifest) Sign(priv ed25519.PrivateKey) error {
	m, err := s.Manifest()
	if err != nil {
		return fmt.Errorf("sign manifest: %w", err)
	}
	pub := PublicKey(priv.Public().(ed25519.PublicKey))
	if !m.IsSteward(pub) {
		return fmt.Errorf("sign manifest: key %s is not a steward of %q: %w", pub, m.Name, ErrBadSignature)
	}
	b, _ := s.compactBody()
	sig := ed25519.Sign(priv, append([]byte(manifestDomain), b...))
	for i := range s.Signatures {
		if s.Signatures[i].Key.Equal(pub) {
			s.Signatures[i].Sig = sig
			return nil
		}
	}
	s.Signatures = append(s.Signatures, Signature{Key: pub, Sig: sig})
	return nil
}

// countSignatures returns how many distinct stewards of set validly signed
// the body. Signatures by keys outside set are ignored. Signatures by
// stewards that do not verify are not counted either (so junk appended by a
// relay cannot veto a valid manifest), but when the count falls short they
// make the error a forgery error rather than a missing-signature one.
func (s *SignedManifest) countSignatures(set *Manifest, threshold int) error {
	b, err := s.compactBody()
	if err != nil {
		return err
	}
	msg := append([]byte(manifestDomain), b...)
	seen := map[string]bool{}
	var bad PublicKey
	for _, sg := range s.Signatures {
		if len(sg.Key) != ed25519.PublicKeySize || !set.IsSteward(sg.Key) || seen[string(sg.Key)] {
			continue
		}
		if !ed25519.Verify(ed25519.PublicKey(sg.Key), msg, sg.Sig) {
			bad = sg.Key
			continue
		}
		seen[string(sg.Key)] = true
	}
	if len(seen) >= threshold {
		return nil
	}
	if bad != nil {
		return fmt.Errorf("signature of steward %s does not match the manifest body (forged or altered); %d valid, threshold is %d: %w",
			bad, len(seen), threshold, ErrBadSignature)
	}
	return fmt.Errorf("%d valid steward signatures, threshold is %d: %w", len(seen), threshold, ErrNotEnoughSignatures)
}

// Verify decodes the body, validates it and checks that at least
// StewardThreshold of the stewards it lists signed it. This is the check of a
// manifest on its own (the one baked into an image); an update received later
// must pass VerifyUpdate against the manifest it replaces.
func (s *SignedManifest) Verify() (*Manifest, error) {
	m, err := s.Manifest()
	if err != nil {
		return nil, fmt.Errorf("verify manifest: %w", err)
	}
	if err := s.countSignatures(m, m.StewardThreshold); err != nil {
		return nil, fmt.Errorf("verify manifest %q serial %d: %w", m.Name, m.Serial, err)
	}
	return m, nil
}

// VerifyUpdate checks that next may replace current: next verifies on its own,
// belongs to the same community, has a higher serial, chains to current when
// it is the direct successor, and is signed by at least the threshold of
// current's stewards (so a stolen key cannot add its own friends).
func VerifyUpdate(current, next *SignedManifest) (*Manifest, error) {
	cur, err := current.Verify()
	if err != nil {
		return nil, fmt.Errorf("verify update: current: %w", err)
	}
	nm, err := next.Verify()
	if err != nil {
		return nil, fmt.Errorf("verify update: %w", err)
	}
	if nm.CommunityID != cur.CommunityID {
		return nil, fmt.Errorf("verify update: manifest of community %s, this is %s: %w", nm.CommunityID, cur.CommunityID, ErrWrongCommunity)
	}
	if nm.Serial <= cur.Serial {
		return nil, fmt.Errorf("verify update: serial %d is not newer than current serial %d: %w", nm.Serial, cur.Serial, ErrStale)
	}
	if nm.Serial == cur.Serial+1 {
		h, _ := current.Hash()
		if nm.Previous != h {
			return nil, fmt.Errorf("verify update: serial %d names previous %.16s…, current is %.16s…: %w", nm.Serial, nm.Previous, h, ErrInvalid)
		}
	}
	if err := next.countSignatures(cur, cur.StewardThreshold); err != nil {
		return nil, fmt.Errorf("verify update: by current stewards: %w", err)
	}
	return nm, nil
}

// Successor returns an unsigned copy of m for the next serial, chained to the
// signed manifest cur (which must hold m), issued at now.
func Successor(cur *SignedManifest, now time.Time) (*Manifest, error) {
	m, err := cur.Manifest()
	if err != nil {
		return nil, fmt.Errorf("successor: %w", err)
	}
	h, _ := cur.Hash()
	n := m.Clone()
	n.Serial++
	n.Previous = h
	n.IssuedAt = now.UTC().Truncate(time.Second)
	return n, nil
}

// DecodeSignedManifest parses a manifest.json file (untrusted bytes). It
// checks structure only; call Verify or VerifyUpdate before trusting it.
func DecodeSignedManifest(b []byte) (*SignedManifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("decode manifest: %d bytes, at most %d: %w", len(b), MaxManifestSize, ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s SignedManifest
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode manifest: %v: %w", err, ErrMalformed)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode manifest: trailing data after the JSON object: %w", ErrMalformed)
	}
	if len(s.Body) == 0 || s.Body[0] != '{' {
		return nil, fmt.Errorf("decode manifest: \"manifest\" is not a JSON object: %w", ErrMalformed)
	}
	if len(s.Signatures) > 64 {
		return nil, fmt.Errorf("decode manifest: %d signatures, at most 64: %w", len(s.Signatures), ErrMalformed)
	}
	return &s, nil
}

// Encode returns the manifest.json file contents (indented for people; the
// signatures still verify since they cover the compact form).
func (s *SignedManifest) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}
