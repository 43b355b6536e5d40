package provisioning

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEncryptedStewardKey(t *testing.T) {
	priv, _ := NewStewardKey()
	enc, err := EncryptStewardKey(priv, "long passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(enc, priv.Seed()) || !bytes.HasPrefix(enc, []byte("-----BEGIN HYPHA ENCRYPTED STEWARD KEY-----")) {
		t.Fatalf("not encrypted:\n%s", enc)
	}
	got, err := OpenStewardKey(enc, "long passphrase")
	if err != nil || !got.Equal(priv) {
		t.Fatalf("open: %v", err)
	}
	if _, err := OpenStewardKey(enc, ""); !errors.Is(err, ErrKeyEncrypted) {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := OpenStewardKey(enc, "long passphrasE"); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// Flip a ciphertext byte: authentication fails like a wrong passphrase.
	lines := strings.Split(string(enc), "\n")
	body := []byte(lines[len(lines)-3])
	body[3] ^= 0x01
	if body[3] == '\n' || body[3] == '=' {
		body[3] = 'A'
	}
	lines[len(lines)-3] = string(body)
	if _, err := OpenStewardKey([]byte(strings.Join(lines, "\n")), "long passphrase"); err == nil {
		t.Fatal("tampered key file opened")
	}
	if _, err := EncryptStewardKey(priv, "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short passphrase: %v", err)
	}
	// Plain files still open, with or without a passphrase.
	plain, _ := EncodeStewardKey(priv)
	if got, err := OpenStewardKey(plain, "ignored"); err != nil || !got.Equal(priv) {
		t.Fatalf("plain: %v", err)
	}
}

func TestInitWithEncryptedKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	_, priv, err := Init(dir, InitOptions{Name: "Locked", Password: "lan-password", KeyPassphrase: "key passphrase", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadStewardKey(dir, ""); !errors.Is(err, ErrKeyEncrypted) {
		t.Fatalf("load without passphrase: %v", err)
	}
	k, err := LoadStewardKey(dir, "key passphrase")
	if err != nil || !k.Equal(priv) {
		t.Fatalf("load: %v", err)
	}
	perm := t.TempDir()
	if err := BakePerm(dir, perm); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(perm, PermSubdir, StewardKey)); !os.IsNotExist(err) {
		t.Fatal("encrypted steward key baked")
	}
}

func FuzzOpenStewardKey(f *testing.F) {
	saved := argonMaxMemory
	argonMaxMemory = 4096 // KiB: fuzzed KDF headers must stay cheap
	f.Cleanup(func() { argonMaxMemory = saved })
	priv := fixedSteward()
	enc, _ := EncryptStewardKey(priv, "fuzz passphrase")
	plain, _ := EncodeStewardKey(priv)
	f.Add(enc)
	f.Add(plain)
	f.Add([]byte("-----BEGIN HYPHA ENCRYPTED STEWARD KEY-----\nKDF: argon2id m=8,t=1,p=1\n\nAAAA\n-----END HYPHA ENCRYPTED STEWARD KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := OpenStewardKey(b, "fuzz passphrase")
		if err == nil && len(k) != 64 {
			t.Fatalf("key of %d bytes", len(k))
		}
	})
}
