package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/univrs/hypha/provisioning"
)

func runComm(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := communityMain(context.Background(), args, strings.NewReader(stdin), &out)
	return out.String(), err
}

func TestCommunityCLI(t *testing.T) {
	t.Setenv("HYPHA_STEWARD_PASSWORD", "")
	dir := filepath.Join(t.TempDir(), "c")
	out, err := runComm(t, "pass-word-1\n", "init", "-dir", dir, "-name", "Riverbend", "-location", "47.5,7.6", "-steward", "Ada", "-bootstrap", "/ip4/10.0.0.1/tcp/4001")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `created community "Riverbend"`) {
		t.Fatalf("init output: %s", out)
	}
	c, err := provisioning.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckStewardPassword("pass-word-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := runComm(t, "x\n", "init", "-dir", dir, "-name", "Again"); !errors.Is(err, provisioning.ErrExists) {
		t.Fatalf("re-init: %v", err)
	}
	out, err = runComm(t, "", "show", "-dir", dir)
	if err != nil || !strings.Contains(out, "location   47.50000, 7.60000") || !strings.Contains(out, "/ip4/10.0.0.1/tcp/4001") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	tok, err := runComm(t, "", "invite", "-dir", dir, "-role", "box", "-name", "school", "-ttl", "24h")
	if err != nil {
		t.Fatal(err)
	}
	out, err = runComm(t, "", "verify-invite", "-dir", dir, strings.TrimSpace(tok))
	if err != nil || !strings.Contains(out, `valid box invite for "Riverbend" (school)`) {
		t.Fatalf("verify-invite: %v %s", err, out)
	}
	// Expired one day later.
	commNow = func() time.Time { return time.Now().Add(25 * time.Hour) }
	t.Cleanup(func() { commNow = time.Now })
	if _, err := runComm(t, "", "verify-invite", "-dir", dir, strings.TrimSpace(tok)); !errors.Is(err, provisioning.ErrExpired) {
		t.Fatalf("expired invite: %v", err)
	}
	commNow = time.Now

	// A second steward: keygen, invite, add, raise threshold (needs both).
	bobDir := t.TempDir()
	bobKey := filepath.Join(bobDir, provisioning.StewardKey)
	pub, err := runComm(t, "", "keygen", "-out", bobKey)
	if err != nil {
		t.Fatal(err)
	}
	stok, err := runComm(t, "", "invite", "-dir", dir, "-role", "steward", "-key", strings.TrimSpace(pub), "-name", "Bob")
	if err != nil {
		t.Fatal(err)
	}
	out, err = runComm(t, "", "add-steward", "-dir", dir, "-invite", strings.TrimSpace(stok))
	if err != nil || !strings.Contains(out, "serial 2 is in effect") {
		t.Fatalf("add-steward: %v %s", err, out)
	}
	out, err = runComm(t, "", "update", "-dir", dir, "-threshold", "2")
	if err != nil || !strings.Contains(out, "waiting for more steward signatures") {
		t.Fatalf("update: %v %s", err, out)
	}
	out, err = runComm(t, "", "show", "-dir", dir)
	if err != nil || !strings.Contains(out, "pending update to serial 3: 1 of 2 current steward signatures (needs 1; the new manifest needs 2 of its own)") ||
		!strings.Contains(out, "manifest updates: 1 of 2 stewards -> 2 of 2 stewards") {
		t.Fatalf("show with a pending update: %v\n%s", err, out)
	}
	// Bob signs from his own copy of the directory.
	for _, f := range []string{provisioning.ManifestFile, provisioning.PendingFile, provisioning.PSKFile, provisioning.PasswordFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(bobDir, f), b, 0o600)
	}
	out, err = runComm(t, "", "sign", "-dir", bobDir)
	if err != nil || !strings.Contains(out, "serial 3 is in effect") {
		t.Fatalf("sign: %v %s", err, out)
	}
	bc, _ := provisioning.OpenDir(bobDir)
	if bc.Manifest.StewardThreshold != 2 || len(bc.Manifest.Stewards) != 2 {
		t.Fatalf("bob's manifest %+v", bc.Manifest)
	}
	if _, err := runComm(t, "", "frobnicate"); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func TestCommunityCLIEncryptedKey(t *testing.T) {
	t.Setenv("HYPHA_STEWARD_PASSWORD", "lan-pass-123")
	t.Setenv("HYPHA_STEWARD_KEY_PASSPHRASE", "key-pass-123")
	dir := filepath.Join(t.TempDir(), "c")
	if _, err := runComm(t, "", "init", "-dir", dir, "-name", "Locked", "-encrypt-key"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, provisioning.StewardKey))
	if !strings.Contains(string(b), "ENCRYPTED") {
		t.Fatal("key not encrypted")
	}
	if _, err := runComm(t, "", "invite", "-dir", dir); err != nil {
		t.Fatalf("invite with the passphrase in the environment: %v", err)
	}
	t.Setenv("HYPHA_STEWARD_KEY_PASSPHRASE", "")
	// Not a terminal, no passphrase: a clear error, nothing signed.
	if _, err := runComm(t, "", "sign", "-dir", dir); !errors.Is(err, provisioning.ErrKeyEncrypted) {
		t.Fatalf("sign without passphrase: %v", err)
	}
	t.Setenv("HYPHA_STEWARD_KEY_PASSPHRASE", "wrong-pass-1")
	if _, err := runComm(t, "", "update", "-dir", dir, "-debt-limit", "5"); !errors.Is(err, provisioning.ErrBadPassphrase) {
		t.Fatalf("update with a wrong passphrase: %v", err)
	}
}
