package appliance

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Identity is the node's persistent ed25519 key. It is created on first
// boot and never changes afterwards: the mesh, the ledger and the LAN page
// all name the node by it.
type Identity struct {
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

const identityPEMType = "HYPHA NODE ED25519 SEED"

// ID is the node's libp2p peer ID (12D3KooW…), the name the mesh, the
// ledger and the LAN page use for it.
func (id *Identity) ID() string {
	k, err := crypto.UnmarshalEd25519PrivateKey(id.Private)
	if err != nil {
		panic("identity: " + err.Error()) // an ed25519 key always converts
	}
	pid, err := peer.IDFromPrivateKey(k)
	if err != nil {
		panic("identity: " + err.Error())
	}
	return pid.String()
}

// shortHex is 6 hex digits of a hash of the public key, for default names.
func (id *Identity) shortHex() string {
	sum := sha256.Sum256(id.Public)
	return hex.EncodeToString(sum[:3])
}

// LoadOrCreateIdentity reads the key at path, creating it (atomically:
// temp file, fsync, rename, fsync of the directory) if it does not exist.
// A file that exists but cannot be parsed is an error, never replaced: the
// node must not silently become somebody else.
func LoadOrCreateIdentity(path string) (id *Identity, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id, err := parseIdentity(b)
		if err != nil {
			return nil, false, fmt.Errorf("identity %s: %w", path, err)
		}
		return id, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("identity: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("identity: generate: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: identityPEMType, Bytes: priv.Seed()})
	if err := WriteFileAtomic(path, data, 0o600); err != nil {
		return nil, false, fmt.Errorf("identity: %w", err)
	}
	return &Identity{Private: priv, Public: priv.Public().(ed25519.PublicKey)}, true, nil
}

func parseIdentity(b []byte) (*Identity, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != identityPEMType {
		return nil, errors.New("not a PEM block of type " + identityPEMType)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("trailing data after the key")
	}
	if len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("seed is %d bytes, want %d", len(blk.Bytes), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(blk.Bytes)
	return &Identity{Private: priv, Public: priv.Public().(ed25519.PublicKey)}, nil
}

// WriteFileAtomic replaces path with data so that a power cut leaves
// either the old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
