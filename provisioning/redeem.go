package provisioning

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// UsedInvitesFile records redeemed invite nonces under /perm.
const UsedInvitesFile = "invites-used.json"

// InviteLog makes invites single-use on a box: it remembers the nonce of
// every redeemed invite until the invite expires. Safe for concurrent use
// within one process (one InviteLog per /perm).
type InviteLog struct {
	path string
	mu   sync.Mutex // guards the file
}

// NewInviteLog returns the log kept in permDir/hypha/community/.
func NewInviteLog(permDir string) *InviteLog {
	return &InviteLog{path: filepath.Join(permDir, PermSubdir, UsedInvitesFile)}
}

// Redeem verifies a box invite for nodeKey (VerifyEnrolment) and records
// it; a second redemption of the same invite returns ErrReplayed.
func (l *InviteLog) Redeem(m *Manifest, token string, nodeKey PublicKey, now time.Time) (*Invite, error) {
	inv, err := VerifyEnrolment(m, token, nodeKey, now)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	used, err := l.loadLocked()
	if err != nil {
		return nil, fmt.Errorf("redeem invite: %w", err)
	}
	for nonce, exp := range used {
		if !now.Before(exp) {
			delete(used, nonce) // expired invites fail VerifyInvite anyway
		}
	}
	if _, ok := used[inv.Nonce]; ok {
		return nil, fmt.Errorf("redeem invite %s (%q): %w", inv.Nonce, inv.Name, ErrReplayed)
	}
	used[inv.Nonce] = inv.Expires
	b, err := json.MarshalIndent(used, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("redeem invite: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return nil, fmt.Errorf("redeem invite: %w", err)
	}
	if err := writeAtomic(l.path, b, 0o600); err != nil {
		return nil, fmt.Errorf("redeem invite: %w", err)
	}
	return inv, nil
}

func (l *InviteLog) loadLocked() (map[string]time.Time, error) {
	used := map[string]time.Time{}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return used, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%s: %d bytes: %w", l.path, len(b), ErrMalformed)
	}
	if err := json.Unmarshal(b, &used); err != nil {
		// Refuse rather than forget: forgetting would re-enable every
		// redeemed invite.
		return nil, fmt.Errorf("%s: %v: %w", l.path, err, ErrMalformed)
	}
	return used, nil
}
