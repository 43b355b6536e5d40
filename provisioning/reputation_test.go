package provisioning

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestReputationFieldsKeepOldManifests: the verification parameters added
// after the first release are omitted when zero, so a manifest written
// before them re-encodes to exactly the bytes its stewards signed, still
// verifies, and reads as "defaults" (zero values).
func TestReputationFieldsKeepOldManifests(t *testing.T) {
	b, err := os.ReadFile("testdata/manifest-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	sm, err := DecodeSignedManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sm.Verify()
	if err != nil {
		t.Fatalf("old manifest no longer verifies: %v", err)
	}
	if m.Reputation != (ReputationParams{Initial: 0.5, Threshold: 0.2, DecayPerDay: 0.05}) || m.Verifiers.Prompts != nil {
		t.Fatalf("old manifest reads as %+v, prompts %v", m.Reputation, m.Verifiers.Prompts)
	}
	signed, err := sm.compactBody()
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, signed) {
		t.Fatalf("this build encodes the old manifest differently:\n got %s\nwant %s", again, signed)
	}
}

// TestReputationFieldsSignAndRoundTrip: a manifest using the new fields is
// signed, written, read back and verified with every value intact.
func TestReputationFieldsSignAndRoundTrip(t *testing.T) {
	k := fixedSteward()
	m, err := DefaultManifest("Round Trip", Steward{Name: "A", PublicKey: PublicKey(k.Public().(ed25519.PublicKey))}, t0)
	if err != nil {
		t.Fatal(err)
	}
	m.Reputation = ReputationParams{Initial: 0.5, Threshold: 0.3, DecayPerDay: 0.05, Alpha: 0.3, Beta: 0.7,
		Abnormal: 0.35, Gamma: 0.25, Window: 7, EpochSeconds: 120, ChallengesPerEpoch: 3}
	m.Verifiers.Prompts = []string{"How do I keep tomatoes from splitting?", "Wie repariere ich einen Fahrradschlauch?"}
	sm, err := NewSignedManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Sign(k); err != nil {
		t.Fatal(err)
	}
	file, err := sm.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"alpha": 0.3`, `"epoch_seconds": 120`, `"challenges_per_epoch": 3`, `"prompts": [`} {
		if !strings.Contains(string(file), key) {
			t.Errorf("manifest file lacks %s", key)
		}
	}
	back, err := DecodeSignedManifest(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := back.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if got.Reputation != m.Reputation || strings.Join(got.Verifiers.Prompts, "|") != strings.Join(m.Verifiers.Prompts, "|") {
		t.Fatalf("read back %+v %q", got.Reputation, got.Verifiers.Prompts)
	}
	// Clone copies the prompts (a change to the copy leaves the original)
	c := got.Clone()
	c.Verifiers.Prompts[0] = "changed"
	if got.Verifiers.Prompts[0] == "changed" {
		t.Error("Clone shares Verifiers.Prompts")
	}
}

func TestReputationFieldsValidation(t *testing.T) {
	k := fixedSteward()
	long := strings.Repeat("x", MaxChallengePromptBytes+1)
	many := make([]string, MaxChallengePrompts+1)
	for i := range many {
		many[i] = "a question?"
	}
	for _, tc := range []struct {
		name string
		f    func(m *Manifest)
		msg  string // "" = valid
	}{
		{"defaults", func(m *Manifest) {}, ""},
		{"all set", func(m *Manifest) {
			m.Reputation.Alpha, m.Reputation.Beta, m.Reputation.Abnormal, m.Reputation.Gamma = 0.5, 0.5, 0.4, 1
			m.Reputation.Window, m.Reputation.EpochSeconds, m.Reputation.ChallengesPerEpoch = 64, 86400, 32
		}, ""},
		{"smallest", func(m *Manifest) {
			m.Reputation.Window, m.Reputation.EpochSeconds, m.Reputation.ChallengesPerEpoch = 1, 5, 1
		}, ""},
		{"alpha", func(m *Manifest) { m.Reputation.Alpha = 1.5 }, "every fraction must be in [0,1]"},
		{"beta negative", func(m *Manifest) { m.Reputation.Beta = -0.1 }, "every fraction must be in [0,1]"},
		{"gamma", func(m *Manifest) { m.Reputation.Gamma = 2 }, "every fraction must be in [0,1]"},
		{"abnormal", func(m *Manifest) { m.Reputation.Abnormal = 7 }, "every fraction must be in [0,1]"},
		{"window", func(m *Manifest) { m.Reputation.Window = 65 }, "reputation window 65 epochs, want 1..64"},
		{"window negative", func(m *Manifest) { m.Reputation.Window = -1 }, "reputation window -1"},
		{"epoch short", func(m *Manifest) { m.Reputation.EpochSeconds = 4 }, "epoch_seconds 4, want 5..86400"},
		{"epoch long", func(m *Manifest) { m.Reputation.EpochSeconds = 86401 }, "epoch_seconds 86401"},
		{"challenges", func(m *Manifest) { m.Reputation.ChallengesPerEpoch = 33 }, "challenges_per_epoch 33, want 1..32"},
		{"prompt empty", func(m *Manifest) { m.Verifiers.Prompts = []string{"ok?", " "} }, "challenge prompt 1 is empty"},
		{"prompt long", func(m *Manifest) { m.Verifiers.Prompts = []string{long} }, "challenge prompt 0 is 2001 bytes long, at most 2000"},
		{"prompt control", func(m *Manifest) { m.Verifiers.Prompts = []string{"a\x00b"} }, "challenge prompt 0 contains control character"},
		{"prompt not utf8", func(m *Manifest) { m.Verifiers.Prompts = []string{"a\xffb"} }, "challenge prompt 0 is not UTF-8"},
		{"too many prompts", func(m *Manifest) { m.Verifiers.Prompts = many }, "257 challenge prompts, at most 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := DefaultManifest("x", Steward{PublicKey: PublicKey(k.Public().(ed25519.PublicKey))}, t0)
			tc.f(m)
			err := m.Validate()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("valid manifest rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}
