package provisioning

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Roles an invite can grant.
const (
	RoleBox     = "box"     // a new appliance may join the mesh
	RoleSteward = "steward" // a person may be added to the steward set
)

const (
	invitePrefix  = "hypha-invite1."
	inviteDomain  = "hypha/invite/v1\x00"
	maxInviteTTL  = 30 * 24 * time.Hour
	maxInviteSize = 4096
	// clockSkew tolerates boxes whose clock is a little behind the steward's
	// laptop (offline boxes without RTC often are).
	clockSkew = 10 * time.Minute
)

// Invite is the signed content of an invite token: a steward of the
// community vouches that the holder (bound to Subject when set) may enrol as
// a box or as a steward until Expires.
type Invite struct {
	Version   int       `json:"v"`
	Community string    `json:"community"` // CommunityID
	Role      string    `json:"role"`
	Subject   PublicKey `json:"subject,omitempty"` // required for RoleSteward; optional node key for RoleBox
	Name      string    `json:"name,omitempty"`
	Nonce     string    `json:"nonce"`
	IssuedAt  time.Time `json:"iat"`
	Expires   time.Time `json:"exp"`
	Issuer    PublicKey `json:"iss"`
}

// NewInvite returns a token signed by priv, a steward of m, granting role
// (to subject when not nil) for ttl from now.
func NewInvite(m *Manifest, priv ed25519.PrivateKey, role string, subject PublicKey, name string, ttl time.Duration, now time.Time) (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("new invite: %w", err)
	}
	inv := Invite{
		Version: 1, Community: m.CommunityID, Role: role, Subject: subject, Name: name,
		Nonce: hex.EncodeToString(nonce), IssuedAt: now.UTC().Truncate(time.Second),
		Expires: now.UTC().Add(ttl).Truncate(time.Second), Issuer: PublicKey(priv.Public().(ed25519.PublicKey)),
	}
	if err := inv.validate(); err != nil {
		return "", fmt.Errorf("new invite: %w", err)
	}
	if !m.IsSteward(inv.Issuer) {
		return "", fmt.Errorf("new invite: key %s is not a steward of %q: %w", inv.Issuer, m.Name, ErrBadSignature)
	}
	payload, err := json.Marshal(inv)
	if err != nil {
		return "", fmt.Errorf("new invite: %w", err)
	}
	sig := ed25519.Sign(priv, append([]byte(inviteDomain), payload...))
	enc := base64.RawURLEncoding
	return invitePrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig), nil
}

func (inv *Invite) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("invite: "+format+": %w", append(a, ErrInvalid)...)
	}
	if inv.Version != 1 {
		return fmt.Errorf("invite: version %d: %w", inv.Version, ErrUnsupportedVersion)
	}
	switch inv.Role {
	case RoleBox:
	case RoleSteward:
		if len(inv.Subject) == 0 {
			return bad("a steward invite must name the new steward's public key")
		}
	default:
		return bad("unknown role %q", inv.Role)
	}
	if len(inv.Subject) != 0 && len(inv.Subject) != ed25519.PublicKeySize {
		return bad("subject key has %d bytes", len(inv.Subject))
	}
	if len(inv.Issuer) != ed25519.PublicKeySize {
		return bad("issuer key missing")
	}
	if b, err := hex.DecodeString(inv.Nonce); err != nil || len(b) != 16 {
		return bad("nonce %q is not 32 hex digits", inv.Nonce)
	}
	if err := checkText("name", inv.Name, 64, false); err != nil {
		return bad("%v", err)
	}
	if ttl := inv.Expires.Sub(inv.IssuedAt); ttl <= 0 || ttl > maxInviteTTL {
		return bad("lifetime %v is not within (0, %v]", ttl, maxInviteTTL)
	}
	return nil
}

// DecodeInvite parses a token without verifying it: for display only.
func DecodeInvite(token string) (*Invite, []byte, []byte, error) {
	token = strings.TrimSpace(token)
	if len(token) > maxInviteSize {
		return nil, nil, nil, fmt.Errorf("invite token: %d bytes, at most %d: %w", len(token), maxInviteSize, ErrMalformed)
	}
	rest, ok := strings.CutPrefix(token, invitePrefix)
	if !ok {
		return nil, nil, nil, fmt.Errorf("invite token: does not start with %q: %w", invitePrefix, ErrMalformed)
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, nil, nil, fmt.Errorf("invite token: missing signature part: %w", ErrMalformed)
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if err1 != nil || err2 != nil {
		return nil, nil, nil, fmt.Errorf("invite token: not base64url: %w", ErrMalformed)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, nil, nil, fmt.Errorf("invite token: signature is %d bytes, want %d: %w", len(sig), ed25519.SignatureSize, ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var inv Invite
	if err := dec.Decode(&inv); err != nil {
		return nil, nil, nil, fmt.Errorf("invite token: %v: %w", err, ErrMalformed)
	}
	if dec.More() {
		return nil, nil, nil, fmt.Errorf("invite token: trailing data: %w", ErrMalformed)
	}
	if err := inv.validate(); err != nil {
		return nil, nil, nil, err
	}
	return &inv, payload, sig, nil
}

// VerifyInvite checks a token against the community manifest m at time now:
// it must be well formed, for m's community, signed by one of m's stewards,
// and within its lifetime. It does not remember used nonces: a consumer that
// must refuse a second use keeps the Nonce.
func VerifyInvite(m *Manifest, token string, now time.Time) (*Invite, error) {
	inv, payload, sig, err := DecodeInvite(token)
	if err != nil {
		return nil, fmt.Errorf("verify invite: %w", err)
	}
	if inv.Community != m.CommunityID {
		return nil, fmt.Errorf("verify invite: for community %s, this is %s (%q): %w", inv.Community, m.CommunityID, m.Name, ErrWrongCommunity)
	}
	if !m.IsSteward(inv.Issuer) {
		return nil, fmt.Errorf("verify invite: issuer %s is not a steward of %q: %w", inv.Issuer, m.Name, ErrBadSignature)
	}
	if !ed25519.Verify(ed25519.PublicKey(inv.Issuer), append([]byte(inviteDomain), payload...), sig) {
		return nil, fmt.Errorf("verify invite: signature by %s does not match (forged or altered): %w", inv.Issuer, ErrBadSignature)
	}
	if now.Before(inv.IssuedAt.Add(-clockSkew)) {
		return nil, fmt.Errorf("verify invite: issued at %s, in the future (clock %s): %w", inv.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrExpired)
	}
	if !now.Before(inv.Expires) {
		return nil, fmt.Errorf("verify invite: expired at %s: %w", inv.Expires.Format(time.RFC3339), ErrExpired)
	}
	return inv, nil
}

// VerifyEnrolment checks that a box whose node identity is nodeKey may enrol
// with token: a valid box invite (VerifyInvite) that, when it names a
// subject, names this node. A steward typically issues the invite after
// reading the node key off the new box's LAN page.
func VerifyEnrolment(m *Manifest, token string, nodeKey PublicKey, now time.Time) (*Invite, error) {
	inv, err := VerifyInvite(m, token, now)
	if err != nil {
		return nil, err
	}
	if inv.Role != RoleBox {
		return nil, fmt.Errorf("verify enrolment: invite is for role %q, not %q: %w", inv.Role, RoleBox, ErrInvalid)
	}
	if len(inv.Subject) != 0 && !inv.Subject.Equal(nodeKey) {
		return nil, fmt.Errorf("verify enrolment: invite is bound to node %s, not %s: %w", inv.Subject, nodeKey, ErrBadSignature)
	}
	return inv, nil
}
