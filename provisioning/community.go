package provisioning

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside a community directory (the steward's, on a laptop) and
// inside PermSubdir of a box's /perm.
const (
	ManifestFile = "manifest.json"
	PendingFile  = "manifest.pending.json" // an update waiting for signatures (steward dir only)
	PSKFile      = "psk"
	PasswordFile = "steward-password"
	StewardKey   = "steward.key" // steward dir only; never baked
	// PermSubdir is where BakePerm writes, relative to /perm.
	PermSubdir = "hypha/community"
)

// Community is a verified community as a box or a steward tool sees it.
// It is immutable after loading; safe for concurrent reads.
type Community struct {
	Manifest     *Manifest
	Signed       *SignedManifest
	PSK          PSK
	PasswordHash string
}

// ID is the community's ID (Manifest.CommunityID).
func (c *Community) ID() string { return c.Manifest.CommunityID }

// CheckStewardPassword returns nil when password is the steward password set
// at provisioning, ErrBadPassword otherwise.
func (c *Community) CheckStewardPassword(password string) error {
	return CheckStewardPassword(c.PasswordHash, password)
}

// InitOptions are the choices of `hypha community init`.
type InitOptions struct {
	Name        string   // required
	Bioregion   string   // optional
	Location    Location // optional (0,0 if unknown)
	StewardName string   // optional, shown on the LAN page
	Password    string   // steward password for the LAN page, >= 8 characters
	// KeyPassphrase, when set, encrypts steward.key (EncryptStewardKey);
	// every later use of the key then needs it.
	KeyPassphrase  string
	BootstrapPeers []string // optional multiaddrs
	Now            time.Time
	// Edit, when set, adjusts the default manifest before it is signed.
	Edit func(*Manifest)
}

// Init creates a community in dir (created with mode 0700 if missing; it must
// not already hold a community): a founding steward key, the founding
// manifest signed by it, a fresh PSK and the steward password hash. It
// returns the verified community and the steward's private key.
func Init(dir string, o InitOptions) (*Community, ed25519.PrivateKey, error) {
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		return nil, nil, fmt.Errorf("community init %s: %s exists: %w", dir, ManifestFile, ErrExists)
	}
	if _, err := os.Stat(filepath.Join(dir, StewardKey)); err == nil {
		return nil, nil, fmt.Errorf("community init %s: %s exists: %w", dir, StewardKey, ErrExists)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	priv, err := NewStewardKey()
	if err != nil {
		return nil, nil, err
	}
	m, err := DefaultManifest(o.Name, Steward{Name: o.StewardName, PublicKey: PublicKey(priv.Public().(ed25519.PublicKey))}, o.Now)
	if err != nil {
		return nil, nil, err
	}
	m.Bioregion, m.Location, m.BootstrapPeers = o.Bioregion, o.Location, o.BootstrapPeers
	if o.Edit != nil {
		o.Edit(m)
	}
	sm, err := NewSignedManifest(m)
	if err != nil {
		return nil, nil, fmt.Errorf("community init: %w", err)
	}
	if err := sm.Sign(priv); err != nil {
		return nil, nil, fmt.Errorf("community init: %w", err)
	}
	hash, err := HashStewardPassword(o.Password)
	if err != nil {
		return nil, nil, fmt.Errorf("community init: %w", err)
	}
	psk, err := NewPSK()
	if err != nil {
		return nil, nil, err
	}
	var keyPEM []byte
	if o.KeyPassphrase != "" {
		keyPEM, err = EncryptStewardKey(priv, o.KeyPassphrase)
	} else {
		keyPEM, err = EncodeStewardKey(priv)
	}
	if err != nil {
		return nil, nil, err
	}
	mb, err := sm.Encode()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("community init: %w", err)
	}
	// The key goes first and exclusively: a concurrent init loses here.
	if err := writeExclusive(filepath.Join(dir, StewardKey), keyPEM); err != nil {
		return nil, nil, fmt.Errorf("community init: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
		mode fs.FileMode
	}{{PSKFile, psk.Encode(), 0o600}, {PasswordFile, []byte(hash + "\n"), 0o600}, {ManifestFile, mb, 0o644}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.b, f.mode); err != nil {
			return nil, nil, fmt.Errorf("community init: %w", err)
		}
	}
	c, err := loadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("community init: reload: %w", err)
	}
	return c, priv, nil
}

// OpenDir loads and verifies the community in a steward directory (made by
// Init) or a baked /perm/hypha/community directory.
func OpenDir(dir string) (*Community, error) {
	c, err := loadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open community %s: %w", dir, err)
	}
	return c, nil
}

// LoadStewardKey reads dir/steward.key; passphrase is needed (and only
// used) when the file is encrypted (see OpenStewardKey for the errors).
func LoadStewardKey(dir, passphrase string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, StewardKey))
	if err != nil {
		return nil, fmt.Errorf("load steward key: %w", err)
	}
	k, err := OpenStewardKey(b, passphrase)
	if err != nil {
		return nil, fmt.Errorf("load steward key %s: %w", filepath.Join(dir, StewardKey), err)
	}
	return k, nil
}

// incomplete turns a missing companion file of an existing manifest.json
// into ErrMalformed: such a directory is damaged, not "not provisioned".
func incomplete(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing next to %s (incomplete provisioning): %w", name, ManifestFile, ErrMalformed)
	}
	return err
}

func loadDir(dir string) (*Community, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	sm, err := DecodeSignedManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	m, err := sm.Verify()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	pb, err := os.ReadFile(filepath.Join(dir, PSKFile))
	if err != nil {
		return nil, incomplete(PSKFile, err)
	}
	psk, err := ParsePSK(pb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PSKFile, err)
	}
	hb, err := os.ReadFile(filepath.Join(dir, PasswordFile))
	if err != nil {
		return nil, incomplete(PasswordFile, err)
	}
	hash := strings.TrimSpace(string(hb))
	if !strings.HasPrefix(hash, "$argon2id$") {
		return nil, fmt.Errorf("%s: not an argon2id hash: %w", PasswordFile, ErrMalformed)
	}
	return &Community{Manifest: m, Signed: sm, PSK: psk, PasswordHash: hash}, nil
}

// BakePerm copies the verified community of communityDir into
// permDir/hypha/community/ (manifest.json, psk, steward-password), the
// directory the image builder formats as the /perm partition. It never copies
// the steward's private key. Existing files there are replaced.
func BakePerm(communityDir, permDir string) error {
	c, err := OpenDir(communityDir)
	if err != nil {
		return fmt.Errorf("bake perm: %w", err)
	}
	return c.WritePerm(permDir)
}

// WritePerm writes c's public parts and secrets for boxes (never a steward
// key) into permDir/hypha/community/.
func (c *Community) WritePerm(permDir string) error {
	dst := filepath.Join(permDir, PermSubdir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("write perm: %w", err)
	}
	mb, err := c.Signed.Encode()
	if err != nil {
		return fmt.Errorf("write perm: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
		mode fs.FileMode
	}{{PSKFile, c.PSK.Encode(), 0o600}, {PasswordFile, []byte(c.PasswordHash + "\n"), 0o600}, {ManifestFile, mb, 0o644}} {
		if err := writeAtomic(filepath.Join(dst, f.name), f.b, f.mode); err != nil {
			return fmt.Errorf("write perm: %w", err)
		}
	}
	return nil
}

// LoadCommunity loads and verifies the community baked into permDir (the
// box's /perm). It returns an error wrapping ErrNotProvisioned (and
// fs.ErrNotExist) when there is none, and a verification error
// (ErrBadSignature, ErrMalformed, ...) when the files were tampered with or
// only partly present.
func LoadCommunity(permDir string) (*Community, error) {
	dir := filepath.Join(permDir, PermSubdir)
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
		// Also fs.ErrNotExist, for callers that test for a missing file.
		return nil, fmt.Errorf("load community: %s: %w (%w)", dir, ErrNotProvisioned, fs.ErrNotExist)
	}
	c, err := loadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load community %s: %w", dir, err)
	}
	return c, nil
}

// ApplyUpdate verifies next (a manifest.json received from a steward or a
// peer) against the community in permDir and, if it is a valid newer
// manifest, replaces manifest.json atomically. It returns the new community.
func ApplyUpdate(permDir string, next []byte) (*Community, error) {
	c, err := LoadCommunity(permDir)
	if err != nil {
		return nil, fmt.Errorf("apply update: %w", err)
	}
	sm, err := DecodeSignedManifest(next)
	if err != nil {
		return nil, fmt.Errorf("apply update: %w", err)
	}
	m, err := VerifyUpdate(c.Signed, sm)
	if err != nil {
		return nil, fmt.Errorf("apply update: %w", err)
	}
	nc := &Community{Manifest: m, Signed: sm, PSK: c.PSK, PasswordHash: c.PasswordHash}
	if err := nc.WritePerm(permDir); err != nil {
		return nil, fmt.Errorf("apply update: %w", err)
	}
	return nc, nil
}

// ProposeUpdate makes the successor of the manifest in the steward directory
// dir, lets edit change it, and signs it with priv. When the signatures reach
// the current threshold, manifest.json is replaced and done is true;
// otherwise the update is left in manifest.pending.json for other stewards
// to sign with SignPending.
func ProposeUpdate(dir string, priv ed25519.PrivateKey, now time.Time, edit func(*Manifest) error) (done bool, err error) {
	c, err := OpenDir(dir)
	if err != nil {
		return false, fmt.Errorf("propose update: %w", err)
	}
	next, err := Successor(c.Signed, now)
	if err != nil {
		return false, fmt.Errorf("propose update: %w", err)
	}
	if err := edit(next); err != nil {
		return false, fmt.Errorf("propose update: %w", err)
	}
	sm, err := NewSignedManifest(next)
	if err != nil {
		return false, fmt.Errorf("propose update: %w", err)
	}
	if !c.Manifest.IsSteward(PublicKey(priv.Public().(ed25519.PublicKey))) {
		return false, fmt.Errorf("propose update: this key is not a current steward: %w", ErrBadSignature)
	}
	// A removed steward's key can still sign as a member of the current
	// set, which is what VerifyUpdate counts; sign only if it is in next.
	if next.IsSteward(PublicKey(priv.Public().(ed25519.PublicKey))) {
		if err := sm.Sign(priv); err != nil {
			return false, fmt.Errorf("propose update: %w", err)
		}
	} else {
		sm.Signatures = append(sm.Signatures, signRaw(sm, priv))
	}
	return settle(dir, c, sm)
}

// SignPending adds priv's signature to dir/manifest.pending.json and
// promotes it to manifest.json once it verifies as an update.
func SignPending(dir string, priv ed25519.PrivateKey) (done bool, err error) {
	c, err := OpenDir(dir)
	if err != nil {
		return false, fmt.Errorf("sign pending: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, PendingFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("sign pending: %w", ErrNoPending)
	} else if err != nil {
		return false, fmt.Errorf("sign pending: %w", err)
	}
	sm, err := DecodeSignedManifest(b)
	if err != nil {
		return false, fmt.Errorf("sign pending: %w", err)
	}
	pub := PublicKey(priv.Public().(ed25519.PublicKey))
	if !c.Manifest.IsSteward(pub) {
		return false, fmt.Errorf("sign pending: key %s is not a current steward: %w", pub, ErrBadSignature)
	}
	next, err := sm.Manifest()
	if err != nil {
		return false, fmt.Errorf("sign pending: %w", err)
	}
	if next.IsSteward(pub) {
		err = sm.Sign(priv)
	} else {
		sm.Signatures = append(sm.Signatures, signRaw(sm, priv))
	}
	if err != nil {
		return false, fmt.Errorf("sign pending: %w", err)
	}
	return settle(dir, c, sm)
}

func signRaw(sm *SignedManifest, priv ed25519.PrivateKey) Signature {
	b, _ := sm.compactBody()
	return Signature{Key: PublicKey(priv.Public().(ed25519.PublicKey)), Sig: ed25519.Sign(priv, append([]byte(manifestDomain), b...))}
}

func settle(dir string, c *Community, sm *SignedManifest) (bool, error) {
	b, err := sm.Encode()
	if err != nil {
		return false, err
	}
	if _, err := VerifyUpdate(c.Signed, sm); err == nil {
		if err := writeAtomic(filepath.Join(dir, ManifestFile), b, 0o644); err != nil {
			return false, err
		}
		if err := os.Remove(filepath.Join(dir, PendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, err
		}
		return true, nil
	} else if !errors.Is(err, ErrNotEnoughSignatures) {
		return false, fmt.Errorf("update would not verify: %w", err)
	}
	return false, writeAtomic(filepath.Join(dir, PendingFile), b, 0o644)
}

// AddStewardFromInvite returns an edit for ProposeUpdate that adds the
// steward named by a valid steward invite of m.
func AddStewardFromInvite(m *Manifest, token string, now time.Time) (func(*Manifest) error, error) {
	inv, err := VerifyInvite(m, token, now)
	if err != nil {
		return nil, err
	}
	if inv.Role != RoleSteward {
		return nil, fmt.Errorf("add steward: invite is for role %q: %w", inv.Role, ErrInvalid)
	}
	if m.IsSteward(inv.Subject) {
		return nil, fmt.Errorf("add steward: %s is already a steward: %w", inv.Subject, ErrInvalid)
	}
	return func(n *Manifest) error {
		n.Stewards = append(n.Stewards, Steward{Name: inv.Name, PublicKey: inv.Subject})
		return nil
	}, nil
}

func writeExclusive(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeAtomic writes b to path via a synced temporary file and a rename, so a
// power cut leaves either the old or the new file, never half of one.
func writeAtomic(path string, b []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
