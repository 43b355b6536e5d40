package provisioning

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	encryptedKeyType = "HYPHA ENCRYPTED STEWARD KEY"
	keyFileAD        = "hypha/steward-key/v1"
)

// EncryptStewardKey returns priv as an encrypted PEM block: PKCS #8 DER
// sealed with XChaCha20-Poly1305 under a key derived from passphrase with
// argon2id (parameters and salt in the PEM headers).
func EncryptStewardKey(priv ed25519.PrivateKey, passphrase string) ([]byte, error) {
	if len(passphrase) < 8 {
		return nil, fmt.Errorf("encrypt steward key: passphrase shorter than 8 characters: %w", ErrInvalid)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encrypt steward key: %w", err)
	}
	salt := make([]byte, 16)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	c := argonCost
	aead, err := chacha20poly1305.NewX(argon2.IDKey([]byte(passphrase), salt, c.time, c.memory, argonThreads, chacha20poly1305.KeySize))
	if err != nil {
		return nil, err
	}
	b64 := base64.RawStdEncoding
	return pem.EncodeToMemory(&pem.Block{
		Type: encryptedKeyType,
		Headers: map[string]string{
			"KDF":    fmt.Sprintf("argon2id m=%d,t=%d,p=%d", c.memory, c.time, argonThreads),
			"Salt":   b64.EncodeToString(salt),
			"Nonce":  b64.EncodeToString(nonce),
			"Cipher": "XChaCha20-Poly1305",
		},
		Bytes: aead.Seal(nil, nonce, der, []byte(keyFileAD)),
	}), nil
}

// OpenStewardKey decodes a steward.key file, plain (ParseStewardKey) or
// encrypted with passphrase. An encrypted file with an empty passphrase
// returns ErrKeyEncrypted; a wrong passphrase ErrBadPassphrase.
func OpenStewardKey(b []byte, passphrase string) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != encryptedKeyType {
		return ParseStewardKey(b)
	}
	if passphrase == "" {
		return nil, fmt.Errorf("steward key: %w", ErrKeyEncrypted)
	}
	bad := func(what string) error { return fmt.Errorf("steward key: %s: %w", what, ErrMalformed) }
	var m, t uint32
	var p uint8
	if n, err := fmt.Sscanf(blk.Headers["KDF"], "argon2id m=%d,t=%d,p=%d", &m, &t, &p); n != 3 || err != nil {
		return nil, bad("KDF header " + blk.Headers["KDF"])
	}
	if m < 8 || m > argonMaxMemory || t < 1 || t > 16 || p < 1 {
		return nil, bad("KDF parameters out of range")
	}
	if blk.Headers["Cipher"] != "XChaCha20-Poly1305" {
		return nil, bad("cipher " + blk.Headers["Cipher"])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(blk.Headers["Salt"])
	nonce, err2 := base64.RawStdEncoding.DecodeString(blk.Headers["Nonce"])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, bad("salt or nonce")
	}
	aead, err := chacha20poly1305.NewX(argon2.IDKey([]byte(passphrase), salt, t, m, p, chacha20poly1305.KeySize))
	if err != nil {
		return nil, err
	}
	der, err := aead.Open(nil, nonce, blk.Bytes, []byte(keyFileAD))
	if err != nil {
		return nil, fmt.Errorf("steward key: %w", ErrBadPassphrase)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, bad(err.Error())
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, bad(fmt.Sprintf("%T is not an ed25519 key", k))
	}
	return priv, nil
}
