package provisioning

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInviteLogSingleUse(t *testing.T) {
	dir, c, ada := newCommunity(t)
	perm := t.TempDir()
	if err := BakePerm(dir, perm); err != nil {
		t.Fatal(err)
	}
	node, _ := NewStewardKey()
	nodeKey := PublicKey(node.Public().(ed25519.PublicKey))
	tok, _ := NewInvite(c.Manifest, ada, RoleBox, nil, "barn", time.Hour, t0)
	log := NewInviteLog(perm)

	// Eight concurrent redemptions of one token: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, replays := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := log.Redeem(c.Manifest, tok, nodeKey, t0.Add(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrReplayed):
				replays++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || replays != 7 {
		t.Fatalf("wins %d, replays %d", wins, replays)
	}
	// The record survives a restart (a new InviteLog on the same /perm).
	if _, err := NewInviteLog(perm).Redeem(c.Manifest, tok, nodeKey, t0.Add(2*time.Minute)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("after restart: %v", err)
	}
	// Another invite still works; expired records are pruned.
	tok2, _ := NewInvite(c.Manifest, ada, RoleBox, nil, "mill", 3*time.Hour, t0)
	if _, err := log.Redeem(c.Manifest, tok2, nodeKey, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(perm, PermSubdir, UsedInvitesFile))
	if len(b) == 0 || strings.Count(string(b), "\":") != 1 {
		t.Fatalf("log after pruning:\n%s", b)
	}
	// A damaged log refuses instead of forgetting.
	os.WriteFile(filepath.Join(perm, PermSubdir, UsedInvitesFile), []byte("{"), 0o600)
	tok3, _ := NewInvite(c.Manifest, ada, RoleBox, nil, "", time.Hour, t0)
	if _, err := log.Redeem(c.Manifest, tok3, nodeKey, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("damaged log: %v", err)
	}
}
