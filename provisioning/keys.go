package provisioning

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PublicKey is an ed25519 public key. Its text form (in JSON) is
// "ed25519:" followed by the unpadded base64url encoding of the 32 bytes.
type PublicKey ed25519.PublicKey

const pubKeyPrefix = "ed25519:"

// String returns the text form of k.
func (k PublicKey) String() string {
	return pubKeyPrefix + base64.RawURLEncoding.EncodeToString(k)
}

// MarshalText implements encoding.TextMarshaler.
func (k PublicKey) MarshalText() ([]byte, error) {
	if len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key: %d bytes, want %d: %w", len(k), ed25519.PublicKeySize, ErrMalformed)
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParsePublicKey parses the text form of a public key.
func ParsePublicKey(s string) (PublicKey, error) {
	rest, ok := strings.CutPrefix(s, pubKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("public key %.20q: missing %q prefix: %w", s, pubKeyPrefix, ErrMalformed)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("public key %.20q: %v: %w", s, err, ErrMalformed)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %.20q: %d bytes, want %d: %w", s, len(b), ed25519.PublicKeySize, ErrMalformed)
	}
	return PublicKey(b), nil
}

// Equal reports whether k and o are the same key.
func (k PublicKey) Equal(o PublicKey) bool {
	return len(k) == len(o) && subtle.ConstantTimeCompare(k, o) == 1
}

func fingerprint(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// NewStewardKey returns a fresh ed25519 key pair for a steward.
func NewStewardKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new steward key: %w", err)
	}
	return priv, nil
}

// EncodeStewardKey returns priv as a PEM "PRIVATE KEY" block (PKCS #8), the
// format of the steward.key file. It is a secret: write it with mode 0600 and
// never onto an image.
func EncodeStewardKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode steward key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseStewardKey decodes a steward.key file.
func ParseStewardKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("steward key: no PEM PRIVATE KEY block: %w", ErrMalformed)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("steward key: %v: %w", err, ErrMalformed)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("steward key: %T is not an ed25519 key: %w", k, ErrMalformed)
	}
	return priv, nil
}

// Argon2id parameters of steward password hashes. 64 MiB and 3 passes take
// about 0.2 s on a Raspberry Pi 4 class CPU, and the LAN page checks a
// password only on a steward login.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	argonKeyLen  = 32
)

// argonCost is what HashStewardPassword uses; tests lower it to keep the
// suite fast (CheckStewardPassword reads the cost from the hash itself).
var argonCost = struct{ time, memory uint32 }{argonTime, argonMemory}

// argonMaxMemory bounds the memory (KiB) a hash or key file may ask for, so
// a hostile file cannot make us allocate without limit (1 GiB; fuzz targets
// lower it).
var argonMaxMemory uint32 = 1 << 20

// HashStewardPassword returns an argon2id hash of password in the PHC string
// format "$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>" (unpadded base64).
func HashStewardPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", fmt.Errorf("steward password: at least 8 characters: %w", ErrInvalid)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("steward password: %w", err)
	}
	c := argonCost
	h := argon2.IDKey([]byte(password), salt, c.time, c.memory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, c.memory, c.time, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(h)), nil
}

// CheckStewardPassword compares password with a hash made by
// HashStewardPassword in constant time. It returns nil on a match,
// ErrBadPassword on a mismatch and ErrMalformed for a hash it cannot read.
func CheckStewardPassword(hash, password string) error {
	parts := strings.Split(strings.TrimSpace(hash), "$")
	bad := func(what string) error {
		return fmt.Errorf("steward password hash: %s: %w", what, ErrMalformed)
	}
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported argon2 version " + parts[2])
	}
	var m, t uint32
	var p uint8
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); n != 3 || err != nil {
		return bad("parameters " + parts[3])
	}
	// Bound the cost an attacker-supplied hash can make us pay.
	if m < 8 || m > argonMaxMemory || t < 1 || t > 16 || p < 1 {
		return bad("parameters out of range " + parts[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 || len(want) > 64 {
		return bad("salt or hash encoding")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrBadPassword
	}
	return nil
}
